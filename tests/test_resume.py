"""Resuming a run: each step logged once after a kill (log.jsonl and TensorBoard), and continuing a diverged run
from its last good checkpoint with changed optimisation settings (``allow_changes``)."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from sagan_tut.config import ConfigError, TrainConfig, get_config
from sagan_tut.rundir import ALLOWED_CHANGES, read_config_changes
from sagan_tut.train import NonFiniteLossError, Trainer

from cli_kill import kill_when, latest_checkpoint_step, logged_steps, start_train, train_command

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=0.125, batch_size=8, jit_compile=False, sample_every=1000, ema=False)


def _log_steps(out):
    """The `step` of every line of log.jsonl, in file order (a torn line fails the JSON parse: it must be gone)."""
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
            if "step" in json.loads(line)]


def _event_steps(out, tag="d_loss"):
    """Steps of every `tag` summary in every events file of out/tb, read with TensorFlow's own event reader."""
    steps = []
    for path in sorted((out / "tb").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return sorted(steps)


# ----------------------------------------------------------------------------------------------------------------
# Each step logged once after a kill
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_and_resumed_cli_run_logs_each_step_once(tmp_path):
    out, every = tmp_path / "killed", 4
    extra = ["--set", "jit_compile=false"]
    child = start_train(out, every, steps=400, extra=extra)
    # Kill without warning once steps past a checkpoint (>= 8) are logged and the next save is still ahead.
    kill_when(child, lambda: (latest_checkpoint_step(out) or 0) >= 2 * every
              and (logged_steps(out / "log.jsonl") or [1])[-1] % every == 2)
    logged = logged_steps(out / "log.jsonl")
    restored = latest_checkpoint_step(out)
    assert max(logged) > restored  # the killed run had logged steps that the resumed run redoes
    assert max(_event_steps(out)) > restored

    end = max(logged) + 3
    proc = subprocess.run(train_command(out, every, steps=end, extra=extra), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed {out} at step {restored}" in proc.stdout
    expected = list(range(1, end + 1))  # every step once, contiguous up to the end
    assert _log_steps(out) == expected
    assert _event_steps(out) == expected
    assert _event_steps(out, "gamma/G/attention_16") == expected
    assert _event_steps(out, "samples") == [0, end]


def test_resume_drops_records_past_the_restored_step(tmp_path):
    """In process: records a killed run wrote after its checkpoint, and a line the kill cut short, are gone after
    the resume; the records up to the checkpoint are kept byte for byte."""
    out = tmp_path / "r"
    cfg = get_config("quick", **TINY, steps=4, log_every=1, ckpt_every=2)
    t = Trainer(cfg, out, verbose=False)
    t.fit(steps=2)  # saves ckpt-2 (the end of a fit)
    keep_text = (out / "log.jsonl").read_text()
    shutil.copytree(out / "ckpt", tmp_path / "ckpt-at-2")
    t.fit()  # logs 3 and 4 and saves ckpt-4 ...
    shutil.rmtree(out / "ckpt")  # ... which a kill before that save would not have left
    shutil.copytree(tmp_path / "ckpt-at-2", out / "ckpt")
    with open(out / "log.jsonl", "a") as fh:
        fh.write('{"step": 5, "d_lo')  # ... and a torn last line
    assert logged_steps(out / "log.jsonl") == [1, 2, 3, 4]
    t = Trainer(cfg.replace(steps=3), out, verbose=False)
    assert t.initial_step == 2
    assert (out / "log.jsonl").read_text() == keep_text
    assert _event_steps(out) == [1, 2]
    t.fit()
    assert _log_steps(out) == [1, 2, 3] and _event_steps(out) == [1, 2, 3]


def test_a_fresh_start_in_a_folder_without_checkpoints_forgets_its_old_log(tmp_path):
    out = tmp_path / "r"
    cfg = get_config("quick", **TINY, steps=2, log_every=1, ckpt_every=100)
    Trainer(cfg, out, verbose=False).fit()
    shutil.rmtree(out / "ckpt")  # e.g. killed before its first checkpoint
    Trainer(cfg, out, verbose=False).fit()
    assert _log_steps(out) == [1, 2] and _event_steps(out) == [1, 2]
    assert _event_steps(out, "samples") == [0, 2]


# ----------------------------------------------------------------------------------------------------------------
# Continuing a diverged run with other optimisation settings
# ----------------------------------------------------------------------------------------------------------------
# Wasserstein loss without spectral norm at lr 1.0: D's logits grow without bound and the losses overflow to
# inf/NaN after ~25 iterations (measured: step 28 at seed 0). Checkpoints every 5 steps leave a good one before.
DIVERGING = dict(TINY, loss="wasserstein", spectral_norm=False, lr_g=1.0, lr_d=1.0, steps=60, log_every=1,
                 ckpt_every=5)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    out = tmp_path_factory.mktemp("diverged") / "r"
    cfg = get_config("quick", **DIVERGING)
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(cfg, out, verbose=False).fit()
    good = int(tf.train.latest_checkpoint(str(out / "ckpt")).rsplit("-", 1)[1])
    return dict(out=out, cfg=cfg, error=str(info.value), good=good)


def _copy(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    return out


def test_the_nan_error_names_the_way_out(diverged):
    msg, out = diverged["error"], diverged["out"]
    assert f"ckpt-{diverged['good']}" in msg
    assert f"sagan-tut train --out {out} --set lr_g=0.5 --set lr_d=0.5 --allow-change lr_g,lr_d" in msg
    assert f"Trainer(cfg.replace(lr_g=0.5, lr_d=0.5), '{out}', allow_changes=('lr_g', 'lr_d'))" in msg


def test_resuming_a_diverged_run_as_is_diverges_again_and_other_rates_are_refused(diverged, tmp_path):
    out, cfg = _copy(diverged, tmp_path), diverged["cfg"]
    with pytest.raises(NonFiniteLossError):
        Trainer(cfg, out, verbose=False).fit()
    lower = cfg.replace(lr_g=1e-5, lr_d=1e-5)
    with pytest.raises(ConfigError, match=r"lr_g: 1\.0 -> 1e-05.*--allow-change lr_g,lr_d"):
        Trainer(lower, out, verbose=False)
    with pytest.raises(ConfigError, match=r"lr_d: 1\.0 -> 1e-05"):  # allowing one of them is not enough
        Trainer(lower, out, verbose=False, allow_changes=("lr_g",))


def test_lower_learning_rates_continue_a_diverged_run_past_its_nan(diverged, tmp_path):
    out, cfg, good = _copy(diverged, tmp_path), diverged["cfg"], diverged["good"]
    new = cfg.replace(lr_g=1e-5, lr_d=2e-5, beta1=0.5, beta2=0.99, steps=good + 15)
    t = Trainer(new, out, verbose=False, allow_changes="lr_g,lr_d,beta1,beta2")
    assert t.initial_step == good
    # The optimizers' own variables hold the new rates (the checkpoint had restored 1.0), and the new betas.
    by_name = {v.path: float(v.numpy()) for opt in (t.g_opt, t.d_opt) for v in opt.variables
               if v.path.endswith("learning_rate")}
    assert sorted(by_name.values()) == pytest.approx([1e-5, 2e-5])
    assert float(t.g_opt.learning_rate.numpy()) == pytest.approx(1e-5)
    assert float(t.d_opt.learning_rate.numpy()) == pytest.approx(2e-5)
    assert (t.g_opt.beta_1, t.g_opt.beta_2, t.d_opt.beta_1, t.d_opt.beta_2) == (0.5, 0.99, 0.5, 0.99)
    assert int(t.g_opt.iterations.numpy()) == good  # ... and its moments and step counts are the checkpoint's
    history = t.fit()  # past the step where the old rates produced NaN
    assert int(t.step.numpy()) == good + 15
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in history)
    # Adam's first update after the resume moves a weight by at most ~lr (here 1e-5), not by ~1.0.
    # Recorded: config.json holds the new values, config_changes.jsonl the history, log.jsonl a record.
    assert TrainConfig.from_json(str(out / "config.json")) == new
    changes = {c["field"]: c for c in read_config_changes(out)}
    assert set(changes) == {"lr_g", "lr_d", "beta1", "beta2"}
    assert changes["lr_g"]["at_step"] == good and (changes["lr_g"]["old"], changes["lr_g"]["new"]) == (1.0, 1e-5)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    event = [r for r in records if r.get("event") == "config_change"]
    assert len(event) == 1 and event[0]["at_step"] == good and "step" not in event[0]
    assert event[0]["changes"]["lr_d"] == dict(old=1.0, new=2e-5)
    assert [r["step"] for r in records if "step" in r] == list(range(1, good + 16))
    # A later resume with the now-saved settings needs no permission.
    assert Trainer(new.replace(steps=good + 20), out, verbose=False).initial_step == good + 15


def test_only_optimisation_settings_may_be_allowed_to_change(diverged, tmp_path):
    out, cfg = _copy(diverged, tmp_path), diverged["cfg"]
    assert set(ALLOWED_CHANGES) >= {"lr_g", "lr_d", "beta1", "beta2"}
    with pytest.raises(ConfigError, match="'width' cannot change on resume: it defines the model"):
        Trainer(cfg.replace(width=0.25), out, verbose=False, allow_changes=("width",))
    with pytest.raises(ConfigError, match="unknown config field 'lr'"):
        Trainer(cfg, out, verbose=False, allow_changes=("lr",))
    # Allowed but not changed: a plain resume, nothing recorded.
    t = Trainer(cfg, out, verbose=False, allow_changes=("lr_g",))
    assert t.initial_step == diverged["good"] and read_config_changes(out) == []
