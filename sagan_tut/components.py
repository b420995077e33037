"""What a training run is built from: the tf.distribute strategy, G and D under a dtype policy, the Adam
optimizers, and the noise (a pure function of a seed and a counter, so it needs no checkpointed state).

:mod:`sagan_tut.train` assembles these into the :class:`~sagan_tut.train.Trainer`; evaluation and the notebooks
use :func:`build_models` and :func:`sample_noise` on their own.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from .config import ConfigError, TrainConfig
from .models import make_discriminator, make_generator

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


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


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files. Only the chief writes files that others read (checkpoints,
    samples, logs); other workers of a MultiWorkerMirroredStrategy still take part in each save (it is a
    collective) but write to a temp folder."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


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


def make_optimizer(config: TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam with the config's betas (TTUR = a different learning rate for G and D). Under ``float16`` it is
    wrapped in a LossScaleOptimizer: the loss is multiplied by a dynamic scale before the backward pass so small
    float16 gradients do not underflow, and a step whose scaled gradients overflow is skipped."""
    # epsilon 1e-8 as in the official TF1 code and PyTorch (Keras' default is 1e-7).
    opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=config.beta1, beta_2=config.beta2,
                                epsilon=1e-8)
    if config.mixed_precision == "float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def set_optimizer_settings(opt: keras.optimizers.Optimizer, learning_rate: float, beta1: float, beta2: float):
    """Give a built (and possibly restored) Adam new settings. The learning rate is a variable the checkpoint
    restores, so it is assigned; the betas are plain attributes read when the step is traced, so this must run
    before the first training step of a Trainer."""
    inner = getattr(opt, "inner_optimizer", opt)  # a LossScaleOptimizer wraps the Adam
    inner.learning_rate.assign(learning_rate)
    inner.beta_1, inner.beta_2 = float(beta1), float(beta2)


def load_training_data(config: TrainConfig):
    """The config's training set: endless shuffled batches of ``batch_size`` images in [-1, 1]."""
    from .data import load_dataset

    c = config
    return load_dataset(c.dataset, resolution=c.resolution, batch_size=c.batch_size, split="train",
                        seed=c.seed, shuffle=True, root=c.data_root, source=c.data_source, repeat=True)


def check_dataset(dataset, config: TrainConfig):
    """``dataset`` if it yields ``(batch_size, R, R, 3)`` batches for this config, else a ValueError saying how."""
    spec = dataset.element_spec
    c = config
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank != 4 or tuple(shape[1:]) != (c.resolution, c.resolution, 3):
        raise ValueError(f"the dataset must yield image batches of shape (batch_size, {c.resolution}, "
                         f"{c.resolution}, 3); its elements are {spec}.")
    if shape[0] is not None and shape[0] != c.batch_size:
        raise ValueError(f"the dataset yields batches of {shape[0]} but batch_size={c.batch_size}: batch it "
                         "with the config's batch_size (drop_remainder=True).")
    return dataset


def sample_noise(seed: int, counter, batch: int, z_dim: int):
    """z ~ N(0, I) as a pure function of (seed, counter): nothing to checkpoint, identical on every replica."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(counter, tf.int64)])
    return tf.random.stateless_normal((batch, z_dim), seed=key)


def fixed_noise(config: TrainConfig):
    """The noise batch behind every sample grid of a run (a counter no training step uses)."""
    return sample_noise(config.seed, -1, config.n_samples, config.z_dim)


__all__ = ["POLICIES", "build_strategy", "is_chief", "build_models", "make_optimizer", "set_optimizer_settings",
           "load_training_data", "check_dataset", "sample_noise", "fixed_noise"]
