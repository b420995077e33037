"""Generators and discriminators: DCGAN, the blog's DCGAN-style SAGAN, and the paper's ResNet SAGAN.

Every model is a Keras functional model built by a small function per block, so ``model.summary()`` reads like
the architecture table of the paper it comes from.

* ``arch="dcgan"`` -- Radford et al. (2016). G: dense projection to 4x4, stride-2 transposed convs with
  BatchNorm + ReLU, a last transposed conv to RGB, tanh. D: stride-2 convs with LeakyReLU(0.2) and BatchNorm on
  every block but the first, a dense logit. Weights drawn from N(0, 0.02) as in the paper. No spectral
  normalization and no attention by default; both can be switched on (the chapter 6 ablation does exactly that).
  With ``spectral_norm=True`` D loses its BatchNorm layers, as in SN-GAN and SAGAN, so that D is Lipschitz; G
  keeps its BatchNorm.
* ``arch="blog"`` -- the SAGAN of the blog post's code (sthalles/blog-resources, ``sagan/celeb/model.py``):
  G: dense to 4x4x512 + ReLU, 4x4 stride-2 transposed convs 256, 128, 64, (attention at 32x32), 32, 16, each
  with BatchNorm(scale=False) + ReLU, a 3x3 conv to RGB, tanh. D: 4x4 stride-2 convs 32, 64, (attention at
  32x32), 128, 256, 512 with LeakyReLU(0.1), a dense logit. Unlike the blog code, *every* conv and dense layer is
  spectrally normalised (the blog's dense layers were not, see the errata page).
* ``arch="paper"`` -- the official SAGAN code (brain-research/self-attention-gan, ``generator_test`` /
  ``discriminator_test``): ResNet blocks with nearest-neighbour upsampling in G and average pooling in D,
  attention at 32x32 in both, global sum pooling and a dense logit in D. That code is class-conditional
  (conditional BatchNorm in G, a projection term in D); ours is **unconditional**: plain BatchNorm, no
  projection, because CelebA has no classes. Everything else (channels, 1x1 shortcut convs, SN everywhere,
  biases) follows the official code.

Channels are a function of the feature map's side length (the tables below), so a 64x64 or 32x32 model is the
128x128 model with its outermost, highest-resolution blocks removed; ``width`` multiplies every channel count.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .attention import VARIANTS, SelfAttention
from .spectral_norm import SpectralNormalization

ARCHS = ("dcgan", "blog", "paper")
RESOLUTIONS = (32, 64, 128)

# Channels of a feature map of side s at width=1. The blog's G halves 512 at 4x4 down to 16 at 128x128 and its D
# mirrors it (32 channels at 64x64 ... 512 at 4x4). Chapter 1's DCGAN uses the same table so that the ablation
# DCGAN -> +SN -> +attention compares networks of one size; width=2 at resolution 64 gives Radford et al.'s
# exact 1024-512-256-128 widths.
_BLOG_CHANNELS = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}
# The official code with ch = 64: G 16ch at 4x4 and 8x8, then 8ch, 4ch, 2ch, ch; D ch at 64x64 up to 16ch at 4x4.
_PAPER_G_CHANNELS = {4: 1024, 8: 1024, 16: 512, 32: 256, 64: 128, 128: 64}
_PAPER_D_CHANNELS = {64: 64, 32: 128, 16: 256, 8: 512, 4: 1024}

# Per-architecture defaults for the arguments left as None / "auto".
_DEFAULTS = {
    "dcgan": dict(spectral_norm=False, attention_res=None, attention_variant="paper"),
    "blog": dict(spectral_norm=True, attention_res=32, attention_variant="paper"),
    "paper": dict(spectral_norm=True, attention_res=32, attention_variant="biggan"),
}


@keras.saving.register_keras_serializable(package="sagan_tut")
class GlobalSumPooling2D(keras.layers.Layer):
    """Sum over all positions, ``(B, H, W, C) -> (B, C)``: the official D's ``reduce_sum(h, [1, 2])``.

    A sum, not a mean, so D's output scales with the number of positions, as in the official code (and SNGAN).
    """

    def call(self, x):
        return ops.sum(x, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


# ---------------------------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------------------------
def attention_sizes(kind: str, arch: str, resolution: int) -> list[int]:
    """Feature-map sizes where attention can go: the side of every map between two blocks, excluding the image.

    Generators: 4 (the projected z) up to ``resolution`` (dcgan: ``resolution // 2``, because its last layer
    already outputs RGB). Discriminators: ``resolution // 2`` (after the first block) down to 4.
    """
    if kind == "generator":
        top = resolution // 2 if arch == "dcgan" else resolution
        return _sizes(4, top)
    if kind == "discriminator":
        return _sizes(4, resolution // 2)[::-1]
    raise ValueError(f"kind must be 'generator' or 'discriminator', got {kind!r}.")


def _sizes(lo: int, hi: int) -> list[int]:
    """[lo, 2 lo, 4 lo, ..., hi] for powers of two."""
    out = []
    while lo <= hi:
        out.append(lo)
        lo *= 2
    return out


def _check_args(kind, arch, resolution, width, attention_res, attention_variant, spectral_norm):
    """Validate the builder arguments and fill in the per-architecture defaults."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}.")
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}. "
                         "Resize your images to one of these sizes.")
    resolution = int(resolution)
    if isinstance(width, bool) or not isinstance(width, (int, float, np.number)) or not 0 < width < np.inf:
        raise ValueError(f"width must be a positive number (1.0 = the published channel counts), got {width!r}.")
    defaults = _DEFAULTS[arch]
    if spectral_norm is None:
        spectral_norm = defaults["spectral_norm"]
    if not isinstance(spectral_norm, (bool, np.bool_)):
        raise ValueError(f"spectral_norm must be True, False or None (the arch's default), got {spectral_norm!r}.")
    if attention_variant is None:
        attention_variant = defaults["attention_variant"]
    if attention_variant not in VARIANTS:
        raise ValueError(f"attention_variant must be one of {VARIANTS} or None (the arch's default), "
                         f"got {attention_variant!r}.")
    allowed = attention_sizes(kind, arch, resolution)
    if isinstance(attention_res, str) and attention_res == "auto":
        # The published choice (32x32, or none for DCGAN), but never larger than the model's largest map: a
        # 32x32 discriminator has no 32x32 feature map (its first conv already halves the image).
        attention_res = defaults["attention_res"]
        if attention_res is not None and attention_res not in allowed:
            attention_res = max(s for s in allowed if s <= attention_res)
    elif attention_res is not None and (isinstance(attention_res, bool) or attention_res not in allowed):
        raise ValueError(
            f"attention_res={attention_res!r} is not a feature-map size of the {arch} {kind} at resolution "
            f"{resolution}; allowed: {allowed}, None (no attention) or 'auto'."
        )
    attention_res = None if attention_res is None else int(attention_res)
    return resolution, float(width), attention_res, attention_variant, bool(spectral_norm)


def _scaled(channels: int, width: float) -> int:
    # At least 8 channels, so attention's keys and queries (C/8 channels) never vanish.
    return max(8, int(round(channels * width)))


# ---------------------------------------------------------------------------------------------------------------
# Layer factories: one place decides spectral normalization, initialisation and BatchNorm settings
# ---------------------------------------------------------------------------------------------------------------
def _sn(layer, spectral_norm: bool):
    # The wrapper is what the functional graph sees; the wrapped layer keeps the readable name.
    return SpectralNormalization(layer, name=f"sn_{layer.name}") if spectral_norm else layer


def _init(arch: str):
    # DCGAN: "all weights were initialized from a zero-centered Normal distribution with standard deviation
    # 0.02" (Radford et al.). The SAGAN codes use Xavier/Glorot uniform, Keras' default. With spectral
    # normalization the scale of the initial kernel hardly matters: the forward pass uses W / sigma(W).
    return keras.initializers.RandomNormal(stddev=0.02) if arch == "dcgan" else "glorot_uniform"


def _dense(units, name, *, arch, sn, use_bias=True):
    return _sn(keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=_init(arch), name=name), sn)


def _conv(filters, kernel_size, name, *, arch, sn, strides=1, use_bias=True, transpose=False):
    cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    conv = cls(filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
               kernel_initializer=_init(arch), name=name)
    return _sn(conv, sn)


def _batch_norm(name, scale=True):
    # synchronized=True: under tf.distribute the batch statistics are all-reduced over replicas, so 4 GPUs x 64
    # images normalise like one batch of 256; with one device it changes nothing. (TensorFlow backend only.)
    # momentum 0.9 (PyTorch's 0.1): the moving statistics, used when sampling with training=False, must follow a
    # generator that changes every step; Keras' 0.99 lags by ~100 steps. epsilon 1e-5 as the official code.
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, scale=scale, name=name,
        synchronized=keras.backend.backend() == "tensorflow",
    )


def _attend(x, size, attention_res, variant, sn):
    """Self-attention on ``x`` if this is the requested map size; named ``attention_<size>`` for logging gamma."""
    if size != attention_res:
        return x
    return SelfAttention(variant=variant, spectral_norm=sn, name=f"attention_{size}")(x)


def _to_float32(x, activation, name):
    # A float32 output layer keeps tanh images and logits in float32 under a mixed_float16 policy.
    return keras.layers.Activation(activation, dtype="float32", name=name)(x)


# ---------------------------------------------------------------------------------------------------------------
# DCGAN (Radford et al., 2016)
# ---------------------------------------------------------------------------------------------------------------
def _dcgan_up_block(x, channels, size, sn):
    # Kernel 4 with stride 2 (as PyTorch's DCGAN example and the blog; the paper used 5): a kernel size divisible
    # by the stride gives every output pixel the same number of contributions, avoiding checkerboard artifacts
    # (Odena et al., 2016). No bias: BatchNorm's beta replaces it.
    x = _conv(channels, 4, f"up{size}_deconv", arch="dcgan", sn=sn, strides=2, use_bias=False, transpose=True)(x)
    x = _batch_norm(f"up{size}_bn")(x)
    return keras.layers.ReLU(name=f"up{size}_relu")(x)


def _dcgan_generator(z, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _BLOG_CHANNELS.items()}
    x = _dense(4 * 4 * ch[4], "project", arch="dcgan", sn=sn, use_bias=False)(z)
    x = keras.layers.Reshape((4, 4, ch[4]), name="project_reshape")(x)
    x = _batch_norm("project_bn")(x)
    x = keras.layers.ReLU(name="project_relu")(x)
    x = _attend(x, 4, attention_res, variant, sn)
    for size in _sizes(8, resolution // 2):
        x = _dcgan_up_block(x, ch[size], size, sn)
        x = _attend(x, size, attention_res, variant, sn)
    # The output layer has no BatchNorm ("not applying batchnorm to the generator output layer").
    x = _conv(3, 4, "to_rgb", arch="dcgan", sn=sn, strides=2, transpose=True)(x)
    return _to_float32(x, "tanh", "tanh")


def _dcgan_down_block(x, channels, size, sn, first):
    # No BatchNorm on the first block: normalising the input layer's features destabilised training (Radford).
    # No BatchNorm at all once D is spectrally normalised (SN-GAN and SAGAN have none in D): BatchNorm divides
    # by the batch's standard deviation, a data-dependent factor that can be arbitrarily large, so a D with BN
    # is not 1-Lipschitz however its kernels are normalised (chapter 2). SN takes over BN's role of keeping D's
    # activations in range. Without BN the conv needs its bias back (BN's beta replaced it).
    batch_norm = not first and not sn
    x = _conv(channels, 4, f"down{size}_conv", arch="dcgan", sn=sn, strides=2, use_bias=not batch_norm)(x)
    if batch_norm:
        x = _batch_norm(f"down{size}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=0.2, name=f"down{size}_lrelu")(x)


def _dcgan_discriminator(images, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _BLOG_CHANNELS.items()}
    x = images
    for i, size in enumerate(_sizes(4, resolution // 2)[::-1]):
        x = _dcgan_down_block(x, ch[size], size, sn, first=i == 0)
        x = _attend(x, size, attention_res, variant, sn)
    x = keras.layers.Flatten(name="flatten")(x)
    x = _dense(1, "logit", arch="dcgan", sn=sn)(x)
    return _to_float32(x, "linear", "logits")


# ---------------------------------------------------------------------------------------------------------------
# The blog's DCGAN-style SAGAN
# ---------------------------------------------------------------------------------------------------------------
def _blog_up_block(x, channels, size, sn):
    x = _conv(channels, 4, f"up{size}_deconv", arch="blog", sn=sn, strides=2, use_bias=False, transpose=True)(x)
    # scale=False as in the blog: ReLU(a * x) = a * ReLU(x) for a > 0, and the next block's BatchNorm removes
    # any such scale again, so a learnable scale would be redundant.
    x = _batch_norm(f"up{size}_bn", scale=False)(x)
    return keras.layers.ReLU(name=f"up{size}_relu")(x)


def _blog_generator(z, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _BLOG_CHANNELS.items()}
    # The blog code's first layer is a dense layer with ReLU and no BatchNorm.
    x = _dense(4 * 4 * ch[4], "project", arch="blog", sn=sn)(z)
    x = keras.layers.Reshape((4, 4, ch[4]), name="project_reshape")(x)
    x = keras.layers.ReLU(name="project_relu")(x)
    x = _attend(x, 4, attention_res, variant, sn)
    for size in _sizes(8, resolution):
        x = _blog_up_block(x, ch[size], size, sn)
        x = _attend(x, size, attention_res, variant, sn)
    x = _conv(3, 3, "to_rgb", arch="blog", sn=sn)(x)
    return _to_float32(x, "tanh", "tanh")


def _blog_down_block(x, channels, size, sn):
    x = _conv(channels, 4, f"down{size}_conv", arch="blog", sn=sn, strides=2)(x)
    # Slope 0.1 as in the blog's code (its text says 0.02; DCGAN used 0.2). See the errata page.
    return keras.layers.LeakyReLU(negative_slope=0.1, name=f"down{size}_lrelu")(x)


def _blog_discriminator(images, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _BLOG_CHANNELS.items()}
    x = images
    for size in _sizes(4, resolution // 2)[::-1]:
        x = _blog_down_block(x, ch[size], size, sn)
        x = _attend(x, size, attention_res, variant, sn)
    x = keras.layers.Flatten(name="flatten")(x)
    x = _dense(1, "logit", arch="blog", sn=sn)(x)
    return _to_float32(x, "linear", "logits")


# ---------------------------------------------------------------------------------------------------------------
# The paper's (official code's) ResNet SAGAN, unconditional
# ---------------------------------------------------------------------------------------------------------------
def _g_res_block(x, channels, size, sn):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus a 1x1 conv of the upsampled input as the shortcut."""
    name = f"up{size}"
    h = _batch_norm(f"{name}_bn1")(x)
    h = keras.layers.ReLU(name=f"{name}_relu1")(h)
    h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(h)
    h = _conv(channels, 3, f"{name}_conv1", arch="paper", sn=sn)(h)
    h = _batch_norm(f"{name}_bn2")(h)
    h = keras.layers.ReLU(name=f"{name}_relu2")(h)
    h = _conv(channels, 3, f"{name}_conv2", arch="paper", sn=sn)(h)
    # The shortcut must change size and channels too; the official code always uses a 1x1 conv here.
    s = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_shortcut_upsample")(x)
    s = _conv(channels, 1, f"{name}_shortcut_conv", arch="paper", sn=sn)(s)
    return keras.layers.Add(name=f"{name}_add")([s, h])


def _paper_generator(z, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _PAPER_G_CHANNELS.items()}
    x = _dense(4 * 4 * ch[4], "project", arch="paper", sn=sn)(z)
    x = keras.layers.Reshape((4, 4, ch[4]), name="project_reshape")(x)
    x = _attend(x, 4, attention_res, variant, sn)
    for size in _sizes(8, resolution):
        x = _g_res_block(x, ch[size], size, sn)
        x = _attend(x, size, attention_res, variant, sn)
    # Residual blocks end on a conv, so the output needs its own BN + ReLU before the RGB conv.
    x = _batch_norm("final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = _conv(3, 3, "to_rgb", arch="paper", sn=sn)(x)
    return _to_float32(x, "tanh", "tanh")


def _d_optimized_block(x, channels, size, sn):
    """The first D block: conv-ReLU-conv-pool (no ReLU on the raw image); shortcut pool-then-1x1-conv."""
    name = f"down{size}"
    h = _conv(channels, 3, f"{name}_conv1", arch="paper", sn=sn)(x)
    h = keras.layers.ReLU(name=f"{name}_relu1")(h)
    h = _conv(channels, 3, f"{name}_conv2", arch="paper", sn=sn)(h)
    h = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(h)
    # Pooling first makes the 1x1 conv 4x cheaper; both are linear, so the order does not change the function.
    s = keras.layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(x)
    s = _conv(channels, 1, f"{name}_shortcut_conv", arch="paper", sn=sn)(s)
    return keras.layers.Add(name=f"{name}_add")([h, s])


def _d_res_block(x, channels, name, sn, downsample=True):
    """ReLU-conv3x3-ReLU-conv3x3(-avg-pool); the shortcut gets a 1x1 conv when the shape changes."""
    h = keras.layers.ReLU(name=f"{name}_relu1")(x)
    h = _conv(channels, 3, f"{name}_conv1", arch="paper", sn=sn)(h)
    h = keras.layers.ReLU(name=f"{name}_relu2")(h)
    h = _conv(channels, 3, f"{name}_conv2", arch="paper", sn=sn)(h)
    s = x
    if downsample or x.shape[-1] != channels:
        s = _conv(channels, 1, f"{name}_shortcut_conv", arch="paper", sn=sn)(s)
    if downsample:
        h = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(h)
        s = keras.layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(s)
    return keras.layers.Add(name=f"{name}_add")([s, h])


def _paper_discriminator(images, resolution, width, attention_res, variant, sn):
    ch = {s: _scaled(c, width) for s, c in _PAPER_D_CHANNELS.items()}
    sizes = _sizes(4, resolution // 2)[::-1]  # output sizes of the downsampling blocks
    x = _d_optimized_block(images, ch[sizes[0]], sizes[0], sn)
    x = _attend(x, sizes[0], attention_res, variant, sn)
    for size in sizes[1:]:
        x = _d_res_block(x, ch[size], f"down{size}", sn)
        x = _attend(x, size, attention_res, variant, sn)
    x = _d_res_block(x, ch[4], "final", sn, downsample=False)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = GlobalSumPooling2D(name="sum_pool")(x)
    # Unconditional: the official D adds a projection term <embed(y), h> here; we have no labels.
    x = _dense(1, "logit", arch="paper", sn=sn)(x)
    return _to_float32(x, "linear", "logits")


_GENERATORS = {"dcgan": _dcgan_generator, "blog": _blog_generator, "paper": _paper_generator}
_DISCRIMINATORS = {"dcgan": _dcgan_discriminator, "blog": _blog_discriminator, "paper": _paper_discriminator}


# ---------------------------------------------------------------------------------------------------------------
# Public builders
# ---------------------------------------------------------------------------------------------------------------
def make_generator(arch: str = "blog", resolution: int = 128, z_dim: int = 128, width: float = 1.0,
                   attention_res="auto", attention_variant: str | None = None, spectral_norm: bool | None = None,
                   name: str | None = None) -> keras.Model:
    """A generator ``z (B, z_dim) -> images (B, resolution, resolution, 3)`` in [-1, 1].

    Args:
        arch: ``"dcgan"``, ``"blog"`` or ``"paper"`` (see the module docstring).
        resolution: 32, 64 or 128; the number of 2x upsampling stages is log2(resolution / 4).
        z_dim: length of the latent vector z.
        width: multiplies every channel count (at least 8 channels per layer); 1.0 = the published model.
        attention_res: side of the feature map that gets self-attention (placed after the block that outputs
            it), one of :func:`attention_sizes`; ``None`` for no attention; ``"auto"`` = 32 for blog/paper,
            None for dcgan.
        attention_variant: ``"paper"`` or ``"biggan"`` (see :class:`SelfAttention`); None = the arch's
            default (paper for blog and dcgan, biggan for paper).
        spectral_norm: wrap every conv/dense layer (attention's included) in :class:`SpectralNormalization`;
            None = the arch's default (True for blog and paper, False for dcgan).
        name: the model's name; default ``"<arch>_generator"``.
    """
    if isinstance(z_dim, bool) or not isinstance(z_dim, (int, np.integer)) or z_dim < 1:
        raise ValueError(f"z_dim must be a positive integer, got {z_dim!r}.")
    resolution, width, attention_res, variant, sn = _check_args(
        "generator", arch, resolution, width, attention_res, attention_variant, spectral_norm)
    z = keras.Input((int(z_dim),), name="z")
    images = _GENERATORS[arch](z, resolution, width, attention_res, variant, sn)
    return keras.Model(z, images, name=name or f"{arch}_generator")


def make_discriminator(arch: str = "blog", resolution: int = 128, width: float = 1.0, attention_res="auto",
                       attention_variant: str | None = None, spectral_norm: bool | None = None,
                       name: str | None = None) -> keras.Model:
    """A discriminator ``images (B, resolution, resolution, 3) -> logits (B, 1)`` (unscaled scores).

    Arguments as in :func:`make_generator`. A discriminator's feature maps run from ``resolution // 2`` down to
    4, so with ``resolution=32`` an explicit ``attention_res=32`` is an error and ``"auto"`` picks 16. The
    DCGAN discriminator has BatchNorm only without spectral normalization (a BatchNorm layer would break the
    Lipschitz bound SN gives; SN-GAN and SAGAN have no BatchNorm in D).
    """
    resolution, width, attention_res, variant, sn = _check_args(
        "discriminator", arch, resolution, width, attention_res, attention_variant, spectral_norm)
    images = keras.Input((resolution, resolution, 3), name="images")
    logits = _DISCRIMINATORS[arch](images, resolution, width, attention_res, variant, sn)
    return keras.Model(images, logits, name=name or f"{arch}_discriminator")


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Number of parameters; by default the trainable ones, which is what papers report.

    Non-trainable weights are BatchNorm's moving mean/variance and spectral normalization's ``u`` vectors:
    state, not parameters. Pass ``trainable_only=False`` to count them too.
    """
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(np.prod(w.shape)) for w in weights))


def attention_layers(model: keras.Model) -> list[SelfAttention]:
    """The model's :class:`SelfAttention` layers (named ``attention_<size>``), e.g. to log their gamma."""
    return [layer for layer in model.layers if isinstance(layer, SelfAttention)]
