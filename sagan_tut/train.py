"""The SAGAN trainer: alternating D and G updates with TTUR and the hinge loss, in TensorFlow eager + tf.function.

    trainer = Trainer(get_config("quick"), "runs/quick")
    history = trainer.fit()                     # resumes from runs/quick/ckpt if a checkpoint is there
    G = load_generator("runs/quick")            # the EMA generator when the run kept one

One *iteration* (one step of the step counter) is ``n_dis`` discriminator updates followed by one generator
update (:mod:`sagan_tut.step`). The pieces live in their own modules: models, optimizers and noise
in :mod:`sagan_tut.components`, the EMA generator and its BatchNorm statistics in :mod:`sagan_tut.ema`, the run
directory (its layout, config.json and the changes a resume may make) in :mod:`sagan_tut.rundir`, log.jsonl and
TensorBoard in :mod:`sagan_tut.runlog`.

Exact resume. Everything that decides the future of a run is in the checkpoint: weights, optimizer moments, the
EMA copy, the step, and the data iterator (``tf.data`` iterators are checkpointable; the faces dataset is a pure
function of the batch index and CelebA shuffles file names before decoding, so the saved iterator state is small).
The noise needs no saved state: z for iteration t is ``stateless_normal(seed=(config.seed, t * (n_dis+1) + k))``,
a pure function of the (checkpointed) step. So a run stopped and resumed makes the same updates as one that was
never stopped (tested bit for bit under op determinism), and what it logged past its last checkpoint is dropped
on resume, so each step is logged once. A diverged run continues from its last good checkpoint with lower
learning rates through ``allow_changes`` (see sagan_tut.rundir).

Crash safety. ``CheckpointManager.save`` writes the data and index files first and only then rewrites the small
``checkpoint`` state file (atomically: temp file + rename). A process killed mid-save leaves the state file
pointing at the previous, complete checkpoint. Resuming reads only the state file. The run directory can live on
Google Drive (a mounted path) so a Colab run survives a disconnect.

Scale-out. Models, optimizers and the EMA copy are built under ``strategy.scope()``; BatchNorm is synchronized
(models.py), so its statistics are the global batch's. MirroredStrategy, MultiWorkerMirroredStrategy and
TPUStrategy all go through the same code (the step: sagan_tut.step). With several machines the run directory must
be on a filesystem all workers see; only the chief writes to it.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
import keras

from . import ema as ema_lib
from . import losses as losses_lib
from . import perf
from .components import (POLICIES, build_models, build_strategy, check_dataset, fixed_noise, is_chief,
                         load_training_data, make_optimizer, sample_noise, set_optimizer_settings)
from .config import ConfigError, TrainConfig
from .rundir import (check_run_dir, config_changes, generate, load_config, load_generator, restore_latest,
                     resume_command, write_config)
from .runlog import Progress, RunLog, model_scalars, tb_image, tb_scalar
from .step import TrainingStep


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; training stopped and the last good checkpoint was left as it was."""


class Trainer(TrainingStep):
    """Train a GAN described by a :class:`TrainConfig` into the run directory ``out_dir``.

    Args:
        config: the run's configuration.
        out_dir: the run directory (created); a path on Google Drive works.
        dataset: optional ``tf.data.Dataset`` of float32 image batches ``(batch_size, R, R, 3)`` in [-1, 1], used
            instead of ``config.dataset``; built from tf.data ops (no ``from_generator``) so its iterator can be
            checkpointed.
        strategy: optional ``tf.distribute.Strategy``; default from ``config.distribute``.
        resume: restore the latest checkpoint of ``out_dir`` if there is one (default). With ``resume=False`` a
            run directory that already has checkpoints is an error rather than silently overwritten.
        verbose: print a progress line.
        allow_changes: config fields that may differ from the saved config on resume (some of
            ``rundir.ALLOWED_CHANGES``: lr_g, lr_d, beta1, beta2); the new values take effect from the restored
            step and are recorded in config.json, config_changes.jsonl and log.jsonl.
        ema_bn: where the EMA generator's BatchNorm statistics come from: ``"averaged"`` (the buffers averaged
            like the weights, the default: measured best), ``"standing"`` (recomputed from its own activations
            before sampling and saving) or ``"copy"`` (G's; see sagan_tut.ema).
    """

    def __init__(self, config: TrainConfig, out_dir, *, dataset=None, strategy=None, resume: bool = True,
                 verbose: bool = True, allow_changes: Sequence[str] = (), ema_bn: str = ema_lib.DEFAULT_EMA_BN):
        self.config = config
        self.out_dir = Path(out_dir)
        self.verbose = verbose
        self.ema_bn = ema_lib.check_mode(ema_bn)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Seeds the weight initialisers (and Python/NumPy), so a fresh run is reproducible.
        keras.utils.set_random_seed(config.seed)

        self.strategy = strategy or build_strategy(config.distribute)
        self.num_replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % self.num_replicas:
            raise ConfigError(f"batch_size={config.batch_size} must be divisible by the number of replicas "
                              f"({self.num_replicas}): each replica takes an equal slice of the global batch.")
        if config.jit_compile is True and self.num_replicas > 1 and not isinstance(self.strategy,
                                                                                    tf.distribute.TPUStrategy):
            raise ConfigError("jit_compile=True is supported on one device (and on TPUs, which always compile); "
                              "set jit_compile=false (or auto) with several replicas.")
        self.is_chief = is_chief(self.strategy)
        saved = check_run_dir(self.out_dir, config, resume, allow_changes)

        # -- models and optimizers, built under the strategy so their variables are mirrored ------------------
        self.d_loss_fn, self.g_loss_fn = losses_lib.get_loss(config.loss)
        policy = POLICIES[config.mixed_precision]
        with self.strategy.scope():
            self.G, self.D = build_models(config, policy)
            self.G_ema = None
            if config.ema:
                self.G_ema = build_models(config, policy)[0]
                self.G_ema.set_weights(self.G.get_weights())
            self.g_opt = self.make_optimizer(config.lr_g)
            self.d_opt = self.make_optimizer(config.lr_d)
            # Build the optimizer slots now, so a checkpoint restores into existing variables.
            self.g_opt.build(self.G.trainable_variables)
            self.d_opt.build(self.D.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # Bookkeeping on the host, read only at logging steps: sums of the per-iteration metrics since the last
        # log, and the first iteration whose losses were not finite (-1: none yet).
        self._metric_sums = tf.Variable(tf.zeros(4), trainable=False, name="metric_sums")
        self._metric_count = tf.Variable(0.0, trainable=False, name="metric_count")
        self._bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_nonfinite_step")
        self._bad_losses = tf.Variable(tf.zeros(2), trainable=False, name="nonfinite_losses")

        # -- data --------------------------------------------------------------------------------------------------
        self.dataset = check_dataset(dataset if dataset is not None else load_training_data(config), config)
        self.iterator = iter(self.dataset)

        # -- checkpointing, then the run directory's config and logs as of the restored step ----------------------
        parts = dict(step=self.step, generator=self.G, discriminator=self.D, g_optimizer=self.g_opt,
                     d_optimizer=self.d_opt, data=self.iterator)
        if self.G_ema is not None:
            parts["ema_generator"] = self.G_ema
        self.checkpoint = tf.train.Checkpoint(**parts)
        self.ckpt_dir = self.out_dir / "ckpt"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.ckpt_dir),
                                                  max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt")
        self.initial_step = restore_latest(self.checkpoint, self.manager) if resume else 0
        changes = config_changes(saved, config) if self.initial_step else {}
        if changes:  # the checkpoint restored the old learning rates; the betas are read when the step is traced
            set_optimizer_settings(self.g_opt, config.lr_g, config.beta1, config.beta2)
            set_optimizer_settings(self.d_opt, config.lr_d, config.beta1, config.beta2)
        self.runlog = RunLog(self.out_dir, enabled=self.is_chief)
        if self.is_chief:
            write_config(self.out_dir, config, changes, self.initial_step)
            self.runlog.resume_at(self.initial_step)  # each step logged once: forget what came after the checkpoint
            if changes:
                self.runlog.write(dict(event="config_change", at_step=self.initial_step,
                                       changes={k: dict(old=o, new=n) for k, (o, n) in changes.items()}))

        # "auto" becomes the path measured fastest on this kind of device (sagan_tut/perf.py, benchmarks/), unless
        # the run is too short for XLA's compile to pay off.
        self.jit_compile, self.jit_compile_reason = perf.explain_jit_compile(
            config.jit_compile, num_replicas=self.num_replicas, steps=config.steps - self.initial_step)

        self._train_step = tf.function(self._train_step_fn)
        self._replica_step = tf.function(self._replica_step_fn, jit_compile=self.jit_compile or None)
        sampler = self.G_ema if self.G_ema is not None else self.G
        self._sample = tf.function(lambda z: sampler(z, training=False))
        self._z_fixed = fixed_noise(config)
        self._ema_stats_step = None  # the step at which the EMA generator's standing statistics were computed
        self.history: list[dict] = []

    # -- construction helpers -------------------------------------------------------------------------------------
    def make_optimizer(self, learning_rate: float) -> keras.optimizers.Optimizer:
        """Adam with the config's betas (see :func:`sagan_tut.components.make_optimizer`)."""
        return make_optimizer(self.config, learning_rate)

    # -- properties -------------------------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> keras.Model:
        """The generator used for samples and evaluation: the EMA copy (with its own BatchNorm statistics) when
        the run keeps one."""
        if self.G_ema is None:
            return self.G
        self.refresh_ema_statistics()
        return self.G_ema

    def refresh_ema_statistics(self):
        """With ``ema_bn="standing"``, recompute the EMA generator's BatchNorm statistics for its current weights
        (once per step: the weights change only in a training step)."""
        step = int(self.step.numpy())
        if self.G_ema is None or self.ema_bn != "standing" or self._ema_stats_step == step:
            return
        c = self.config
        noise = ema_lib.standing_noise(c.seed, ema_lib.STANDING_BATCHES, c.batch_size, c.z_dim)
        ema_lib.standing_statistics(self.G_ema, noise)
        self._ema_stats_step = step

    # -- logging, samples, checkpoints ------------------------------------------------------------------------------
    def _check_finite(self):
        bad = int(self._bad_step.numpy())
        if bad < 0:
            return
        d_loss, g_loss = (float(v) for v in self._bad_losses.numpy())
        latest = self.manager.latest_checkpoint
        kept = (f"the last good checkpoint, {latest} (step {int(latest.rsplit('-', 1)[1])}), is intact" if latest
                else "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {bad} (d_loss={d_loss}, g_loss={g_loss}); training stopped without saving: "
            f"{kept}. Resuming as is would diverge again; resume from the last good checkpoint with lower "
            f"learning rates (now lr_g={self.config.lr_g}, lr_d={self.config.lr_d}): "
            f"{resume_command(self.out_dir, self.config)}. Also try mixed_precision='none' "
            f"(now {self.config.mixed_precision!r}), and check the data for NaN/Inf."
        )

    def _weights_finite(self) -> bool:
        models = [self.G, self.D] + ([self.G_ema] if self.G_ema is not None else [])
        return all(bool(tf.reduce_all(tf.math.is_finite(v)).numpy())
                   for m in models for v in m.trainable_variables)

    def scalars(self) -> dict:
        """The current gamma of each attention layer and sigma of each top-level spectrally normalised layer."""
        return model_scalars(G=self.G, D=self.D)

    def _log(self, step: int, elapsed: float, steps_done: int):
        count = max(float(self._metric_count.numpy()), 1.0)
        means = self._metric_sums.numpy() / count
        self._metric_sums.assign(tf.zeros(4))
        self._metric_count.assign(0.0)
        record = dict(step=step, d_loss=float(means[0]), g_loss=float(means[1]), d_real=float(means[2]),
                      d_fake=float(means[3]), steps_per_sec=steps_done / max(elapsed, 1e-9))
        if self.config.mixed_precision == "float16":
            record.update(loss_scale_g=float(self.g_opt.dynamic_scale.numpy()),
                          loss_scale_d=float(self.d_opt.dynamic_scale.numpy()))
        record.update(self.scalars())
        self.history.append(record)
        self.runlog.write(record)
        return record

    def sample(self, z=None) -> np.ndarray:
        """Images from the sampling generator (EMA when on) for ``z`` (default: the run's fixed noise)."""
        z = self._z_fixed if z is None else tf.convert_to_tensor(z, tf.float32)
        self.refresh_ema_statistics()
        return self._sample(z).numpy()

    def _write_samples(self, step: int):
        from .viz import image_grid, save_grid

        if not self.is_chief:
            return
        images = self.sample()
        path = save_grid(images, self.out_dir / "samples" / f"step_{step:06d}.png")
        self.runlog.image("samples", image_grid(images), step)
        return path

    def save(self) -> str | None:
        """Write a checkpoint at the current step unless the losses or weights went non-finite."""
        self._check_finite()
        if not self._weights_finite():
            raise NonFiniteLossError(f"non-finite weights at step {int(self.step.numpy())}; not saved. "
                                     f"The last good checkpoint is {self.manager.latest_checkpoint}.")
        self.refresh_ema_statistics()  # the checkpoint's EMA generator carries its own BatchNorm statistics
        step = int(self.step.numpy())
        if self.is_chief:
            return self.manager.save(checkpoint_number=step)
        tmp = tempfile.mkdtemp()  # non-chief workers must join the save (a collective) but keep nothing
        try:
            self.checkpoint.write(os.path.join(tmp, "ckpt"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return None

    # -- the loop ---------------------------------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> list[dict]:
        """Train until the step counter reaches ``steps`` (default ``config.steps``); return the log records.

        Raises :class:`NonFiniteLossError` when a loss becomes NaN/Inf (the last good checkpoint stays intact).
        """
        c = self.config
        total = c.steps if steps is None else int(steps)
        step = int(self.step.numpy())
        if step == 0:
            self._write_samples(0)
        progress = Progress(total, step, enabled=self.verbose)
        last_log_time, last_log_step = time.perf_counter(), step
        info = ""
        try:
            while step < total:
                self._train_step()
                step += 1
                if step % c.log_every == 0 or step == total:
                    self._check_finite()
                    now = time.perf_counter()
                    rec = self._log(step, now - last_log_time, step - last_log_step)
                    last_log_time, last_log_step = now, step
                    info = f"d_loss {rec['d_loss']:.3f} g_loss {rec['g_loss']:.3f}"
                    progress.update(step, info, force=True)
                if step % c.sample_every == 0 or step == total:
                    self._check_finite()
                    self._write_samples(step)
                if step % c.ckpt_every == 0 or step == total:
                    self.save()
                progress.update(step, info)
        except KeyboardInterrupt:
            # Keep the work done so far (Ctrl-C lands between steps, so the state is consistent).
            progress.close()
            if int(self._bad_step.numpy()) < 0:
                path = self.save()
                print(f"interrupted: saved {path}; run again to resume.", file=sys.stderr)
            raise
        finally:
            progress.close()
            self.runlog.flush()
        if self.is_chief and step >= total:
            self.sampling_generator.save(self.out_dir / "generator.keras")
        return self.history


__all__ = ["Trainer", "NonFiniteLossError", "build_strategy", "build_models", "load_generator", "load_config",
           "generate", "sample_noise", "fixed_noise", "Progress", "POLICIES", "tb_scalar", "tb_image"]
