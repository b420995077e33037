"""Facts about the machine a run or a benchmark is on: CPU model, vector width, oneDNN, peak FLOP/s, memory.

    cpu_features()                 # {"vendor": "AuthenticAMD", "family": 26, "isa": "AVX-512", ...}
    onednn_enabled()               # True when TensorFlow runs its oneDNN kernels (the _MklNative* ops)
    machine_class()                # "cpu AVX-512 oneDNN-on": what decides which compiled path is faster
    estimate_cpu_peak_gflops()     # (332.3, "2 cores x 2 FMA units x 16 fp32 lanes (AVX-512) x 2 x 2.596 GHz ...")
    system_info()                  # hardware and software versions for benchmark reports

The course's machines change from day to day (an AMD EPYC with AVX2 one day, an Intel Xeon or a newer EPYC with
AVX-512 another), and what is fastest changes with them: with AVX-512 and VNNI TensorFlow turns on its oneDNN
kernels by default, and those beat XLA's own CPU convolutions; without them XLA wins (book/performance.md). So
every benchmark table names the CPU, its vector width and whether oneDNN was on, and per-machine defaults are
keyed by :func:`machine_class`, not by "CPU".

Nothing here imports TensorFlow at module import; :func:`onednn_enabled`, :func:`device_kind` and
:func:`system_info` do when called.
"""
from __future__ import annotations

import datetime
import os
import platform
import re


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"^{name}\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else None


def cpu_model(cpuinfo: str | None = None) -> str:
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    return _field(text, "model name") or platform.processor() or "unknown CPU"


# CPU features that make TensorFlow (2.9+, x86 Linux) turn its oneDNN kernels on when $TF_ENABLE_ONEDNN_OPTS is
# unset: the "neural-network" extensions VNNI, BF16 and AMX (TensorFlow's release notes for 2.9; its port::
# TestCPUFeature checks in IsMKLEnabled). Used only when TensorFlow itself cannot be asked.
_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_features(cpuinfo: str | None = None) -> dict:
    """Vendor, family/model, the widest float32 vector unit (``isa``: AVX-512, AVX2, AVX, SSE), its float32
    lanes, whether FMA is there, the clock the kernel reports (GHz) and the SIMD flags that matter here."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    flags = set((_field(text, "flags") or "").split())
    if "avx512f" in flags:
        isa, lanes = "AVX-512", 16
    elif "avx" in flags:
        isa, lanes = ("AVX2" if "avx2" in flags else "AVX"), 8
    else:
        isa, lanes = "SSE", 4
    mhz = _field(text, "cpu MHz")
    family, model = _field(text, "cpu family"), _field(text, "model")
    return {
        "vendor": _field(text, "vendor_id") or platform.machine() or "unknown",
        "model_name": cpu_model(text),
        "family": int(family) if family and family.isdigit() else None,
        "model": int(model) if model and model.isdigit() else None,
        "isa": isa, "lanes": lanes, "fma": "fma" in flags or "avx512f" in flags,
        "ghz": float(mhz) / 1000.0 if mhz else None,
        "simd_flags": [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                   "avx512_fp16", "avx_vnni", "amx_tile") if f in flags],
        "onednn_default": bool(flags & set(_ONEDNN_DEFAULT_FLAGS)),
    }


def onednn_enabled(cpuinfo: str | None = None) -> bool:
    """Whether TensorFlow runs its oneDNN kernels on this CPU (``$TF_ENABLE_ONEDNN_OPTS``, else TF's default).

    Asks TensorFlow itself when it is importable (``IsMklEnabled`` reads the variable and the CPU's features);
    otherwise applies TensorFlow's rule to ``/proc/cpuinfo``.
    """
    if cpuinfo is None:
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            pass
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    if env in ("0", "false", "off", "no"):
        return False
    if env in ("1", "true", "on", "yes"):
        return True
    return cpu_features(cpuinfo)["onednn_default"]


def machine_class(cpuinfo: str | None = None, onednn: bool | None = None) -> str:
    """What decides the fastest compiled path on a CPU: the vector width and whether oneDNN's kernels run,
    e.g. ``"cpu AVX2 oneDNN-off"`` or ``"cpu AVX-512 oneDNN-on"``."""
    onednn = onednn_enabled(cpuinfo) if onednn is None else onednn
    return f"cpu {cpu_features(cpuinfo)['isa']} oneDNN-{'on' if onednn else 'off'}"


def cpu_label(cpuinfo: str | None = None, onednn: bool | None = None) -> str:
    """A table's hardware label: ``"AMD EPYC (AuthenticAMD family 26 model 2; AVX-512; oneDNN on) x2 cores"``."""
    f = cpu_features(cpuinfo)
    onednn = onednn_enabled(cpuinfo) if onednn is None else onednn
    fam = f" family {f['family']} model {f['model']}" if f["family"] is not None else ""
    return (f"{f['model_name']} ({f['vendor']}{fam}; {f['isa']}; oneDNN {'on' if onednn else 'off'}) "
            f"x{usable_cores()} cores")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers often restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def device_kind() -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: the kind of device TensorFlow will train on."""
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return "cpu"


def device_name(kind: str | None = None) -> str:
    """A name that identifies the device model: the GPU's name, or the CPU's :func:`cpu_label` (two CPUs that
    report the same model name but differ in vector width or oneDNN get different names)."""
    kind = kind or device_kind()
    if kind == "gpu":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        count = len(tf.config.list_physical_devices("GPU"))
        return f"gpu: {details.get('device_name', 'unknown GPU')} x{count}"
    if kind == "tpu":
        return "tpu"
    return f"cpu: {cpu_label()}"


# ---------------------------------------------------------------------------------------------- peak FLOP/s
def estimate_cpu_peak_gflops(cpuinfo: str | None = None, cores: int | None = None, fma_units: int = 2):
    """An *estimate* of this CPU's float32 peak from ``/proc/cpuinfo``: ``(gflops, explanation)``.

    cores x FMA units per core x float32 lanes per vector (16 with AVX-512, 8 with AVX/AVX2, 4 with SSE) x 2
    FLOPs per fused multiply-add x clock. Assumes two FMA pipes per core (AMD Zen 2-5, Intel server cores since
    Skylake) and the clock the kernel reports (``cpu MHz``; turbo can be higher, AVX-512 throttling lower).
    Returns ``(None, reason)`` when the file is missing or has no clock.
    """
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    f = cpu_features(text)
    if _field(text, "flags") is None or f["ghz"] is None:
        return None, "no /proc/cpuinfo flags or clock: pass the peak explicitly (--peak-gflops)"
    flops_per_lane = 2 if f["fma"] else 1
    units = fma_units if f["fma"] else 1
    cores = cores or usable_cores()
    gflops = cores * units * f["lanes"] * flops_per_lane * f["ghz"]
    how = (f"estimate: {cores} cores x {units} {'FMA' if f['fma'] else 'vector'} units x {f['lanes']} fp32 lanes "
           f"({f['isa']}) x {flops_per_lane} FLOPs x {f['ghz']:.3f} GHz = {gflops:.1f} GFLOP/s")
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


# ---------------------------------------------------------------------------------------------------- memory
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
    features = cpu_features(text)
    peak, how = estimate_cpu_peak_gflops(text)
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    try:
        load = os.getloadavg()
    except (AttributeError, OSError):
        load = None
    onednn = onednn_enabled()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(text), "cpu_label": cpu_label(text, onednn), "machine_class": machine_class(text, onednn),
        "vendor": features["vendor"], "cpu_family": features["family"], "cpu_model_number": features["model"],
        "isa": features["isa"], "onednn": onednn, "cores": usable_cores(), "simd_flags": features["simd_flags"],
        "cpu_peak_gflops_estimate": peak, "cpu_peak_how": how,
        "memory_gib": memory_gib(), "gpus": gpus, "device_kind": device_kind(),
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": __import__("numpy").__version__, "os": platform.platform(),
        "load_average": load, "env": {k: os.environ[k] for k in ("TF_CPU_ALLOCATOR_USE_BFC", "TF_ENABLE_ONEDNN_OPTS",
                                                                    "OMP_NUM_THREADS", "TF_XLA_FLAGS")
                                      if k in os.environ},
    }


__all__ = [
    "cpu_model", "cpu_features", "onednn_enabled", "machine_class", "cpu_label", "usable_cores", "device_kind",
    "device_name", "estimate_cpu_peak_gflops", "measure_matmul_gflops", "machine_peak_gflops", "memory_gib",
    "available_mib", "rss_mib", "peak_rss_mib", "system_info",
]
