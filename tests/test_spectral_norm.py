"""SpectralNormalization against independent numpy computations (SVD, closed-form gradients)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sagan_tut.spectral_norm import SpectralNormalization, kernel_to_matrix


def _numpy_matrix(kernel: np.ndarray, layer) -> np.ndarray:
    """The layer's linear map as [fan_in, out], written independently of the package with numpy."""
    if isinstance(layer, keras.layers.Conv2DTranspose):  # Keras layout (kh, kw, out, in)
        kernel = np.transpose(kernel, (0, 1, 3, 2))
    return kernel.reshape(-1, kernel.shape[-1])


def _weight(layer):
    return (layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel).numpy()


CASES = [
    ("dense", lambda: keras.layers.Dense(12), (3, 20)),
    ("conv2d", lambda: keras.layers.Conv2D(16, 3, padding="same"), (2, 8, 8, 5)),
    ("conv2d_transpose", lambda: keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same"), (2, 5, 5, 10)),
    ("embedding", lambda: keras.layers.Embedding(30, 8), (4,)),
]


def _inputs(shape, kind):
    rng = np.random.default_rng(0)
    if kind == "embedding":
        return rng.integers(0, 30, size=shape).astype("int32")
    return rng.standard_normal(shape).astype("float32")


@pytest.mark.parametrize("kind,make,shape", CASES, ids=[c[0] for c in CASES])
def test_sigma_converges_to_largest_singular_value(kind, make, shape):
    keras.utils.set_random_seed(1)
    layer = make()
    sn = SpectralNormalization(layer)  # one power iteration per call: u must persist between calls
    x = _inputs(shape, kind)
    for _ in range(150):
        sn(x, training=True)
    w = _numpy_matrix(_weight(layer), layer)
    sigma_svd = np.linalg.svd(w, compute_uv=False)[0]
    assert float(sn.compute_sigma()) == pytest.approx(sigma_svd, rel=1e-3)
    w_sn, sigma = sn.normalized_kernel(training=False)
    assert float(sigma) == pytest.approx(sigma_svd, rel=1e-3)
    # the kernel actually used has spectral norm 1 (within 1%)
    used = _numpy_matrix(np.asarray(w_sn), layer)
    assert np.linalg.svd(used, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-2)


def test_conv_transpose_matrix_keeps_output_channels_apart():
    """Keras stores Conv2DTranspose kernels as (kh, kw, out, in): the output axis is the one before last."""
    layer = keras.layers.Conv2DTranspose(6, 4, strides=2)
    layer.build((None, 5, 5, 10))
    m = kernel_to_matrix(layer.kernel, layer)
    assert tuple(m.shape) == (4 * 4 * 10, 6)
    np.testing.assert_allclose(np.asarray(m), _numpy_matrix(layer.kernel.numpy(), layer))
    # the "last axis apart" reading (keras.layers.SpectralNormalization's) is a different matrix with another sigma
    naive = layer.kernel.numpy().reshape(-1, 10)
    assert not np.isclose(np.linalg.svd(naive, compute_uv=False)[0], np.linalg.svd(np.asarray(m), compute_uv=False)[0])


def test_forward_matches_wrapped_layer_with_normalized_kernel():
    """The wrapper's forward pass is the wrapped layer's own computation with W / sigma (here checked via Keras)."""
    keras.utils.set_random_seed(2)
    for make, shape in [(lambda: keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"), (2, 9, 7, 3)),
                        (lambda: keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same"), (2, 5, 6, 3)),
                        (lambda: keras.layers.Dense(5, activation="tanh"), (2, 3, 6))]:
        layer = make()
        sn = SpectralNormalization(layer)
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        y = sn(x, training=False).numpy()
        w_sn, _ = sn.normalized_kernel(training=False)
        raw = layer.kernel.numpy()
        layer.kernel.assign(np.asarray(w_sn))
        expected = layer(x).numpy()
        layer.kernel.assign(raw)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_u_updates_only_in_training():
    sn = SpectralNormalization(keras.layers.Dense(4))
    x = np.ones((2, 3), "float32")
    sn(x, training=False)
    u0 = sn.u.numpy().copy()
    sn(x, training=False)
    sn(x)  # training defaults to off outside fit()
    np.testing.assert_array_equal(sn.u.numpy(), u0)
    sn(x, training=True)
    assert not np.allclose(sn.u.numpy(), u0)
    assert np.linalg.norm(sn.u.numpy()) == pytest.approx(1.0, rel=1e-5)


def test_u_is_a_non_trainable_weight():
    sn = SpectralNormalization(keras.layers.Conv2D(3, 3))
    sn.build((None, 8, 8, 2))
    assert any(w is sn.u for w in sn.non_trainable_weights)
    assert all(w is not sn.u for w in sn.trainable_weights)
    assert sn.u.dtype == "float32"


def test_gradient_includes_sigma_but_not_power_iteration():
    """Miyato et al.: d/dW of L(W / sigma) with sigma = v^T W u and u, v held constant (closed form below)."""
    keras.utils.set_random_seed(3)
    layer = keras.layers.Dense(5, use_bias=False)
    sn = SpectralNormalization(layer)
    x = np.random.default_rng(1).standard_normal((4, 7)).astype("float32")
    sn.build(x.shape)
    u_old = sn.u.numpy().astype(np.float64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sn(x, training=True))
    grad = tape.gradient(loss, layer.kernel).numpy()

    w = layer.kernel.numpy().astype(np.float64)
    v = w @ u_old
    v /= np.linalg.norm(v)
    u = w.T @ v
    u /= np.linalg.norm(u)
    sigma = v @ w @ u
    s = x.astype(np.float64).sum(axis=0)  # L = s^T W 1 / sigma
    ones = np.ones(w.shape[1])
    expected = np.outer(s, ones) / sigma - (s @ w @ ones) / sigma**2 * np.outer(v, u)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    # treating sigma as a constant would give a different gradient: the test can tell them apart
    assert not np.allclose(grad, np.outer(s, ones) / sigma, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(sn.u.numpy(), u, rtol=1e-5, atol=1e-6)


def test_u_saved_and_restored_by_tf_checkpoint(tmp_path):
    x = np.ones((1, 6, 6, 2), "float32")
    a = SpectralNormalization(keras.layers.Conv2D(3, 3))
    for _ in range(3):
        a(x, training=True)
    path = tf.train.Checkpoint(layer=a).save(str(tmp_path / "ckpt"))
    b = SpectralNormalization(keras.layers.Conv2D(3, 3))
    b(x)
    assert not np.allclose(b.u.numpy(), a.u.numpy())
    tf.train.Checkpoint(layer=b).restore(path).assert_consumed()
    np.testing.assert_array_equal(b.u.numpy(), a.u.numpy())
    np.testing.assert_allclose(b(x).numpy(), a(x).numpy(), rtol=1e-6)


def test_keras_file_round_trip_keeps_u_and_outputs(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3))
    h = SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same"))(inputs)
    h = SpectralNormalization(keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same"))(h)
    out = SpectralNormalization(keras.layers.Dense(1))(keras.layers.Flatten()(h))
    model = keras.Model(inputs, out)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    for _ in range(3):
        model(x, training=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-6)
    us = lambda m: [w.numpy() for w in m.weights if w.name == "u"]  # noqa: E731
    assert len(us(model)) == 3
    for a, b in zip(us(model), us(loaded)):
        np.testing.assert_array_equal(a, b)


def test_get_config_round_trip():
    sn = SpectralNormalization(keras.layers.Dense(3, name="d"), power_iterations=2)
    clone = SpectralNormalization.from_config(sn.get_config())
    assert clone.power_iterations == 2
    assert isinstance(clone.layer, keras.layers.Dense) and clone.layer.units == 3


def test_mixed_precision_keeps_sigma_in_float32():
    keras.utils.set_random_seed(5)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype("float32")
    ref = SpectralNormalization(keras.layers.Conv2D(4, 3))
    y32 = ref(x, training=False).numpy()
    sn = SpectralNormalization(keras.layers.Conv2D(4, 3), dtype="mixed_float16")
    sn.build(x.shape)
    sn.layer.kernel.assign(ref.layer.kernel.numpy())
    sn.layer.bias.assign(ref.layer.bias.numpy())
    sn.u.assign(ref.u.numpy())
    y16 = sn(x, training=False)
    assert y16.dtype == "float16"
    assert sn.u.dtype == "float32" and sn.layer.kernel.dtype == "float32"
    # float16 output rounding only (sigma itself was computed in float32 from the float32 kernel)
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=2e-2, atol=2e-2)


def test_rejects_unsupported_layers_with_a_clear_error():
    with pytest.raises(TypeError, match="SpectralNormalization supports"):
        SpectralNormalization(keras.layers.BatchNormalization())
    with pytest.raises(ValueError, match="power_iterations"):
        SpectralNormalization(keras.layers.Dense(2), power_iterations=0)


def test_sigma_is_an_estimate_before_the_first_training_call():
    """u starts as a unit vector, so sigma = ||W u|| <= sigma_max already (power iteration never overshoots)."""
    for seed in range(5):
        keras.utils.set_random_seed(seed)
        sn = SpectralNormalization(keras.layers.Conv2D(64, 3))
        sn.build((None, 8, 8, 32))
        assert np.linalg.norm(sn.u.numpy()) == pytest.approx(1.0, rel=1e-6)
        sigma_svd = np.linalg.svd(_numpy_matrix(sn.layer.kernel.numpy(), sn.layer), compute_uv=False)[0]
        assert 0.0 < float(sn.compute_sigma()) <= sigma_svd * (1 + 1e-5)


def test_zero_kernel_gives_zeros_not_nan():
    sn = SpectralNormalization(keras.layers.Dense(3, kernel_initializer="zeros"))
    y = sn(np.ones((2, 4), "float32"), training=True).numpy()
    assert np.isfinite(y).all() and (y == 0).all()


def test_unsupported_configurations_are_named():
    with pytest.raises(ValueError, match="causal"):
        SpectralNormalization(keras.layers.Conv1D(2, 3, padding="causal"))
    emb = SpectralNormalization(keras.layers.Embedding(10, 4, mask_zero=True))
    mask = emb.compute_mask(np.array([[0, 3, 0]]))
    np.testing.assert_array_equal(np.asarray(mask), [[False, True, False]])
