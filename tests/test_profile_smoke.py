"""Smoke mode (sagan_tut.profile.smoke / profile_config) and the glue helper (sagan_tut.glue)."""
import time

import pytest

from sagan_tut import glue as glue_mod
from sagan_tut.profile import profile_config, smoke

CONFIGS = dict(quick=dict(steps=300, n_eval=256, width=0.125), full=dict(steps=20_000, n_eval=10_000, width=1.0))


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("no", False), ("1", True),
                                             ("TRUE", True), ("yes", True)])
def test_smoke_values(monkeypatch, value, expected):
    monkeypatch.setenv("SAGAN_TUT_SMOKE", value)
    assert smoke() is expected


def test_smoke_rejects_what_it_does_not_understand(monkeypatch):
    monkeypatch.setenv("SAGAN_TUT_SMOKE", "fast")
    with pytest.raises(ValueError, match="SAGAN_TUT_SMOKE='fast'.*use 1"):
        smoke()


def test_profile_config_caps_only_in_smoke_mode(monkeypatch):
    monkeypatch.setenv("SAGAN_TUT_PROFILE", "full")
    monkeypatch.delenv("SAGAN_TUT_SMOKE", raising=False)
    cfg = profile_config(CONFIGS, smoke_caps=dict(steps=3, n_eval=64))
    assert cfg == CONFIGS["full"] and cfg is not CONFIGS["full"]
    monkeypatch.setenv("SAGAN_TUT_SMOKE", "1")
    # The full architecture (width 1.0) is kept, the loop lengths are capped.
    assert profile_config(CONFIGS, smoke_caps=dict(steps=3, n_eval=64)) == dict(steps=3, n_eval=64, width=1.0)
    assert CONFIGS["full"]["steps"] == 20_000  # the caller's dict is not changed
    monkeypatch.setenv("SAGAN_TUT_PROFILE", "quick")
    assert profile_config(CONFIGS, smoke_caps=dict(steps=3))["steps"] == 3


def test_profile_config_errors(monkeypatch):
    monkeypatch.setenv("SAGAN_TUT_SMOKE", "1")
    with pytest.raises(ValueError, match="missing: full"):
        profile_config(dict(quick=dict(steps=1)), profile="quick")
    with pytest.raises(ValueError, match=r"\['stepz'\] are not settings"):
        profile_config(CONFIGS, smoke_caps=dict(stepz=3), profile="full")


def test_glue_without_myst_nb_returns_the_value(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    assert glue_mod.glue("x", 1.5) == 1.5


def test_glue_stores_a_python_number(monkeypatch):
    import numpy as np

    stored = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: stored.update({name: (value, display)}))
    assert glue_mod.glue("fid", np.float32(0.25)) == 0.25
    assert stored == {"fid": (0.25, False)} and type(stored["fid"][0]) is float


def test_run_time_glues_every_field(monkeypatch, capsys):
    stored = {}
    monkeypatch.setattr(glue_mod, "glue", lambda name, value, display=False: stored.update({name: value}))
    monkeypatch.setenv("SAGAN_TUT_PROFILE", "quick")
    out = glue_mod.run_time("ch9", time.perf_counter() - 2.0, time.process_time())
    assert set(stored) == {"ch9_wall_s", "ch9_cpu_s", "ch9_machine", "ch9_profile"}
    assert 2.0 <= stored["ch9_wall_s"] < 60 and stored["ch9_profile"] == "quick" == out["profile"]
    assert "ran in 2 s of wall time" in capsys.readouterr().out
