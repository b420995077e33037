"""The EMA generator's BatchNorm statistics are its own (standing statistics), or the averaged/copied buffers.

The reference is computed independently: the blog generator is a chain of layers, so each BatchNorm layer's input
can be rebuilt layer by layer, with every BatchNorm normalising by the NumPy mean/variance of its own batch (what
training mode does) and everything else in inference mode (what sampling does).
"""
import numpy as np
import pytest
import tensorflow as tf
import keras

from sagan_tut import ema
from sagan_tut.config import get_config
from sagan_tut.train import Trainer, load_generator

TINY = dict(width=0.125, batch_size=8, jit_compile=False, log_every=100, sample_every=100, ckpt_every=100)


def _independent_statistics(G, noise_batches):
    """Average over the batches of each BatchNorm input's per-channel mean and (biased) variance, in float64."""
    sums = {}
    for z in noise_batches:
        x = z
        for layer in G.layers[1:]:  # [0] is the input
            if isinstance(layer, keras.layers.BatchNormalization):
                a = np.asarray(x, np.float64)
                mean, var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))
                s = sums.setdefault(layer.name, [0.0, 0.0])
                s[0], s[1] = s[0] + mean, s[1] + var
                x = (a - mean) / np.sqrt(var + layer.epsilon)
                if layer.scale:
                    x = x * np.asarray(layer.gamma)
                if layer.center:
                    x = x + np.asarray(layer.beta)
                x = tf.constant(x, tf.float32)
            else:
                x = layer(x, training=False)
    k = len(noise_batches)
    return {name: (m / k, v / k) for name, (m, v) in sums.items()}


def _bn_state(model):
    return {l.name: (np.array(l.moving_mean), np.array(l.moving_variance)) for l in ema.batchnorm_layers(model)}


def _other_state(model):
    bn = {id(v) for l in ema.batchnorm_layers(model) for v in (l.moving_mean, l.moving_variance)}
    return [np.array(v) for v in model.non_trainable_variables if id(v) not in bn]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """6 iterations, EMA from step 1 with decay 0.5 (so G_ema's weights are not G's), saved at the end."""
    out = tmp_path_factory.mktemp("ema") / "r"
    cfg = get_config("quick", **TINY, steps=6, ema=True, ema_start=1, ema_decay=0.5)
    trainer = Trainer(cfg, out, verbose=False, ema_bn="standing")
    trainer.fit()
    return dict(trainer=trainer, cfg=cfg, out=out)


def test_standing_statistics_are_the_ema_generators_own(run):
    t, cfg = run["trainer"], run["cfg"]
    assert t.ema_bn == "standing"
    noise = ema.standing_noise(cfg.seed, ema.STANDING_BATCHES, cfg.batch_size, cfg.z_dim)
    want = _independent_statistics(t.G_ema, noise)
    got, of_G = _bn_state(t.G_ema), _bn_state(t.G)
    assert set(got) == set(want) == {"up8_bn", "up16_bn", "up32_bn"}
    for name, (mean, var) in want.items():
        np.testing.assert_allclose(got[name][0], mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[name][1], var, rtol=1e-4, atol=1e-6)
        # ... and they are not G's (momentum-smoothed statistics of G's own weights)
        assert np.abs(got[name][1] - of_G[name][1]).max() > 1e-3 * np.abs(var).max()
    # Spectral norm's u is still G's: only BatchNorm statistics are the EMA generator's own.
    for e, g in zip(_other_state(t.G_ema), _other_state(t.G)):
        np.testing.assert_array_equal(e, g)


def test_the_checkpoint_and_generator_keras_carry_the_standing_statistics(run):
    t, out = run["trainer"], run["out"]
    for model in (load_generator(out), keras.models.load_model(out / "generator.keras")):
        for name, (mean, var) in _bn_state(model).items():
            np.testing.assert_array_equal(mean, _bn_state(t.G_ema)[name][0])
            np.testing.assert_array_equal(var, _bn_state(t.G_ema)[name][1])


def test_standing_statistics_touch_nothing_else(run):
    t, cfg = run["trainer"], run["cfg"]
    G = t.G_ema
    trainable = [np.array(v) for v in G.trainable_variables]
    other, bn_before = _other_state(G), _bn_state(G)
    layers = ema.batchnorm_layers(G)
    momenta = [l.momentum for l in layers]
    noise = ema.standing_noise(cfg.seed + 1, 2, cfg.batch_size, cfg.z_dim)  # other noise: other statistics
    assert ema.standing_statistics(G, noise) == 2
    assert [l.momentum for l in layers] == momenta and all("call" not in l.__dict__ for l in layers)
    for a, b in zip(_other_state(G), other):
        np.testing.assert_array_equal(a, b)  # u did not move
    for a, b in zip(G.trainable_variables, trainable):
        np.testing.assert_array_equal(np.array(a), b)
    assert not np.array_equal(_bn_state(G)["up8_bn"][0], bn_before["up8_bn"][0])  # only the statistics moved
    # In inference mode again afterwards: the output does not depend on the batch.
    z = noise[0]
    np.testing.assert_allclose(G(z[:2], training=False), G(z, training=False)[:2], atol=1e-5)
    t._ema_stats_step = None
    t.refresh_ema_statistics()  # back to the run's own statistics for the other tests


def test_standing_statistics_are_recomputed_when_the_weights_change(run, tmp_path):
    cfg = run["cfg"].replace(steps=8)
    t = Trainer(cfg, tmp_path / "r", verbose=False, ema_bn="standing")
    t.train_step()
    t.sample()
    first = _bn_state(t.G_ema)
    t.train_step()
    for name, (mean, _) in _bn_state(t.G_ema).items():  # untouched by the training step itself ...
        np.testing.assert_array_equal(mean, first[name][0])
    t.sample()  # ... and recomputed for the new weights before sampling
    assert any(not np.array_equal(_bn_state(t.G_ema)[n][0], first[n][0]) for n in first)


@pytest.mark.parametrize("mode", ["averaged", "copy"])
def test_averaged_and_copied_buffers(mode, tmp_path):
    """"averaged": e <- d e + (1 - d) g for the BatchNorm buffers too (closed form in NumPy); "copy": G's."""
    cfg = get_config("quick", **TINY, steps=4, ema=True, ema_start=1, ema_decay=0.5)
    t = Trainer(cfg, tmp_path / mode, verbose=False, **({} if mode == "averaged" else dict(ema_bn=mode)))
    assert t.ema_bn == mode  # "averaged" is the default (measured best, sagan_tut/ema.py)
    expected = _bn_state(t.G)
    for step in range(3):
        t.train_step()
        decay = 0.0 if step < 1 else 0.5
        g = _bn_state(t.G)
        if mode == "averaged":
            expected = {n: tuple(decay * e + (1 - decay) * w for e, w in zip(expected[n], g[n])) for n in g}
        else:
            expected = g
        for name, (mean, var) in _bn_state(t.G_ema).items():
            np.testing.assert_allclose(mean, expected[name][0], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(var, expected[name][1], rtol=1e-5, atol=1e-7)
    if mode == "averaged":  # after averaging started the buffers are not simply G's
        assert any(np.abs(_bn_state(t.G_ema)[n][0] - g[n][0]).max() > 1e-7 for n in g)
    with pytest.raises(ValueError, match="ema_bn must be one of 'copy', 'averaged', 'standing'"):
        Trainer(cfg, tmp_path / "bad", verbose=False, ema_bn="batch")
