"""Chapters 4 and 5: what the pages say and what their cells compute agree (issue #13).

Static checks read the committed notebooks (sources and stored outputs); the numeric checks take the chapters' own
code (the training step, the assembled SAGAN, the CelebA form and loader cells) out of the notebook and run it
against the package, so a chapter that drifts from `sagan_tut` fails here, not only in a re-execution.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CH4 = ROOT / "notebooks" / "04_hinge_loss_and_ttur.ipynb"
CH5 = ROOT / "notebooks" / "05_sagan_celeba.ipynb"
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")


def cells(path, kind=None):
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if kind is None or c.cell_type == kind]


def code_cell(path, marker: str) -> str:
    """The source of the one code cell of ``path`` that contains ``marker``."""
    hits = [c.source for c in cells(path, "code") if marker in c.source]
    assert len(hits) == 1, f"{path.name}: {len(hits)} code cells contain {marker!r}"
    return hits[0]


def definitions(source: str, *names: str) -> str:
    """Only the top-level ``def``/assignments of ``names`` from a cell (nothing else of the cell runs)."""
    tree = ast.parse(source)
    keep = [n for n in tree.body
            if (isinstance(n, ast.FunctionDef) and n.name in names)
            or (isinstance(n, ast.Assign) and any(getattr(t, "id", None) in names for t in n.targets))]
    assert {getattr(n, "name", None) or n.targets[0].id for n in keep} == set(names)
    return "\n\n".join(ast.get_source_segment(source, n) for n in keep)


# ------------------------------------------------------------------------------------------ the pages' text
# Control characters in any chapter's markdown: tests/test_markdown_source.py.


def test_ch5_flop_formulas_use_text():
    md = [c.source for c in cells(CH5, "markdown") if "Full profile, estimated" in c.source]
    assert len(md) == 1 and md[0].count(r"H_\text{out} W_\text{out}") == 1
    assert r"n_\text{in} n_\text{out}" in md[0]


@pytest.mark.parametrize("path, key", [(CH4, "ch4"), (CH5, "ch5")], ids=["ch4", "ch5"])
def test_every_glued_key_is_stored_by_a_cell(path, key):
    nb = nbformat.read(path, as_version=4)
    used = {k for c in nb.cells if c.cell_type == "markdown" for k in GLUE_ROLE.findall(c.source)}
    stored = {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", [])}
    assert used, "the chapter glues no numbers"
    assert all(k.startswith(key + "_") for k in used), sorted(used)
    assert used <= stored, f"used in the prose but not glued by any cell output: {sorted(used - stored)}"


@pytest.mark.parametrize("path, key", [(CH4, "ch4"), (CH5, "ch5")], ids=["ch4", "ch5"])
def test_time_header_uses_the_run_time_keys(path, key):
    header = cells(path, "markdown")[0].source
    time_par = header[header.index("**Time.**"):]
    assert f"{{glue:text}}`{key}_cpu_s" in time_par and f"{{glue:text}}`{key}_wall_s" in time_par
    assert not re.search(r"about \d+(\.\d+)? minutes? of (CPU|wall)", time_par)
    # The run-time cell is the last code cell of the chapter proper (only exercise solutions come after it).
    nb = nbformat.read(path, as_version=4)
    first_exercise = next(i for i, c in enumerate(nb.cells) if "## Exercises" in c.source)
    last_code = [c for c in nb.cells[:first_exercise] if c.cell_type == "code"][-1].source
    assert f'run_time("{key}", T_START, CPU_START)' in last_code


def test_ch5_uses_only_public_tensorflow_apis():
    for c in cells(CH5, "code"):
        assert "tensorflow.python" not in c.source, c.source[:200]


def test_ch4_does_not_call_the_blog_learning_rates_a_typo():
    text = "\n".join(c.source for c in cells(CH4, "markdown"))
    assert "typo" not in text
    assert "0.004 / 0.001" in text and "4e-4 / 1e-4" in text


# ------------------------------------------------------------------------------- the ch4 exercise solution
def test_ch4_optimal_d_solution_is_computed_and_right():
    nb = nbformat.read(CH4, as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if "{solution-start} ex-ch04-optimal-d" in c.source)
    assert "{solution-end}" in nb.cells[i + 2].source  # a gated solution: its code cell is executed
    sol_md, code = nb.cells[i].source, nb.cells[i + 1]
    assert code.cell_type == "code" and "0.617" not in sol_md.split("{solution-start}")[1]
    stored = {}
    env = dict(np=np, glue=lambda name, value: stored.setdefault(name, value))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(code.source, env)
    # 2 * integral of min(p, q) = 2 - 2 TV with TV(N(0,1), N(1,1)) = 2 Phi(1/2) - 1, checked with math.erf.
    import math

    tv = 2 * (0.5 * (1 + math.erf(0.5 / math.sqrt(2)))) - 1
    assert stored["ch4_opt_d_value"] == pytest.approx(2 - 2 * tv, abs=1e-6) == pytest.approx(1.2342, abs=1e-4)
    assert "{glue:text}`ch4_opt_d_value" in sol_md and "1.2342" in out.getvalue()


# ------------------------------------------------------------------------ ch4: the step written with GradientTape
def _step_fixture(tmp_path, **config_overrides):
    import keras
    import tensorflow as tf

    from sagan_tut import faces, losses
    from sagan_tut.components import sample_noise
    from sagan_tut.config import get_config
    from sagan_tut.train import Trainer, build_models

    env = dict(tf=tf, d_hinge=losses.d_hinge, g_hinge=losses.g_hinge)
    exec(definitions(code_cell(CH4, "def train_step(G, D, g_opt, d_opt"), "train_step"), env)
    settings = dict(resolution=32, width=0.125, attention_res=16, batch_size=4, steps=1, ema=False, loss="hinge",
                    lr_g=1e-4, lr_d=4e-4, n_dis=1, beta1=0.0, beta2=0.9, seed=0, sample_every=10**6,
                    ckpt_every=10**6)
    config = get_config("quick", **{**settings, **config_overrides})
    real = tf.constant(faces.generate_faces(config.batch_size, config.resolution, seed=3))
    trainer = Trainer(config, tmp_path / "run", verbose=False, dataset=tf.data.Dataset.from_tensors(real).repeat())
    G, D = build_models(config)
    G.set_weights(trainer.G.get_weights())
    D.set_weights(trainer.D.get_weights())
    z_d, z_g = (sample_noise(config.seed, k, config.batch_size, config.z_dim) for k in (0, 1))
    opts = [keras.optimizers.Adam(learning_rate=lr, beta_1=0.0, beta_2=0.9, epsilon=1e-8) for lr in (1e-4, 4e-4)]
    tf.function(lambda: env["train_step"](G, D, *opts, real, z_d, z_g))()
    trainer.train_step()
    return max(float(np.abs(a - b).max()) for a, b in zip(G.get_weights() + D.get_weights(),
                                                          trainer.G.get_weights() + trainer.D.get_weights()))


@pytest.mark.slow
def test_ch4_training_step_equals_the_trainers(tmp_path):
    assert _step_fixture(tmp_path) < 1e-5


@pytest.mark.slow
def test_ch4_step_comparison_can_fail(tmp_path):
    # The same comparison against a trainer with the official code's beta2: it must see the difference.
    assert _step_fixture(tmp_path, beta2=0.999) > 1e-5


# ------------------------------------------------------------------------- ch5: SAGAN assembled from the layers
@pytest.mark.slow
def test_ch5_assembled_sagan_equals_the_package():
    import keras
    import tensorflow as tf

    from sagan_tut.attention import SelfAttention
    from sagan_tut.config import get_config
    from sagan_tut.models import count_params
    from sagan_tut.spectral_norm import SpectralNormalization
    from sagan_tut.train import build_models

    env = dict(keras=keras, SelfAttention=SelfAttention, SpectralNormalization=SpectralNormalization)
    exec(definitions(code_cell(CH5, "def sagan_generator("), "CHANNELS", "sn", "sagan_generator",
                     "sagan_discriminator"), env)
    # 64 px: attention at 32x32 in both networks, as at 128 px, at a fraction of the cost.
    config = get_config("celeba128", resolution=64, attention_res=32)
    G_pkg, D_pkg = build_models(config)
    G, D = env["sagan_generator"](64, config.z_dim, 32), env["sagan_discriminator"](64, 32)
    for ours, theirs in ((G, G_pkg), (D, D_pkg)):
        assert count_params(ours) == count_params(theirs)
        ours.set_weights(theirs.get_weights())
    z = tf.random.stateless_normal((2, config.z_dim), seed=(1, 2))
    x = G_pkg(z, training=False)
    np.testing.assert_allclose(G(z, training=False).numpy(), x.numpy(), atol=1e-5)
    np.testing.assert_allclose(D(x, training=False).numpy(), D_pkg(x, training=False).numpy(), atol=1e-4)


# ------------------------------------------------------------------ ch5: where CelebA is, and when it is not
def _run_data_cells(monkeypatch, root, download=False):
    """The form cell and the CelebA cell of chapter 5, in the full profile, with the data at ``root``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sagan_tut import viz
    from sagan_tut.data import load_dataset
    from sagan_tut.profile import on_colab

    monkeypatch.setenv("SAGAN_TUT_CELEBA_DIR", str(root))
    monkeypatch.delenv("SAGAN_TUT_CELEBA_SOURCE", raising=False)
    form = code_cell(CH5, "#@title Where is CelebA?")
    assert '#@param ["auto"' in form and "#@param {type:\"boolean\"}" in form
    if download:
        form = form.replace('DOWNLOAD = False  #@param', 'DOWNLOAD = True  #@param')
    env = dict(os=os, Path=Path, PROFILE="full", on_colab=on_colab, load_dataset=load_dataset, plt=plt, viz=viz)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(form, env)
        exec(code_cell(CH5, "def celeba_location(src)"), env)
    plt.close("all")
    return env, out.getvalue()


def test_ch5_missing_celeba_prints_one_line_naming_the_setting(monkeypatch, tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    env, out = _run_data_cells(monkeypatch, empty)
    lines = [line for line in out.splitlines() if line.strip()]
    assert env["HAVE_DATA"] is False
    assert len(lines) == 2 and lines[0].startswith("CelebA: source=")  # the form's echo, then ONE message
    assert "DOWNLOAD" in lines[1] and "Traceback" not in out
    # Every cell that trains is skipped, by the same flag.
    training = [c.source for c in cells(CH5, "code") if "Trainer(config, RUN_DIR" in c.source]
    assert training and all("if HAVE_DATA:" in s for s in training)


def test_ch5_reads_a_fake_celeba_from_the_environment(monkeypatch, tmp_path):
    from sagan_tut.celeba_fake import write_fake_celeba

    write_fake_celeba(tmp_path / "celeba", n=24, layout="folder")
    env, out = _run_data_cells(monkeypatch, tmp_path / "celeba")
    assert env["HAVE_DATA"] is True and env["DATA_SOURCE"] == "folder"
    assert env["real"].shape[1:] == (128, 128, 3) and "CelebA found" in out


def test_ch5_download_with_auto_means_kaggle(monkeypatch, tmp_path):
    import sagan_tut.celeba as celeba_mod

    calls = []
    monkeypatch.setattr(celeba_mod, "download_kaggle", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        RuntimeError("no network in tests")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="no network"):
        _run_data_cells(monkeypatch, empty, download=True)
    assert calls  # DOWNLOAD ticked with source "auto" went to the Kaggle mirror, and its error was not swallowed


@pytest.mark.parametrize("path", [CH4, CH5], ids=["ch4", "ch5"])
def test_profile_settings_have_smoke_caps(path):
    # The full branch runs in smoke mode only if the chapter's settings come from profile_config(smoke_caps=...).
    setup = code_cell(path, "PROFILES = dict(")
    assert "CFG = profile_config(PROFILES, smoke_caps=dict(" in setup
    assert not re.search(r"\)\[PROFILE\]", setup)  # no hand-picked dict(quick=..., full=...)[PROFILE] left
