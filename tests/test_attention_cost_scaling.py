"""sagan_tut.attention_cost.attention_scaling: chapter 3's timing harness, moved into the package."""
import math

import pytest

from sagan_tut import attention_cost as ac


def closed_form_gflop(size, channels, variant, batch):
    """Forward FLOPs of one block, written out independently of sagan_tut.flops (chapter 3's formula)."""
    n = size * size
    m = n // 4 if variant == "biggan" else n
    ck = channels // 8
    cv = {"paper": channels, "biggan": channels // 2, "icml": ck}[variant]
    flops = 2 * n * channels * (2 * ck + cv) + 2 * n * m * (ck + cv)  # f, g, h; scores and beta h
    if variant != "paper":
        flops += 2 * n * cv * channels  # the output convolution v
    return batch * flops / 1e9


def test_one_row_per_size_and_variant_with_the_closed_forms():
    rows = ac.attention_scaling((4, 8), channels=16, variants=("paper", "biggan", "icml"), batch=2,
                                min_repeats=1, min_seconds=0.0, max_repeats=2)
    assert [(r["size"], r["variant"]) for r in rows] == [
        (4, "paper"), (4, "biggan"), (4, "icml"), (8, "paper"), (8, "biggan"), (8, "icml")]
    for r in rows:
        n = r["size"] ** 2
        assert r["n"] == n and r["m"] == (n // 4 if r["variant"] == "biggan" else n)
        assert r["score_bytes"] == 2 * r["n"] * r["m"] * 4  # batch x queries x keys x float32
        assert r["gflop_fwd"] == pytest.approx(closed_form_gflop(r["size"], 16, r["variant"], 2), rel=1e-12)
        assert 1 <= r["reps"] <= 2 and r["train_ms"] > 0
    text = ac.format_scaling([r for r in rows if r["variant"] != "icml"])
    assert len(text.splitlines()) == 1 + 2 + 2  # header, one line per size, one growth line per variant
    assert "biggan is faster by" in text.splitlines()[0]


def test_growth_ratios_and_table_from_planted_times():
    rows = [{"size": s, "variant": v, "n": s * s, "m": s * s // (4 if v == "biggan" else 1),
             "score_bytes": s ** 4 * 4 // (4 if v == "biggan" else 1), "gflop_fwd": 0.0, "train_ms": t, "reps": 5}
            for s, tp, tq in [(16, 1.0, 2.0), (32, 16.0, 4.0), (64, 300.0, 50.0)]
            for v, t in (("paper", tp), ("biggan", tq))]
    assert ac.scaling_ratios(rows, "paper") == pytest.approx([16.0, 18.75])
    assert ac.scaling_ratios(rows, "biggan") == pytest.approx([2.0, 12.5])
    lines = ac.format_scaling(rows).splitlines()
    assert lines[3].endswith("6.0x")  # 300 ms / 50 ms at 64x64
    assert "64 MiB" in lines[3] and "16 MiB" in lines[3]
    assert "x16.0, x18.8" in lines[4] and "x2.0, x12.5" in lines[5]


def test_a_variant_that_runs_out_of_memory_is_a_result(monkeypatch):
    import tensorflow as tf

    real = ac._block_step

    def oom_for_paper(size, variant, channels, batch):
        if variant == "paper" and size == 8:
            raise tf.errors.ResourceExhaustedError(None, None, "planted OOM")
        return real(size, variant, channels, batch)

    monkeypatch.setattr(ac, "_block_step", oom_for_paper)
    rows = ac.attention_scaling((4, 8), channels=16, min_repeats=1, min_seconds=0.0, max_repeats=1)
    by = {(r["size"], r["variant"]): r for r in rows}
    assert math.isnan(by[8, "paper"]["train_ms"]) and by[8, "paper"]["reps"] == 0
    assert by[8, "biggan"]["train_ms"] > 0 and by[4, "paper"]["train_ms"] > 0


def test_unknown_variant_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'paper', 'icml', 'biggan'"):
        ac.attention_scaling((4,), variants=("pooled",))
