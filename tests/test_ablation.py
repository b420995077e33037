"""The chapter 6 ablation script (sagan_tut.ablation): the ladder of configurations, one tiny end-to-end run
through ``main`` (the code path of ``python -m sagan_tut.ablation``), the table against NumPy, the reference rows
against an independent FID, and the errors for bad arguments.

The tiny run: configurations ``sn`` and ``attention`` x seeds 0 and 1, 2 iterations each at width 1/8, batch 8,
scored on 16 images; about 30 s of CPU time on a 2-core machine.
"""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from sagan_tut import ablation
from sagan_tut.attention import SelfAttention
from sagan_tut.faces import generate_faces, structure_score
from sagan_tut.metrics import RandomConvExtractor
from sagan_tut.spectral_norm import SpectralNormalization
from sagan_tut.train import build_models

TINY_ARGS = ["--configs", "sn,attention", "--seeds", "2", "--steps", "2", "--width", "0.125", "--batch-size", "8",
             "--n-eval", "16", "--quiet"]


# ----------------------------------------------------------------------------------------------------------------
# The ladder: each configuration is the previous one plus exactly one ingredient
# ----------------------------------------------------------------------------------------------------------------
def test_each_configuration_adds_exactly_its_ingredient():
    cfgs = [ablation.make_config(name, seed=0, steps=10).to_dict() for name in ablation.NAMES]
    changed = [{k for k in a if a[k] != b[k]} for a, b in zip(cfgs, cfgs[1:])]
    assert changed == [{"spectral_norm"}, {"attention_res"}, {"loss", "lr_g", "lr_d", "beta1", "beta2"}]
    dcgan, sn, attention, sagan = cfgs
    # (1) Radford et al.'s DCGAN recipe on 32x32 procedural faces.
    assert (dcgan["arch"], dcgan["loss"], dcgan["spectral_norm"], dcgan["attention_res"]) == \
        ("dcgan", "nonsaturating", False, None)
    assert (dcgan["lr_g"], dcgan["lr_d"], dcgan["beta1"], dcgan["beta2"]) == (2e-4, 2e-4, 0.5, 0.999)
    assert (dcgan["dataset"], dcgan["resolution"], dcgan["n_dis"], dcgan["ema"]) == ("faces", 32, 1, False)
    # (2) + SN, (3) + attention at 16x16, (4) + hinge and TTUR with the paper's Adam betas.
    assert sn["spectral_norm"] is True
    assert attention["attention_res"] == 16
    assert (sagan["loss"], sagan["lr_g"], sagan["lr_d"], sagan["beta1"], sagan["beta2"]) == \
        ("hinge", 1e-4, 4e-4, 0.0, 0.9)


def test_the_configurations_reach_the_networks():
    """SN wrappers appear from rung 2 on and attention layers (at 16x16, in G and D) from rung 3 on."""
    for name, has_sn, has_attention in (("dcgan", False, False), ("sn", True, False), ("attention", True, True)):
        G, D = build_models(ablation.make_config(name, width=0.125))
        for model in (G, D):
            assert any(isinstance(l, SpectralNormalization) for l in model.layers) == has_sn, (name, model.name)
            attn = [l for l in model.layers if isinstance(l, SelfAttention)]
            assert [tuple(l.input.shape[1:3]) for l in attn] == ([(16, 16)] if has_attention else []), name


def test_seed_and_length_are_per_run_and_overrides_apply():
    cfg = ablation.make_config("hinge_ttur", seed=2, steps=40, width=0.125, batch_size=8)
    assert (cfg.seed, cfg.steps, cfg.width, cfg.batch_size) == (2, 40, 0.125, 8)
    assert cfg.sample_every == cfg.ckpt_every == 40  # samples and a checkpoint once, at the end


# ----------------------------------------------------------------------------------------------------------------
# Bad arguments fail at once, with the accepted values
# ----------------------------------------------------------------------------------------------------------------
def test_unknown_configuration_name_is_a_clear_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--configs", "dcgan,atention", "--out", "unused"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown configuration 'atention'" in err and "Did you mean 'attention'?" in err
    assert all(name in err for name in ablation.NAMES)


@pytest.mark.parametrize("text", ["", " , ", "sagan"])
def test_parse_configs_rejects_empty_and_unknown(text):
    with pytest.raises(ablation.AblationError, match="dcgan, sn, attention, hinge_ttur"):
        ablation.parse_configs(text)


def test_parse_configs_keeps_ladder_order():
    assert ablation.parse_configs("hinge_ttur, dcgan") == ["dcgan", "hinge_ttur"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(seeds=0), "seeds must be >= 1"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(n_eval=3), "n_eval must be >= 4"),
    (dict(widht=0.5), "unknown config field"),
])
def test_bad_run_arguments_fail_before_any_training(tmp_path, kwargs, message):
    with pytest.raises(ablation.AblationError, match=message):
        ablation.run_ablation(tmp_path / "out", configs=["dcgan"], verbose=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_report_only_without_results_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--report-only", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "results.json" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# A tiny end-to-end run through main()
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    assert ablation.main(["--out", str(out), *TINY_ARGS]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_tiny_run_writes_every_output(tiny):
    out, results = tiny
    assert results["complete"] is True
    for name in ("ablation.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert sorted((r["config"], r["seed"]) for r in results["runs"]) == \
        [("attention", 0), ("attention", 1), ("sn", 0), ("sn", 1)]
    for run in results["runs"]:
        m = run["metrics"]
        assert 0.0 <= m["structure"] <= 1.0 and np.isfinite(m["fid"]) and np.isfinite(m["kid"])
        assert run["train_config"]["seed"] == run["seed"] and run["train_config"]["steps"] == 2
        assert run["log"][-1]["step"] == 2
    # The attention runs log gamma of G's and D's attention layer; the SN runs have none.
    for run in results["runs"]:
        keys = set(run["gamma"])
        assert keys == ({"gamma/G/attention_16", "gamma/D/attention_16"} if run["config"] == "attention" else set())


@pytest.mark.slow
def test_settings_and_machine_are_recorded(tiny):
    _, results = tiny
    s, m = results["settings"], results["machine"]
    assert (s["steps"], s["seeds"], s["n_eval"], s["configs"]) == (2, [0, 1], 16, ["sn", "attention"])
    assert s["overrides"] == {"width": 0.125, "batch_size": 8}
    assert m["cpu_cores"] == os.cpu_count() and m["tensorflow"] == tf.__version__ and m["cpu_model"]
    # The two configurations of the run differ in exactly the attention layer.
    a, b = (results["configs"][n]["train_config"] for n in ("sn", "attention"))
    assert {k for k in a if a[k] != b[k]} == {"attention_res"}
    assert a["width"] == 0.125 and a["batch_size"] == 8


def _parse_table(text):
    """{first cell: [cells]} of the markdown table's body rows."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_table_is_mean_and_sample_std_of_the_runs(tiny):
    out, results = tiny
    rows = _parse_table((out / "table.md").read_text())
    header = rows.pop("configuration")
    checked = 0
    for name in ("sn", "attention"):
        row = rows[f"{ablation.LABELS[name]} (n=2)"]
        for key, scale in (("structure", 1.0), ("fid", 1.0), ("kid", 1e3)):
            col = next(i for i, h in enumerate(header) if h.startswith({"structure": "structure", "fid": "FID",
                                                                         "kid": "KID"}[key]))
            mean_text, std_text = row[col].split(" ± ")
            decimals = len(mean_text.split(".")[1])
            values = np.array([r["metrics"][key] for r in results["runs"] if r["config"] == name]) * scale
            assert mean_text == f"{np.mean(values):.{decimals}f}", (name, key)
            assert std_text == f"{np.std(values, ddof=1):.{decimals}f}", (name, key)
            checked += 1
    assert checked == 6


@pytest.mark.slow
def test_reference_row_matches_an_independent_fid(tiny):
    """The 'real faces' row: 16 val faces against the first 16 train faces, FID recomputed independently (the
    trace of sqrt(S_a S_b) from the eigenvalues of the non-symmetric product; the package symmetrises)."""
    _, results = tiny
    row = results["reference"]["real_val"]["metrics"]
    real, val = generate_faces(16, 32, seed=0), generate_faces(16, 32, seed=1)
    assert row["structure"] == pytest.approx(structure_score(val), abs=1e-6)
    extractor = RandomConvExtractor()
    fa, fb = extractor(real).astype(np.float64), extractor(val).astype(np.float64)
    mu_a, mu_b, s_a, s_b = fa.mean(0), fb.mean(0), np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)))
    fid = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean
    assert row["fid"] == pytest.approx(fid, rel=1e-3, abs=1e-3)
    # The control: the same faces without their long-range structure score clearly lower.
    assert results["reference"]["broken_val"]["metrics"]["structure"] < row["structure"] - 0.2


@pytest.mark.slow
def test_report_only_rebuilds_the_same_table(tiny, capsys):
    out, _ = tiny
    before = (out / "table.md").read_text()
    (out / "table.md").unlink()
    assert ablation.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "table.md").read_text() == before
    assert re.search(r"whole ablation [0-9.]+ min", before)
