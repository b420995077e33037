"""Which compiled path trains fastest on this device, and how fast this machine could be.

    resolve_jit_compile("auto")        # -> True (XLA) on a CPU, from the measured table below (or a local measurement)
    estimate_cpu_peak_gflops()         # -> (156.5, "2 cores x 2 FMA units x 8 fp32 lanes x 2 x 2.445 GHz ...")
    system_info()                      # hardware and software versions for benchmark reports

The trainer's step can run inside ``tf.function`` (a TensorFlow graph with oneDNN/cuDNN kernels) or be compiled
with XLA (``jit_compile=True``). Which one is faster depends on the device, so ``"auto"`` is decided per device,
in this order:

1. ``$SAGAN_TUT_JIT_COMPILE`` (``true``/``false``): an explicit user override;
2. a measurement *on this device*: ``benchmarks/bench_train.py`` times both paths and records the winner for
   this device name and TensorFlow version in ``~/.cache/sagan_tut/jit_choice.json`` (``$SAGAN_TUT_PERF_CACHE``
   moves it);
3. :data:`MEASURED_DEFAULTS`, one entry per device kind, each with where it was measured;

and a run with fewer than :data:`XLA_MIN_STEPS` steps to go keeps tf.function, because XLA's compile would cost
more than it saves.

XLA is never chosen with several replicas (the trainer supports it only on one device or a TPU).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
from pathlib import Path

ENV_JIT = "SAGAN_TUT_JIT_COMPILE"
ENV_CACHE = "SAGAN_TUT_PERF_CACHE"
DEVICE_KINDS = ("cpu", "gpu", "tpu")

# jit_compile for "auto" by device kind, when this device has no measurement of its own.
#  cpu: measured on the course's 2-core AMD EPYC (Zen 3, AVX2) with TF 2.21 (benchmarks/results/train_speed.md and
#       train_speed_official.md; test_perf.py::test_the_cpu_table_agrees_with_the_committed_cpu_measurement keeps
#       the two in step): XLA beat tf.function on every configuration timed -- the quick preset at batch 64, the
#       blog SAGAN-128 at batch 16 and the official SAGAN-128 at batch 8 -- by 9-35% per iteration, for a first
#       call (the compile) 8-26 s longer than tf.function's trace, once per run: XLA pays for itself after
#       ~65-100 iterations of the blog models and ~7 of the official one. (Earlier notes that XLA was slower
#       here came from a machine under heavy load; measured again on a quiet one, it was not.)
#  gpu: not measurable here. XLA mostly speeds a convnet up by fusing element-wise work between cuDNN calls;
#       this step's time is dominated by the convolutions, which both paths hand to cuDNN, while XLA adds a
#       compile of a minute or more per run. Without a measurement we keep the path with no compile and no
#       XLA-specific failure modes; run benchmarks/bench_train.py on the GPU to measure and record the choice.
#  tpu: a TPU always compiles with XLA (TPUStrategy); True only states that.
MEASURED_DEFAULTS = {"cpu": True, "gpu": False, "tpu": True}

# "auto" keeps tf.function for runs shorter than this many steps. XLA's first call (the compile) took 8-26 s longer
# than tf.function's trace here, and its per-iteration saving repaid that after ~65-100 iterations of the blog
# models and ~7 of the official one (benchmarks/results/train_speed*.md, the start-up lines); twice the longest
# break-even leaves a margin for the noise of both measurements.
XLA_MIN_STEPS = 200

# XLA must beat tf.function by this factor before a measurement picks it: it costs a compile on every run,
# and a 2% difference is within the noise of a loaded machine.
XLA_MARGIN = 0.95

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


# ----------------------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------------------
def device_kind() -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: the kind of device TensorFlow will train on."""
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return "cpu"


def cpu_model(cpuinfo: str | None = None) -> str:
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else (platform.processor() or "unknown CPU")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers often restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def device_name(kind: str | None = None) -> str:
    """A name that identifies the device model: the GPU's name, or the CPU model and core count."""
    kind = kind or device_kind()
    if kind == "gpu":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        count = len(tf.config.list_physical_devices("GPU"))
        return f"gpu: {details.get('device_name', 'unknown GPU')} x{count}"
    if kind == "tpu":
        return "tpu"
    return f"cpu: {cpu_model()} x{usable_cores()} cores"


# ----------------------------------------------------------------------------------------------------------------
# Choosing jit_compile
# ----------------------------------------------------------------------------------------------------------------
def cache_path() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sagan_tut" / "jit_choice.json"
    return Path(os.environ.get(ENV_CACHE, default))


def _record_key(device: str, tf_version: str) -> str:
    return f"{device} | tf {tf_version}"


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def load_records(path=None) -> dict:
    path = Path(path) if path is not None else cache_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no measurement yet, or an unreadable file: fall back to the table
        return {}


def record_jit_choice(device: str, jit_compile: bool, evidence: dict, path=None, tf_version=None) -> Path:
    """Store the measured choice for ``device`` (see :func:`choose_jit_from_timings`) so "auto" uses it."""
    path = Path(path) if path is not None else cache_path()
    records = load_records(path)
    records[_record_key(device, tf_version or _tf_version())] = {
        "jit_compile": bool(jit_compile), "evidence": evidence,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def choose_jit_from_timings(pairs) -> tuple[bool, float]:
    """Decide from measured ``(ms_tf_function, ms_xla)`` pairs, one per model configuration.

    Returns ``(use_xla, ratio)`` where ``ratio`` is the geometric mean of ``ms_xla / ms_tf_function``: XLA is
    chosen only when it is faster by more than :data:`XLA_MARGIN` on that average.
    """
    pairs = [(float(a), float(b)) for a, b in pairs]
    if not pairs:
        raise ValueError("choose_jit_from_timings needs at least one (tf.function ms, XLA ms) pair; measure both "
                         "modes of one configuration first.")
    if any(not (a > 0 and b > 0) or math.isinf(a) or math.isinf(b) for a, b in pairs):
        raise ValueError(f"timings must be positive and finite, got {pairs}.")
    ratio = math.exp(sum(math.log(b / a) for a, b in pairs) / len(pairs))
    return ratio < XLA_MARGIN, ratio


def explain_jit_compile(value="auto", kind: str | None = None, device: str | None = None,
                        num_replicas: int = 1, records_path=None, tf_version: str | None = None,
                        steps: int | None = None) -> tuple[bool, str]:
    """``(jit_compile, why)``: the flag to train with and where it came from (the trainer prints ``why``).

    ``True``/``False`` pass through; ``"auto"`` is decided per device (see the module docstring), except that a
    run with fewer than :data:`XLA_MIN_STEPS` ``steps`` still to go keeps tf.function on a CPU or GPU (the
    compile would cost more than it saves). ``kind`` and ``device`` default to the device TensorFlow sees."""
    if isinstance(value, bool):
        return value, "set in the config"
    if not (isinstance(value, str) and value.strip().lower() == "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto'; got {value!r}.")
    env = os.environ.get(ENV_JIT, "").strip().lower()
    if env and env != "auto":
        if env not in _TRUE + _FALSE:
            raise ValueError(f"${ENV_JIT}={env!r}: use true, false or auto.")
        return env in _TRUE, f"${ENV_JIT}={env}"
    kind = kind or device_kind()
    if kind not in DEVICE_KINDS:
        raise ValueError(f"device kind must be one of {DEVICE_KINDS}; got {kind!r}.")
    if num_replicas > 1 and kind != "tpu":
        return False, f"{num_replicas} replicas (the trainer uses XLA only on one device or a TPU)"
    device = device or device_name(kind)
    path = Path(records_path) if records_path is not None else cache_path()
    record = load_records(path).get(_record_key(device, tf_version or _tf_version()))
    if isinstance(record, dict) and isinstance(record.get("jit_compile"), bool):
        use, why = record["jit_compile"], f"measured on this device ({record.get('date', 'undated')}, {path})"
    else:
        use, why = MEASURED_DEFAULTS[kind], f"the measured default for a {kind.upper()} (sagan_tut.perf.MEASURED_DEFAULTS)"
    if use and kind != "tpu" and steps is not None and steps < XLA_MIN_STEPS:
        return False, (f"XLA is faster per step here ({why}), but {steps} steps are too few for its compile to pay "
                       f"off (sagan_tut.perf.XLA_MIN_STEPS = {XLA_MIN_STEPS})")
    return use, why


def resolve_jit_compile(value="auto", kind: str | None = None, device: str | None = None,
                        num_replicas: int = 1, records_path=None, tf_version: str | None = None,
                        steps: int | None = None) -> bool:
    """The ``jit_compile`` flag to train with (:func:`explain_jit_compile` without the reason)."""
    return explain_jit_compile(value, kind, device, num_replicas, records_path, tf_version, steps)[0]


# ----------------------------------------------------------------------------------------------------------------
# The cost of one self-attention block (benchmarks/bench_attention.py and chapter 3)
# ----------------------------------------------------------------------------------------------------------------
def attention_cost(size: int, variant: str = "paper", channels: int = 64, batch: int = 1, min_repeats: int = 3,
                   min_seconds: float = 1.0, max_repeats: int = 20, on_phase=None) -> dict:
    """Time one :class:`~sagan_tut.attention.SelfAttention` block on a ``(batch, size, size, channels)`` input.

    The block (spectral norm on, training mode, gamma = 0.5) runs inside ``tf.function``: forward only, then
    forward + backward (gradients for the input and every weight). Each is called once untimed, then repeated
    until ``min_repeats`` calls and ``min_seconds`` have passed (at most ``max_repeats``). Returns median wall
    milliseconds (``fwd_ms``, ``train_ms``), CPU milliseconds and page faults per call, the number of queries
    ``n`` and keys ``m`` (``n / 4`` when pooled), the float32 ``score_bytes`` (batch x n x m x 4) and the
    forward FLOPs ``gflop_fwd`` (``sagan_tut.flops``). ``on_phase(name)`` is called after the "forward" and the
    "train" repetitions (the benchmark reads the memory high-water mark there).
    """
    import resource
    import statistics
    import time

    import tensorflow as tf

    from .attention import SelfAttention
    from .flops import layer_flops

    shape = (int(batch), int(size), int(size), int(channels))
    layer = SelfAttention(variant=variant, spectral_norm=True)
    layer.build(shape)
    layer.gamma.assign(0.5)  # as in a trained block (at gamma = 0 the output ignores the attention)
    x = tf.random.stateless_normal(shape, seed=(1, 2))
    dy = tf.random.stateless_normal(shape, seed=(3, 4))

    @tf.function
    def forward(x):
        return layer(x, training=True)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * dy)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    def timed(fn):
        fn(x)  # untimed first call
        times, ru0, cpu0, start = [], resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
        while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_seconds):
            t = time.perf_counter()
            out = fn(x)
            [o.numpy() for o in tf.nest.flatten(out)]  # wait for the result
            times.append(time.perf_counter() - t)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        return (statistics.median(times) * 1e3, (time.process_time() - cpu0) / len(times) * 1e3,
                (ru1.ru_minflt - ru0.ru_minflt) / len(times), len(times))

    forward.get_concrete_function(x)  # trace both now, so an on_phase baseline taken by the caller before
    forward_backward.get_concrete_function(x)  # this call includes the tracing
    if on_phase:
        on_phase("built")
    fwd = timed(forward)
    if on_phase:
        on_phase("forward")
    train = timed(forward_backward)
    if on_phase:
        on_phase("train")
    n = shape[1] * shape[2]
    m = n // 4 if variant == "biggan" else n
    return {
        "size": shape[1], "variant": variant, "channels": shape[3], "batch": shape[0], "n": n, "m": m,
        "score_bytes": shape[0] * n * m * 4, "gflop_fwd": layer_flops(layer, shape, shape)["matmul"] * shape[0] / 1e9,
        "fwd_ms": fwd[0], "fwd_cpu_ms": fwd[1], "fwd_page_faults": fwd[2], "fwd_reps": fwd[3],
        "train_ms": train[0], "train_cpu_ms": train[1], "train_page_faults": train[2], "train_reps": train[3],
    }


# ----------------------------------------------------------------------------------------------------------------
# TensorFlow's CPU allocator
# ----------------------------------------------------------------------------------------------------------------
ENV_BFC = "TF_CPU_ALLOCATOR_USE_BFC"


def use_bfc_cpu_allocator() -> bool:
    """Ask TensorFlow for its BFC allocator on the CPU, unless the user set ``$TF_CPU_ALLOCATOR_USE_BFC``.

    TensorFlow's default CPU allocator hands every large tensor back to the C library when it is freed, so the
    next step's tensor of the same size is fresh memory that the kernel must map and zero page by page (up to
    1.5 million page faults per training iteration here). The BFC ("best-fit with coalescing") allocator keeps
    freed blocks for reuse. On the 2-core test machine it removed over 99% of those page faults and made every
    training configuration measured 7-11% faster (benchmarks/results/train_speed_allocator.md). The variable is
    read when TensorFlow creates its CPU allocator, so this only takes effect before TensorFlow is imported;
    returns whether the BFC allocator will be used.
    """
    import sys

    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ENV_BFC, "true")
    return os.environ.get(ENV_BFC, "").strip().lower() in _TRUE


# ----------------------------------------------------------------------------------------------------------------
# Peak FLOP/s and the machine
# ----------------------------------------------------------------------------------------------------------------
def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def estimate_cpu_peak_gflops(cpuinfo: str | None = None, cores: int | None = None, fma_units: int = 2):
    """An *estimate* of this CPU's float32 peak from ``/proc/cpuinfo``: ``(gflops, explanation)``.

    cores x FMA units per core x float32 lanes per vector (16 with AVX-512, 8 with AVX/AVX2, 4 with SSE) x 2
    FLOPs per fused multiply-add x clock. Assumes two FMA pipes per core (AMD Zen 2-5, Intel server cores since
    Skylake) and the clock the kernel reports (``cpu MHz``; turbo can be higher, AVX-512 throttling lower).
    Returns ``(None, reason)`` when the file is missing or has no clock.
    """
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    flags_match = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    mhz_match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.M)
    if not flags_match or not mhz_match:
        return None, "no /proc/cpuinfo flags or clock: pass the peak explicitly (--peak-gflops)"
    flags = set(flags_match.group(1).split())
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx" in flags:
        lanes, isa = 8, "AVX2" if "avx2" in flags else "AVX"
    else:
        lanes, isa = 4, "SSE"
    fma = "fma" in flags or "avx512f" in flags
    flops_per_lane = 2 if fma else 1
    units = fma_units if fma else 1
    cores = cores or usable_cores()
    ghz = float(mhz_match.group(1)) / 1000.0
    gflops = cores * units * lanes * flops_per_lane * ghz
    how = (f"estimate: {cores} cores x {units} {'FMA' if fma else 'vector'} units x {lanes} fp32 lanes ({isa}) "
           f"x {flops_per_lane} FLOPs x {ghz:.3f} GHz = {gflops:.1f} GFLOP/s")
    return gflops, how


_MATMUL_CHILD = """
import sys, time
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
n, repeats = int(sys.argv[1]), int(sys.argv[2])
a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
f = tf.function(lambda a, b: tf.matmul(a, b))
f(a, b).numpy()
best = 0.0
for _ in range(repeats):
    t = time.process_time()
    for _ in range(3):
        f(a, b).numpy()
    best = max(best, 3 * 2 * n ** 3 / (time.process_time() - t) / 1e9)
print("GFLOPS", best)
"""


def measure_matmul_gflops(n: int = 2048, repeats: int = 5, timeout: float = 600) -> float | None:
    """float32 GFLOP per second of CPU time of one thread multiplying two ``n x n`` matrices (best of
    ``repeats``), measured in a child process (TensorFlow's thread pools can only be sized before it starts).

    CPU time rather than wall time, so other load on the machine hardly matters. A tuned matrix multiply runs
    close to a core's real peak, so ``cores x`` this is a measured lower bound on the machine's peak.
    """
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run([sys.executable, "-c", _MATMUL_CHILD, str(n), str(repeats)], capture_output=True,
                              text=True, timeout=timeout, env=env)
        return float(proc.stdout.split("GFLOPS")[-1])
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


def machine_peak_gflops(given: float | None = None, measure: bool = True):
    """``(peak GFLOP/s, explanation)`` for "% of peak": ``given`` if set; else the larger of the cpuinfo
    estimate and the measured matrix-multiply rate x cores (a measured rate above the estimate means the cores
    run faster than the clock the OS reports, e.g. turbo)."""
    if given:
        return float(given), f"{given:g} GFLOP/s, given with --peak-gflops"
    estimate, how = estimate_cpu_peak_gflops()
    per_core = measure_matmul_gflops() if measure else None
    if per_core is None:
        return estimate, how
    cores = usable_cores()
    measured = per_core * cores
    text = (f"measured: a 2048x2048 float32 matrix multiply runs at {per_core:.1f} GFLOP per CPU-second on one "
            f"thread, x {cores} cores = {measured:.1f} GFLOP/s")
    if estimate is None or measured > estimate:
        note = f"; above the cpuinfo {how}, so the cores run faster than the reported clock" if estimate else ""
        return measured, text + note
    return estimate, f"{how} ({text})"


def _proc_kib(path: str, key: str) -> int | None:
    """The ``key:`` line of a Linux /proc file in KiB (None elsewhere)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_gib() -> float | None:
    kib = _proc_kib("/proc/meminfo", "MemTotal")
    return kib / 2**20 if kib is not None else None


def available_mib() -> float | None:
    """Memory the system can still give out, MiB (Linux)."""
    kib = _proc_kib("/proc/meminfo", "MemAvailable")
    return kib / 1024 if kib is not None else None


def rss_mib() -> float | None:
    """This process's resident memory now, MiB (Linux)."""
    kib = _proc_kib("/proc/self/status", "VmRSS")
    return kib / 1024 if kib is not None else None


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started, MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``. Not ``getrusage``'s ``ru_maxrss``: a child process inherits its
    parent's high-water mark through fork and exec, so it would report the parent's memory, not its own.
    """
    kib = _proc_kib("/proc/self/status", "VmHWM")
    if kib is not None:
        return kib / 1024
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def system_info() -> dict:
    """Hardware and software a benchmark ran on (imports TensorFlow)."""
    import keras
    import tensorflow as tf

    text = _read_cpuinfo()
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.M) or re.match("(.*)", "")).group(1).split())
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
            if f in flags]
    peak, how = estimate_cpu_peak_gflops(text)
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        gpus.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
    try:
        load = os.getloadavg()
    except (AttributeError, OSError):
        load = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(text), "cores": usable_cores(), "simd_flags": simd,
        "cpu_peak_gflops_estimate": peak, "cpu_peak_how": how,
        "memory_gib": memory_gib(), "gpus": gpus, "device_kind": device_kind(),
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": __import__("numpy").__version__, "os": platform.platform(),
        "load_average": load, "env": {k: os.environ[k] for k in ("TF_CPU_ALLOCATOR_USE_BFC", "TF_ENABLE_ONEDNN_OPTS",
                                                                    "OMP_NUM_THREADS") if k in os.environ},
    }


__all__ = ["resolve_jit_compile", "explain_jit_compile", "XLA_MIN_STEPS", "use_bfc_cpu_allocator", "attention_cost", "choose_jit_from_timings", "record_jit_choice", "load_records",
           "MEASURED_DEFAULTS", "estimate_cpu_peak_gflops", "measure_matmul_gflops", "machine_peak_gflops", "system_info", "device_kind", "device_name",
           "usable_cores", "cache_path"]
