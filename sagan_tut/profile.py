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
