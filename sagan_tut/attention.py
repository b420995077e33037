"""The SAGAN self-attention block (Zhang et al., 2019), with the paper's names.

For a feature map x with C channels and N = H*W positions, three 1x1 convolutions give

    f(x) (keys, C/8 channels), g(x) (queries, C/8 channels), h(x) (values).

The score of query position j for key position i is s_ij = f(x_i)^T g(x_j); a softmax over i gives the
attention map beta_{j,i}; the output at j is o_j = sum_i beta_{j,i} h(x_i) and the block returns

    y = x + gamma * o,     gamma a learnable scalar initialised to 0,

so a freshly built block is the identity and the network learns how much non-local evidence to mix in.

Three variants, because the sources disagree (see the errata page):

* ``variant="paper"``: h has C channels and o is added directly. This is the block of the first arXiv version
  of the paper, of the blog post's code and of heykeetae's PyTorch code.
* ``variant="icml"``: the published (ICML 2019) equations, o_j = v(sum_i beta_{j,i} h(x_i)) with h mapping to
  C/8 channels and a 1x1 output conv v mapping C/8 back to C.
* ``variant="biggan"``: the official TF code and BigGAN. h has C/2 channels, keys and values are 2x2
  max-pooled (4x fewer positions to attend over, so the N x N map becomes N x N/4), and a 1x1 output conv v
  maps the C/2 channels back to C. Pooling exists for compute: the score matrix grows as N^2 = (H*W)^2.

Scores and softmax run in float32 even under mixed precision (float16 scores can overflow or round badly).
"""
from __future__ import annotations

import keras
from keras import ops

from .spectral_norm import SpectralNormalization

VARIANTS = ("paper", "icml", "biggan")


def _conv1x1(channels: int, name: str, spectral_norm: bool, dtype):
    conv = keras.layers.Conv2D(channels, 1, use_bias=False, kernel_initializer="glorot_uniform", name=name, dtype=dtype)
    return SpectralNormalization(conv, name=f"sn_{name}", dtype=dtype) if spectral_norm else conv


@keras.saving.register_keras_serializable(package="sagan_tut")
class SelfAttention(keras.layers.Layer):
    """Self-attention over all positions of a ``(batch, H, W, C)`` feature map.

    Args:
        variant: ``"paper"`` (values C, no output conv), ``"icml"`` (values C/8, output conv v) or ``"biggan"``
            (values C/2, pooled keys/values, output conv v).
        key_divisor: keys and queries have ``C // key_divisor`` channels (8 in the paper).
        spectral_norm: wrap f, g, h (and v) in :class:`SpectralNormalization`, as SAGAN does.
        return_attention: return ``(y, beta)`` with ``beta`` of shape ``(batch, N_queries, N_keys)``.
    """

    def __init__(self, variant: str = "paper", key_divisor: int = 8, spectral_norm: bool = True,
                 return_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"SelfAttention variant must be one of {VARIANTS}, got {variant!r}.")
        if int(key_divisor) < 1:
            raise ValueError(f"key_divisor must be a positive integer, got {key_divisor}.")
        self.variant = variant
        self.key_divisor = int(key_divisor)
        self.spectral_norm = bool(spectral_norm)
        self.return_attention = bool(return_attention)
        self.pool = variant == "biggan"

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"SelfAttention expects (batch, H, W, C) inputs with known C, got {input_shape}.")
        channels = int(input_shape[-1])
        key_channels = max(1, channels // self.key_divisor)
        value_channels = {"paper": channels, "icml": key_channels, "biggan": max(1, channels // 2)}[self.variant]
        self.f = _conv1x1(key_channels, "f", self.spectral_norm, self.dtype_policy)
        self.g = _conv1x1(key_channels, "g", self.spectral_norm, self.dtype_policy)
        self.h = _conv1x1(value_channels, "h", self.spectral_norm, self.dtype_policy)
        self.f.build(input_shape)
        self.g.build(input_shape)
        self.h.build(input_shape)
        if self.variant != "paper":
            self.v = _conv1x1(channels, "v", self.spectral_norm, self.dtype_policy)
            self.v.build(tuple(input_shape[:-1]) + (value_channels,))
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros", trainable=True)
        self.built = True

    def _pool(self, t):
        return ops.max_pool(t, pool_size=2, strides=2, padding="valid")

    def call(self, x, training=None):
        shape = ops.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        if self.pool and (x.shape[1] is not None and x.shape[1] % 2 or x.shape[2] is not None and x.shape[2] % 2):
            raise ValueError(
                f"variant='biggan' max-pools keys and values 2x2, so H and W must be even; got {x.shape[1:3]}. "
                "Use variant='paper' for odd sizes."
            )
        queries = self.g(x, training=training)
        keys = self.f(x, training=training)
        values = self.h(x, training=training)
        if self.pool:
            keys, values = self._pool(keys), self._pool(values)
        queries = ops.reshape(queries, (batch, -1, queries.shape[-1]))  # (B, N, C/8)
        keys = ops.reshape(keys, (batch, -1, keys.shape[-1]))  # (B, M, C/8)
        values = ops.reshape(values, (batch, -1, values.shape[-1]))  # (B, M, Cv)
        # s_ij = f(x_i)^T g(x_j) in float32: only C/8 channels, so cheap, and safe from float16 overflow
        scores = ops.matmul(ops.cast(queries, "float32"), ops.transpose(ops.cast(keys, "float32"), (0, 2, 1)))
        beta = ops.softmax(scores, axis=-1)  # (B, N, M); rows sum to 1 over key positions i
        o = ops.matmul(ops.cast(beta, values.dtype), values)  # (B, N, Cv)
        o = ops.reshape(o, (batch, height, width, values.shape[-1]))
        if self.variant != "paper":
            o = self.v(o, training=training)
        y = x + ops.cast(self.gamma, x.dtype) * ops.cast(o, x.dtype)
        return (y, beta) if self.return_attention else y

    def compute_output_shape(self, input_shape):
        if not self.return_attention:
            return input_shape
        n = None if None in input_shape[1:3] else input_shape[1] * input_shape[2]
        m = n // 4 if (n is not None and self.pool) else n
        return input_shape, (input_shape[0], n, m)

    def get_config(self):
        config = super().get_config()
        config.update(variant=self.variant, key_divisor=self.key_divisor, spectral_norm=self.spectral_norm,
                      return_attention=self.return_attention)
        return config
