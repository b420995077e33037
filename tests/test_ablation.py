"""The chapter 6 ablation (sagan_tut.ablation and its pieces): the ladder of configurations (the SN rung's D
without BatchNorm), a tiny campaign run through ``main`` in two invocations (seed 0, then seeds 0-1: the first
runs are reused, not retrained), the campaign logic with an instant stand-in for training (interruption, refusal
to mix campaigns), the table against NumPy, the tests between rungs against SciPy and by hand, the reference rows
against an independent FID, and the errors for bad arguments.

The tiny campaign: configurations ``sn`` and ``attention`` x seeds 0 and 1, 2 iterations each at width 1/8,
batch 8, scored on 16 images; about 30 s of CPU time on a 2-core machine.
"""
import copy
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from sagan_tut import ablation, ablation_run
from sagan_tut.attention import SelfAttention
from sagan_tut.faces import generate_faces, structure_score
from sagan_tut.metrics import RandomConvExtractor
from sagan_tut.spectral_norm import SpectralNormalization
from sagan_tut.train import build_models

def _tiny_args(seeds):
    return ["--configs", "sn,attention", "--seeds", str(seeds), "--steps", "2", "--width", "0.125", "--batch-size",
            "8", "--n-eval", "16", "--quiet"]


TINY_ARGS = _tiny_args(2)


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


def _kernels(model):
    return [l for l in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense))]


@pytest.mark.parametrize("resolution", [32, 64])
def test_the_configurations_reach_the_networks(resolution):
    """SN wrappers appear from rung 2 on, and then D has no BatchNorm (SN-GAN's and SAGAN's D); attention layers
    (at half the image side, in G and D) from rung 3 on. G keeps its BatchNorm throughout."""
    size = resolution // 2
    for name, has_sn, has_attention in (("dcgan", False, False), ("sn", True, False), ("attention", True, True)):
        G, D = build_models(ablation.make_config(name, width=0.125, resolution=resolution))
        for model in (G, D):
            sn = [l for l in model._flatten_layers(include_self=False, recursive=True)
                  if isinstance(l, SpectralNormalization)]
            assert bool(sn) == has_sn, (name, model.name)
            if has_sn:  # every conv and dense, attention's included
                assert {id(l) for l in _kernels(model)} == {id(w.layer) for w in sn}, (name, model.name)
            attn = [l for l in model.layers if isinstance(l, SelfAttention)]
            assert [tuple(l.input.shape[1:3]) for l in attn] == ([(size, size)] if has_attention else []), name
        bn = {m.name: [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)] for m in (G, D)}
        assert bool(bn["discriminator"]) == (name == "dcgan"), name
        assert bn["generator"], name


def test_resolution_moves_attention_and_nothing_else():
    a, b = (ablation.make_config("attention", resolution=r).to_dict() for r in (32, 64))
    assert {k for k in a if a[k] != b[k]} == {"resolution", "attention_res"}
    assert (b["resolution"], b["attention_res"]) == (64, 32)
    assert ablation.make_config("sn", resolution=64).attention_res is None
    with pytest.raises(ablation.AblationError, match=r"resolution must be one of \(32, 64\)"):
        ablation.make_config("dcgan", resolution=128)


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
    (dict(resolution=128), "resolution must be one of"),
])
def test_bad_run_arguments_fail_before_any_training(tmp_path, kwargs, message):
    with pytest.raises(ablation.AblationError, match=message):
        ablation.run_ablation(tmp_path / "out", configs=["dcgan"], verbose=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_offers_the_reference_budget_settings(capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--steps", "--seeds", "--resolution", "--out"))
    assert "default book/ablation" in text and ablation.DEFAULT_SEEDS >= 3
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--resolution", "128", "--out", "unused"])
    assert exc.value.code == 2 and "invalid choice: 128" in capsys.readouterr().err


def test_report_only_without_results_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--report-only", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "results.json" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# A tiny end-to-end run through main()
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_campaign(tmp_path_factory):
    """The tiny campaign in two invocations, as after an interruption: seed 0 only, then seeds 0 and 1. The
    second one records which runs it trained."""
    out = tmp_path_factory.mktemp("ablation")
    assert ablation.main(["--out", str(out), *_tiny_args(1)]) == 0
    first = json.loads((out / "results.json").read_text())
    samples_mtime = (out / "samples.npz").stat().st_mtime_ns
    trained = []
    real_run_one = ablation_run.run_one

    def spy(name, seed, *args, **kwargs):
        trained.append((name, seed))
        return real_run_one(name, seed, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ablation_run, "run_one", spy)
        assert ablation.main(["--out", str(out), *TINY_ARGS]) == 0
    return dict(out=out, first=first, trained=trained, samples_mtime=samples_mtime,
                results=json.loads((out / "results.json").read_text()))


@pytest.fixture(scope="module")
def tiny(tiny_campaign):
    return tiny_campaign["out"], tiny_campaign["results"]


@pytest.mark.slow
def test_a_continued_campaign_reuses_finished_runs_and_appends_the_rest(tiny_campaign):
    first, results = tiny_campaign["first"], tiny_campaign["results"]
    assert [(r["config"], r["seed"]) for r in first["runs"]] == [("sn", 0), ("attention", 0)]
    assert first["complete"] is True and first["settings"]["seeds"] == [0]
    # The second invocation trained only seed 1; seed 0's records are byte for byte those of the first.
    assert tiny_campaign["trained"] == [("sn", 1), ("attention", 1)]
    assert results["runs"][:2] == first["runs"]
    assert [(r["config"], r["seed"]) for r in results["runs"][2:]] == [("sn", 1), ("attention", 1)]
    assert results["settings"]["seeds"] == [0, 1] and results["complete"] is True
    assert results["date"] == first["date"]
    assert [sess["runs_added"] for sess in results["sessions"]] == [["sn_seed0", "attention_seed0"],
                                                                     ["sn_seed1", "attention_seed1"]]
    # samples.png comes from the first seed's samples, which the second invocation had no reason to rewrite.
    assert (tiny_campaign["out"] / "samples.npz").stat().st_mtime_ns == tiny_campaign["samples_mtime"]


@pytest.mark.slow
def test_every_run_records_its_machine_and_timing(tiny):
    _, results = tiny
    for run in results["runs"]:
        m = run["machine"]
        assert m["cpu_model"] and m["cpu_cores"] == os.cpu_count() and m["tensorflow"] == tf.__version__
        assert m["vector_width"] in ("AVX-512", "AVX2", "AVX", "SSE")
        assert run["time_train_s"] > 0 and run["cpu_time_s"] > 0 and run["date"]
        assert run["time_total_s"] >= run["time_build_s"] + run["time_train_s"] + run["time_eval_s"] - 0.05
        assert run["resumed_from_step"] == 0


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


# ----------------------------------------------------------------------------------------------------------------
# The campaign logic with an instant stand-in for training: interruption, resume, refusal to mix campaigns
# ----------------------------------------------------------------------------------------------------------------
FAKE = dict(configs=["dcgan", "sn"], steps=2, n_eval=8, verbose=False, width=0.125, batch_size=8)


@pytest.fixture
def fake_training(monkeypatch):
    """run_one replaced by a record made in no time; ``calls`` lists what was 'trained'. ``fail_at`` makes the
    k-th call raise KeyboardInterrupt, as a Ctrl-C in the middle of a run."""
    state = dict(calls=[], fail_at=None)

    def run_one(name, seed, config, run_dir, reference, extractor, n_eval, machine=None):
        state["calls"].append((name, seed))
        if state["fail_at"] == len(state["calls"]):
            raise KeyboardInterrupt
        value = 0.1 * len(state["calls"])
        return dict(config=name, label=ablation.LABELS[name], seed=seed, train_config=config.to_dict(),
                    metrics=dict(structure=value, fid=1 + value, kid=value / 100), time_total_s=1.0,
                    machine=machine, samples=np.zeros((8, 32, 32, 3), np.float32))

    monkeypatch.setattr(ablation_run, "run_one", run_one)
    return state


@pytest.mark.slow
def test_an_interrupted_campaign_keeps_its_runs_and_continues(tmp_path, fake_training):
    fake_training["fail_at"] = 3  # dcgan 0, dcgan 1 finish; the third run is interrupted
    with pytest.raises(KeyboardInterrupt):
        ablation.run_ablation(tmp_path, seeds=2, **FAKE)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [(r["config"], r["seed"]) for r in saved["runs"]] == [("dcgan", 0), ("dcgan", 1)]
    assert saved["complete"] is False
    fake_training.update(calls=[], fail_at=None)
    results = ablation.run_ablation(tmp_path, seeds=2, **FAKE)
    assert fake_training["calls"] == [("sn", 0), ("sn", 1)]  # only what was missing
    assert results["runs"][:2] == saved["runs"] and results["complete"] is True
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]
    # Nothing left to do: a third invocation trains nothing and changes no run.
    fake_training["calls"] = []
    again = ablation.run_ablation(tmp_path, seeds=2, **FAKE)
    assert fake_training["calls"] == [] and again["runs"] == results["runs"] and len(again["sessions"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    (dict(steps=3), "steps: 2 in results.json, 3 now"),
    (dict(n_eval=12), "n_eval: 8 in results.json, 12 now"),
    (dict(width=0.25), "overrides"),
])
def test_a_campaign_with_other_settings_is_refused_untouched(tmp_path, fake_training, change, message):
    ablation.run_ablation(tmp_path, seeds=1, **FAKE)
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(ablation.AblationError, match=re.escape(message) + ".*another --out"):
        ablation.run_ablation(tmp_path, seeds=2, **{**FAKE, **change})
    assert (tmp_path / "results.json").read_bytes() == before
    assert fake_training["calls"] == [("dcgan", 0), ("sn", 0)]


@pytest.mark.slow
def test_results_of_the_old_ladder_or_other_metrics_are_not_mixed_in(tmp_path, fake_training):
    ablation.run_ablation(tmp_path, seeds=1, **FAKE)
    path = tmp_path / "results.json"
    results = json.loads(path.read_text())
    old = copy.deepcopy(results)
    del old["settings"]["ladder_version"]  # as the committed results made before the SN rung lost BatchNorm
    path.write_text(json.dumps(old))
    with pytest.raises(ablation.AblationError, match="ladder_version: 1 in results.json, 2 now"):
        ablation.run_ablation(tmp_path, seeds=2, **FAKE)
    results["reference"]["real_val"]["metrics"]["structure"] -= 0.2  # as if the structure score had changed
    path.write_text(json.dumps(results))
    with pytest.raises(ablation.AblationError, match="scored by other metrics: structure of 'real faces"):
        ablation.run_ablation(tmp_path, seeds=2, **FAKE)
    assert fake_training["calls"] == [("dcgan", 0), ("sn", 0)]


def test_scores_use_the_structure_score_entry_point():
    from sagan_tut.faces import structure_scores

    images = generate_faces(16, 32, seed=3)
    images[:8] = generate_faces(8, 32, seed=3, broken=True)
    extractor = RandomConvExtractor()
    real = ablation_run._reference(extractor, 8, 32)["stats"]
    scores = ablation_run._score(images, real, extractor)
    assert scores["structure"] == pytest.approx(structure_score(images))
    for part, values in structure_scores(images).items():
        if part != "score":
            assert scores[part] == pytest.approx(float(np.mean(values)))


# ----------------------------------------------------------------------------------------------------------------
# The statistics against SciPy and by hand, on fixed fake results
# ----------------------------------------------------------------------------------------------------------------
A = [2.35, 2.10, 2.61]
B = [3.04, 2.20, 3.81, 2.95]


def test_welch_t_test_matches_scipy_and_the_formula():
    import scipy.stats

    got = ablation.welch_t_test(A, B)
    ref = scipy.stats.ttest_ind(B, A, equal_var=False)
    assert got["t"] == pytest.approx(ref.statistic, rel=1e-12) and got["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    # By hand: t = (mean_b - mean_a) / sqrt(va/na + vb/nb), Welch-Satterthwaite df.
    va, vb = np.var(A, ddof=1) / 3, np.var(B, ddof=1) / 4
    assert got["t"] == pytest.approx((np.mean(B) - np.mean(A)) / np.sqrt(va + vb))
    assert got["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3))
    assert np.isnan(ablation.welch_t_test([1.0], B)["p"]) and np.isnan(ablation.welch_t_test([1, 1], [2, 2])["p"])


def test_bootstrap_interval_matches_scipy():
    import scipy.stats

    lo, hi = ablation.bootstrap_diff_ci(A, B, n_boot=20_000)
    ref = scipy.stats.bootstrap((B, A), lambda b, a: np.mean(b) - np.mean(a), n_resamples=20_000,
                                method="percentile", vectorized=False, random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)
    assert lo < np.mean(B) - np.mean(A) < hi


def test_detectable_difference_is_the_power_formula():
    import scipy.stats

    a, b = [0.0, 1.0, 2.0], [5.0, 6.0, 7.0]  # s = 1 on both sides: se = sqrt(2/3), df = 4
    expected = (scipy.stats.t.ppf(0.975, 4) + scipy.stats.t.ppf(0.8, 4)) * np.sqrt(2 / 3)
    assert ablation.detectable_difference(a, b) == pytest.approx(expected)


def _fake_results(values: dict) -> dict:
    runs = [dict(config=name, seed=i, metrics=dict(structure=v, fid=10 * v, kid=v / 1000), time_total_s=1.0)
            for name, vs in values.items() for i, v in enumerate(vs)]
    return dict(runs=runs, settings=dict(configs=list(values)))


def test_verdicts_are_computed_from_the_numbers():
    import scipy.stats

    results = _fake_results({"dcgan": [0.20, 0.22, 0.21], "sn": [0.50, 0.52, 0.49], "attention": [0.45, 0.55, 0.5]})
    lines = ablation.conclusions(results)
    assert len(lines) == 2 and lines[0].startswith("DCGAN → + spectral norm: ")
    p_sn = scipy.stats.ttest_ind([0.50, 0.52, 0.49], [0.20, 0.22, 0.21], equal_var=False).pvalue
    assert p_sn < 0.05 / 6
    # Higher structure is better, higher FID worse: the same data reads "better" on one and "worse" on the other.
    assert f"structure score: better by 0.293 (p < 0.001; also at the Bonferroni level 0.0083 for 6 tests)" \
        in lines[0]
    assert "FID (offline): worse by 2.93" in lines[0]
    p_att = scipy.stats.ttest_ind([0.45, 0.55, 0.5], [0.50, 0.52, 0.49], equal_var=False).pvalue
    assert f"structure score: within seed noise (p = {p_att:.2f}; 3 seeds per rung resolve only" in lines[1]
    one = ablation.conclusions(_fake_results({"dcgan": [0.2], "sn": [0.5, 0.6]}))
    assert "not testable: 1 seed on one side" in one[0]


def test_table_reports_the_tests_between_neighbours():
    import scipy.stats

    results = _fake_results({"dcgan": [0.20, 0.22, 0.21], "sn": [0.50, 0.52, 0.49]})
    text = ablation.tests_markdown(results)
    row = next(line for line in text.splitlines() if line.startswith("| DCGAN → + spectral norm"))
    p = scipy.stats.ttest_ind([0.50, 0.52, 0.49], [0.20, 0.22, 0.21], equal_var=False).pvalue
    assert row.split("|")[2].strip().startswith(f"+0.293 [") and f"p = {p:.2f}" in row
    assert "What the seeds allow one to conclude" in text


@pytest.mark.parametrize("flags, width", [
    ("sse4_2 avx avx2 fma avx512f", "AVX-512"), ("sse4_2 avx avx2 fma", "AVX2"), ("avx", "AVX"), ("", "SSE")])
def test_vector_width_from_cpu_flags(flags, width):
    from sagan_tut import machine

    assert machine.cpu_features(f"flags\t: {flags}\n")["isa"] == width


def test_split_keeps_the_names_and_a_one_way_import_graph():
    """The names tests, notebooks and scripts import from sagan_tut.ablation are still there; no piece imports
    the CLI module back (checked in a fresh process: a cycle would show as sagan_tut.ablation being loaded)."""
    for name in ("METRICS", "LABELS", "NAMES", "RUNGS", "BASE", "table_markdown", "summarize", "write_report",
                 "plot_results", "plot_samples", "run_ablation", "run_one", "make_config", "parse_configs",
                 "rung_overrides", "machine_info", "AblationError", "main", "DEFAULT_OUT"):
        assert hasattr(ablation, name), name
    code = ("import sys; import sagan_tut.ablation_run, sagan_tut.ablation_report, sagan_tut.ablation_stats; "
            "print('sagan_tut.ablation' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["False", "False"]
