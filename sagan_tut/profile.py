"""Run profiles: one notebook, two sizes.

``SAGAN_TUT_PROFILE=quick`` runs tiny widths and few steps on a laptop CPU in minutes (the tests and the book
build use it); ``full`` runs the real settings. Unset, the profile is ``full`` when TensorFlow sees a GPU and
``quick`` otherwise.
"""
from __future__ import annotations

import os
import sys

ENV_VAR = "SAGAN_TUT_PROFILE"
PROFILES = ("quick", "full")


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def get_profile() -> str:
    """The active profile name, from ``$SAGAN_TUT_PROFILE`` or, when unset, from whether a GPU is visible."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "full" if gpu_available() else "quick"
    if value not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={value!r} is not a profile: use one of {', '.join(PROFILES)} "
            f"(or unset it to pick 'full' when a GPU is visible and 'quick' otherwise)."
        )
    return value


def on_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


# ------------------------------------------------------------------------------------------------- smoke mode
# ``SAGAN_TUT_SMOKE=1`` (with either profile) keeps the profile's architectures, presets and data paths but caps
# the loop lengths and sample counts to seconds, so the tests can run every notebook's `full` branch on a CPU.
# No output of a smoke run means anything; the tests only check that every cell runs.
SMOKE_VAR = "SAGAN_TUT_SMOKE"


def smoke() -> bool:
    """Whether ``$SAGAN_TUT_SMOKE`` asks for a smoke run (``1``/``true``/``yes``; ``0``/``false``/empty: no)."""
    value = os.environ.get(SMOKE_VAR, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{SMOKE_VAR}={value!r} is not understood: use 1 (smoke run: every loop capped to seconds) "
                     "or 0 / unset (a normal run).")


def profile_config(configs: dict, smoke_caps: dict | None = None, profile: str | None = None) -> dict:
    """The settings of the active profile: ``configs[profile]`` (a new dict), with ``smoke_caps`` laid over
    it when :func:`smoke` is on. A notebook keeps every setting that differs between profiles in one place::

        CFG = profile_config(dict(quick=dict(steps=300, n_eval=256), full=dict(steps=20_000, n_eval=10_000)),
                             smoke_caps=dict(steps=3, n_eval=64))
    """
    profile = profile or get_profile()
    missing = [p for p in PROFILES if p not in configs]
    if missing:
        raise ValueError(f"profile_config needs settings for every profile; missing: {', '.join(missing)}.")
    cfg = dict(configs[profile])
    if smoke() and smoke_caps:
        unknown = sorted(set(smoke_caps) - set(cfg))
        if unknown:
            raise ValueError(f"smoke caps {unknown} are not settings of profile {profile!r}: cap only what the "
                             "profile sets (a typo would leave the real length in place).")
        cfg.update(smoke_caps)
    return cfg
