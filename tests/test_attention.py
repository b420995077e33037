"""SelfAttention against an independent numpy computation of the paper's equations."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from sagan_tut.attention import SelfAttention


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _kernel_1x1(conv_or_sn):
    """The 1x1 kernel actually used, as a (C_in, C_out) matrix (W / sigma when spectrally normalised)."""
    if hasattr(conv_or_sn, "normalized_kernel"):
        w, _ = conv_or_sn.normalized_kernel(training=False)
        return np.asarray(w)[0, 0]
    return conv_or_sn.kernel.numpy()[0, 0]


def _numpy_attention(layer, x):
    """o_j = sum_i softmax_i(f(x_i)^T g(x_j)) h(x_i); y = x + gamma * o (with pooling/v for the biggan variant)."""
    b, hgt, wid, c = x.shape
    f = x @ _kernel_1x1(layer.f)  # keys
    g = x @ _kernel_1x1(layer.g)  # queries
    h = x @ _kernel_1x1(layer.h)  # values
    if layer.variant == "biggan":
        pool = lambda t: t.reshape(b, hgt // 2, 2, wid // 2, 2, -1).max(axis=(2, 4))  # noqa: E731
        f, h = pool(f), pool(h)
    q = g.reshape(b, hgt * wid, -1).astype(np.float64)
    k = f.reshape(b, -1, f.shape[-1]).astype(np.float64)
    v = h.reshape(b, -1, h.shape[-1]).astype(np.float64)
    s = q @ k.transpose(0, 2, 1)
    beta = np.exp(s - s.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    o = (beta @ v).reshape(b, hgt, wid, -1)
    if layer.variant != "paper":
        o = o @ _kernel_1x1(layer.v)
    return x + float(layer.gamma.numpy()) * o, beta


@pytest.mark.parametrize("variant", ["paper", "icml", "biggan"])
def test_gamma_zero_is_identity(variant):
    layer = SelfAttention(variant=variant)
    x = _x((2, 8, 8, 16))
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)
    assert float(layer.gamma.numpy()) == 0.0


@pytest.mark.parametrize("variant", ["paper", "icml", "biggan"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_matches_numpy_equations(variant, spectral_norm):
    keras.utils.set_random_seed(0)
    layer = SelfAttention(variant=variant, spectral_norm=spectral_norm, return_attention=True)
    x = _x((2, 6, 4, 16))  # non-square map
    layer(x)
    layer.gamma.assign(0.7)
    y, beta = layer(x, training=False)
    y_np, beta_np = _numpy_attention(layer, x)
    np.testing.assert_allclose(beta.numpy(), beta_np, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(y.numpy(), y_np, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant,keys", [("paper", 48), ("biggan", 12)])
def test_attention_map_shape_and_rows_sum_to_one(variant, keys):
    layer = SelfAttention(variant=variant, return_attention=True)
    y, beta = layer(_x((1, 8, 6, 16)))  # batch size 1, non-square
    assert y.shape == (1, 8, 6, 16)
    assert beta.shape == (1, 48, keys)
    np.testing.assert_allclose(beta.numpy().sum(axis=-1), 1.0, rtol=1e-5)
    assert (beta.numpy() >= 0).all()


def test_channel_counts_follow_the_paper_and_biggan():
    paper = SelfAttention(variant="paper")
    paper.build((None, 8, 8, 64))
    assert paper.f.layer.filters == 8 and paper.g.layer.filters == 8 and paper.h.layer.filters == 64
    assert not hasattr(paper, "v")
    icml = SelfAttention(variant="icml")
    icml.build((None, 8, 8, 64))
    assert icml.h.layer.filters == 8 and icml.v.layer.filters == 64
    big = SelfAttention(variant="biggan")
    big.build((None, 8, 8, 64))
    assert big.f.layer.filters == 8 and big.h.layer.filters == 32 and big.v.layer.filters == 64


def test_gamma_receives_a_gradient():
    layer = SelfAttention()
    x = tf.constant(_x((2, 4, 4, 16)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x, training=True)))
    grads = tape.gradient(loss, layer.trainable_weights)
    by_name = {w.path: g for w, g in zip(layer.trainable_weights, grads)}
    gamma_grad = [g for p, g in by_name.items() if p.endswith("gamma")][0]
    assert gamma_grad is not None and abs(float(gamma_grad)) > 0
    # with gamma = 0 the f, g, h kernels get no gradient yet: the block starts as the identity
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for p, g in by_name.items() if not p.endswith("gamma"))


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 16))
    outputs = SelfAttention(variant="biggan", name="attention_8")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("attention_8").gamma.assign(0.5)
    x = _x((2, 8, 8, 16))
    model(x, training=True)  # advance the SN u vectors so they differ from initialisation
    model.save(tmp_path / "a.keras")
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
    cfg = loaded.get_layer("attention_8").get_config()
    assert cfg["variant"] == "biggan" and cfg["key_divisor"] == 8 and cfg["spectral_norm"] is True


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        SelfAttention(variant="local")
    with pytest.raises(ValueError, match="H and W must be even"):
        SelfAttention(variant="biggan")(_x((1, 5, 4, 16)))
    with pytest.raises(ValueError, match=r"\(batch, H, W, C\)"):
        SelfAttention()(_x((2, 16)))


def test_mixed_precision_scores_and_softmax_in_float32():
    keras.utils.set_random_seed(2)
    x = _x((1, 4, 4, 16))
    ref = SelfAttention(return_attention=True)
    ref(x)
    ref.gamma.assign(0.5)
    half = SelfAttention(return_attention=True, dtype="mixed_float16")
    half(x)
    half.set_weights(ref.get_weights())
    y16, beta16 = half(x)
    y32, beta32 = ref(x)
    assert y16.dtype == "float16" and beta16.dtype == "float32"
    np.testing.assert_allclose(beta16.numpy(), beta32.numpy(), atol=5e-3)
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32.numpy(), rtol=2e-2, atol=2e-2)
