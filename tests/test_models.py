"""The generators and discriminators: shapes, spectral normalization everywhere, attention placement, parameter
counts derived by hand from the published layer lists, saving, and argument errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from sagan_tut.attention import SelfAttention
from sagan_tut.models import (ARCHS, attention_layers, attention_sizes, count_params, make_discriminator,
                              make_generator)
from sagan_tut.spectral_norm import SpectralNormalization

Z_DIM = 16
_TINY = {32: 0.25, 64: 0.25, 128: 0.125}  # keeps every forward pass of this file small on a 2-core CPU


def _z(n=2, z_dim=Z_DIM, seed=0):
    return np.random.default_rng(seed).standard_normal((n, z_dim)).astype("float32")


def _all_layers(model):
    """Every layer in the model, recursively: wrappers' inner layers and SelfAttention's f, g, h, v included."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _sn_layers(model):
    return [layer for layer in _all_layers(model) if isinstance(layer, SpectralNormalization)]


# -- shapes and ranges ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_and_ranges(arch, resolution):
    width = _TINY[resolution]
    G = make_generator(arch, resolution, z_dim=Z_DIM, width=width)
    D = make_discriminator(arch, resolution, width=width)
    images = G(_z(), training=True).numpy()
    assert images.shape == (2, resolution, resolution, 3)
    assert images.dtype == np.float32
    assert np.all(np.isfinite(images)) and images.min() >= -1.0 and images.max() <= 1.0
    assert images.std() > 0  # not a constant image
    logits = D(images, training=True).numpy()
    assert logits.shape == (2, 1) and np.all(np.isfinite(logits))
    assert logits[0, 0] != logits[1, 0]  # D tells two different images apart (no saturating output layer)


def test_generator_z_dim_sets_input_shape():
    G = make_generator("blog", 32, z_dim=7, width=0.25, attention_res=None)
    assert G.input.shape == (None, 7)
    assert G(_z(3, 7)).shape == (3, 32, 32, 3)


def test_width_never_goes_below_eight_channels():
    # At width 1/8 the blog's 16-channel 128x128 map would get 2 channels, and attention's C/8 would be 0.
    G = make_generator("blog", 128, width=0.125, attention_res=128)
    (attn,) = attention_layers(G)
    assert attn.input.shape[-1] == 8
    assert attn.f.layer.filters == 1


def test_outputs_are_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        G = make_generator("blog", 32, z_dim=Z_DIM, width=0.25, attention_res=16)
        D = make_discriminator("blog", 32, width=0.25, attention_res=16)
        images = G(_z(), training=True)
        logits = D(images, training=True)
    finally:
        keras.config.set_dtype_policy(previous)
    assert images.dtype == "float32" and logits.dtype == "float32"
    assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(logits.numpy()))


# -- spectral normalization -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["paper", "biggan"])
@pytest.mark.parametrize("arch", ["blog", "paper"])
def test_every_conv_and_dense_is_spectrally_normalised(arch, variant):
    for model in (make_generator(arch, 32, z_dim=Z_DIM, width=0.25, attention_res=16, attention_variant=variant),
                  make_discriminator(arch, 32, width=0.25, attention_res=16, attention_variant=variant)):
        layers = _all_layers(model)
        wrapped = {id(w.layer) for w in _sn_layers(model)}
        kernels = [l for l in layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose,
                                                          keras.layers.Dense))]
        unwrapped = [l.name for l in kernels if id(l) not in wrapped]
        assert kernels and not unwrapped, f"{model.name}: not spectrally normalised: {unwrapped}"
        (attn,) = attention_layers(model)
        parts = [attn.f, attn.g, attn.h] + ([attn.v] if variant == "biggan" else [])
        assert all(isinstance(p, SpectralNormalization) for p in parts)
        assert all(id(p.layer) in {id(l) for l in layers} for p in parts)  # the walk really reached inside


def test_dcgan_has_no_spectral_normalization_by_default():
    for model in (make_generator("dcgan", 32, z_dim=Z_DIM, width=0.25),
                  make_discriminator("dcgan", 32, width=0.25)):
        layers = _all_layers(model)
        assert any(isinstance(l, keras.layers.Conv2D) or isinstance(l, keras.layers.Conv2DTranspose)
                   for l in layers)
        assert not _sn_layers(model)
        assert not attention_layers(model)


def test_spectral_norm_can_be_switched():
    assert _sn_layers(make_generator("dcgan", 32, z_dim=Z_DIM, width=0.25, spectral_norm=True))
    assert not _sn_layers(make_discriminator("paper", 32, width=0.25, spectral_norm=False))
    D = make_discriminator("blog", 32, width=0.25, attention_res=16, spectral_norm=False)
    (attn,) = attention_layers(D)
    assert not isinstance(attn.f, SpectralNormalization)


def _kernel_layers(model):
    return [l for l in _all_layers(model)
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense))]


@pytest.mark.parametrize("resolution", [32, 64])
def test_spectrally_normalised_dcgan_discriminator_has_no_batchnorm(resolution):
    """SN-GAN's and SAGAN's D: every conv/dense wrapped in SN and no BatchNorm, whose division by the batch std
    would void the Lipschitz bound. The conv biases come back (BN's beta no longer replaces them). Without SN the
    DCGAN D keeps Radford et al.'s BatchNorm; the SN generator keeps its BatchNorm too."""
    D = make_discriminator("dcgan", resolution, width=0.25, spectral_norm=True)
    layers = _all_layers(D)
    assert not [l.name for l in layers if isinstance(l, keras.layers.BatchNormalization)]
    wrapped = {id(w.layer) for w in _sn_layers(D)}
    kernels = _kernel_layers(D)
    assert kernels and all(id(l) in wrapped for l in kernels)
    assert all(l.use_bias for l in kernels)
    sizes = [s for s in (32, 16, 8, 4) if s <= resolution // 2]
    chans = [{32: 16, 16: 32, 8: 64, 4: 128}[s] for s in sizes]  # the blog table x 1/4
    expected = sum(_conv(4, cin, cout) for cin, cout in zip([3] + chans, chans)) + _dense(16 * chans[-1], 1)
    assert count_params(D) == expected
    # Without SN: BatchNorm on every block but the first, as before.
    plain = make_discriminator("dcgan", resolution, width=0.25)
    assert [l.name for l in plain.layers if isinstance(l, keras.layers.BatchNormalization)] == \
        [f"down{s}_bn" for s in sizes[1:]]
    G = make_generator("dcgan", resolution, z_dim=Z_DIM, width=0.25, spectral_norm=True)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in G.layers)
    assert all(id(l) in {id(w.layer) for w in _sn_layers(G)} for l in _kernel_layers(G))


@pytest.mark.parametrize("arch", ["blog", "paper"])
def test_training_flag_reaches_every_u(arch):
    """training=True advances u in every SN layer (attention's included: the blog code's never moved);
    training=False leaves all of them alone."""
    G = make_generator(arch, 32, z_dim=Z_DIM, width=0.25, attention_res=16)
    sn = _sn_layers(G)
    before = [layer.u.numpy().copy() for layer in sn]
    G(_z(), training=False)
    assert all(np.array_equal(b, layer.u.numpy()) for b, layer in zip(before, sn))
    G(_z(), training=True)
    unchanged = [layer.name for b, layer in zip(before, sn) if np.allclose(b, layer.u.numpy())]
    assert not unchanged


@pytest.mark.parametrize("arch", ARCHS)
def test_every_trainable_weight_gets_a_gradient(arch):
    """No layer is built but left out of the graph: the generator's loss -mean D(G(z)) reaches every variable."""
    G = make_generator(arch, 32, z_dim=Z_DIM, width=0.25, attention_res=16)
    D = make_discriminator(arch, 32, width=0.25, attention_res=8)
    # At gamma = 0 the block is the identity and f, g, h get no gradient (gamma itself still does).
    for model in (G, D):
        attention_layers(model)[0].gamma.assign(0.5)
    with tf.GradientTape(persistent=True) as tape:
        logits = D(G(_z(), training=True), training=True)
        loss = -tf.reduce_mean(logits)
    for model in (G, D):
        grads = tape.gradient(loss, model.trainable_variables)
        missing = [v.path for v, g in zip(model.trainable_variables, grads)
                   if g is None or not np.any(g.numpy())]
        assert not missing, f"{model.name}: no gradient for {missing}"
    del tape


def test_batch_norm_is_synchronized():
    for arch in ARCHS:
        bns = [l for l in make_generator(arch, 32, z_dim=Z_DIM, width=0.25).layers
               if isinstance(l, keras.layers.BatchNormalization)]
        assert bns and all(bn.synchronized for bn in bns)
    # DCGAN's D: BatchNorm on every block but the first (Radford et al.).
    D = make_discriminator("dcgan", 64, width=0.25)
    assert [l.name for l in D.layers if isinstance(l, keras.layers.BatchNormalization)] == [
        "down16_bn", "down8_bn", "down4_bn"]
    assert all(l.synchronized for l in D.layers if isinstance(l, keras.layers.BatchNormalization))


# -- attention placement ----------------------------------------------------------------------------------------
# The feature-map sizes between blocks, written out by hand for resolution 32.
_G_SIZES_32 = {"dcgan": [4, 8, 16], "blog": [4, 8, 16, 32], "paper": [4, 8, 16, 32]}
_D_SIZES_32 = [16, 8, 4]


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_sits_on_the_requested_map(arch):
    assert attention_sizes("generator", arch, 32) == _G_SIZES_32[arch]
    assert attention_sizes("discriminator", arch, 32) == _D_SIZES_32
    assert attention_sizes("discriminator", arch, 128) == [64, 32, 16, 8, 4]
    for size in _G_SIZES_32[arch]:
        G = make_generator(arch, 32, z_dim=Z_DIM, width=0.125, attention_res=size, attention_variant="paper")
        (attn,) = attention_layers(G)
        assert attn.name == f"attention_{size}"
        assert tuple(attn.input.shape[1:3]) == (size, size)
    for size in _D_SIZES_32:
        D = make_discriminator(arch, 32, width=0.125, attention_res=size, attention_variant="paper")
        (attn,) = attention_layers(D)
        assert attn.name == f"attention_{size}"
        assert tuple(attn.input.shape[1:3]) == (size, size)
    assert not attention_layers(make_generator(arch, 32, z_dim=Z_DIM, width=0.125, attention_res=None))
    assert not attention_layers(make_discriminator(arch, 32, width=0.125, attention_res=None))


def test_attention_defaults():
    G, D = make_generator("blog", 64, width=0.125), make_discriminator("blog", 64, width=0.125)
    assert [a.name for a in attention_layers(G)] == ["attention_32"] == [a.name for a in attention_layers(D)]
    assert attention_layers(G)[0].variant == "paper"
    G = make_generator("paper", 64, width=0.125)
    assert [(a.name, a.variant) for a in attention_layers(G)] == [("attention_32", "biggan")]
    # A 32x32 discriminator has no 32x32 feature map: "auto" falls back to 16, an explicit 32 is an error.
    assert [a.name for a in attention_layers(make_discriminator("blog", 32, width=0.25))] == ["attention_16"]
    assert [a.name for a in attention_layers(make_generator("blog", 32, width=0.25))] == ["attention_32"]
    with pytest.raises(ValueError, match=r"allowed: \[16, 8, 4\]"):
        make_discriminator("blog", 32, width=0.25, attention_res=32)


# -- parameter counts, derived by hand from the layer lists -----------------------------------------------------
def _conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def _dense(nin, nout, bias=True):
    return nin * nout + (nout if bias else 0)


def _attention(c, variant):
    # f, g: C -> C/8; h: C -> C (paper) or C/2 (biggan) plus v: C/2 -> C; 1x1 convs without bias; gamma.
    if variant == "paper":
        return 2 * c * (c // 8) + c * c + 1
    return 2 * c * (c // 8) + c * (c // 2) + (c // 2) * c + 1


def _blog_g(z_dim, chans, att=None, variant="paper"):
    """chans: channels at 4x4, 8x8, ...; att: index into chans of the attended map."""
    n = _dense(z_dim, 16 * chans[0])
    for cin, cout in zip(chans, chans[1:]):
        n += _conv(4, cin, cout, bias=False) + cout  # transposed conv + BatchNorm beta (scale=False)
    n += _conv(3, chans[-1], 3)
    return n + (_attention(chans[att], variant) if att is not None else 0)


def _blog_d(chans, att=None, variant="paper"):
    """chans: channels after each stride-2 conv, the last one at 4x4."""
    n = sum(_conv(4, cin, cout) for cin, cout in zip([3] + chans, chans))
    n += _dense(16 * chans[-1], 1)
    return n + (_attention(chans[att], variant) if att is not None else 0)


def _paper_g(z_dim, chans, att=None, variant="biggan"):
    n = _dense(z_dim, 16 * chans[0])
    for cin, cout in zip(chans, chans[1:]):
        n += 2 * cin + _conv(3, cin, cout) + 2 * cout + _conv(3, cout, cout) + _conv(1, cin, cout)
    n += 2 * chans[-1] + _conv(3, chans[-1], 3)
    return n + (_attention(chans[att], variant) if att is not None else 0)


def _paper_d(chans, att=None, variant="biggan"):
    n = _conv(3, 3, chans[0]) + _conv(3, chans[0], chans[0]) + _conv(1, 3, chans[0])  # optimized block
    for cin, cout in zip(chans, chans[1:]):
        n += _conv(3, cin, cout) + _conv(3, cout, cout) + _conv(1, cin, cout)
    n += 2 * _conv(3, chans[-1], chans[-1])  # last block: no downsampling, same channels, identity shortcut
    n += _dense(chans[-1], 1)
    return n + (_attention(chans[att], variant) if att is not None else 0)


def _dcgan_g(z_dim, chans):
    n = _dense(z_dim, 16 * chans[0], bias=False) + 2 * chans[0]
    for cin, cout in zip(chans, chans[1:]):
        n += _conv(4, cin, cout, bias=False) + 2 * cout
    return n + _conv(4, chans[-1], 3)


def _dcgan_d(chans):
    n = _conv(4, 3, chans[0])
    for cin, cout in zip(chans, chans[1:]):
        n += _conv(4, cin, cout, bias=False) + 2 * cout
    return n + _dense(16 * chans[-1], 1)


def test_count_params_small_models_by_hand():
    # Resolution 32: the blog/dcgan tables give 512, 256, 128, 64 at sizes 4..32 (x width), the paper's G
    # 1024, 1024, 512, 256 and its D 256, 512, 1024 at sizes 16, 8, 4.
    cases = [
        (make_generator("blog", 32, z_dim=Z_DIM, width=0.25, attention_res=16),
         _blog_g(Z_DIM, [128, 64, 32, 16], att=2)),
        (make_discriminator("blog", 32, width=0.25, attention_res=8), _blog_d([32, 64, 128], att=1)),
        (make_generator("paper", 32, z_dim=Z_DIM, width=0.125, attention_res=16),
         _paper_g(Z_DIM, [128, 128, 64, 32], att=2)),
        (make_discriminator("paper", 32, width=0.125, attention_res=8), _paper_d([32, 64, 128], att=1)),
        (make_generator("dcgan", 32, z_dim=Z_DIM, width=0.25), _dcgan_g(Z_DIM, [128, 64, 32])),
        (make_discriminator("dcgan", 32, width=0.25), _dcgan_d([32, 64, 128])),
    ]
    for model, expected in cases:
        assert count_params(model) == expected, model.name


def test_count_params_non_trainable_is_bn_statistics_and_u():
    G = make_generator("blog", 32, z_dim=Z_DIM, width=0.25, attention_res=16)
    # BN moving mean + variance on 64, 32, 16 channels; u has one entry per output unit of each SN layer:
    # dense 4*4*128, deconvs 64, 32, 16, to_rgb 3, attention f, g (32/8 = 4 each) and h (32).
    bn_stats = 2 * (64 + 32 + 16)
    u = 16 * 128 + 64 + 32 + 16 + 3 + 4 + 4 + 32
    assert count_params(G, trainable_only=False) - count_params(G) == bn_stats + u


@pytest.mark.slow
def test_full_width_parameter_table(capsys):
    """Full-width 128x128 models (built, never run). The blog's counts follow from its code's layer list
    (sthalles/blog-resources sagan/celeb/model.py), the paper's from the official generator_test /
    discriminator_test with ch = 64 (unconditional: plain BN, no projection embedding)."""
    models = {arch: (make_generator(arch, 128), make_discriminator(arch, 128)) for arch in ARCHS}
    counts = {arch: (count_params(g), count_params(d)) for arch, (g, d) in models.items()}
    with capsys.disabled():
        print("\n  arch    G params     D params   (128x128, width 1, trainable)")
        for arch, (g, d) in counts.items():
            print(f"  {arch:6s} {g:11,d}  {d:11,d}")

    assert counts["blog"] == (_blog_g(128, [512, 256, 128, 64, 32, 16], att=3),
                              _blog_d([32, 64, 128, 256, 512], att=1))
    assert counts["paper"] == (_paper_g(128, [1024, 1024, 512, 256, 128, 64], att=3),
                               _paper_d([64, 128, 256, 512, 1024], att=1))
    assert counts["dcgan"] == (_dcgan_g(128, [512, 256, 128, 64, 32]), _dcgan_d([32, 64, 128, 256, 512]))
    # COURSE.md section 6 quotes "G 5.0M, D 7.0M" for its blog-style timing model. The blog's own layer list,
    # derived exactly above, gives 3.86M and 2.80M: the quoted model was evidently wider. We only require the
    # same order of magnitude (within a factor 3), which still catches a wrong channel table (width 2 would
    # quadruple the convolutions, width 1/2 quarter them).
    g_blog, d_blog = counts["blog"]
    assert 5.0e6 / 3 < g_blog < 5.0e6 * 3
    assert 7.0e6 / 3 < d_blog < 7.0e6 * 3
    # The official SAGAN is an order of magnitude bigger than the blog's DCGAN-style one.
    assert counts["paper"][0] > 5 * g_blog and counts["paper"][1] > 10 * d_blog


# -- saving -----------------------------------------------------------------------------------------------------
def _named_values(model, name):
    return {w.path: w.numpy() for w in model.weights if w.name == name}


def test_keras_file_round_trip(tmp_path):
    G = make_generator("blog", 32, z_dim=Z_DIM, width=0.25, attention_res=16)
    D = make_discriminator("blog", 32, width=0.25, attention_res=8)
    z = _z(4)
    # Move u and the BN statistics away from their initial values and give attention a non-zero gamma, so the
    # round trip has state worth restoring.
    D(G(z, training=True), training=True)
    for model in (G, D):
        attention_layers(model)[0].gamma.assign(0.3)
    for model in (G, D):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        x = z if model is G else G(z, training=False)
        np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(),
                                   rtol=1e-6, atol=1e-6)
        u, u_loaded = _named_values(model, "u"), _named_values(loaded, "u")
        assert len(u) == len(_sn_layers(model)) > 0
        assert u.keys() == u_loaded.keys()
        for key in u:
            np.testing.assert_array_equal(u[key], u_loaded[key])
        assert float(attention_layers(loaded)[0].gamma.numpy()) == pytest.approx(0.3)
        assert isinstance(attention_layers(loaded)[0], SelfAttention)


def test_paper_discriminator_round_trip(tmp_path):
    # The paper D has the package's own GlobalSumPooling2D layer; it must deserialize too.
    D = make_discriminator("paper", 32, width=0.125, attention_res=None)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    D(x, training=True)
    D.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    np.testing.assert_allclose(loaded(x).numpy(), D(x).numpy(), rtol=1e-6, atol=1e-6)


# -- argument errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="resnet"), r"arch must be one of \('dcgan', 'blog', 'paper'\)"),
    (dict(resolution=48), r"resolution must be one of \(32, 64, 128\)"),
    (dict(resolution=256), r"resolution must be one of"),
    (dict(width=0), r"width must be a positive number"),
    (dict(width=-0.5), r"width must be a positive number"),
    (dict(width="1"), r"width must be a positive number"),
    (dict(width=float("inf")), r"width must be a positive number"),
    (dict(resolution=64, attention_res=24), r"attention_res=24 .* allowed: \[4, 8, 16, 32, 64\]"),
    (dict(resolution=64, attention_res=128), r"attention_res=128"),
    (dict(attention_variant="linear"), r"attention_variant must be one of \('paper', 'icml', 'biggan'\)"),
    (dict(spectral_norm="yes"), r"spectral_norm must be True, False or None"),
    (dict(z_dim=0), r"z_dim must be a positive integer"),
])
def test_generator_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_generator(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="stylegan"), r"arch must be one of"),
    (dict(resolution=96), r"resolution must be one of \(32, 64, 128\)"),
    (dict(width=0.0), r"width must be a positive number"),
    (dict(resolution=64, attention_res=64), r"discriminator at resolution 64; allowed: \[32, 16, 8, 4\]"),
    (dict(arch="dcgan", resolution=32, attention_res=2), r"allowed: \[16, 8, 4\]"),
])
def test_discriminator_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_discriminator(**kwargs)


def test_dcgan_generator_has_no_attention_on_its_output():
    # DCGAN's last transposed conv already outputs RGB, so its largest feature map is resolution / 2.
    with pytest.raises(ValueError, match=r"allowed: \[4, 8, 16\]"):
        make_generator("dcgan", 32, attention_res=32)
