"""Helpers for the tests that SIGKILL a real `sagan-tut train` run: start it, read its log, kill it mid-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]


def train_command(out, ckpt_every: int, steps: int = 400, extra=()) -> list[str]:
    """A tiny quick-preset CLI run: one log record per step, a checkpoint every ``ckpt_every`` steps."""
    return [sys.executable, "-m", "sagan_tut", "train", "--preset", "quick", "--out", str(out), "--steps", str(steps),
            "--quiet", "--set", "width=0.125", "--set", "batch_size=8", "--set", "log_every=1",
            "--set", f"ckpt_every={ckpt_every}", "--set", "sample_every=1000", *extra]


def start_train(out, ckpt_every: int, steps: int = 400, extra=()):
    """:func:`train_command` in the background."""
    return subprocess.Popen(train_command(out, ckpt_every, steps, extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def logged_steps(log) -> list[int]:
    """The steps in a log.jsonl; the last line may have been cut by the kill."""
    log = Path(log)
    steps = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    return steps


def latest_checkpoint_step(out) -> int | None:
    latest = tf.train.latest_checkpoint(str(Path(out) / "ckpt"))
    return int(latest.rsplit("-", 1)[1]) if latest else None


def kill_when(child, ready, timeout: float = 300, poll: float = 0.02):
    """SIGKILL ``child`` as soon as ``ready()`` is true (it must still be running then); always reaps it."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and child.poll() is None and not ready():
            time.sleep(poll)
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
