"""benchmarks/bench_peer.py's pure helpers and its skip path: no torch, no TensorFlow model, no timing."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_peer  # noqa: E402


def test_timing_summary_median_quartiles_and_img_per_s():
    s = bench_peer.timing_summary([4.0, 1.0, 2.0, 3.0], batch=8)
    assert s["ms_median"] == pytest.approx(2500.0)
    assert s["img_per_s"] == pytest.approx(8 / 2.5)
    assert s["ms_q1"] < s["ms_median"] < s["ms_q3"]
    assert s["ms_all"] == [4000.0, 1000.0, 2000.0, 3000.0]  # in timing order, not sorted
    one = bench_peer.timing_summary([2.0], batch=8)
    assert one["ms_q1"] == one["ms_median"] == one["ms_q3"] == 2000.0
    with pytest.raises(ValueError, match="--iters"):
        bench_peer.timing_summary([], batch=8)


def test_vector_width_from_the_machine_facts():
    assert bench_peer.vector_width({"isa": "AVX-512"}) == (512, "AVX-512")
    assert bench_peer.vector_width({"isa": "AVX2"}) == (256, "AVX2")
    assert bench_peer.vector_width({}) == (128, "SSE")


def _result(ours_img_s=0.9, peer=True):
    hw = dict(date="2026-12-01T10:00:00+00:00", cpu="Test CPU", cores=2, simd_flags=["avx", "avx2"], isa="AVX2",
              cpu_label="Test CPU (TestVendor family 1 model 2; AVX2; oneDNN off) x2 cores",
              tensorflow="2.x", keras="3.x", load_average=(0.5, 0.4, 0.3))
    row = dict(impl="x", path="p", ms_median=8000.0 / ours_img_s, ms_q1=8000.0, ms_q3=9000.0, img_per_s=ours_img_s,
               cpu_ms_per_iter=15_000.0, g_params=32_232_708, d_params=38_439_618, threads=2, load_before=1.25)
    result = dict(hardware=hw, settings=dict(batch=8, iters=3, warmup=1, trial=False), ours=dict(row, ema=True))
    if peer:
        result["peer"] = dict(row, img_per_s=0.5, torch="2.13.0+cpu", d_params=29_039_362)
    else:
        result["peer"] = {"impl": "torch-mimicry", "skipped": True, "error": "torch and torch-mimicry not installed"}
    return result


def test_markdown_states_machine_ratio_and_verdict():
    text = bench_peer.markdown(_result(0.9))
    assert "Test CPU (TestVendor family 1 model 2; AVX2; oneDNN off) x2 cores (AVX2: 256-bit" in text
    assert "load average 0.50" in text and "torch 2.13.0+cpu" in text
    assert "ours / peer: ×1.80" in text and "meets" in text
    assert "32.23M" in text and "29.04M" in text and "38.44M" in text
    assert "ours has 9.40M more trainable weights" in text and "(G: +0.00M)" in text
    assert "| 15.0 |" in text and "| 1.2 |" in text  # CPU s per iteration; load before the side started
    assert "misses" in bench_peer.markdown(_result(0.6))  # 0.6 / 0.5 = 1.2 < 1.5
    assert "Trial run" not in text
    trial = _result(0.9)
    trial["settings"]["trial"] = True
    assert bench_peer.markdown(trial).startswith("**Trial run")


def test_skipped_peer_has_no_ratio_and_says_why(tmp_path):
    result = _result(peer=False)
    assert bench_peer.ratio(result["ours"], result["peer"]) is None
    text = bench_peer.markdown(result)
    assert "skipped: torch and torch-mimicry not installed" in text and "one side did not run" in text
    row = bench_peer.run_peer(str(tmp_path / "no-python"), iters=1, warmup=1)
    assert row["skipped"] and row["error"].startswith("torch and torch-mimicry not installed")
    assert "--no-deps torch-mimicry" in row["error"]  # tells how to install


def test_peer_worker_in_a_python_without_torch_skips_cleanly():
    # This venv has no torch: the child prints SKIP with the reason instead of crashing.
    pytest.importorskip("tensorflow")  # i.e. the project's venv, where torch is not installed
    if __import__("importlib").util.find_spec("torch") is not None:
        pytest.skip("torch is installed in this Python")
    row = bench_peer.run_peer(sys.executable, iters=1, warmup=1)
    assert row.get("skipped"), row
    assert "has no torch" in row["error"]


def test_run_side_reads_the_load_before_the_side_runs(monkeypatch):
    load = [1.0]
    monkeypatch.setattr(bench_peer.os, "getloadavg", lambda: (load[0], 0.0, 0.0))

    def side(x):
        load[0] = 9.0  # the side itself (and whatever ran meanwhile) raises the load
        return {"img_per_s": x}

    assert bench_peer.run_side(side, 0.5) == {"img_per_s": 0.5, "load_before": 1.0}
