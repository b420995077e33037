"""Analytic FLOP counts of the course's generators and discriminators, read off their layer shapes.

    count_flops(G, batch=64)                    # forward FLOPs of G for 64 images
    iteration_flops(G, D, batch=64)["total"]    # one training iteration (n_dis D updates + one G update)

Convention (the one used for "model FLOPs utilisation", e.g. Chowdhery et al., 2022, PaLM, App. B): only the
matrix products are counted -- convolutions, transposed convolutions, dense layers and attention's two batched
matmuls -- and a multiply-add counts as **2** FLOPs. These are the operations a machine's peak FLOP/s refers
to. Element-wise work (bias, BatchNorm, activations, softmax, pooling, the optimizer update) is left out: it is
limited by memory bandwidth, not arithmetic, and is a few percent of the total for these models.

Per image:

* ``Conv2D``: ``2 * H_out * W_out * kh * kw * C_in * C_out``.
* ``Conv2DTranspose``: ``2 * H_in * W_in * kh * kw * C_in * C_out`` (every input pixel scatters one kernel).
* ``Dense``: ``2 * d_in * d_out`` (times the positions, when applied to a feature map).
* ``SelfAttention``: its 1x1 convs f, g, h (and v) as above, plus ``2 * N * M * C_k`` for the scores
  ``s = g(x) f(x)^T`` and ``2 * N * M * C_v`` for ``beta h(x)``; ``N = H * W`` queries and ``M`` keys (``N / 4``
  when the keys and values are 2x2 max-pooled).
* ``SpectralNormalization``: the wrapped layer, plus -- once per call, whatever the batch -- the power iteration's
  matrix-vector products on the kernel matrix ``W`` (fan_in x out, ``K`` entries): ``W u`` and ``W^T v`` in
  training and ``W u`` again for sigma, i.e. ``6 K`` FLOPs (``4 K`` in inference). Counted separately, because
  they do not grow with the batch.

A training iteration (:func:`iteration_flops`, the trainer's step in ``sagan_tut/train.py``) with ``F_G``,
``F_D`` = forward FLOPs for one batch of ``B`` images, and a backward pass costing twice the forward (for each
matrix product ``Y = X W`` the backward computes ``dX = dY W^T`` and ``dW = X^T dY``, each as large as the
forward):

* each D update: G forward on z (outside the tape: no backward) ``F_G``; D forward on the real and the fake
  batch ``2 F_D``; D backward for both ``4 F_D``  ->  ``F_G + 6 F_D``;
* the G update: G and D forward ``F_G + F_D``; backward through D for the input gradient only (D's weights
  are not being trained, and TensorFlow skips their gradients) ``F_D``; G backward ``2 F_G``  ->
  ``3 F_G + 2 F_D``;
* iteration: ``n_dis (F_G + 6 F_D) + 3 F_G + 2 F_D``, i.e. ``4 F_G + 8 F_D`` for ``n_dis = 1``; plus the
  batch-independent spectral-norm products (D is called twice per D update and once per G update).

The count is slightly high: the first layer of each network needs no input gradient (its input is z, an image,
or a fake made outside the gradient tape), which :func:`iteration_flops` reports as ``first_layer_input_grad`` so a reader can see it is small.
"""
from __future__ import annotations

import math

import keras

from .attention import SelfAttention
from .spectral_norm import SpectralNormalization, _kernel_variable

# Layers that hold a kernel we know how to count; any other layer with a kernel is an error (never a silent 0).
_MATMUL_LAYERS = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def _shape(tensor):
    return tuple(int(d) if d is not None else None for d in tensor.shape)


def _per_image(shape):
    """Product of the non-batch dimensions except the last (positions a layer is applied at)."""
    return math.prod(d for d in shape[1:-1])


def layer_flops(layer, input_shape, output_shape, training: bool = False) -> dict:
    """FLOPs of one call of ``layer`` on one image: ``{"matmul": ..., "spectral_norm": ...}``.

    ``input_shape`` / ``output_shape`` include a (ignored) batch dimension. ``spectral_norm`` is the
    batch-independent power-iteration cost (see the module docstring).
    """
    if isinstance(layer, SpectralNormalization):
        inner = layer_flops(layer.layer, input_shape, output_shape)
        k = math.prod(_kernel_variable(layer.layer).shape)
        return {"matmul": inner["matmul"], "spectral_norm": (6 if training else 4) * k}
    if isinstance(layer, SelfAttention):
        return _attention_flops(layer, input_shape, training)
    if isinstance(layer, keras.layers.Conv2DTranspose):  # before Conv2D: it is a subclass in some versions
        kh, kw = layer.kernel_size
        c_in, c_out = input_shape[-1], layer.filters
        return {"matmul": 2 * _per_image(input_shape) * kh * kw * c_in * c_out, "spectral_norm": 0}
    if isinstance(layer, keras.layers.Conv2D):
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(f"layer {layer.name!r}: grouped convolutions are not counted; use groups=1.")
        kh, kw = layer.kernel_size
        c_in, c_out = input_shape[-1], layer.filters
        return {"matmul": 2 * _per_image(output_shape) * kh * kw * c_in * c_out, "spectral_norm": 0}
    if isinstance(layer, keras.layers.Dense):
        positions = _per_image(input_shape) if len(input_shape) > 2 else 1
        return {"matmul": 2 * positions * input_shape[-1] * layer.units, "spectral_norm": 0}
    if isinstance(layer, keras.Model):
        raise ValueError(f"layer {layer.name!r} is a nested model: count it with count_flops(...) separately.")
    if getattr(layer, "kernel", None) is not None or getattr(layer, "embeddings", None) is not None:
        raise ValueError(f"count_flops does not know how to count {type(layer).__name__} (layer {layer.name!r}); "
                         "it handles Dense, Conv2D, Conv2DTranspose, SpectralNormalization and SelfAttention.")
    return {"matmul": 0, "spectral_norm": 0}  # element-wise layers: not counted (see the module docstring)


def _attention_flops(layer: SelfAttention, input_shape, training: bool) -> dict:
    _, height, width, channels = input_shape
    n = height * width
    m = n // 4 if layer.pool else n
    key_channels = layer.f.compute_output_shape(input_shape)[-1]
    value_channels = layer.h.compute_output_shape(input_shape)[-1]
    total = {"matmul": 0, "spectral_norm": 0}
    convs = [(layer.f, input_shape), (layer.g, input_shape), (layer.h, input_shape)]
    if layer.variant != "paper":
        convs.append((layer.v, (None, height, width, value_channels)))
    for conv, shape in convs:
        part = layer_flops(conv, shape, conv.compute_output_shape(shape), training)
        total["matmul"] += part["matmul"]
        total["spectral_norm"] += part["spectral_norm"]
    total["matmul"] += 2 * n * m * key_channels + 2 * n * m * value_channels
    return total


def flop_breakdown(model: keras.Model, training: bool = False) -> list[dict]:
    """One row per layer call of a functional model: ``name``, ``type``, ``matmul`` (per image) and
    ``spectral_norm`` (per call), in the model's layer order. Layers that count zero are included."""
    rows = []
    for layer in model.layers:
        for node in layer._inbound_nodes:
            if not node.input_tensors:  # an InputLayer
                continue
            part = layer_flops(layer, _shape(node.input_tensors[0]), _shape(node.output_tensors[0]), training)
            rows.append({"name": layer.name, "type": type(layer).__name__, **part})
    return rows


def count_flops(model: keras.Model, batch: int = 1, training: bool = False) -> int:
    """Forward FLOPs of ``model`` on ``batch`` images (matrix products only, multiply-add = 2).

    With ``training=True`` the spectral-norm power iteration of a training call is added once (it does not
    grow with the batch); with ``training=False`` only the batch-proportional products are counted.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}.")
    rows = flop_breakdown(model, training)
    total = batch * sum(r["matmul"] for r in rows)
    if training:
        total += sum(r["spectral_norm"] for r in rows)
    return int(total)


def _first_layer_input_grad(model: keras.Model) -> int:
    """Per-image FLOPs of the input gradient of the layers fed by the model input (not needed in backprop)."""
    inputs = {id(t) for t in model.inputs}
    total = 0
    for layer in model.layers:
        for node in layer._inbound_nodes:
            if node.input_tensors and id(node.input_tensors[0]) in inputs:
                total += layer_flops(layer, _shape(node.input_tensors[0]), _shape(node.output_tensors[0]))["matmul"]
    return total


def iteration_flops(G: keras.Model, D: keras.Model, batch: int, n_dis: int = 1) -> dict:
    """FLOPs of one training iteration of the trainer (``n_dis`` D updates and one G update) at ``batch``.

    Returns ``F_G``, ``F_D`` (forward, per batch), ``d_update``, ``g_update`` (each per update, matrix
    products), ``spectral_norm`` (all power iterations of the iteration), ``total``, and
    ``first_layer_input_grad`` (the part of ``total`` that backprop does not actually need; see the module
    docstring). The accounting is in the module docstring.
    """
    if isinstance(n_dis, bool) or not isinstance(n_dis, int) or n_dis < 1:
        raise ValueError(f"n_dis must be a positive integer, got {n_dis!r}.")
    f_g, f_d = count_flops(G, batch), count_flops(D, batch)
    sn_g = count_flops(G, 1, training=True) - count_flops(G, 1)
    sn_d = count_flops(D, 1, training=True) - count_flops(D, 1)
    d_update = f_g + 6 * f_d
    g_update = 3 * f_g + 2 * f_d
    # G runs in training mode once per D update and once per G update; D twice per D update, once per G update.
    spectral_norm = (n_dis + 1) * sn_g + (2 * n_dis + 1) * sn_d
    # Counted in the backward passes above but skipped by backprop: the input gradient of G's first layer (z is
    # a constant) in the G update, and of D's first layer in both D calls of each D update (the real images are
    # data, and the fakes were made outside the tape, so they are constants too).
    unneeded = batch * (_first_layer_input_grad(G) + 2 * n_dis * _first_layer_input_grad(D))
    return {
        "F_G": f_g, "F_D": f_d, "d_update": d_update, "g_update": g_update, "spectral_norm": spectral_norm,
        "total": n_dis * d_update + g_update + spectral_norm, "first_layer_input_grad": unneeded,
    }


__all__ = ["count_flops", "flop_breakdown", "iteration_flops", "layer_flops"]
