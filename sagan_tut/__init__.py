"""sagan_tut: the library built by the course *SAGAN from scratch*.

One module per concept, named as in the papers:

* :mod:`sagan_tut.spectral_norm` -- ``SpectralNormalization`` (sigma, u, power iteration)
* :mod:`sagan_tut.attention` -- ``SelfAttention`` (f, g, h, gamma)
* :mod:`sagan_tut.losses` -- hinge, non-saturating, minimax and Wasserstein losses
* :mod:`sagan_tut.models` -- DCGAN and SAGAN (``blog`` and ``paper`` architectures) generators/discriminators
* :mod:`sagan_tut.data` -- CelebA loaders and the offline procedural faces
* :mod:`sagan_tut.train` -- the trainer (TTUR, checkpoints, EMA, mixed precision)
* :mod:`sagan_tut.metrics` -- FID, KID, IS
"""
__version__ = "0.1.0"

from .attention import SelfAttention  # noqa: E402
from .spectral_norm import SpectralNormalization  # noqa: E402

__all__ = ["SelfAttention", "SpectralNormalization", "__version__"]
