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
TensorFlow until a model, layer or trainer is actually used. The package's Keras layers are still registered for
``keras.models.load_model`` as soon as Keras is there (see ``_RegisterWithKeras`` below).
"""
import importlib
import importlib.abc
import sys

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

# -- registering the Keras layers -----------------------------------------------------------------------------------
# Every module with a @keras.saving.register_keras_serializable class (tests/test_registration.py checks the list).
# A saved .keras file names its layers 'sagan_tut>SpectralNormalization' etc.; keras.models.load_model finds them
# only if these modules ran, and importing them imports Keras, hence TensorFlow (~5 s). So we import them the
# moment Keras itself is imported: at once if it already is, else right after its import finishes, via an import
# hook. That keeps `import sagan_tut` and `sagan-tut --help` free of TensorFlow, and needs no decorator run in
# user code. The alternatives fail a user: importing the layers eagerly starts TensorFlow for --help, and
# registering them from each lazy export misses `import sagan_tut; import keras; keras.models.load_model(...)`.
_LAYER_MODULES = ("spectral_norm", "attention", "models")


def _register_layers():
    for name in _LAYER_MODULES:
        importlib.import_module(f".{name}", __name__)


class _RegisterWithKeras(importlib.abc.MetaPathFinder):
    """A one-shot import hook: imports the layer modules once ``keras`` and any sagan_tut module importing it are done.

    It finds nothing itself; it lets the other finders locate ``keras`` and ``sagan_tut.*`` and wraps their loaders
    so that code runs after the module executed. The wait for sagan_tut modules matters: when ``sagan_tut.attention``
    is the first to import Keras, it is only half-initialised when Keras finishes, and importing the layer modules
    then would import ``attention`` from inside itself. So the layers are imported when no sagan_tut module is
    executing any more (``depth`` counts the ones in progress).
    """

    def __init__(self):
        self.depth = 0
        self.keras_done = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith(__name__ + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader.exec_module = self._wrap(spec.loader.exec_module, fullname == "keras")
        return spec

    def _wrap(self, exec_module, is_keras):
        def exec_then_register(module):
            nested = 0 if is_keras else 1  # Keras itself does not count: it is what we wait for
            self.depth += nested
            try:
                exec_module(module)
            finally:
                self.depth -= nested
            self.keras_done = self.keras_done or is_keras
            if self.keras_done and self.depth == 0 and self in sys.meta_path:
                sys.meta_path.remove(self)
                _register_layers()
        return exec_then_register


if "keras" in sys.modules:
    _register_layers()
elif not any(isinstance(f, _RegisterWithKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithKeras())


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'sagan_tut' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
