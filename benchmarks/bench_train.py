"""Training speed: one full iteration (one D update + one G update) of the package's own trainer.

    python benchmarks/bench_train.py                      # the default suite (a few minutes on 2 CPU cores)
    python benchmarks/bench_train.py --suite full         # every preset in every mode (long on a CPU)
    python benchmarks/bench_train.py --only paper128 --modes function,xla --iters 10
    python benchmarks/bench_train.py --official           # just the official SAGAN-128 line, "img/s: X"
    python benchmarks/bench_train.py --profile paper128   # op-level profile of one iteration

What is timed is what users run: ``Trainer.train_step()`` of ``sagan_tut.train`` (data read, noise, the D and G
updates, the EMA copy, the finiteness checks), called in a loop with one host sync (reading the step counter)
after each call. Modes:

* ``eager``: the same step with ``tf.config.run_functions_eagerly(True)`` (no graph);
* ``function``: ``tf.function`` (TensorFlow's graph executor; on a CPU its convolutions are Eigen kernels on
  top of oneDNN's matrix multiply);
* ``xla``: ``jit_compile=True`` (XLA compiles the D and G updates);
* ``bf16`` / ``fp16``: ``tf.function`` under the ``mixed_bfloat16`` / ``mixed_float16`` Keras policy.

Each (configuration, mode) runs in a fresh Python process, so memory figures do not accumulate and every
configuration starts from a cold TensorFlow. After ``--warmup`` untimed calls (tracing, compiling), ``--iters``
calls are timed; the table shows their median (and the spread between the 25th and 75th percentile). The data
is one constant batch (``tf.data.Dataset.from_tensors(...).repeat()``), so the model is timed and not the input
pipeline, except in rows marked ``faces``, which read the procedural faces the quick preset trains on.

Peak memory is the process's resident-set high-water mark (``VmHWM`` on Linux) after the timed
iterations, so it includes TensorFlow itself (about 0.5-1 GiB); on a GPU the table also has TensorFlow's peak
device memory. The JSON also has CPU time, kernel time and page faults per iteration, which move much less than
wall time when other programs share the machine.
FLOPs come from ``sagan_tut.flops.iteration_flops`` (matrix products only, multiply-add = 2; see that module).
Results: ``benchmarks/results/train_speed.json`` and ``train_speed.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # run from a fresh clone without installing

# Every mode but "auto" sets jit_compile explicitly, so the config default "auto" cannot turn a tf.function row
# into XLA; "auto" is the trainer's default path on this device (sagan_tut.perf), reported as what it resolved to.
MODES = {
    "auto": dict(jit_compile="auto"),
    "eager": dict(eager=True, jit_compile=False),
    "function": dict(jit_compile=False),
    "xla": dict(jit_compile=True),
    "bf16": dict(mixed_precision="bfloat16", jit_compile=False),
    "fp16": dict(mixed_precision="float16", jit_compile=False),
}
MODE_LABEL = {"auto": "default", "eager": "eager", "function": "tf.function", "xla": "XLA", "bf16": "mixed bf16",
              "fp16": "mixed fp16"}

# The official SAGAN-128 (brain-research/self-attention-gan): ResNet G 1024 -> 64 channels, D 64 -> 1024,
# attention at 32x32 with 2x2-pooled keys/values and an output conv. On a CPU, batch 8.
OFFICIAL = dict(name="official SAGAN-128", preset="paper128", batch=8)

# The default suite, sized to finish in about 8 minutes on an idle 2-core CPU: every mode on the quick preset (plus
# its real input pipeline), tf.function and XLA on the blog SAGAN-128 at batch 16, and the official architecture
# on the trainer's default path ("auto": whatever jit_compile="auto" picks on this device). --official: the
# official architecture in tf.function (with an op-level profile) and XLA; --suite full: every preset, every mode.
DEFAULT_SUITE = [
    *(dict(preset="quick", batch=64, mode=m) for m in ("eager", "function", "xla", "bf16")),
    dict(preset="quick", batch=64, mode="function", data="faces"),
    *(dict(preset="celeba128", batch=16, mode=m) for m in ("function", "xla")),
    dict(OFFICIAL, mode="auto"),
]
OFFICIAL_SUITE = [dict(OFFICIAL, mode="function", profile=True), dict(OFFICIAL, mode="xla")]
FULL_SUITE = [
    *(dict(preset="quick", batch=64, mode=m) for m in MODES),
    dict(preset="quick", batch=64, mode="function", data="faces"),
    *(dict(preset=p, batch=16, mode=m) for p in ("celeba64", "celeba128") for m in MODES),
    *(dict(preset=p, batch=64, mode=m) for p in ("celeba64", "celeba128") for m in ("function", "xla")),
    dict(OFFICIAL, mode="function", profile=True),
    *(dict(OFFICIAL, mode=m) for m in ("xla", "bf16", "eager")),
]
ALLOCATOR_SUITE = [  # TF_CPU_ALLOCATOR_USE_BFC on/off, same configurations otherwise
    *(dict(preset="quick", batch=64, mode="function", alloc=a) for a in ("default", "bfc")),
    *(dict(preset="celeba128", batch=16, mode="function", alloc=a) for a in ("default", "bfc")),
    *(dict(OFFICIAL, mode="function", alloc=a) for a in ("default", "bfc")),
]


# ----------------------------------------------------------------------------------------------------------------
# One measurement, in this process
# ----------------------------------------------------------------------------------------------------------------
def make_trainer(spec: dict, out_dir: str):
    """The Trainer for a row spec, with a constant in-memory batch unless ``data == "faces"``."""
    import tensorflow as tf

    from sagan_tut.config import get_config
    from sagan_tut.train import Trainer

    mode = MODES[spec["mode"]]
    if spec.get("threads"):  # (inter-op, intra-op) thread pools; must be set before TensorFlow runs an op
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"][0])
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"][1])
    if mode.get("eager"):
        tf.config.run_functions_eagerly(True)
    overrides = {k: v for k, v in mode.items() if k != "eager"}
    config = get_config(spec["preset"], batch_size=spec["batch"], dataset="faces", **overrides,
                        **spec.get("overrides", {}))
    dataset = None  # the trainer's own pipeline (procedural faces at the config's resolution)
    if spec.get("data", "const") == "const":
        batch = tf.random.stateless_uniform((config.batch_size, config.resolution, config.resolution, 3),
                                            seed=(0, 0), minval=-1.0, maxval=1.0)
        dataset = tf.data.Dataset.from_tensors(batch).repeat()
    return Trainer(config, out_dir, dataset=dataset, resume=False, verbose=False)


def _attention_size(model):
    """The feature-map side G attends at (the config may say "auto"), or None."""
    from sagan_tut.attention import SelfAttention

    return next((int(layer.input.shape[1]) for layer in model.layers if isinstance(layer, SelfAttention)), None)


def step_graph_ops(trainer) -> dict:
    """Op types in the traced step (the outer function and the functions it calls), counted."""
    import collections

    counts = collections.Counter()
    fn = trainer._train_step.get_concrete_function()  # the trace made by the first call: no retracing
    graphs, seen = [fn.graph], set()
    while graphs:
        graph = graphs.pop()
        for op in graph.get_operations():
            counts[op.type] += 1
        for name, inner in getattr(graph, "_functions", {}).items():
            if name not in seen and hasattr(inner, "graph"):
                seen.add(name)
                graphs.append(inner.graph)
    return dict(counts)


# Ops that launch no computation (graph plumbing).
_PLUMBING = {"Const", "NoOp", "Identity", "IdentityN", "Placeholder", "ReadVariableOp", "StopGradient",
             "PartitionedCall", "StatefulPartitionedCall", "Shape", "ShapeN", "Reshape"}


def measure(spec: dict, iters: int, warmup: int) -> dict:
    """Build the trainer for ``spec``, warm up, time ``iters`` iterations; return one result row."""
    import tempfile

    import tensorflow as tf

    from sagan_tut.flops import iteration_flops
    from sagan_tut.machine import peak_rss_mib, rss_mib

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = make_trainer(spec, out_dir)
        rss_built = rss_mib()
        t_built = time.perf_counter()
        for _ in range(warmup):
            trainer.train_step()
            int(trainer.step.numpy())
        t_warm = time.perf_counter()
        traces_after_warmup = trainer.trace_count
        import resource

        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        times, cpu0 = [], time.process_time()
        t_loop = time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            trainer.train_step()
            int(trainer.step.numpy())  # host sync: the iteration has finished
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t_loop
        cpu = time.process_time() - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        peak_rss = peak_rss_mib()  # before the optional profile below, whose trace buffers add memory
        c = trainer.config
        flops = iteration_flops(trainer.G, trainer.D, c.batch_size, c.n_dis)
        gpu_peak = None
        if tf.config.list_physical_devices("GPU"):
            gpu_peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        ops = step_graph_ops(trainer) if spec["mode"] != "eager" else {}
        prof = profile_trainer(trainer, 1) if spec.get("profile") else None
        q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
        median = statistics.median(times)
        return {
            **{k: spec.get(k) for k in ("name", "preset", "mode")},
            "data": spec.get("data", "const"), "alloc": spec.get("alloc", "inherit"),
            "arch": c.arch, "resolution": c.resolution, "width": c.width, "attention_res": _attention_size(trainer.G),
            "attention_variant": c.attention_variant or ("biggan" if c.arch == "paper" else "paper"),
            "batch": c.batch_size, "n_dis": c.n_dis, "ema": c.ema, "mixed_precision": c.mixed_precision,
            "jit_compile": trainer.jit_compile, "jit_reason": trainer.jit_compile_reason,
            "iters": iters, "warmup": warmup,
            "ms_median": median * 1e3, "ms_q1": q[0] * 1e3, "ms_q3": q[2] * 1e3, "ms_all": [t * 1e3 for t in times],
            "img_per_s": c.batch_size / median,
            "gflop_per_iter": flops["total"] / 1e9, "flops": flops,
            "gflops_achieved": flops["total"] / median / 1e9,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cores_busy": cpu / wall,  # CPU seconds per wall second in the timed loop (all threads)
            "cpu_ms_per_iter": cpu / iters * 1e3,  # less sensitive to other load on the machine than wall time
            "sys_ms_per_iter": (ru1.ru_stime - ru0.ru_stime) / iters * 1e3,  # kernel time: page faults, ...
            "page_faults_per_iter": (ru1.ru_minflt - ru0.ru_minflt) / iters,  # first touches of fresh memory
            "build_s": t_built - t_start, "warmup_s": t_warm - t_built,
            "traces": [traces_after_warmup, trainer.trace_count],
            "graph_ops": sum(ops.values()), "compute_ops": sum(n for k, n in ops.items() if k not in _PLUMBING),
            "transposes": ops.get("Transpose", 0), "casts": ops.get("Cast", 0),
            "profile": prof,
            "rss_after_build_mib": rss_built, "peak_rss_mib": peak_rss, "gpu_peak_mib": gpu_peak,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }


# ----------------------------------------------------------------------------------------------------------------
# Profiling one iteration (the TF profiler's trace, summed by op type)
# ----------------------------------------------------------------------------------------------------------------
CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "FusedConv2D")
MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMul", "FusedMatMul")


def canonical_op_type(op_type: str) -> str:
    """The plain TensorFlow op an op type stands for: with oneDNN on (AVX-512 + VNNI CPUs, or
    TF_ENABLE_ONEDNN_OPTS=1), grappler rewrites ``Conv2D`` to ``_MklNativeConv2D``, ``_MklNativeFusedConv2D``
    (conv + bias [+ activation]) and so on, and ``BatchMatMulV2`` to ``_MklBatchMatMulV2``; XLA's ops are named
    after their HLO (``convolution``, ``dot``). Without this, a oneDNN profile would show 0% convolutions."""
    name = op_type
    for prefix in ("_MklNative", "_Mkl", "_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return {"convolution": "Conv2D", "dot": "MatMul"}.get(name, name)


def profile_trainer(trainer, iters: int = 1, top: int = 12) -> dict:
    """Trace ``iters`` more iterations of a warmed-up trainer with ``tf.profiler``; sum op time by op type.

    Op times are summed over TensorFlow's inter-op threads, so they can add up to more than the wall time when
    ops run side by side. Also looks at the step graph for float64 tensors and layout transposes.
    """
    import collections
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        t = time.perf_counter()
        for _ in range(iters):
            trainer.train_step()
            int(trainer.step.numpy())
        wall = (time.perf_counter() - t) / iters
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    by_type, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        meta = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads that run the ops
                continue
            for event in line.events:
                op_type = meta[event.metadata_id].display_name
                if op_type:
                    by_type[op_type] += event.duration_ps / 1e9 / iters  # ms per iteration
                    count[op_type] += 1 / iters
    float64 = []
    fn = trainer._train_step.get_concrete_function()
    for graph in [fn.graph, *[f.graph for f in getattr(fn.graph, "_functions", {}).values() if hasattr(f, "graph")]]:
        for op in graph.get_operations():
            if any(o.dtype == tf.float64 for o in op.outputs):
                float64.append(f"{op.type}:{op.name}")
    total = sum(by_type.values())
    return {
        "wall_ms_per_iter": wall * 1e3, "op_ms_sum": total, "iters": iters,
        "top": [(k, v, int(round(count[k]))) for k, v in by_type.most_common(top)],
        "conv_ms": sum(v for k, v in by_type.items() if canonical_op_type(k) in CONV_OPS),
        "matmul_ms": sum(v for k, v in by_type.items() if canonical_op_type(k) in MATMUL_OPS),
        "transpose_ms": sum(v for k, v in by_type.items() if canonical_op_type(k) == "Transpose"),
        "cast_ms": by_type["Cast"],
        "float64_ops": float64[:20], "n_float64_ops": len(float64),
    }


def profile(spec: dict, warmup: int, iters: int = 2) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as out_dir:
        trainer = make_trainer(spec, out_dir)
        for _ in range(warmup):
            trainer.train_step()
            int(trainer.step.numpy())
        report = profile_trainer(trainer, iters, top=25)
        report["graph_op_counts"] = dict(sorted(step_graph_ops(trainer).items(), key=lambda kv: -kv[1])[:40])
    return {"spec": spec, **report}


def profile_markdown(row: dict) -> str:
    p = row["profile"]
    total = p["op_ms_sum"]
    lines = [
        f"Where the time goes in one iteration of the {label(row)} configuration ({MODE_LABEL[row['mode']]}, batch "
        f"{row['batch']}), from TensorFlow's profiler: time per op type summed over the executor threads "
        f"({total:.0f} ms in all, against {p['wall_ms_per_iter']:.0f} ms of wall time for the profiled "
        "iteration: independent ops run side by side on TensorFlow's inter-op threads, and the profiler itself "
        "adds a little).",
        "",
        "| op type | ms per iteration | share | ops per iteration |",
        "|---|---|---|---|",
        *(f"| {op} | {ms:.0f} | {100 * ms / total:.1f}% | {n} |" for op, ms, n in p["top"]),
        f"| all others | {total - sum(ms for _, ms, _ in p['top']):.0f} | "
        f"{100 * (1 - sum(ms for _, ms, _ in p['top']) / total):.1f}% | |",
        "",
        f"- Convolutions (forward, input gradient, filter gradient): {100 * p['conv_ms'] / total:.0f}% of op time; "
        f"matrix multiplications (dense layers, attention, spectral norm): {100 * p['matmul_ms'] / total:.1f}%.",
        f"- Layout transposes: {row.get('transposes', 0)} `Transpose` ops in the step graph, "
        f"{100 * p['transpose_ms'] / total:.1f}% of op time; casts: {row.get('casts', 0)} ops, "
        f"{100 * p['cast_ms'] / total:.1f}%; float64 tensors in the step graph: {p['n_float64_ops']}.",
        f"- The step function was traced {row['traces'][1]} time(s) in {row['warmup'] + row['iters']} calls"
        + (" (no retracing)" if row["traces"][1] == 1 else " (**retraced**: look for Python values that change "
                                                            "between calls)")
        + "; nothing inside the step waits for the host (the benchmark reads the step counter once per "
          "iteration to know it has finished).",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Running rows in child processes, tables
# ----------------------------------------------------------------------------------------------------------------
def run_row(spec: dict, iters: int, warmup: int, timeout: float = 1800) -> dict:
    import tempfile

    # Each row compiles from scratch (an empty XLA persistent cache), so the start-up times stay comparable;
    # benchmarks/bench_compile_cache.py measures what the cache saves.
    xla_cache = tempfile.mkdtemp(prefix="sagan_tut_xla_")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore", SAGAN_TUT_XLA_CACHE=xla_cache,
               **spec.get("env", {}))
    if spec.get("alloc") == "bfc":
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    elif spec.get("alloc") == "default":
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "false"
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec), "--iters", str(iters), "--warmup", str(warmup)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    finally:
        import shutil

        shutil.rmtree(xla_cache, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        return {**spec, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][len("RESULT "):])


def mode_label(row: dict) -> str:
    """'tf.function', 'XLA', ...; the default path as what it resolved to, e.g. 'default (XLA)'."""
    if row.get("mode") == "auto" and "jit_compile" in row:
        return f"default ({'XLA' if row['jit_compile'] else 'tf.function'})"
    return MODE_LABEL.get(row.get("mode"), row.get("mode"))


def label(row: dict) -> str:
    if row.get("name"):
        return row["name"]
    return row["preset"]


def markdown_table(rows: list[dict], peak_gflops: float | None) -> str:
    head = ["configuration", "model", "batch", "mode", "ms / iteration", "img/s", "GFLOP / iteration",
            "GFLOP/s", "% of peak", "peak RSS (MiB)", "traces"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            out.append(f"| {label(r)} | | {r.get('batch')} | {MODE_LABEL.get(r.get('mode'), r.get('mode'))} | "
                       f"failed: {r['error'].splitlines()[-1][:80] if r['error'] else ''} |" + " |" * 6)
            continue
        att = f"attn {r['attention_res']}² ({r['attention_variant']})" if r["attention_res"] else "no attn"
        model = f"{r['arch']} {r['resolution']}², width {r['width']:g}, {att}"
        mode = mode_label(r)
        if r["data"] == "faces":
            mode += ", faces pipeline"
        if r["alloc"] != "inherit":
            mode += f", {'BFC' if r['alloc'] == 'bfc' else 'default'} allocator"
        frac = f"{100 * r['gflops_achieved'] / peak_gflops:.0f}%" if peak_gflops else "–"
        traces = "–" if r["mode"] == "eager" else f"{r['traces'][1]}"
        gpu = f" (GPU {r['gpu_peak_mib']:.0f})" if r.get("gpu_peak_mib") else ""
        out.append(
            f"| {label(r)} | {model} | {r['batch']} | {mode} | {r['ms_median']:.0f} "
            f"({r['ms_q1']:.0f}–{r['ms_q3']:.0f}) | {r['img_per_s']:.1f} | {r['gflop_per_iter']:.1f} | "
            f"{r['gflops_achieved']:.1f} | {frac} | {r['peak_rss_mib']:.0f}{gpu} | {traces} |")
    return "\n".join(out)


def function_xla_rows(rows: list[dict]) -> dict:
    """{(label, batch): (tf.function row, XLA row)} for float32 configurations measured in both modes."""
    by_key = {}
    for r in rows:
        if "error" in r or r["data"] != "const" or r["alloc"] not in ("inherit",):
            continue
        if r["mode"] in ("function", "xla"):
            by_key.setdefault((label(r), r["batch"]), {})[r["mode"]] = r
    return {k: (v["function"], v["xla"]) for k, v in by_key.items() if len(v) == 2}


def jit_evidence(rows: list[dict]):
    """(tf.function ms, XLA ms) pairs of float32 configurations measured in both modes, and their labels."""
    return {k: (fn["ms_median"], xla["ms_median"]) for k, (fn, xla) in function_xla_rows(rows).items()}


def _startup_s(r: dict) -> float:
    """The one-off cost of the first call (trace, or trace + XLA compile): warm-up time minus steady-state time."""
    return r["warmup_s"] - r["warmup"] * r["ms_median"] / 1e3


def summary_lines(rows: list[dict], peak_gflops, peak_how) -> list[str]:
    """Plain-language findings computed from the rows (for the markdown file and the console)."""
    from sagan_tut.perf import choose_jit_from_timings

    lines = []
    pairs = jit_evidence(rows)
    if pairs:
        use_xla, ratio = choose_jit_from_timings(pairs.values())
        each = ", ".join(f"{name} ×{xla / fn:.2f}" for (name, _), (fn, xla) in pairs.items())
        lines.append(f"- **Fastest compiled path here: {'XLA' if use_xla else 'tf.function'}.** XLA time / "
                     f"tf.function time: {each} (geometric mean ×{ratio:.2f}).")
        costs = [f"{name} {_startup_s(fn):.0f} s → {_startup_s(xla):.0f} s"
                 for (name, _), (fn, xla) in function_xla_rows(rows).items()]
        lines.append("  One-off start-up (first call: trace, or trace + XLA compile), tf.function → XLA: "
                     + ", ".join(costs) + ".")
    for r in rows:
        if r.get("name") == OFFICIAL["name"] and "error" not in r and r["mode"] in ("auto", "function", "xla"):
            frac = (f", {100 * r['gflops_achieved'] / peak_gflops:.0f}% of peak"
                    if peak_gflops else "")
            how = mode_label(r) + ("" if r.get("alloc", "inherit") == "inherit" else f", {r['alloc']} allocator")
            lines.append(f"- Official SAGAN-128 at batch {r['batch']}, {how}: **img/s: {r['img_per_s']:.2f}** "
                         f"({r['ms_median'] / 1e3:.1f} s per iteration, {r['gflops_achieved']:.0f} GFLOP/s{frac}).")
            per_core = r["gflop_per_iter"] / (r["cpu_ms_per_iter"] / 1e3)
            core_peak = f" ({100 * per_core / (peak_gflops / r['cores']):.0f}% of one core's peak)" \
                if peak_gflops and r.get("cores") else ""
            lines.append(f"  Per second of CPU time (all threads; less sensitive to other load than wall time): "
                         f"{per_core:.0f} GFLOP{core_peak}; {r['cores_busy']:.2f} cores busy on average.")
    const = {(r["preset"], r["batch"], r["mode"]): r for r in rows
             if "error" not in r and r["data"] == "const" and r["alloc"] == "inherit"}
    for r in rows:
        if "error" not in r and r["data"] == "faces":
            base = const.get((r["preset"], r["batch"], r["mode"]))
            if base:
                lines.append(f"- Input pipeline ({r['preset']}): {r['ms_median']:.0f} ms per iteration reading the "
                             f"procedural faces vs {base['ms_median']:.0f} ms with a constant in-memory batch "
                             f"(CPU time per iteration: {r['cpu_ms_per_iter']:.0f} vs {base['cpu_ms_per_iter']:.0f} "
                             "ms, all threads).")
    allocs = {}
    for r in rows:
        if "error" not in r and r.get("alloc") in ("default", "bfc"):
            allocs.setdefault((label(r), r["batch"], r["mode"]), {})[r["alloc"]] = r
    for (name, batch, _), pair in allocs.items():
        if len(pair) == 2:
            a, b = pair["default"], pair["bfc"]
            lines.append(f"- BFC allocator, {name} at batch {batch}: {100 * (1 - b['ms_median'] / a['ms_median']):.0f}% "
                         f"less wall time, {100 * (1 - b['cpu_ms_per_iter'] / a['cpu_ms_per_iter']):.0f}% less CPU "
                         f"time, kernel time {a['sys_ms_per_iter']:,.0f} → {b['sys_ms_per_iter']:,.0f} ms and page "
                         f"faults {a['page_faults_per_iter']:,.0f} → {b['page_faults_per_iter']:,.0f} per iteration, "
                         f"peak RSS {a['peak_rss_mib']:,.0f} → {b['peak_rss_mib']:,.0f} MiB.")
    retraced = [label(r) + " " + r["mode"] for r in rows
                if "error" not in r and r["mode"] != "eager" and r["traces"][0] != r["traces"][1]]
    lines.append("- Retracing in the timed loop: " + (", ".join(retraced) if retraced else "none (each step "
                                                                                            "function traced once)."))
    if peak_how:
        lines.append(f"- Peak used for '% of peak': {peak_how}.")
    return lines


def write_results(rows, info, args, peak_gflops, peak_how, out_dir: Path, stem="train_speed") -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    suite = "official" if getattr(args, "official", False) else args.suite
    settings = dict(iters=args.iters, warmup=args.warmup, suite=suite, only=args.only, modes=args.modes)
    payload = dict(hardware=info, settings=settings, peak_gflops=peak_gflops, peak_how=peak_how, rows=rows)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    cpu = info.get("cpu_label") or f"{info['cpu']} ({info['cores']} cores)"
    cpu += f", GPU: {', '.join(info['gpus'])}" if info["gpus"] else ""
    load = info.get("load_average")
    text = "\n".join([
        f"Measured {info['date'][:16].replace('T', ' ')} on {cpu}; TensorFlow {info['tensorflow']}, Keras "
        f"{info['keras']}" + (f"; load average {load[0]:.1f} at the start" if load else "") + f"; suite "
        f"`{suite}`.",
        "",
        f"Median of {args.iters} timed iterations after {args.warmup} warm-up calls (25th–75th percentile in "
        "brackets); one iteration = one D update + one G update on the same batch size; img/s = batch / median; "
        "GFLOP from `sagan_tut.flops.iteration_flops` (matrix products only); peak RSS = the process's "
        "resident-memory high-water mark, TensorFlow included; traces = times the step function was traced "
        "(1 = no retracing). Constant in-memory batch unless the mode says 'faces pipeline'.",
        "",
        markdown_table(rows, peak_gflops),
        "",
        *summary_lines(rows, peak_gflops, peak_how),
        "",
        *(profile_markdown(r) + "\n" for r in rows if r.get("profile") and "error" not in r),
    ])
    (out_dir / f"{stem}.md").write_text(text)
    return text


def main(argv=None, peak=None):
    """Command-line entry; ``peak`` = ``(GFLOP/s, explanation)`` from a caller that measured it already."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=("default", "full", "allocator"), default="default")
    parser.add_argument("--only", help="comma-separated presets (or 'official') to keep from the suite")
    parser.add_argument("--modes", help=f"comma-separated modes to keep ({', '.join(MODES)})")
    parser.add_argument("--batch", type=int, help="override every row's batch size")
    parser.add_argument("--official", action="store_true", help="only the official SAGAN-128 row")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per row (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (tracing/compiling)")
    parser.add_argument("--peak-gflops", type=float, help="the machine's peak FLOP/s (GFLOP/s) for '%% of peak'; "
                        "default: the larger of a /proc/cpuinfo estimate and a measured matrix multiply")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--stem", default=None, help="result file name without extension")
    parser.add_argument("--no-record", action="store_true",
                        help="don't record the fastest jit_compile choice for this device (sagan_tut.perf)")
    parser.add_argument("--profile", metavar="PRESET", help="profile one iteration of PRESET ('official' = "
                        "paper128 at batch 8) in tf.function mode and print the op types taking the time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--render", metavar="JSON", help="rewrite the Markdown table of a results JSON (no timing)")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        parser.error("--iters and --warmup must be >= 1 (the first call traces the step and must not be timed)")

    if args.render:  # e.g. after a change to the table's format
        payload = json.loads(Path(args.render).read_text())
        for key, value in payload["settings"].items():  # iters, warmup, suite, ... as they were measured
            setattr(args, key, value)
        print(write_results(payload["rows"], payload["hardware"], args, payload["peak_gflops"], payload["peak_how"],
                            Path(args.render).parent, Path(args.render).stem))
        return
    if args.worker:
        import sagan_tut  # noqa: F401  -- first, as a user's script would, so start-up settings apply
        print("RESULT " + json.dumps(measure(json.loads(args.worker), args.iters, args.warmup)), flush=True)
        return
    if args.profile:
        spec = dict(OFFICIAL) if args.profile in ("official", "paper128") else dict(preset=args.profile, batch=16)
        spec.update(mode=(args.modes or "function").split(",")[0])
        if args.batch:
            spec["batch"] = args.batch
        report = profile(spec, args.warmup, iters=max(1, min(args.iters, 3)))
        print(f"{spec}: {report['wall_ms_per_iter']:.0f} ms per iteration (wall), sum of op times "
              f"{report['op_ms_sum']:.0f} ms (ops overlap on the inter-op threads)")
        for op, ms, n in report["top"]:
            print(f"  {op:32s} {ms:9.1f} ms  {100 * ms / report['op_ms_sum']:5.1f}%  x{n}")
        print(f"float64 ops in the step graph: {report['n_float64_ops']} {report['float64_ops'][:5]}")
        print(json.dumps(report["graph_op_counts"]))
        return

    suite = {"default": DEFAULT_SUITE, "full": FULL_SUITE, "allocator": ALLOCATOR_SUITE}[args.suite]
    if args.official:  # tf.function (with the op profile) and XLA, or the --modes asked for
        suite = OFFICIAL_SUITE if not args.modes else [dict(OFFICIAL, mode=m, profile=m == "function")
                                                        for m in args.modes.split(",")]
    if args.only:
        keep = set(args.only.split(","))
        suite = [s for s in suite if s["preset"] in keep or ("official" in keep and s.get("name"))]
    if args.modes:
        keep = set(args.modes.split(","))
        unknown = keep - set(MODES)
        if unknown:
            parser.error(f"unknown mode(s) {sorted(unknown)}; choose from {', '.join(MODES)}")
        suite = [s for s in suite if s["mode"] in keep]
    if args.batch:
        suite = [dict(s, batch=args.batch) for s in suite]
    if not suite:
        parser.error("no configuration left after --only/--modes")

    from sagan_tut.machine import device_name, machine_peak_gflops, system_info
    from sagan_tut.perf import record_jit_choice

    info = system_info()
    peak_gflops, peak_how = peak or machine_peak_gflops(args.peak_gflops, measure=not info["gpus"])
    if info["gpus"] and not args.peak_gflops:
        peak_gflops, peak_how = None, None  # a CPU estimate says nothing about a GPU run
    print(f"{info['cpu']} x{info['cores']}, TensorFlow {info['tensorflow']}; {peak_how or 'no peak given'}")
    print(f"{len(suite)} configurations, {args.iters} timed iterations each, one process each\n")
    rows = []
    t0 = time.perf_counter()
    for spec in suite:
        t = time.perf_counter()
        row = run_row(spec, args.iters, args.warmup)
        rows.append(row)
        if "error" in row:
            print(f"  {label(spec):20s} {spec['mode']:9s} FAILED {row['error'][-300:]}")
        else:
            print(f"  {label(row):20s} batch {row['batch']:3d} {mode_label(row):20s} {row['data']:6s} "
                  f"{row['ms_median']:9.1f} ms  {row['img_per_s']:8.2f} img/s  {row['gflops_achieved']:6.1f} "
                  f"GFLOP/s  RSS {row['peak_rss_mib']:6.0f} MiB  [{time.perf_counter() - t:.0f} s]", flush=True)
            if row.get("name") == OFFICIAL["name"]:
                print(f"img/s: {row['img_per_s']:.2f}", flush=True)
    stem = args.stem or ("train_speed_official" if args.official else
                         "train_speed" if args.suite == "default" else f"train_speed_{args.suite}")
    text = write_results(rows, info, args, peak_gflops, peak_how, args.out, stem)
    print("\n" + text)
    pairs = jit_evidence(rows)
    # Only the suite's own batch sizes decide: at a tiny --batch the per-op overhead dominates and XLA's fusion
    # wins even where it loses at the batch sizes people train with.
    if pairs and not args.no_record and not args.batch:
        from sagan_tut.perf import choose_jit_from_timings

        use_xla, ratio = choose_jit_from_timings(pairs.values())
        evidence = {f"{name} batch {b}": {"tf.function_ms": fn, "xla_ms": x} for (name, b), (fn, x) in pairs.items()}
        path = record_jit_choice(device_name(), use_xla, evidence)
        print(f"recorded jit_compile={use_xla} for '{device_name()}' in {path} (jit_compile='auto' uses it)")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main()
