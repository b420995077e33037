"""Which compiled path trains fastest on this machine, and TensorFlow start-up settings that make it faster.

    resolve_jit_compile("auto")        # -> False (tf.function) on an AVX-512 CPU with oneDNN, True (XLA) with AVX2
    use_bfc_cpu_allocator()            # TensorFlow's BFC allocator on the CPU (done by `import sagan_tut`)
    use_xla_compile_cache()            # XLA's persistent compilation cache (done by `import sagan_tut`)

The trainer's step can run inside ``tf.function`` (a TensorFlow graph; on a CPU with oneDNN on, its
convolutions and matrix products are oneDNN kernels, the ``_MklNative*`` ops) or be compiled with XLA
(``jit_compile=True``; XLA's CPU backend has convolutions of its own). Which one is faster depends on the
machine, so ``"auto"`` is decided per machine, in this order:

1. ``$SAGAN_TUT_JIT_COMPILE`` (``true``/``false``): an explicit user override;
2. a measurement *on this device*: ``benchmarks/bench_train.py`` times both paths and records the winner for
   this device (:func:`sagan_tut.machine.device_name`: CPU model, family, vector width, oneDNN) and TensorFlow
   version in ``~/.cache/sagan_tut/jit_choice.json`` (``$SAGAN_TUT_PERF_CACHE`` moves it);
3. :data:`CPU_MEASURED` for this CPU's :func:`~sagan_tut.machine.machine_class` (vector width, oneDNN on/off),
   or :data:`MEASURED_DEFAULTS` for GPUs and TPUs;

and a run with fewer than :data:`XLA_MIN_STEPS` steps to go keeps tf.function, because XLA's compile would cost
more than it saves. XLA is never chosen with several replicas (the trainer supports it on one device or a TPU).

Machine facts (peak FLOP/s, memory, CPU features) live in :mod:`sagan_tut.machine` and the attention cost study
in :mod:`sagan_tut.attention_cost`; both are re-exported here for code written against earlier versions.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import sys
from pathlib import Path

from . import atomic, machine
from .attention_cost import attention_cost  # noqa: F401  (re-export)
from .machine import (  # noqa: F401  (re-exports)
    available_mib, cpu_model, device_kind, device_name, estimate_cpu_peak_gflops, machine_peak_gflops,
    measure_matmul_gflops, memory_gib, peak_rss_mib, rss_mib, system_info, usable_cores,
)

ENV_JIT = "SAGAN_TUT_JIT_COMPILE"
ENV_CACHE = "SAGAN_TUT_PERF_CACHE"
ENV_BFC = "TF_CPU_ALLOCATOR_USE_BFC"
ENV_XLA_CACHE = "SAGAN_TUT_XLA_CACHE"
DEVICE_KINDS = ("cpu", "gpu", "tpu")

# jit_compile for "auto" on a CPU without a measurement of its own, by machine class (vector width, oneDNN),
# each with where it was measured (benchmarks/results/train_speed*.md; test_perf.py keeps the entry for the
# committed table's machine in step with that table).
CPU_MEASURED = {
    # 2-core AMD EPYC, Zen 3 (family 25), AVX2, no VNNI so oneDNN off, TF 2.21, 2026-11-21: XLA beat tf.function
    # on every configuration timed, by 9-35% per iteration (quick x0.65, blog-128 x0.91, official x0.72; the
    # benchmarks/results tables of commit 862a126, in the git history).
    "cpu AVX2 oneDNN-off": (True, "AMD EPYC Zen 3 (AVX2, oneDNN off), 2026-11-21: XLA 9-35% faster per iteration"),
    # 2-core AMD EPYC Zen 5 (family 26), AVX-512 with VNNI and BF16, so oneDNN on, TF 2.21, 2026-12-01
    # (benchmarks/results/train_speed.md): XLA / tf.function = x1.49 on the quick preset and x1.90 on the blog
    # SAGAN-128 -- oneDNN's kernels beat XLA's own CPU convolutions. A 2-core Intel Xeon with AVX-512 and oneDNN,
    # measured the same day (issue #11): official SAGAN-128 8.7 s (tf.function) against 9.2 s (XLA).
    "cpu AVX-512 oneDNN-on": (False, "AMD EPYC Zen 5 and Intel Xeon (AVX-512, oneDNN on), 2026-12-01: tf.function "
                                     "faster (XLA x1.49 quick, x1.90 blog-128, x1.06 official)"),
}
# GPUs and TPUs, and the rule for a CPU class nobody measured:
#  gpu: not measurable here. XLA mostly speeds a convnet up by fusing element-wise work between cuDNN calls;
#       this step's time is dominated by the convolutions, which both paths hand to cuDNN, while XLA adds a
#       compile of a minute or more per run. Without a measurement we keep the path with no compile and no
#       XLA-specific failure modes; run benchmarks/bench_train.py on the GPU to measure and record the choice.
#  tpu: a TPU always compiles with XLA (TPUStrategy); True only states that.
#  cpu: see CPU_MEASURED; a class nobody measured follows oneDNN: with oneDNN on, the graph path runs oneDNN's
#       kernels, which won on both machines measured with it; with it off, XLA's kernels won.
MEASURED_DEFAULTS = {"gpu": False, "tpu": True}

# "auto" keeps tf.function for runs shorter than this many steps. XLA's first call (the compile) took 8-26 s longer
# than tf.function's trace on the AVX2 machine, and its per-iteration saving repaid that after ~65-100 iterations
# of the blog models and ~7 of the official one (benchmarks/results/train_speed*.md, the start-up lines); twice
# the longest break-even leaves a margin for the noise of both measurements.
XLA_MIN_STEPS = 200

# XLA must beat tf.function by this factor before a measurement picks it: it costs a compile on every run,
# and a 2% difference is within the noise of a loaded machine.
XLA_MARGIN = 0.95

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


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
    return atomic.write_json(records, path, indent=2)


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


def cpu_default(cls: str | None = None) -> tuple[bool, str]:
    """``(jit_compile, why)`` for a CPU of machine class ``cls`` (default: this one) with no local measurement."""
    cls = cls or machine.machine_class()
    if cls in CPU_MEASURED:
        use, where = CPU_MEASURED[cls]
        return use, f"measured on a {cls} machine ({where}; sagan_tut.perf.CPU_MEASURED)"
    use = "oneDNN-off" in cls
    return use, (f"no measurement for a {cls} machine; with oneDNN {'off, XLA' if use else 'on, tf.function'} "
                 "won where measured (sagan_tut.perf.CPU_MEASURED)")


def measured_default(kind: str, machine_cls: str | None = None) -> tuple[bool, str]:
    """``(jit_compile, why)`` for a device of ``kind`` with no measurement of its own (CPUs by machine class)."""
    if kind == "cpu":
        return cpu_default(machine_cls)
    return MEASURED_DEFAULTS[kind], f"the measured default for a {kind.upper()} (sagan_tut.perf.MEASURED_DEFAULTS)"


def explain_jit_compile(value="auto", kind: str | None = None, device: str | None = None,
                        num_replicas: int = 1, records_path=None, tf_version: str | None = None,
                        steps: int | None = None, machine_cls: str | None = None) -> tuple[bool, str]:
    """``(jit_compile, why)``: the flag to train with and where it came from (the trainer prints ``why``).

    ``True``/``False`` pass through; ``"auto"`` is decided per machine (see the module docstring), except that a
    run with fewer than :data:`XLA_MIN_STEPS` ``steps`` still to go keeps tf.function on a CPU or GPU (the
    compile would cost more than it saves). ``kind``, ``device`` and ``machine_cls`` default to this machine."""
    if isinstance(value, bool):
        return value, "set in the config"
    if not (isinstance(value, str) and value.strip().lower() == "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto'; got {value!r}.")
    env = os.environ.get(ENV_JIT, "").strip().lower()
    if env and env != "auto":
        if env not in _TRUE + _FALSE:
            raise ValueError(f"${ENV_JIT}={env!r}: use true, false or auto.")
        return env in _TRUE, f"${ENV_JIT}={env}"
    kind = kind or machine.device_kind()
    if kind not in DEVICE_KINDS:
        raise ValueError(f"device kind must be one of {DEVICE_KINDS}; got {kind!r}.")
    if num_replicas > 1 and kind != "tpu":
        return False, f"{num_replicas} replicas (the trainer uses XLA only on one device or a TPU)"
    device = device or machine.device_name(kind)
    path = Path(records_path) if records_path is not None else cache_path()
    record = load_records(path).get(_record_key(device, tf_version or _tf_version()))
    if isinstance(record, dict) and isinstance(record.get("jit_compile"), bool):
        use, why = record["jit_compile"], f"measured on this device ({record.get('date', 'undated')}, {path})"
    else:
        use, why = measured_default(kind, machine_cls)
    if use and kind != "tpu" and steps is not None and steps < XLA_MIN_STEPS:
        return False, (f"XLA is faster per step here ({why}), but {steps} steps are too few for its compile to pay "
                       f"off (sagan_tut.perf.XLA_MIN_STEPS = {XLA_MIN_STEPS})")
    return use, why


def resolve_jit_compile(value="auto", kind: str | None = None, device: str | None = None,
                        num_replicas: int = 1, records_path=None, tf_version: str | None = None,
                        steps: int | None = None, machine_cls: str | None = None) -> bool:
    """The ``jit_compile`` flag to train with (:func:`explain_jit_compile` without the reason)."""
    return explain_jit_compile(value, kind, device, num_replicas, records_path, tf_version, steps, machine_cls)[0]


# ----------------------------------------------------------------------------------------------------------------
# TensorFlow start-up settings (set by `import sagan_tut`)
# ----------------------------------------------------------------------------------------------------------------
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
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ENV_BFC, "true")
    return os.environ.get(ENV_BFC, "").strip().lower() in _TRUE


def xla_cache_dir() -> Path:
    """Where XLA's compiled steps are kept: one folder per TensorFlow version and CPU (model, family, flags),
    because an executable compiled for one CPU's instruction set must never be loaded on another."""
    text = machine._read_cpuinfo()
    f = machine.cpu_features(text)
    flags = machine._field(text, "flags") or ""
    cpu = hashlib.sha1(f"{f['vendor']}|{f['family']}|{f['model']}|{flags}".encode()).hexdigest()[:10]
    try:
        from importlib.metadata import version

        tf_version = version("tensorflow")
    except Exception:  # noqa: BLE001 -- any failure: a folder that no other version shares
        tf_version = "unknown"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sagan_tut" / "xla"
    return base / f"tf{tf_version}-{f['isa']}-{cpu}"


def _can_create(folder: Path) -> bool:
    """Whether ``folder`` exists writable or its nearest existing parent lets us create it."""
    path = folder.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def use_xla_compile_cache() -> str | None:
    """Turn on XLA's persistent compilation cache, unless the user chose otherwise; returns its folder or None.

    Every process that builds the same model with ``jit_compile=True`` would otherwise compile the same step
    again (13-53 s on the course's CPU). With ``--tf_xla_persistent_cache_directory`` XLA stores each compiled
    cluster, keyed by its HLO fingerprint, and a later process with the same step loads it instead
    (benchmarks/results/xla_cache.md measures it). TensorFlow reads ``$TF_XLA_FLAGS`` at the first XLA compile,
    so this works as long as nothing has been compiled yet. ``$SAGAN_TUT_XLA_CACHE=0`` turns it off, another
    value moves the folder; a ``--tf_xla_persistent_cache_directory`` already in ``$TF_XLA_FLAGS`` wins.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" in flags:
        return flags.split("tf_xla_persistent_cache_directory=", 1)[1].split()[0] or None
    choice = os.environ.get(ENV_XLA_CACHE, "").strip()
    if choice.lower() in _FALSE:
        return None
    folder = Path(choice) if choice and choice.lower() not in _TRUE else xla_cache_dir()
    # Nothing is created here (TensorFlow makes the folder at its first compile), so an import has no side effect
    # on disk. But XLA fails the compile outright on a folder it cannot create, so check that it could.
    if not _can_create(folder):
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
    return str(folder)


__all__ = [
    "resolve_jit_compile", "explain_jit_compile", "measured_default", "cpu_default", "CPU_MEASURED", "MEASURED_DEFAULTS",
    "XLA_MIN_STEPS", "choose_jit_from_timings", "record_jit_choice", "load_records", "cache_path",
    "use_bfc_cpu_allocator", "use_xla_compile_cache", "xla_cache_dir",
    # re-exported from sagan_tut.machine and sagan_tut.attention_cost
    "attention_cost", "estimate_cpu_peak_gflops", "measure_matmul_gflops", "machine_peak_gflops", "system_info",
    "device_kind", "device_name", "usable_cores", "cpu_model", "memory_gib", "available_mib", "rss_mib",
    "peak_rss_mib",
]
