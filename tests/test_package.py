"""The package's top level: lazy exports resolve to the real objects, and importing it does not start TensorFlow."""
import subprocess
import sys

import sagan_tut


def test_exports_resolve_to_their_modules():
    from sagan_tut import attention, config, data, models, spectral_norm, train

    assert sagan_tut.SelfAttention is attention.SelfAttention
    assert sagan_tut.SpectralNormalization is spectral_norm.SpectralNormalization
    assert sagan_tut.make_generator is models.make_generator
    assert sagan_tut.load_dataset is data.load_dataset
    assert sagan_tut.get_config is config.get_config
    assert sagan_tut.Trainer is train.Trainer
    assert set(sagan_tut.__all__) <= set(dir(sagan_tut)) | {"__version__"}


def test_import_is_lazy():
    code = "import sys, sagan_tut; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        sagan_tut.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_the_command_line_modules_start_no_keras_and_the_hook_waits():
    # The layers register when Keras arrives (tests/test_registration.py); until then one import hook waits, and the
    # modules `sagan-tut --help` needs import neither Keras nor TensorFlow.
    code = ("import sys, sagan_tut.cli, sagan_tut.config; import sagan_tut; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, "
            "sum(type(f).__name__ == '_RegisterWithKeras' for f in sys.meta_path))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "1"]
