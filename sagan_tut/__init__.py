"""sagan_tut: the library built by the course *SAGAN from scratch*.

One module per concept, named as in the papers:

* :mod:`sagan_tut.spectral_norm` -- ``SpectralNormalization`` (sigma, u, power iteration)
* :mod:`sagan_tut.attention` -- ``SelfAttention`` (f, g, h, gamma)
* :mod:`sagan_tut.losses` -- hinge, non-saturating, minimax and Wasserstein losses
* :mod:`sagan_tut.models` -- DCGAN and SAGAN (``blog`` and ``paper`` architectures) generators/discriminators
* :mod:`sagan_tut.data`, :mod:`sagan_tut.celeba`, :mod:`sagan_tut.faces` -- CelebA and the offline faces
* :mod:`sagan_tut.config`, :mod:`sagan_tut.train` -- presets and the trainer (TTUR, checkpoints, EMA, mixed precision)
* :mod:`sagan_tut.metrics`, :mod:`sagan_tut.viz` -- FID, KID, IS; sample grids and attention maps

The names below are imported lazily, so ``import sagan_tut`` (and ``sagan-tut --help``) does not start
TensorFlow until a model, layer or trainer is actually used.
"""
import importlib

from . import perf as _perf

__version__ = "0.1.0"

# TensorFlow's BFC allocator on the CPU (unless $TF_CPU_ALLOCATOR_USE_BFC says otherwise): it reuses freed
# memory instead of mapping fresh pages every step, which made every training configuration measured on the
# course's 2-core CPU 7-11% faster (benchmarks/results/train_speed_allocator.md). It only takes effect when
# sagan_tut is imported before TensorFlow; see sagan_tut.perf.use_bfc_cpu_allocator.
_perf.use_bfc_cpu_allocator()
# XLA's persistent compilation cache: a process that builds a model compiled before (another test, notebook or run
# on this machine) loads the compiled step instead of compiling it again; see sagan_tut.perf.use_xla_compile_cache.
_perf.use_xla_compile_cache()

_EXPORTS = {
    "SpectralNormalization": "spectral_norm",
    "SelfAttention": "attention",
    "make_generator": "models",
    "make_discriminator": "models",
    "load_dataset": "data",
    "get_config": "config",
    "TrainConfig": "config",
    "Trainer": "train",
    "load_generator": "train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'sagan_tut' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
