"""What a result depends on besides its settings: the machine, the code's git commit, the load; and a JSON writer
that never leaves a half-written file.

Timings mean nothing without the machine they were measured on, and a campaign may be continued on another
machine, so every run of the ablation records :func:`machine_info` next to its own timings.
"""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from . import atomic


def machine_info() -> dict:
    """CPU model, vector width, oneDNN and cores, memory, library versions: what the timings depend on (imports
    TensorFlow). The keys ``cpu_model``, ``cpu_cores``, ``simd`` and ``tensorflow`` are those of the committed
    results; the machine facts come from :func:`sagan_tut.machine.system_info`. The vector width matters:
    TensorFlow's kernels run up to 2x faster per core with AVX-512 than with AVX2, so two machines with the same
    core count (and even the same "AMD EPYC" model name) can differ that much."""
    from .machine import system_info

    facts = system_info()
    return dict(
        cpu_model=facts["cpu"], cpu_label=facts["cpu_label"], cpu_cores=os.cpu_count(), usable_cores=facts["cores"],
        simd=facts["simd_flags"], vector_width=facts["isa"], onednn=facts["onednn"],
        cpu_peak_gflops_estimate=facts["cpu_peak_gflops_estimate"], gpus=facts["gpus"],
        python=facts["python"], platform=facts["os"], tensorflow=facts["tensorflow"], keras=facts["keras"],
        numpy=facts["numpy"], memory_gb=None if facts["memory_gib"] is None else round(facts["memory_gib"], 1),
    )


def load_average():
    """The 1, 5 and 15 minute load averages (None where the OS has none): other jobs sharing the CPU."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit():
    """HEAD of the package's repository, or None (an installed copy, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(obj, path):
    """Write ``obj`` to ``path`` atomically: a crash mid-write leaves the previous file, never half of one."""
    atomic.write_json(obj, path)
