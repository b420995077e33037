"""The exponential moving average of G's weights, and the BatchNorm statistics that go with it.

    update_ema(G_ema, G, decay, bn="standing")        # every iteration, inside the compiled step
    standing_statistics(G_ema, noise_batches)          # before sampling, saving and evaluating

The EMA generator's weights average G over ~1/(1-decay) steps (Yazici et al., 2019; BigGAN). Its BatchNorm
layers need moving mean/variance that describe *its own* activations, and there are three ways to get them
(``bn=``):

* ``"copy"``: copy G's moving statistics each step. Simple, but they describe G's weights over the last ~10
  steps (BatchNorm momentum 0.9), not the average of ~1/(1-decay) steps that the EMA weights are.
* ``"averaged"``: average the buffers too, with the weights' decay (e <- decay e + (1 - decay) g). The averaged
  statistics are those of many recent G's, still not of the averaged G.
* ``"standing"``: BigGAN's "standing statistics" (Brock et al., 2019, Sec. 4 and appendix): run the EMA generator
  on k batches of noise with its BatchNorm layers in training mode and set each layer's statistics to the plain
  average over the k batches of the batch mean and (biased) variance, which is what BatchNorm normalised with in
  training. Everything else runs as when sampling (spectral norm's ``u`` does not move) and only the BatchNorm
  statistics change. The noise is a fixed function of the run's seed, so the result is deterministic.

Measured on one ``quick``-preset run (seed 0, XLA, EMA decay 0.99 from step 100; trained with ``"averaged"``, which
keeps G's own statistics in G, so all three are compared on the same EMA weights; offline FID of 1,000 generated
vs 1,000 val faces, lower is better):

    step   copy    averaged   standing   (G itself: 2.30, 2.28, 2.00)
    600    1.810   1.711      1.737
    700    1.804   1.627      1.654
    800    1.805   1.530      1.548

Both of the EMA generator's own kinds of statistics beat copying G's (by 0.07-0.27), at every checkpoint;
averaging the buffers was 0.02-0.03 better than standing statistics at all three, a small but consistent margin,
and it costs nothing at sampling time, so it is the default. (The run was cut at 800 of a planned 1,200 steps to
stay within 15 minutes on a shared 2-core CPU.)

Spectral norm's ``u`` is always copied from G: it must stay a unit vector, which an average of unit vectors is not.
"""
from __future__ import annotations

import keras
import tensorflow as tf

EMA_BN_MODES = ("copy", "averaged", "standing")
DEFAULT_EMA_BN = "averaged"  # measured best, see the module docstring
STANDING_BATCHES = 16  # k noise batches of the run's batch size (BigGAN used 16 to 256 batches)

# Offline FID (1,000 vs 1,000) of one quick-preset run's EMA generator at steps 600, 700, 800 (module docstring).
MEASURED = {"copy": (1.810, 1.804, 1.805), "averaged": (1.711, 1.627, 1.530), "standing": (1.737, 1.654, 1.548)}


def batchnorm_layers(model: keras.Model) -> list:
    """Every BatchNormalization layer of ``model`` (nested ones included), in a fixed order."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _bn_variable_ids(model) -> set:
    return {id(v) for layer in batchnorm_layers(model) for v in (layer.moving_mean, layer.moving_variance)}


def check_mode(bn: str) -> str:
    if bn not in EMA_BN_MODES:
        raise ValueError(f"ema_bn must be one of {', '.join(map(repr, EMA_BN_MODES))}; got {bn!r}.")
    return bn


def update_ema(ema: keras.Model, model: keras.Model, decay, bn: str = DEFAULT_EMA_BN):
    """One EMA update of ``ema`` towards ``model`` (graph-safe: runs inside the compiled training step).

    ``decay`` may be a tensor (0 before ``ema_start``: the copy then follows G exactly, statistics included)."""
    check_mode(bn)
    decay = tf.cast(decay, tf.float32)
    for e, w in zip(ema.trainable_variables, model.trainable_variables):
        e.assign(decay * e + (1.0 - decay) * w)
    bn_ids = _bn_variable_ids(ema)
    for e, w in zip(ema.non_trainable_variables, model.non_trainable_variables):
        if id(e) not in bn_ids:
            e.assign(w)  # spectral norm's u
        elif bn == "copy":
            e.assign(w)
        elif bn == "averaged":
            e.assign(decay * e + (1.0 - decay) * w)
        # "standing": the EMA generator's own statistics are recomputed when they are needed


def _batch_statistics_call(call):
    """A BatchNorm ``call`` that normalises with the batch's statistics whatever mode the model runs in."""
    def batch_stats_call(inputs, training=None, mask=None):
        return call(inputs, training=True, mask=mask)
    return batch_stats_call


def standing_statistics(model: keras.Model, noise_batches) -> int:
    """Set every BatchNorm layer's moving mean/variance to the average over ``noise_batches`` of its batch mean
    and variance, with the rest of ``model`` in inference mode. Returns the number of batches used."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    sums = [[tf.zeros_like(l.moving_mean), tf.zeros_like(l.moving_variance)] for l in layers]
    momenta = [l.momentum for l in layers]
    count = 0
    try:
        for layer in layers:
            # momentum 0: after each call the moving statistics *are* that batch's, which we add up below.
            layer.momentum = 0.0
            layer.call = _batch_statistics_call(type(layer).call.__get__(layer))
        for z in noise_batches:
            model(z, training=False)
            for s, layer in zip(sums, layers):
                s[0] += tf.convert_to_tensor(layer.moving_mean)
                s[1] += tf.convert_to_tensor(layer.moving_variance)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
            layer.__dict__.pop("call", None)
    if count == 0:
        raise ValueError("standing_statistics needs at least one noise batch.")
    for (mean, var), layer in zip(sums, layers):
        layer.moving_mean.assign(mean / count)
        layer.moving_variance.assign(var / count)
    return count


def standing_noise(seed: int, batches: int, batch_size: int, z_dim: int):
    """The noise batches of :func:`standing_statistics` for a run: counters -2, -3, ... (training uses counters
    >= 0 and the sample grids -1), so they never coincide with a training batch."""
    from .components import sample_noise

    return [sample_noise(seed, -2 - k, batch_size, z_dim) for k in range(batches)]


__all__ = ["EMA_BN_MODES", "DEFAULT_EMA_BN", "STANDING_BATCHES", "MEASURED", "batchnorm_layers", "update_ema",
           "standing_statistics", "standing_noise", "check_mode"]
