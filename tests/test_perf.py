"""sagan_tut.perf: how jit_compile="auto" is decided, and the CPU peak estimate. No wall times are asserted: the
choice logic is fed made-up timings."""
import json
import math
import os
import sys
from pathlib import Path

import pytest

from sagan_tut import perf

ROOT = Path(__file__).resolve().parents[1]
TF = "2.21.0"


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(perf.ENV_JIT, raising=False)


def resolve(value="auto", tmp=None, **kw):
    return perf.resolve_jit_compile(value, records_path=tmp / "none.json" if tmp else None, tf_version=TF, **kw)


def test_the_reason_says_where_the_choice_came_from(tmp_path, monkeypatch):
    path = tmp_path / "rec.json"
    assert perf.explain_jit_compile(True, records_path=path) == (True, "set in the config")
    use, why = perf.explain_jit_compile("auto", kind="gpu", device="gpu: X", records_path=path, tf_version=TF)
    assert use is perf.MEASURED_DEFAULTS["gpu"] and "GPU" in why and "MEASURED_DEFAULTS" in why
    perf.record_jit_choice("gpu: X", True, {"cfg": [2.0, 1.0]}, path=path, tf_version=TF)
    use, why = perf.explain_jit_compile("auto", kind="gpu", device="gpu: X", records_path=path, tf_version=TF)
    assert use is True and "measured on this device" in why and str(path) in why
    assert perf.explain_jit_compile("auto", kind="gpu", device="gpu: X", num_replicas=2, records_path=path,
                                    tf_version=TF) == (False, "2 replicas (the trainer uses XLA only on one "
                                                              "device or a TPU)")
    monkeypatch.setenv(perf.ENV_JIT, "false")
    assert perf.explain_jit_compile("auto", kind="gpu", device="gpu: X", records_path=path,
                                    tf_version=TF) == (False, "$SAGAN_TUT_JIT_COMPILE=false")


def test_explicit_flags_pass_through_and_bad_values_are_refused(tmp_path):
    assert resolve(True, tmp_path, kind="cpu") is True
    assert resolve(False, tmp_path, kind="tpu") is False
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        resolve("yes", tmp_path, kind="cpu")
    with pytest.raises(ValueError, match="device kind"):
        resolve("auto", tmp_path, kind="fpga", device="x")


def test_auto_without_a_measurement_uses_the_per_device_table(tmp_path):
    for kind in perf.DEVICE_KINDS:
        assert resolve("auto", tmp_path, kind=kind, device=f"{kind}: test") is perf.measured_default(kind)[0]
    assert perf.measured_default("cpu")[0] is perf.cpu_default()[0]  # a CPU: by this machine's class
    assert resolve("AUTO", tmp_path, kind="tpu", device="tpu") is True  # a TPU always compiles


def test_a_measurement_for_this_device_overrides_the_table(tmp_path):
    path = tmp_path / "records.json"
    default = perf.MEASURED_DEFAULTS["gpu"]
    perf.record_jit_choice("gpu: Tesla T4 x1", not default, {"blog128": [100.0, 80.0]}, path=path, tf_version=TF)
    kw = dict(kind="gpu", records_path=path)
    assert perf.resolve_jit_compile("auto", device="gpu: Tesla T4 x1", tf_version=TF, **kw) is (not default)
    # another GPU model, or another TensorFlow version, has no measurement: back to the table
    assert perf.resolve_jit_compile("auto", device="gpu: NVIDIA L4 x1", tf_version=TF, **kw) is default
    assert perf.resolve_jit_compile("auto", device="gpu: Tesla T4 x1", tf_version="2.99.0", **kw) is default
    # several replicas: never XLA (the trainer supports it on one device only)
    assert perf.resolve_jit_compile("auto", device="gpu: Tesla T4 x1", tf_version=TF, num_replicas=2, **kw) is False
    saved = json.loads(path.read_text())
    assert list(saved.values())[0]["evidence"] == {"blog128": [100.0, 80.0]}


def test_an_unreadable_record_file_falls_back_to_the_table(tmp_path):
    path = tmp_path / "records.json"
    path.write_text("{not json")
    assert perf.resolve_jit_compile("auto", kind="cpu", device="cpu: x", records_path=path,
                                    tf_version=TF) is perf.cpu_default()[0]


def test_environment_variable_overrides_everything(tmp_path, monkeypatch):
    monkeypatch.setenv(perf.ENV_JIT, "true")
    assert resolve("auto", tmp_path, kind="cpu", device="cpu: x") is True
    monkeypatch.setenv(perf.ENV_JIT, "0")
    assert resolve("auto", tmp_path, kind="tpu", device="tpu") is False
    assert resolve(True, tmp_path, kind="cpu") is True  # an explicit config value still wins
    monkeypatch.setenv(perf.ENV_JIT, "maybe")
    with pytest.raises(ValueError, match=perf.ENV_JIT):
        resolve("auto", tmp_path, kind="cpu", device="cpu: x")


def test_choice_from_timings_is_the_geometric_mean_with_a_margin_for_xla():
    assert perf.choose_jit_from_timings([(100.0, 200.0)]) == (False, 2.0)
    use, ratio = perf.choose_jit_from_timings([(100.0, 50.0)])
    assert use is True and ratio == pytest.approx(0.5)
    # XLA 3% faster is not enough (it also costs a compile per run)
    assert perf.choose_jit_from_timings([(100.0, 97.0)])[0] is False
    assert perf.choose_jit_from_timings([(100.0, 90.0)])[0] is True
    # one config 2x faster, another 3x slower: geometric mean sqrt(0.5 * 3) > 1 -> tf.function
    use, ratio = perf.choose_jit_from_timings([(100.0, 50.0), (10.0, 30.0)])
    assert use is False and ratio == pytest.approx(math.sqrt(1.5))
    with pytest.raises(ValueError, match="at least one"):
        perf.choose_jit_from_timings([])
    with pytest.raises(ValueError, match="positive"):
        perf.choose_jit_from_timings([(100.0, 0.0)])


CPUINFO = """processor\t: 0
model name\t: Test CPU
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse sse2 avx avx2 fma {extra}
"""


def test_cpu_peak_estimate_from_cpuinfo_flags():
    gflops, how = perf.estimate_cpu_peak_gflops(CPUINFO.format(extra=""), cores=2)
    assert gflops == pytest.approx(2 * 2 * 8 * 2 * 2.0)  # cores x FMA units x AVX2 lanes x 2 x GHz
    assert "estimate" in how and "AVX2" in how
    gflops, how = perf.estimate_cpu_peak_gflops(CPUINFO.format(extra="avx512f avx512bw"), cores=4)
    assert gflops == pytest.approx(4 * 2 * 16 * 2 * 2.0) and "AVX-512" in how
    no_fma = CPUINFO.format(extra="").replace(" fma", "").replace(" avx2", "").replace(" avx", "")
    assert perf.estimate_cpu_peak_gflops(no_fma, cores=1)[0] == pytest.approx(1 * 1 * 4 * 1 * 2.0)  # SSE adds only
    assert perf.estimate_cpu_peak_gflops("nothing here", cores=1)[0] is None
    assert perf.cpu_model(CPUINFO) == "Test CPU"


def _bench_train():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train
    finally:
        sys.path.pop(0)
    return bench_train


def _row(preset, mode, ms, batch=16, data="const", alloc="inherit"):
    return dict(preset=preset, name=None, mode=mode, ms_median=ms, batch=batch, data=data, alloc=alloc)


def test_benchmark_rows_feed_the_choice():
    bt = _bench_train()
    rows = [_row("quick", "function", 200.0), _row("quick", "xla", 400.0), _row("quick", "eager", 900.0),
            _row("celeba128", "function", 1500.0), _row("celeba128", "xla", 2000.0),
            _row("quick", "xla", 10.0, data="faces"),  # other data or allocator: not a like-for-like pair
            _row("celeba64", "xla", 10.0)]  # no tf.function partner
    pairs = bt.jit_evidence(rows)
    assert pairs == {("quick", 16): (200.0, 400.0), ("celeba128", 16): (1500.0, 2000.0)}
    assert perf.choose_jit_from_timings(pairs.values())[0] is False
    rows[1]["ms_median"], rows[4]["ms_median"] = 100.0, 1000.0
    assert perf.choose_jit_from_timings(bt.jit_evidence(rows).values())[0] is True


def test_the_cpu_table_agrees_with_the_committed_cpu_measurement():
    # CPU_MEASURED must agree with what benchmarks/results says for the machine class it was measured on;
    # regenerate and update together.
    path = ROOT / "benchmarks" / "results" / "train_speed.json"
    if not path.exists():
        pytest.skip("no committed benchmark results")
    results = json.loads(path.read_text())
    if results["hardware"]["gpus"]:
        pytest.skip("the committed results come from a GPU")
    cls = results["hardware"].get("machine_class")
    if cls is None:
        pytest.skip("the committed results predate machine classes")
    pairs = _bench_train().jit_evidence([r for r in results["rows"] if "error" not in r])
    if not pairs:
        pytest.skip("the committed results have no tf.function/XLA pair")
    assert cls in perf.CPU_MEASURED, f"add the committed table's machine class {cls!r} to CPU_MEASURED"
    assert perf.choose_jit_from_timings(pairs.values())[0] is perf.CPU_MEASURED[cls][0]


AVX2_ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: 2445.000
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
AVX512_ZEN5 = AVX2_ZEN3.replace("25", "26").replace(": 1\n", ": 2\n").replace(
    "bmi2", "bmi2 avx512f avx512_vnni avx512_bf16")


def test_machine_class_follows_vector_width_and_onednn(monkeypatch):
    from sagan_tut import machine

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert machine.cpu_features(AVX2_ZEN3)["isa"] == "AVX2"
    assert machine.machine_class(AVX2_ZEN3) == "cpu AVX2 oneDNN-off"  # TensorFlow's default: no VNNI, no oneDNN
    assert machine.machine_class(AVX512_ZEN5) == "cpu AVX-512 oneDNN-on"
    # AVX-512 without VNNI/BF16 (e.g. Skylake-SP): oneDNN stays off by default
    assert machine.machine_class(AVX512_ZEN5.replace(" avx512_vnni avx512_bf16", "")) == "cpu AVX-512 oneDNN-off"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the user's switch wins
    assert machine.machine_class(AVX512_ZEN5) == "cpu AVX-512 oneDNN-off"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert machine.machine_class(AVX2_ZEN3) == "cpu AVX2 oneDNN-on"
    # the same "model name" on two machine kinds must not share a recorded measurement
    assert machine.cpu_label(AVX2_ZEN3, onednn=False) != machine.cpu_label(AVX512_ZEN5, onednn=True)
    assert "family 25" in machine.cpu_label(AVX2_ZEN3, onednn=False)


def test_auto_on_a_cpu_is_decided_by_its_machine_class(tmp_path):
    kw = dict(kind="cpu", device="cpu: test", records_path=tmp_path / "none.json", tf_version=TF)
    assert perf.resolve_jit_compile("auto", machine_cls="cpu AVX2 oneDNN-off", **kw) is True
    use, why = perf.explain_jit_compile("auto", machine_cls="cpu AVX-512 oneDNN-on", **kw)
    assert use is False and "AVX-512 oneDNN-on" in why and "CPU_MEASURED" in why
    # a class nobody measured follows oneDNN
    assert perf.resolve_jit_compile("auto", machine_cls="cpu AVX oneDNN-on", **kw) is False
    use, why = perf.explain_jit_compile("auto", machine_cls="cpu SSE oneDNN-off", **kw)
    assert use is True and "no measurement" in why
    for cls, (use, where) in perf.CPU_MEASURED.items():
        assert perf.cpu_default(cls)[0] is use and where in perf.cpu_default(cls)[1]


def test_profile_categories_know_onednn_and_xla_op_names():
    bt = _bench_train()
    for name, plain in [("_MklNativeConv2DBackpropInput", "Conv2DBackpropInput"), ("_MklNativeFusedConv2D",
                        "FusedConv2D"), ("_MklBatchMatMulV2", "BatchMatMulV2"), ("_MklNativeFusedMatMul",
                        "FusedMatMul"), ("_FusedConv2D", "FusedConv2D"), ("Conv2D", "Conv2D"), ("convolution",
                        "Conv2D"), ("_MklTranspose", "Transpose"), ("Mul", "Mul")]:
        assert bt.canonical_op_type(name) == plain
    convs = [k for k in ("_MklNativeConv2D", "_MklNativeConv2DBackpropFilter", "_MklNativeFusedConv2D", "Mul")
             if bt.canonical_op_type(k) in bt.CONV_OPS]
    assert convs == ["_MklNativeConv2D", "_MklNativeConv2DBackpropFilter", "_MklNativeFusedConv2D"]


def test_xla_compile_cache_setting_respects_the_user(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/elsewhere --xla_foo")
    assert perf.use_xla_compile_cache() == "/elsewhere"  # the user's own flag wins, untouched
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/elsewhere --xla_foo"
    monkeypatch.setenv("TF_XLA_FLAGS", "--xla_foo")
    monkeypatch.setenv(perf.ENV_XLA_CACHE, "0")
    assert perf.use_xla_compile_cache() is None and os.environ["TF_XLA_FLAGS"] == "--xla_foo"
    monkeypatch.setenv(perf.ENV_XLA_CACHE, str(tmp_path / "x"))
    assert perf.use_xla_compile_cache() == str(tmp_path / "x")
    assert os.environ["TF_XLA_FLAGS"] == f"--xla_foo --tf_xla_persistent_cache_directory={tmp_path / 'x'}"
    assert not (tmp_path / "x").exists()  # nothing created on import: TensorFlow makes it at the first compile
    monkeypatch.setenv("TF_XLA_FLAGS", "")
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(perf.ENV_XLA_CACHE, str(tmp_path / "a_file" / "x"))  # XLA would fail every compile there
    assert perf.use_xla_compile_cache() is None and os.environ["TF_XLA_FLAGS"] == ""
    # the default folder is per TensorFlow version and CPU: an executable for one ISA never meets another CPU
    assert perf.xla_cache_dir().name.startswith("tf") and perf.xla_cache_dir().parent.name == "xla"


@pytest.mark.slow
def test_import_sagan_tut_turns_on_the_xla_cache_and_a_second_process_reuses_it(tmp_path):
    import subprocess

    code = ("import sagan_tut, tensorflow as tf\n"
            "f = tf.function(lambda x: tf.reduce_sum(tf.nn.relu(x) * 3.0), jit_compile=True)\n"
            "print('OUT', float(f(tf.ones((4, 4)))))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update(SAGAN_TUT_XLA_CACHE=str(tmp_path / "xla"), TF_CPP_MIN_LOG_LEVEL="3")
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append([ln for ln in proc.stdout.splitlines() if ln.startswith("OUT")])
        files = sorted((tmp_path / "xla").glob("*"))
        if len(outs) == 1:
            first = [(f.name, f.stat().st_mtime_ns) for f in files]
    assert outs[0] == outs[1] == ["OUT 48.0"]
    assert first and any("XLA_CPU_JIT" in name for name, _ in first)
    # the second process found the entry and wrote nothing new
    assert [(f.name, f.stat().st_mtime_ns) for f in files] == first


def test_bfc_allocator_is_requested_only_before_tensorflow_starts_and_never_over_the_user(monkeypatch):
    import tensorflow  # noqa: F401  -- make sure it is in sys.modules for the first case

    monkeypatch.delenv(perf.ENV_BFC, raising=False)
    assert perf.use_bfc_cpu_allocator() is False  # TensorFlow already imported: too late, leave the env alone
    assert perf.ENV_BFC not in os.environ
    monkeypatch.delitem(sys.modules, "tensorflow")  # as if called before `import tensorflow`
    assert perf.use_bfc_cpu_allocator() is True
    assert os.environ[perf.ENV_BFC] == "true"
    monkeypatch.setenv(perf.ENV_BFC, "false")  # the user's choice wins
    assert perf.use_bfc_cpu_allocator() is False
    assert os.environ[perf.ENV_BFC] == "false"


@pytest.mark.parametrize("variant", ["paper", "biggan"])
def test_attention_cost_reports_the_score_matrix_and_phases(variant):
    phases = []
    r = perf.attention_cost(4, variant, channels=16, batch=2, min_repeats=1, min_seconds=0.0, max_repeats=2,
                            on_phase=phases.append)
    n = 16
    m = n // 4 if variant == "biggan" else n
    assert (r["n"], r["m"]) == (n, m)
    assert r["score_bytes"] == 2 * n * m * 4  # batch x queries x keys x float32
    assert phases == ["built", "forward", "train"]
    assert 1 <= r["fwd_reps"] <= 2 and 1 <= r["train_reps"] <= 2
    assert r["fwd_ms"] > 0 and r["train_ms"] > 0
    # forward FLOPs as sagan_tut.flops counts them (checked by hand in test_flops.py), times the batch
    ck, cv = 2, (8 if variant == "biggan" else 16)
    expected = 2 * n * 16 * ck * 2 + 2 * n * 16 * cv + 2 * n * m * (ck + cv) + (2 * n * cv * 16 if variant == "biggan" else 0)
    assert r["gflop_fwd"] == pytest.approx(2 * expected / 1e9)


def test_memory_readers_see_this_process_allocate():
    import numpy as np

    before_peak, before_rss = perf.peak_rss_mib(), perf.rss_mib()
    if before_rss is None:
        pytest.skip("no /proc/self/status (not Linux)")
    assert 0 < before_rss <= before_peak + 1
    block = np.ones(256 * 2**20 // 8)  # 256 MiB, every page touched
    assert perf.rss_mib() - before_rss > 200
    assert perf.peak_rss_mib() - before_peak > 200 - (before_peak - before_rss)  # the high-water mark moves too
    del block
    assert 0 < perf.available_mib() < perf.memory_gib() * 1024


def test_short_runs_keep_tf_function_unless_told_otherwise(tmp_path):
    path = tmp_path / "rec.json"
    perf.record_jit_choice("cpu: X", True, {"cfg": [2.0, 1.0]}, path=path, tf_version=TF)
    kw = dict(kind="cpu", device="cpu: X", records_path=path, tf_version=TF)
    assert perf.resolve_jit_compile("auto", steps=perf.XLA_MIN_STEPS, **kw) is True
    assert perf.resolve_jit_compile("auto", **kw) is True  # steps unknown: the device's choice
    use, why = perf.explain_jit_compile("auto", steps=perf.XLA_MIN_STEPS - 1, **kw)
    assert use is False and "too few" in why and "measured on this device" in why
    assert perf.resolve_jit_compile(True, steps=1, **kw) is True  # an explicit value wins
    assert perf.resolve_jit_compile("auto", kind="tpu", device="tpu", steps=1, records_path=path,
                                    tf_version=TF) is True  # a TPU always compiles
