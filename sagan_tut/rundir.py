"""A run directory: its config (and the changes allowed on resume), and using a finished or running run.

A run directory holds::

    config.json         the TrainConfig (a resumed run must agree with it, up to the allowed changes)
    config_changes.jsonl  one line per field changed on a resume: {"at_step", "field", "old", "new", "time"}
    ckpt/               tf.train.CheckpointManager: G, D, both optimizers, the EMA generator, the step counter
                        and the data iterator's position; the last ``keep_checkpoints`` are kept
    samples/step_000500.png   grids from one fixed noise batch, so the grids form a progression
    tb/                 TensorBoard events: the scalars of log.jsonl and the sample grids
    log.jsonl           one JSON dict per logging step: step, d_loss, g_loss, d_real, d_fake, steps_per_sec,
                        gamma/G/attention_32 ... (each attention layer's gamma), sigma/D/sn_down64_conv ...
                        (the current sigma estimate of each spectrally normalised layer's raw kernel)
    generator.keras     the final (EMA) generator, loadable without this package's trainer

Resuming with changed optimisation settings. A resume must continue the same run, so a config that differs from
config.json in anything but the bookkeeping fields (``config.RESUMABLE_CHANGES``) is refused. The exception is the
way out of a diverged run: the learning rates and Adam's betas (``ALLOWED_CHANGES``) may change when the caller
names them (``Trainer(cfg.replace(lr_g=5e-5), RUN, allow_changes=("lr_g",))``, or ``--allow-change lr_g`` on the
command line). The run then continues from its last good checkpoint with the new values, and the change is
recorded in config.json (the new values), config_changes.jsonl (old and new, at which step) and log.jsonl.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .components import build_models, sample_noise
from .config import FIELDS, ConfigError, TrainConfig, incompatible_fields
from .runlog import write_text_atomic

# Optimisation settings a resume may change when asked to. They change how the weights move from here on, not what
# the weights, optimizer slots, data stream or noise are, so the checkpoint still continues the run.
ALLOWED_CHANGES = ("lr_g", "lr_d", "beta1", "beta2")


def check_allow_changes(allow_changes) -> tuple[str, ...]:
    """``allow_changes`` as a tuple of field names (a comma-separated string is accepted); unknown fields and
    fields that define the model or the data are an error."""
    if isinstance(allow_changes, str):
        allow_changes = [a for a in allow_changes.split(",")]
    names = tuple(a.strip() for a in allow_changes if a.strip())
    for name in names:
        if name not in FIELDS:
            raise ConfigError(f"allow_changes: unknown config field {name!r}; fields that may change on resume: "
                              f"{', '.join(ALLOWED_CHANGES)}.")
        if name not in ALLOWED_CHANGES:
            raise ConfigError(f"allow_changes: {name!r} cannot change on resume: it defines the model, the "
                              f"objective or the data, so the checkpoint would not continue the same run. Fields "
                              f"that may change: {', '.join(ALLOWED_CHANGES)}; for anything else train into a new "
                              f"folder.")
    return names


def resume_command(out_dir, config: TrainConfig, factor: float = 0.5) -> str:
    """How to continue ``out_dir`` from its last good checkpoint with lower learning rates (for error messages)."""
    lr_g, lr_d = f"{config.lr_g * factor:.3g}", f"{config.lr_d * factor:.3g}"
    return (f"sagan-tut train --out {out_dir} --set lr_g={lr_g} --set lr_d={lr_d} --allow-change lr_g,lr_d "
            f"(Python: Trainer(cfg.replace(lr_g={lr_g}, lr_d={lr_d}), {str(out_dir)!r}, "
            f"allow_changes=('lr_g', 'lr_d')))")


def check_run_dir(out_dir: Path, config: TrainConfig, resume: bool, allow_changes=()) -> TrainConfig | None:
    """Make sure ``config`` may train into ``out_dir``; return the saved config when this is a resume.

    Raises FileExistsError for ``resume=False`` on a folder with checkpoints, ConfigError for a config that
    differs from the saved one in a field that may not change (or one that may, but was not named)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "config.json"
    has_ckpt = tf.train.latest_checkpoint(str(out_dir / "ckpt")) is not None
    if has_ckpt and not resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints; resume it (the default) or choose another "
                              "output folder.")
    if not (has_ckpt and config_path.exists()):
        return None
    saved = TrainConfig.from_json(str(config_path))
    allowed = set(check_allow_changes(allow_changes))
    bad = [k for k in incompatible_fields(saved, config) if k not in allowed]
    if bad:
        diffs = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in bad)
        hint = ""
        if all(k in ALLOWED_CHANGES for k in bad):
            names = ",".join(bad)
            hint = (f" To continue this run with new optimisation settings, allow them: --allow-change {names} "
                    f"(Python: allow_changes={tuple(bad)!r}).")
        raise ConfigError(f"cannot resume {out_dir} with a different config ({diffs}). Resume with the saved "
                          f"config.json, or train into a new folder.{hint}")
    return saved


def config_changes(saved: TrainConfig | None, config: TrainConfig) -> dict:
    """``{field: (old, new)}`` for the optimisation settings that differ between the saved and the new config."""
    if saved is None:
        return {}
    return {k: (getattr(saved, k), getattr(config, k)) for k in ALLOWED_CHANGES
            if getattr(saved, k) != getattr(config, k)}


def write_config(out_dir: Path, config: TrainConfig, changes: dict | None = None, step: int = 0):
    """config.json (atomically) and, for a resume with changes, one config_changes.jsonl line per field."""
    if changes:
        with open(out_dir / "config_changes.jsonl", "a") as fh:
            for field, (old, new) in changes.items():
                fh.write(json.dumps(dict(at_step=step, field=field, old=old, new=new, time=time.time())) + "\n")
    write_text_atomic(out_dir / "config.json", config.to_json())


def read_config_changes(run_dir) -> list[dict]:
    """The recorded config changes of a run (empty when it never resumed with changes)."""
    path = Path(run_dir) / "config_changes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def restore_latest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager) -> int:
    """Restore the newest readable checkpoint (older ones are a fallback); return its step (0 if none)."""
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as err:  # an unreadable file (e.g. a sync glitch on a network drive)
            print(f"warning: could not restore {path} ({type(err).__name__}: {err}); trying an older one.",
                  file=sys.stderr)
            continue
        return int(checkpoint.step.numpy())
    if manager.checkpoints:
        raise RuntimeError(f"none of the checkpoints in {manager.directory} could be restored.")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Using a finished (or running) run
# ----------------------------------------------------------------------------------------------------------------
def load_config(run_dir) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory written by the trainer?")
    return TrainConfig.from_json(str(path))


def load_generator(run_dir, ema: bool = True) -> keras.Model:
    """The generator of a run from its latest checkpoint (float32, for sampling and evaluation).

    ``ema=True`` gives the EMA weights (with the BatchNorm statistics the trainer saved with them, see
    sagan_tut.ema) when the run kept them and G's own weights otherwise. Without a checkpoint, falls back to the
    run's ``generator.keras``.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    latest = tf.train.latest_checkpoint(str(run_dir / "ckpt"))
    if latest is None:
        final = run_dir / "generator.keras"
        if final.exists():
            return keras.models.load_model(final)
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'ckpt'} and no {final}: has the run saved yet?")
    G, _ = build_models(config)
    key = "ema_generator" if (ema and config.ema) else "generator"
    status = tf.train.Checkpoint(**{key: G}).restore(latest)
    status.expect_partial().assert_existing_objects_matched()
    return G


def generate(generator: keras.Model, n: int, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """``n`` images in [-1, 1] from ``generator`` for noise drawn with ``seed``."""
    z_dim = int(generator.input_shape[-1])
    z = sample_noise(seed, 0, n, z_dim)
    out = [generator(z[i:i + batch_size], training=False) for i in range(0, n, batch_size)]
    return np.concatenate([np.asarray(o) for o in out])[:n]


__all__ = ["ALLOWED_CHANGES", "check_allow_changes", "check_run_dir", "config_changes", "write_config",
           "read_config_changes", "resume_command", "restore_latest", "load_config", "load_generator", "generate"]
