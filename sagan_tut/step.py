"""The training step: one iteration of ``n_dis`` D updates and one G update, the EMA update and the NaN watch.

:class:`TrainingStep` is the part of :class:`sagan_tut.train.Trainer` that runs inside ``tf.function`` (and XLA):
it reads the trainer's models, optimizers, losses, data iterator and bookkeeping variables, and touches the host
only through them. One iteration advances the step counter exactly once (the blog's loop advanced it twice, because
it handed the global step to both ``apply_gradients`` calls).

Under tf.distribute each iteration reads one *global* batch (so the checkpointed iterator is the same whatever the
number of devices) and each replica takes its slice. Each replica's loss is its local mean divided by the number
of replicas, so the all-reduced (summed) gradients are those of the global-batch mean.

Each training-mode call of D (on real images, on fakes, and inside G's update) advances its spectral-norm ``u``
by one power iteration, as PyTorch's ``spectral_norm`` does.
"""
from __future__ import annotations

import tensorflow as tf

from . import ema as ema_lib
from .components import sample_noise


class TrainingStep:
    """Mixin of :class:`~sagan_tut.train.Trainer`: the compiled iteration (``_train_step``/``_replica_step``)."""

    @property
    def trace_count(self) -> int:
        """How many times the training step was traced (1 after the first call: no retracing)."""
        return self._train_step.experimental_get_tracing_count()

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
            # Before ema_start the copy follows G exactly (decay 0); afterwards it averages.
            decay = tf.where(step >= c.ema_start, tf.constant(c.ema_decay, tf.float32), 0.0)
            ema_lib.update_ema(self.G_ema, self.G, decay, self.ema_bn)

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
