"""The SAGAN trainer: alternating D and G updates with TTUR and the hinge loss, in TensorFlow eager + tf.function.

    trainer = Trainer(get_config("quick"), "runs/quick")
    history = trainer.fit()                     # resumes from runs/quick/ckpt if a checkpoint is there
    G = load_generator("runs/quick")            # the EMA generator when the run kept one

One *iteration* (one step of the step counter) is ``n_dis`` discriminator updates followed by one generator
update; the counter advances exactly once per iteration (the blog's loop advanced it twice, because it handed the
global step to both ``apply_gradients`` calls).

A run directory holds::

    config.json         the TrainConfig (a resumed run must agree with it)
    ckpt/               tf.train.CheckpointManager: G, D, both optimizers, the EMA generator, the step counter
                        and the data iterator's position; the last ``keep_checkpoints`` are kept
    samples/step_000500.png   grids from one fixed noise batch, so the grids form a progression
    tb/                 TensorBoard events: the scalars below and the sample grids
    log.jsonl           one JSON dict per logging step: step, d_loss, g_loss, d_real, d_fake, steps_per_sec,
                        gamma/G/attention_32 ... (each attention layer's gamma), sigma/D/sn_down64_conv ...
                        (the current sigma estimate of each spectrally normalised layer's raw kernel)
    generator.keras     the final (EMA) generator, loadable without this package's trainer

Exact resume. Everything that decides the future of a run is in the checkpoint: weights, optimizer moments, the
EMA copy, the step, and the data iterator (``tf.data`` iterators are checkpointable; the faces dataset is a pure
function of the batch index and CelebA shuffles file names before decoding, so the saved iterator state is small).
The noise needs no saved state: z for iteration t is ``stateless_normal(seed=(config.seed, t * (n_dis+1) + k))``,
a pure function of the (checkpointed) step. So a run stopped and resumed makes the same updates as one that was
never stopped (tested bit for bit under op determinism).

Crash safety. ``CheckpointManager.save`` writes the data and index files first and only then rewrites the small
``checkpoint`` state file (atomically: temp file + rename). A process killed mid-save leaves the state file
pointing at the previous, complete checkpoint. Resuming reads only the state file. The run directory can live on
Google Drive (a mounted path) so a Colab run survives a disconnect.

Scale-out. Models, optimizers and the EMA copy are built under ``strategy.scope()``; each iteration reads one
*global* batch (so the checkpointed iterator is the same whatever the number of devices) and each replica takes
its slice. Each replica's loss is its local mean divided by the number of replicas, so the all-reduced (summed)
gradients are those of the global-batch mean; BatchNorm is synchronized (models.py), so its statistics are the
global batch's too. MirroredStrategy (several GPUs), MultiWorkerMirroredStrategy (several machines) and
TPUStrategy (Colab TPU) all go through the same code. The price of reading whole global batches is input work:
every worker decodes the full batch and keeps its slice (simple and exactly resumable; at a scale where input
dominates, shard the dataset instead). With several machines the run directory must be on a filesystem all
workers see; only the chief writes to it.

Each training-mode call of D (on real images, on fakes, and inside G's update) advances its spectral-norm ``u``
by one power iteration, as PyTorch's ``spectral_norm`` does.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import keras

from . import losses as losses_lib
from . import perf
from .attention import SelfAttention
from .config import ConfigError, TrainConfig, incompatible_fields
from .models import make_discriminator, make_generator
from .spectral_norm import SpectralNormalization

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; training stopped and the last good checkpoint was left as it was."""


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------
def build_strategy(name: str = "none") -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``config.distribute``."""
    if name == "none":
        return tf.distribute.get_strategy()  # the default strategy: one device, no-op scope
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()  # all local GPUs (or the CPU)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads the cluster from $TF_CONFIG
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="")  # Colab's TPU runtime
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"distribute must be one of 'none', 'mirrored', 'multiworker', 'tpu'; got {name!r}.")


def build_models(config: TrainConfig, policy: str = "float32"):
    """``(G, D)`` for a config, built under the dtype policy ``policy`` (layers keep the policy they were made
    with, so the global policy is restored afterwards). Spectral norm and the attention softmax compute in float32
    under any policy, and the models' output layers are float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        common = dict(arch=config.arch, resolution=config.resolution, width=config.width,
                      attention_res=config.attention_res, attention_variant=config.attention_variant,
                      spectral_norm=config.spectral_norm)
        G = make_generator(z_dim=config.z_dim, name="generator", **common)
        D = make_discriminator(name="discriminator", **common)
    finally:
        keras.config.set_dtype_policy(previous)
    return G, D


def sample_noise(seed: int, counter, batch: int, z_dim: int):
    """z ~ N(0, I) as a pure function of (seed, counter): nothing to checkpoint, identical on every replica."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(counter, tf.int64)])
    return tf.random.stateless_normal((batch, z_dim), seed=key)


def fixed_noise(config: TrainConfig):
    """The noise batch behind every sample grid of a run (a counter no training step uses)."""
    return sample_noise(config.seed, -1, config.n_samples, config.z_dim)


def _is_chief(strategy) -> bool:
    # Only the chief writes files that others read (checkpoints, samples, logs); other workers of a
    # MultiWorkerMirroredStrategy still take part in each save (it is a collective) but write to a temp folder.
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _write_text_atomic(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# TensorBoard events are written with TF's low-level ``tf.summary.write`` and the plugin metadata TensorBoard
# expects, so training does not need the tensorboard package (only viewing the events does).
def _tb_metadata(plugin: str, data_class: str):
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    meta.data_class = getattr(summary_pb2, data_class)
    return meta


def tb_scalar(tag: str, value: float, step: int):
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                     metadata=_tb_metadata("scalars", "DATA_CLASS_SCALAR"))


def tb_image(tag: str, image_uint8: np.ndarray, step: int):
    """One (H, W, 3) uint8 image, stored as TensorBoard's image plugin does: [width, height, png]."""
    height, width = image_uint8.shape[:2]
    png = tf.io.encode_png(image_uint8)
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])
    tf.summary.write(tag, tensor, step=step, metadata=_tb_metadata("images", "DATA_CLASS_BLOB_SEQUENCE"))


class Progress:
    """A one-line ``\\r`` progress bar: step, steps/s, ETA and the latest losses (no dependency)."""

    def __init__(self, total: int, start: int, enabled: bool = True, stream=None, min_interval: float = 0.5,
                 clock=time.perf_counter):
        self.total, self.enabled, self.stream = total, enabled, stream or sys.stdout
        self.min_interval, self.clock = min_interval, clock
        self.t0, self.s0, self.last = clock(), start, 0.0
        self.text = ""

    def update(self, step: int, info: str = "", force: bool = False):
        now = self.clock()
        if not self.enabled or (not force and now - self.last < self.min_interval):
            return
        self.last = now
        rate = (step - self.s0) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        eta_text = "?" if math.isinf(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        width = 20
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {step}/{self.total} {rate:.2f} steps/s ETA {eta_text} {info}"
        self.stream.write("\r" + text.ljust(len(self.text)))
        self.stream.flush()
        self.text = text

    def close(self):
        if self.enabled and self.text:
            self.stream.write("\n")
            self.stream.flush()
            self.text = ""


# ----------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------
class Trainer:
    """Train a GAN described by a :class:`TrainConfig` into the run directory ``out_dir``.

    Args:
        config: the run's configuration.
        out_dir: the run directory (created); a path on Google Drive works.
        dataset: optional ``tf.data.Dataset`` of float32 image batches ``(batch_size, R, R, 3)`` in [-1, 1], used
            instead of ``config.dataset``; it must be built from tf.data ops (no ``from_generator``) so its
            iterator can be checkpointed.
        strategy: optional ``tf.distribute.Strategy``; default from ``config.distribute``.
        resume: restore the latest checkpoint of ``out_dir`` if there is one (default). With ``resume=False`` a
            run directory that already has checkpoints is an error rather than silently overwritten.
        verbose: print a progress line.
    """

    def __init__(self, config: TrainConfig, out_dir, *, dataset=None, strategy=None, resume: bool = True,
                 verbose: bool = True):
        self.config = config
        self.out_dir = Path(out_dir)
        self.verbose = verbose
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
        self.is_chief = _is_chief(self.strategy)
        self._check_run_dir(resume)

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
        self.dataset = self._check_dataset(dataset if dataset is not None else self._load_dataset())
        self.iterator = iter(self.dataset)

        # -- checkpointing -----------------------------------------------------------------------------------------
        parts = dict(step=self.step, generator=self.G, discriminator=self.D, g_optimizer=self.g_opt,
                     d_optimizer=self.d_opt, data=self.iterator)
        if self.G_ema is not None:
            parts["ema_generator"] = self.G_ema
        self.checkpoint = tf.train.Checkpoint(**parts)
        self.ckpt_dir = self.out_dir / "ckpt"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.ckpt_dir),
                                                  max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt")
        self.initial_step = self._restore() if resume else 0

        # "auto" becomes the path measured fastest on this kind of device (sagan_tut/perf.py, benchmarks/), unless
        # the run is too short for XLA's compile to pay off.
        self.jit_compile, self.jit_compile_reason = perf.explain_jit_compile(
            config.jit_compile, num_replicas=self.num_replicas, steps=config.steps - self.initial_step)

        self._train_step = tf.function(self._train_step_fn)
        self._replica_step = tf.function(self._replica_step_fn, jit_compile=self.jit_compile or None)
        self._sample = tf.function(lambda z: self.sampling_generator(z, training=False))
        self._z_fixed = fixed_noise(config)
        self.history: list[dict] = []

    # -- construction helpers -------------------------------------------------------------------------------------
    def make_optimizer(self, learning_rate: float) -> keras.optimizers.Optimizer:
        """Adam with the config's betas (TTUR = a different learning rate for G and D). Under ``float16`` it is
        wrapped in a LossScaleOptimizer: the loss is multiplied by a dynamic scale before the backward pass so
        small float16 gradients do not underflow, and a step whose scaled gradients overflow is skipped."""
        # epsilon 1e-8 as in the official TF1 code and PyTorch (Keras' default is 1e-7).
        opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=self.config.beta1,
                                    beta_2=self.config.beta2, epsilon=1e-8)
        if self.config.mixed_precision == "float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def _load_dataset(self):
        from .data import load_dataset

        c = self.config
        return load_dataset(c.dataset, resolution=c.resolution, batch_size=c.batch_size, split="train",
                            seed=c.seed, shuffle=True, root=c.data_root, source=c.data_source, repeat=True)

    def _check_dataset(self, dataset):
        spec = dataset.element_spec
        c = self.config
        shape = getattr(spec, "shape", None)
        if shape is None or shape.rank != 4 or tuple(shape[1:]) != (c.resolution, c.resolution, 3):
            raise ValueError(f"the dataset must yield image batches of shape (batch_size, {c.resolution}, "
                             f"{c.resolution}, 3); its elements are {spec}.")
        if shape[0] is not None and shape[0] != c.batch_size:
            raise ValueError(f"the dataset yields batches of {shape[0]} but batch_size={c.batch_size}: batch it "
                             "with the config's batch_size (drop_remainder=True).")
        return dataset

    def _check_run_dir(self, resume: bool):
        """Write config.json for a new run; for an existing one, make sure this config continues it."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.out_dir / "config.json"
        has_ckpt = tf.train.latest_checkpoint(str(self.out_dir / "ckpt")) is not None
        if has_ckpt and not resume:
            raise FileExistsError(f"{self.out_dir} already holds checkpoints; resume it (the default) or choose "
                                  "another output folder.")
        if has_ckpt and config_path.exists():
            saved = TrainConfig.from_json(str(config_path))
            bad = incompatible_fields(saved, self.config)
            if bad:
                diffs = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(self.config, k)!r}" for k in bad)
                raise ConfigError(f"cannot resume {self.out_dir} with a different config ({diffs}). Resume with "
                                  f"the saved config.json, or train into a new folder.")
        if self.is_chief:
            _write_text_atomic(config_path, self.config.to_json())

    def _restore(self) -> int:
        """Restore the newest readable checkpoint (older ones are a fallback); return its step (0 if none)."""
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as err:  # an unreadable file (e.g. a sync glitch on a network drive)
                print(f"warning: could not restore {path} ({type(err).__name__}: {err}); trying an older one.",
                      file=sys.stderr)
                continue
            return int(self.step.numpy())
        if self.manager.checkpoints:
            raise RuntimeError(f"none of the checkpoints in {self.ckpt_dir} could be restored.")
        return 0

    # -- properties -------------------------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> keras.Model:
        """The generator used for samples and evaluation: the EMA copy when the run keeps one."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def trace_count(self) -> int:
        """How many times the training step was traced (1 after the first call: no retracing)."""
        return self._train_step.experimental_get_tracing_count()

    # -- the step ---------------------------------------------------------------------------------------------------
    def _shard(self, x):
        """This replica's slice of a global batch (the whole batch with one replica)."""
        if self.num_replicas == 1:
            return x
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.reshape(x, [self.num_replicas, -1, *x.shape[1:]])[replica]

    def _replica_step_fn(self, reals, zs):
        """n_dis D updates then one G update, on this replica's slice of the global batches."""
        G, D = self.G, self.D
        # Each replica's loss is its local mean over 1/num_replicas of the global batch; the optimizer sums the
        # replicas' gradients, so scaling by 1/num_replicas gives the gradient of the global-batch mean.
        inv = 1.0 / self.num_replicas
        for real, z in zip(reals, zs[:-1]):
            real, z = self._shard(real), self._shard(z)
            fake = G(z, training=True)
            with tf.GradientTape() as tape:
                real_logits = D(real, training=True)
                fake_logits = D(fake, training=True)
                d_loss = self.d_loss_fn(real_logits, fake_logits)
                scaled = self.d_opt.scale_loss(d_loss * inv)  # the identity unless float16 loss scaling is on
            grads = tape.gradient(scaled, D.trainable_variables)
            self.d_opt.apply_gradients(zip(grads, D.trainable_variables))

        z = self._shard(zs[-1])
        with tf.GradientTape() as tape:
            g_logits = D(G(z, training=True), training=True)
            g_loss = self.g_loss_fn(g_logits)
            scaled = self.g_opt.scale_loss(g_loss * inv)
        grads = tape.gradient(scaled, G.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, G.trainable_variables))
        return tf.stack([d_loss, g_loss, tf.reduce_mean(tf.cast(real_logits, tf.float32)),
                         tf.reduce_mean(tf.cast(fake_logits, tf.float32))])

    def _train_step_fn(self):
        """One iteration. Inputs are drawn here, once per iteration, as global batches."""
        c = self.config
        step = self.step.read_value()
        reals = [next(self.iterator) for _ in range(c.n_dis)]
        zs = [sample_noise(c.seed, step * (c.n_dis + 1) + k, c.batch_size, c.z_dim) for k in range(c.n_dis + 1)]
        per_replica = self.strategy.run(self._replica_step, args=(reals, zs))
        metrics = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

        if self.G_ema is not None:
            # Before ema_start the copy follows G exactly (decay 0); afterwards it averages. Non-trainable state
            # (BatchNorm moving statistics, spectral norm's u) is copied: u must stay a unit vector.
            decay = tf.where(step >= c.ema_start, tf.constant(c.ema_decay, tf.float32), 0.0)
            for e, w in zip(self.G_ema.trainable_variables, self.G.trainable_variables):
                e.assign(decay * e + (1.0 - decay) * w)
            for e, w in zip(self.G_ema.non_trainable_variables, self.G.non_trainable_variables):
                e.assign(w)

        # Checked on the device every iteration, read on the host only at logging/saving steps.
        finite = tf.reduce_all(tf.math.is_finite(metrics[:2]))
        first_bad = tf.logical_and(tf.logical_not(finite), self._bad_step < 0)
        self._bad_step.assign(tf.where(first_bad, step + 1, self._bad_step))
        self._bad_losses.assign(tf.where(first_bad, metrics[:2], self._bad_losses))
        self._metric_sums.assign_add(metrics)
        self._metric_count.assign_add(1.0)
        self.step.assign_add(1)  # exactly once per iteration

    def train_step(self):
        """Run one iteration (n_dis D updates + one G update)."""
        self._train_step()

    # -- logging, samples, checkpoints ------------------------------------------------------------------------------
    def _check_finite(self):
        bad = int(self._bad_step.numpy())
        if bad < 0:
            return
        d_loss, g_loss = (float(v) for v in self._bad_losses.numpy())
        latest = self.manager.latest_checkpoint
        kept = (f"the last good checkpoint, {latest} (step {int(latest.rsplit('-', 1)[1])}), is intact and a "
                f"resume restarts from it" if latest else "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {bad} (d_loss={d_loss}, g_loss={g_loss}); training stopped without saving: "
            f"{kept}. Try lower learning rates (lr_d={self.config.lr_d}, lr_g={self.config.lr_g}), "
            f"mixed_precision='none' (now {self.config.mixed_precision!r}), and check the data for NaN/Inf."
        )

    def _weights_finite(self) -> bool:
        models = [self.G, self.D] + ([self.G_ema] if self.G_ema is not None else [])
        return all(bool(tf.reduce_all(tf.math.is_finite(v)).numpy())
                   for m in models for v in m.trainable_variables)

    def scalars(self) -> dict:
        """The current gamma of each attention layer and sigma of each top-level spectrally normalised layer."""
        out = {}
        for tag, model in (("G", self.G), ("D", self.D)):
            for layer in model.layers:
                if isinstance(layer, SelfAttention):
                    out[f"gamma/{tag}/{layer.name}"] = float(layer.gamma.numpy())
            for layer in model.layers:
                if isinstance(layer, SpectralNormalization):
                    out[f"sigma/{tag}/{layer.name}"] = float(layer.compute_sigma().numpy())
        return out

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
        if self.is_chief:
            with open(self.out_dir / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            with self.writer.as_default():
                for key, value in record.items():
                    if key != "step":
                        tb_scalar(key, value, step)
            self.writer.flush()
        return record

    def sample(self, z=None) -> np.ndarray:
        """Images from the sampling generator (EMA when on) for ``z`` (default: the run's fixed noise)."""
        z = self._z_fixed if z is None else tf.convert_to_tensor(z, tf.float32)
        return self._sample(z).numpy()

    def _write_samples(self, step: int):
        from .viz import image_grid, save_grid

        if not self.is_chief:
            return
        images = self.sample()
        path = save_grid(images, self.out_dir / "samples" / f"step_{step:06d}.png")
        with self.writer.as_default():
            tb_image("samples", image_grid(images), step)
        self.writer.flush()
        return path

    def save(self) -> str | None:
        """Write a checkpoint at the current step unless the losses or weights went non-finite."""
        self._check_finite()
        if not self._weights_finite():
            raise NonFiniteLossError(f"non-finite weights at step {int(self.step.numpy())}; not saved. "
                                     f"The last good checkpoint is {self.manager.latest_checkpoint}.")
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
        self.writer = tf.summary.create_file_writer(str(self.out_dir / "tb")) if self.is_chief else None
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
            if self.writer is not None:
                self.writer.flush()
        if self.is_chief and step >= total:
            self.sampling_generator.save(self.out_dir / "generator.keras")
        return self.history


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

    ``ema=True`` gives the EMA weights when the run kept them and G's own weights otherwise. Without a
    checkpoint, falls back to the run's ``generator.keras``.
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


__all__ = ["Trainer", "NonFiniteLossError", "build_strategy", "build_models", "load_generator", "load_config",
           "generate", "sample_noise", "fixed_noise", "Progress"]
