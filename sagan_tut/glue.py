"""Numbers in the book's prose come from the cell that computes them: :func:`glue` stores a value in the executed
notebook, and the markdown inserts it with myst-nb's ``{glue:text}`` role, so a re-execution can never contradict
the text. Outside the book build (Colab, a plain Jupyter) myst-nb may be missing; then glue is a no-op that
returns the value, and the notebook runs the same.

    from sagan_tut.glue import glue
    glue("fid_ema", fid)                      # in the prose: {glue:text}`fid_ema:.3f`
    run_time("ch1", T_START, CPU_START)       # the chapter's one run-time line, glued as ch1_wall_s, ch1_cpu_s
"""
from __future__ import annotations

import time


def glue(name: str, value, display: bool = False):
    """Store ``value`` under ``name`` for the book's ``{glue:...}`` roles (myst-nb); return ``value``."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # not building the book: nothing to store
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / tf scalars print as numbers
        value = value.item()
    _glue(name, value, display=display)
    return value


def run_time(key: str, t_start: float, cpu_start: float | None = None, profile: str | None = None) -> dict:
    """Print and glue how long this page took since ``t_start`` (``time.perf_counter()``; ``cpu_start`` from
    ``time.process_time()``), on which machine, in which profile: ``{key}_wall_s``, ``{key}_cpu_s`` (if
    given), ``{key}_machine``, ``{key}_profile``. The intro's time table is made from these values."""
    from .machine import cpu_label
    from .profile import get_profile

    out = {"wall_s": round(time.perf_counter() - t_start, 1)}
    if cpu_start is not None:
        out["cpu_s"] = round(time.process_time() - cpu_start, 1)
    out["machine"] = cpu_label()
    out["profile"] = profile or get_profile()
    for name, value in out.items():
        glue(f"{key}_{name}", value)
    cpu = f", {out['cpu_s']:.0f} s of CPU" if "cpu_s" in out else ""
    print(f"This page ran in {out['wall_s']:.0f} s of wall time{cpu} on {out['machine']} "
          f"({out['profile']} profile).")
    return out
