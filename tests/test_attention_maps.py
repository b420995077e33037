"""sagan_tut.attention_maps against an independent numpy computation of softmax(f(x)^T g(x)) from the weights."""
import keras
import numpy as np
import pytest

from sagan_tut import attention_maps as am
from sagan_tut.attention import SelfAttention
from sagan_tut.models import make_generator


def _sn_kernel(wrapper):
    """W / sigma in numpy, from the raw kernel and the stored u (sigma = ||W u|| for a unit u), as a 1x1 matrix."""
    w = wrapper.layer.kernel.numpy()
    u = wrapper.u.numpy()
    mat = w.reshape(-1, w.shape[-1])
    sigma = max(np.linalg.norm(mat @ u), 1e-12)
    return (w / sigma)[0, 0].astype(np.float64)


def _numpy_beta(layer, x):
    """softmax over keys i of f(x_i)^T g(x_j), with 2x2 max-pooled keys for the biggan variant."""
    x = np.asarray(x, np.float64)
    b, h, w, _ = x.shape
    f, g = x @ _sn_kernel(layer.f), x @ _sn_kernel(layer.g)
    if layer.variant == "biggan":
        f = f.reshape(b, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
    s = g.reshape(b, h * w, -1) @ f.reshape(b, -1, f.shape[-1]).transpose(0, 2, 1)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _toy_generator(variant, seed):
    """z -> dense -> 16x16x16 features (large, so the softmax is sharp) -> SelfAttention -> 2x upsampling -> RGB."""
    keras.utils.set_random_seed(seed)
    z = keras.Input((16,), name="z")
    x = keras.layers.Dense(16 * 16 * 16, kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))(z)
    x = keras.layers.Reshape((16, 16, 16))(x)
    x = SelfAttention(variant=variant, spectral_norm=True, name="attention_16")(x)
    x = keras.layers.UpSampling2D(2)(x)
    images = keras.layers.Conv2D(3, 1, activation="tanh")(x)
    G = keras.Model(z, images, name=f"toy_{variant}")
    G.get_layer("attention_16").gamma.assign(0.8)  # a used layer: y differs from x
    return G


@pytest.fixture(scope="module")
def generators():
    return {variant: _toy_generator(variant, seed) for seed, variant in enumerate(("paper", "biggan"))}


def test_course_generator_cells_and_shapes():
    """On a generator of sagan_tut.models: the layer is found, queries land in the right cells, maps sum to 1."""
    keras.utils.set_random_seed(0)
    G = make_generator("blog", resolution=32, z_dim=16, width=0.125, attention_res=16)
    out = am.query_maps(G, _z(2), ["left eye", (31, 31)])
    assert out["hw"] == out["key_hw"] == (16, 16)
    assert out["cells"] == [(int(0.46 * 32) // 2) * 16 + int(0.36 * 32) // 2, 255]
    assert out["maps"].shape == (2, 2, 32, 32) and out["key_maps"].shape == (2, 2, 16, 16)
    np.testing.assert_allclose(out["maps"].sum((-2, -1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["images"], np.asarray(G(_z(2), training=False)), atol=1e-6)


def _z(n, seed=0, dim=16):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("variant", ["paper", "biggan"])
def test_maps_match_numpy_softmax(generators, variant):
    G = generators[variant]
    probe = am.AttentionProbe(G)
    z = _z(3)
    queries = ["left eye", "mouth", (0, 31), (31, 0)]
    out = am.query_maps(G, z, queries)
    x = keras.Model(G.inputs[0], probe.layer.input)(z, training=False)
    beta = _numpy_beta(probe.layer, x)
    hk, wk = (8, 8) if variant == "biggan" else (16, 16)
    assert out["key_hw"] == (hk, wk) and out["hw"] == (16, 16)
    # Independent index arithmetic: image pixel (r, c) of 32 lies in feature cell (r // 2, c // 2) of 16.
    cells = [(int(0.46 * 32) // 2) * 16 + int(0.36 * 32) // 2, (int(0.74 * 32) // 2) * 16 + 8, 15, 15 * 16]
    assert out["cells"] == cells
    expected = beta[:, cells].reshape(3, 4, hk, wk)
    np.testing.assert_allclose(out["key_maps"], expected, rtol=1e-4, atol=1e-7)
    assert expected.max() > 20 / (hk * wk)  # far from uniform, so a wrong row would be caught
    # In image coordinates: each key cell's mass spread evenly over the pixels it covers.
    f = 32 // hk
    img = np.repeat(np.repeat(expected, f, axis=-2), f, axis=-1) / f ** 2
    np.testing.assert_allclose(out["maps"], img, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(out["maps"].sum((-2, -1)), 1.0, atol=1e-5)
    assert out["maps"].shape == (3, 4, 32, 32) and out["images"].shape == (3, 32, 32, 3)
    np.testing.assert_allclose(out["images"], np.asarray(G(z, training=False)), atol=1e-6)


def test_twin_reproduces_the_layers_output(generators):
    """The twin that returns beta computes exactly the layer's output: it is the layer's own computation."""
    G = generators["paper"]
    probe = am.AttentionProbe(G)
    z = _z(2, seed=1)
    x, y = keras.Model(G.inputs[0], [probe.layer.input, probe.layer.output])(z, training=False)
    y_twin, _ = probe.twin(x, training=False)
    np.testing.assert_allclose(np.asarray(y_twin), np.asarray(y), atol=1e-6)
    assert np.abs(np.asarray(y) - np.asarray(x)).max() > 1e-3  # gamma != 0: the attention term is in y


def test_mass_ratio_uniform_and_planted():
    R = 32
    uniform = np.full((2, R, R), 1.0 / R ** 2)
    for name in am.REGIONS:
        np.testing.assert_allclose(am.mass_ratio(uniform, am.region_mask(name, R)), 1.0)
    # Planted: all the mass on 2x2 pixels inside a 4x4 square mask -> 1 / (16 / 1024) = 64.
    mask = np.zeros((R, R), bool)
    mask[4:8, 10:14] = True
    planted = np.zeros((R, R))
    planted[5:7, 11:13] = 0.25
    assert am.mass_ratio(planted, mask) == pytest.approx(64.0)
    # Half the mass spread over the mask, half outside it -> 0.5 / (16 / 1024) = 32.
    half = np.where(mask, 0.5 / 16, 0.5 / (R * R - 16))
    assert am.mass_ratio(half, mask) == pytest.approx(32.0)


def test_eye_regions_by_hand():
    # At R = 64 the right eye's centre is (0.46, 0.64) of the side, radius 0.08 = 5.12 px: pixel centres within it.
    m = am.region_mask("right eye", 64)
    yy, xx = np.mgrid[0:64, 0:64]
    d2 = ((yy + 0.5) / 64 - 0.46) ** 2 + ((xx + 0.5) / 64 - 0.64) ** 2
    np.testing.assert_array_equal(m, d2 <= 0.08 ** 2)
    assert 70 < m.sum() < 95  # about pi * 5.12^2 = 82 pixels
    assert not (m & am.region_mask("left eye", 64)).any()
    assert am.query_pixel("left eye", 64) == (29, 23) and am.query_pixel("right eye", 64) == (29, 40)


def test_long_range_is_one_for_uniform_attention(generators):
    """With f = 0 every score is 0 and each softmax row is uniform: every ratio of the table must be exactly 1."""
    G = keras.models.clone_model(generators["paper"])
    G.set_weights(generators["paper"].get_weights())
    layer = am.AttentionProbe(G).layer
    layer.f.layer.kernel.assign(np.zeros(layer.f.layer.kernel.shape, np.float32))
    r = am.long_range(G, n=8, batch_size=4)
    assert r["ratio"] == pytest.approx(1.0, abs=1e-5)
    for row in r["table"].values():
        for v in row.values():
            assert v == pytest.approx(1.0, abs=1e-5)


def test_long_range_against_query_maps(generators):
    """The long-range number is the mean of the two eye-to-other-eye ratios, from the same maps."""
    G = generators["paper"]
    r = am.long_range(G, n=6, seed=5, batch_size=4)
    z = np.random.default_rng(5).standard_normal((6, 16)).astype(np.float32)
    maps = am.query_maps(G, z, ["left eye", "right eye"])["maps"]
    share_r, share_l = am.region_mask("right eye", 32).mean(), am.region_mask("left eye", 32).mean()
    lr = maps[:, 0][:, am.region_mask("right eye", 32)].sum(-1) / share_r
    rl = maps[:, 1][:, am.region_mask("left eye", 32)].sum(-1) / share_l
    assert r["ratio"] == pytest.approx(float(np.mean((lr + rl) / 2)), rel=1e-5)
    assert r["table"]["left eye"]["right eye"] == pytest.approx(float(lr.mean()), rel=1e-5)
    assert r["ratio"] != pytest.approx(1.0, abs=0.05)  # not trivially uniform
    assert "| left eye |" in am.table_markdown(r)


def test_bad_input_is_named(generators):
    G = generators["paper"]
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        am.query_maps(G, _z(1), [(32, 0)])
    with pytest.raises(ValueError, match="outside"):
        am.query_maps(G, _z(1), [(-1, 3)])
    with pytest.raises(ValueError, match="unknown query 'nose'"):
        am.query_maps(G, _z(1), ["nose"])
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 16\)"):
        am.query_maps(G, np.zeros((2, 8), np.float32), ["mouth"])
    dcgan = make_generator("dcgan", resolution=32, z_dim=16, width=0.125)
    with pytest.raises(ValueError, match="has no SelfAttention layer"):
        am.query_maps(dcgan, _z(1), ["mouth"])
    with pytest.raises(ValueError, match="has no SelfAttention layer"):
        am.long_range(dcgan, n=4)
    with pytest.raises(ValueError, match="no SelfAttention layer named 'attn'"):
        am.AttentionProbe(G, layer_name="attn")
    with pytest.raises(ValueError, match="do not match"):
        am.mass_ratio(np.ones((2, 16, 16)), am.region_mask("mouth", 32))


def test_plot_titles_queries_in_words(generators):
    out = am.query_maps(generators["paper"], _z(2), list(am.QUERIES))
    fig = am.plot_query_maps(out, faces=[0, 1])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sum(t.startswith("query: left eye\n") for t in titles) == 2
    assert {t.split("\n")[0] for t in titles} >= {f"query: {q}" for q in am.QUERIES}
    assert len(fig.axes) == 2 * 5 + 1  # faces x (picture + 4 queries) + the colour bar
    no_images = am.query_maps(generators["paper"], _z(2), ["mouth"], with_images=False)
    with pytest.raises(ValueError, match="needs the images"):
        am.plot_query_maps(no_images)
