"""Spectral normalization (Miyato et al., 2018) as a Keras 3 wrapper.

The wrapped layer keeps its raw kernel W. Every forward pass uses W / sigma(W), where sigma is the largest
singular value of W viewed as a matrix, estimated by power iteration with a persistent vector ``u``:

    v = normalize(W u)        u = normalize(W^T v)        sigma = v^T W u

``u`` and ``v`` are treated as constants (no gradient through the power iteration), but sigma stays in the
graph, so the kernel's gradient includes the normalisation, as in the paper. Because ``u`` carries over between
training steps and W changes slowly, one iteration per step is enough.

Two details earlier implementations got wrong (see the errata page):

* The matrix. A kernel is a linear map from inputs to outputs; we reshape it to ``[fan_in, out]`` with the
  output axis last. Keras stores Conv2DTranspose kernels as ``(kh, kw, out, in)``, so their output axis is the
  one before last and must be moved last first. A plain ``reshape(kernel, [out, -1])`` of a Conv2D kernel
  (the blog code) scrambles the matrix.
* The state. ``u`` is a non-trainable layer weight: it is in ``layer.weights``, in ``tf.train.Checkpoint``s and
  in ``.keras`` files, and it is updated only when ``training=True``.

Unlike ``keras.layers.SpectralNormalization``, this wrapper never overwrites the kernel variable.
"""
from __future__ import annotations

import keras
from keras import ops

_SUPPORTED = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.Embedding,
)


def _kernel_variable(layer):
    return layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel


def _output_axis(layer) -> int:
    # Keras lays out Conv2DTranspose kernels as (kh, kw, out_channels, in_channels).
    return -2 if isinstance(layer, keras.layers.Conv2DTranspose) else -1


def kernel_to_matrix(kernel, layer):
    """The kernel as a 2-D ``[fan_in, out]`` matrix whose singular values are those of the layer's linear map."""
    axis = _output_axis(layer)
    if axis == -2:
        rank = len(kernel.shape)
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        kernel = ops.transpose(kernel, perm)
    return ops.reshape(kernel, (-1, kernel.shape[-1]))


def _l2_normalize(x, eps):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


@keras.saving.register_keras_serializable(package="sagan_tut")
class SpectralNormalization(keras.layers.Wrapper):
    """Wrap a Dense, Conv1D, Conv2D, Conv2DTranspose or Embedding layer so that it uses ``W / sigma(W)``.

    Args:
        layer: the layer to normalise (not yet built, or built).
        power_iterations: power-iteration steps per training call (1 suffices because ``u`` persists).
        eps: floor for vector norms, so a zero kernel does not divide by zero.
    """

    def __init__(self, layer, power_iterations: int = 1, eps: float = 1e-12, **kwargs):
        if not isinstance(layer, _SUPPORTED):
            raise TypeError(
                f"SpectralNormalization supports {', '.join(c.__name__ for c in _SUPPORTED)}; got "
                f"{type(layer).__name__}. Wrap one of those layers instead."
            )
        if getattr(layer, "groups", 1) != 1:
            raise ValueError("SpectralNormalization does not support grouped convolutions (groups > 1).")
        if isinstance(layer, keras.layers.Conv1D) and layer.padding == "causal":
            raise ValueError("SpectralNormalization does not support Conv1D(padding='causal'); pad the input "
                             "yourself (e.g. keras.layers.ZeroPadding1D) and use padding='valid'.")
        if getattr(layer, "lora_enabled", False):
            raise ValueError("SpectralNormalization cannot wrap a LoRA-enabled layer (its low-rank update would be "
                             "ignored); wrap the layer before calling enable_lora, or don't use both.")
        if int(power_iterations) < 1:
            raise ValueError(f"power_iterations must be >= 1, got {power_iterations}.")
        # The power iteration runs in float32 even under a mixed-precision policy: read variables unscaled.
        kwargs.setdefault("autocast", False)
        super().__init__(layer, **kwargs)
        self.power_iterations = int(power_iterations)
        self.eps = float(eps)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernel = _kernel_variable(self.layer)
        out_dim = int(kernel.shape[_output_axis(self.layer)])
        self.u = self.add_weight(
            name="u",
            shape=(out_dim,),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            dtype="float32",
            aggregation="only_first_replica",
        )
        # Start from a unit vector: before the first training call sigma = ||W u|| must already be an estimate.
        self.u.assign(self.u / ops.maximum(ops.norm(self.u), self.eps))
        self.built = True

    # -- the method ---------------------------------------------------------------------------------------------
    def _matrix(self):
        kernel = ops.cast(_kernel_variable(self.layer), "float32")
        return kernel_to_matrix(kernel, self.layer)

    def power_iteration(self, w, u):
        """One or more power-iteration steps on ``w`` ([fan_in, out]) from ``u`` ([out]); returns (u, v)."""
        for _ in range(self.power_iterations):
            v = _l2_normalize(ops.matmul(w, u), self.eps)  # [fan_in]
            u = _l2_normalize(ops.matmul(ops.transpose(w), v), self.eps)  # [out]
        return ops.stop_gradient(u), ops.stop_gradient(v)

    def compute_sigma(self):
        """The current estimate of sigma(W) from the stored ``u``, without updating it (for logging)."""
        w = self._matrix()
        return ops.sqrt(ops.sum(ops.square(ops.matmul(w, ops.convert_to_tensor(self.u)))))

    def normalized_kernel(self, training=False):
        """``(W / sigma, sigma)`` in float32; with ``training=True`` also advances ``u``."""
        w = self._matrix()
        u = ops.convert_to_tensor(self.u)
        if training:
            u, v = self.power_iteration(w, u)
            self.u.assign(u)
        else:  # use u as stored; v follows from it, so sigma = ||W u||
            u = ops.stop_gradient(u)
            v = ops.stop_gradient(_l2_normalize(ops.matmul(w, u), self.eps))
        sigma = ops.maximum(ops.sum(v * ops.matmul(w, u)), self.eps)  # an all-zero kernel stays zero, not NaN
        kernel = ops.cast(_kernel_variable(self.layer), "float32")
        return kernel / sigma, sigma

    # -- the wrapped layer's forward pass with W / sigma ----------------------------------------------------------
    def call(self, inputs, training=None):
        w, _ = self.normalized_kernel(training=bool(training))
        layer = self.layer
        if isinstance(layer, keras.layers.Embedding):
            return ops.take(ops.cast(w, self.compute_dtype), ops.cast(inputs, "int32"), axis=0)
        # autocast is off (see __init__), so cast inputs to the policy's compute dtype ourselves
        inputs = ops.cast(inputs, self.compute_dtype)
        w = ops.cast(w, self.compute_dtype)
        if isinstance(layer, keras.layers.Dense):
            y = ops.matmul(inputs, w)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            y = ops.conv_transpose(
                inputs, w, strides=layer.strides, padding=layer.padding, output_padding=layer.output_padding,
                data_format=layer.data_format, dilation_rate=layer.dilation_rate,
            )
        else:  # Conv1D / Conv2D
            y = ops.conv(
                inputs, w, strides=layer.strides, padding=layer.padding,
                data_format=layer.data_format, dilation_rate=layer.dilation_rate,
            )
        if layer.use_bias:
            bias = ops.cast(layer.bias, y.dtype)
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                bias = ops.reshape(bias, (1, -1) + (1,) * (len(y.shape) - 2))
            y = y + bias
        if layer.activation is not None:
            y = layer.activation(y)
        return y

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)  # keeps Embedding(mask_zero=True) masks

    def get_config(self):
        config = super().get_config()
        config.update(power_iterations=self.power_iterations, eps=self.eps)
        return config
