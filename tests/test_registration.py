"""Saved models load in a fresh process after ``import sagan_tut``: every Keras layer of the package is registered
whichever way the package (or Keras) is imported first, and importing the package alone still starts no TensorFlow.

Each check runs in a child process, because the test session itself has long imported every module."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sagan_tut

ROOT = Path(__file__).resolve().parents[1]


def _serialisable_classes():
    """``{module: [class names]}`` of every ``@keras.saving.register_keras_serializable`` class, read from the
    sources (so a layer added to any module later is covered without editing this test)."""
    found = {}
    for path in sorted((ROOT / "sagan_tut").glob("*.py")):
        names = re.findall(r"@keras\.saving\.register_keras_serializable\([^)]*\)\s*\nclass (\w+)", path.read_text())
        if names:
            found[path.stem] = names
    return found


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_source_scan_finds_the_known_layers():
    found = _serialisable_classes()
    assert {"SpectralNormalization", "SelfAttention", "GlobalSumPooling2D"} <= {n for v in found.values() for n in v}
    assert set(found) == set(sagan_tut._LAYER_MODULES)


@pytest.mark.parametrize("first_import", [
    "import sagan_tut; import keras",                    # the package first, Keras later (the case)
    "import keras; import sagan_tut",                    # Keras already there
    "from sagan_tut import SpectralNormalization",       # one lazy export (imports Keras from inside the package)
    "import sagan_tut.config, tensorflow",               # a TF-free submodule, then TensorFlow (which imports Keras)
])
def test_every_serialisable_class_is_registered(first_import):
    names = [n for v in _serialisable_classes().values() for n in v]
    code = (f"{first_import}\nimport keras\n"
            f"print(all(keras.saving.get_registered_object('sagan_tut>' + n) is not None for n in {names!r}))")
    assert _run(code) == "True"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A blog SAGAN generator and a paper discriminator (GlobalSumPooling2D) saved with ``.save``, with their
    outputs for a fixed input computed here."""
    from sagan_tut.attention import SelfAttention
    from sagan_tut.models import make_discriminator, make_generator

    tmp = tmp_path_factory.mktemp("saved")
    G = make_generator("blog", resolution=32, z_dim=16, width=0.125)
    D = make_discriminator("paper", resolution=32, width=0.125)
    z = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    assert any(isinstance(layer, SelfAttention) for layer in G.layers)
    G.save(tmp / "g.keras")
    D.save(tmp / "d.keras")
    np.save(tmp / "z.npy", z)
    np.save(tmp / "x.npy", x)
    return tmp, np.asarray(G(z, training=False)), np.asarray(D(x, training=False))


@pytest.mark.parametrize("first_import", ["import sagan_tut; import keras",
                                          "from sagan_tut import SpectralNormalization; import keras"])
def test_saved_models_load_in_a_fresh_process_with_identical_outputs(saved, first_import):
    tmp, g_out, d_out = saved
    code = f"""{first_import}
import numpy as np
G = keras.models.load_model(r"{tmp / 'g.keras'}")
D = keras.models.load_model(r"{tmp / 'd.keras'}")
np.save(r"{tmp / 'g_out.npy'}", np.asarray(G(np.load(r"{tmp / 'z.npy'}"), training=False)))
np.save(r"{tmp / 'd_out.npy'}", np.asarray(D(np.load(r"{tmp / 'x.npy'}"), training=False)))
print("loaded")
"""
    assert _run(code) == "loaded"
    np.testing.assert_array_equal(np.load(tmp / "g_out.npy"), g_out)
    np.testing.assert_array_equal(np.load(tmp / "d_out.npy"), d_out)


def test_without_the_import_the_error_names_the_module_to_import(saved):
    # Keras 3 cannot import a custom module itself (it only does so for keras* packages); its error says "make sure
    # they are all imported" and prints the saved config, whose 'module' field names the sagan_tut module.
    tmp, _, _ = saved
    code = f"""import keras
try:
    keras.models.load_model(r"{tmp / 'g.keras'}")
except TypeError as err:
    print(repr(str(err)))
"""
    message = eval(_run(code))
    assert re.search(r"Could not locate class '(SpectralNormalization|SelfAttention)'", message), message
    assert "make sure they are all imported" in message
    assert re.search(r"'module': 'sagan_tut\.(spectral_norm|attention)'", message), message
