"""sagan_tut.reference: the reference runs' artefacts, their resume, and the bar on the committed generators."""
import json

import numpy as np
import pytest

from sagan_tut import reference

TINY = dict(steps=4, batch_size=8, sample_every=2, ckpt_every=2, log_every=1, ema_start=0, jit_compile=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    metrics = reference.train_reference("sagan32", out=tmp / "out", runs_dir=tmp / "runs", n_eval=64,
                                        verbose=False, **TINY)
    return tmp, metrics


def test_artefacts_are_written_where_a_chapter_loads_them(tiny_run):
    tmp, metrics = tiny_run
    dest = tmp / "out" / "sagan32"
    grids = sorted((dest / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_000000.png", "step_000002.png", "step_000004.png"]
    from PIL import Image

    strip = Image.open(dest / "progression.png")
    assert strip.size[1] == 3 * (32 + 4)  # one band (a 32 px tile and its padding) per grid
    meta = json.loads((dest / "meta.json").read_text())
    assert meta["config"] == reference.config_for("sagan32", **TINY).to_dict()
    assert meta["machine"]["vector_width"] in ("AVX-512", "AVX2", "AVX", "SSE") and "onednn" in meta["machine"]
    assert meta["sample_steps"] == [0, 2, 4] and meta["why"] == reference.RUNS["sagan32"]["why"]
    assert [(s["start_step"], s["end_step"]) for s in meta["sessions"]] == [(0, 4)]
    assert meta["cpu_s"] > 0 and meta["wall_s"] > 0 and "sagan_tut.reference" in meta["command"]
    broken = metrics["reference_rows"]["broken_val"]["metrics"]
    assert metrics["bar"]["fid_below_broken_control"] is bool(metrics["ema"]["fid"] < broken["fid"])
    assert metrics["bar"]["structure_ok"] is bool(metrics["ema"]["structure"] >= reference.BAR_STRUCTURE)
    assert json.loads((dest / "metrics.json").read_text())["ema"]["fid"] == pytest.approx(metrics["ema"]["fid"])
    loaded = reference.load_reference("sagan32", tmp / "out")
    assert [r["step"] for r in loaded["log"]] == [1, 2, 3, 4]
    # the committed generator is the run's own final (EMA) generator: same outputs as the trainer's file
    import keras

    z = np.random.default_rng(0).standard_normal((4, 128)).astype("float32")
    own = keras.models.load_model(tmp / "runs" / "sagan32" / "generator.keras")
    np.testing.assert_allclose(loaded["generator"](z, training=False), own(z, training=False), atol=1e-6)


def test_running_again_resumes_and_records_every_session(tiny_run):
    tmp, _ = tiny_run
    reference.train_reference("sagan32", out=tmp / "out", runs_dir=tmp / "runs", n_eval=64, verbose=False,
                              **{**TINY, "steps": 6})
    meta = json.loads((tmp / "out" / "sagan32" / "meta.json").read_text())
    assert [(s["start_step"], s["end_step"]) for s in meta["sessions"]] == [(0, 4), (4, 6)]
    assert meta["wall_s"] == pytest.approx(sum(s["wall_s"] for s in meta["sessions"]), abs=0.2)
    log = reference.load_reference("sagan32", tmp / "out")["log"]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_unknown_runs_and_missing_artefacts_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown reference run 'sagan16'"):
        reference.config_for("sagan16")
    with pytest.raises(FileNotFoundError, match="make reference"):
        reference.load_reference("sagan32", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(reference.RUNS))
def test_committed_reference_generators_meet_the_bar(name):
    """Recomputed from the committed generator: lower FID than the broken-faces control, structure >= 0.85."""
    if not (reference.DEFAULT_OUT / name / "meta.json").exists():
        pytest.skip(f"{name} has not been trained and committed yet (make reference)")
    ref = reference.load_reference(name)
    res = ref["meta"]["config"]["resolution"]
    again = reference.evaluate(ref["generator"], ref["generator"], res, reference.N_EVAL)
    # the committed numbers are what the committed generator gives
    assert again["ema"]["fid"] == pytest.approx(ref["metrics"]["ema"]["fid"], rel=1e-3)
    assert again["ema"]["structure"] == pytest.approx(ref["metrics"]["ema"]["structure"], abs=1e-3)
    broken = again["reference_rows"]["broken_val"]["metrics"]["fid"]
    assert ref["metrics"]["bar"]["fid_below_broken_control"] == (again["ema"]["fid"] < broken)
    missed = []
    if not again["ema"]["fid"] < broken:
        missed.append(f"EMA FID {again['ema']['fid']:.4f} is not below the broken control's {broken:.4f}")
    if again["ema"]["structure"] < reference.BAR_STRUCTURE:
        missed.append(f"structure score {again['ema']['structure']:.3f} is below {reference.BAR_STRUCTURE} "
                      f"(symmetry {again['ema']['symmetry']:.3f})")
    if missed:
        # Not met yet, and said so (issue #12 stays open until it is): reported as xfail, never as a pass.
        pytest.xfail(f"{name} misses issue #12's bar: {'; '.join(missed)}: train longer or wider")
    assert again["ema"]["fid"] < broken and again["ema"]["structure"] >= reference.BAR_STRUCTURE
