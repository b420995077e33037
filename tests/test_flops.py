"""The analytic FLOP counter: hand-computed counts for tiny layers, TensorFlow's own per-op FLOP statistics for
whole models, and the training-iteration accounting."""
import keras
import pytest
import tensorflow as tf

from sagan_tut.attention import SelfAttention
from sagan_tut.flops import count_flops, flop_breakdown, iteration_flops
from sagan_tut.models import make_discriminator, make_generator
from sagan_tut.spectral_norm import SpectralNormalization


def _model(input_shape, *layers):
    x = inputs = keras.Input(input_shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def test_conv2d_is_two_flops_per_multiply_add_per_output_position():
    m = _model((8, 8, 3), keras.layers.Conv2D(4, 3, padding="same"))
    assert count_flops(m) == 2 * 8 * 8 * 3 * 3 * 3 * 4  # 2 * H_out * W_out * kh * kw * C_in * C_out
    assert count_flops(m, batch=5) == 5 * 2 * 8 * 8 * 3 * 3 * 3 * 4
    strided = _model((8, 8, 3), keras.layers.Conv2D(4, 4, strides=2, padding="same"))
    assert count_flops(strided) == 2 * 4 * 4 * 4 * 4 * 3 * 4  # the output is 4x4
    valid = _model((8, 8, 3), keras.layers.Conv2D(4, 3, padding="valid"))
    assert count_flops(valid) == 2 * 6 * 6 * 3 * 3 * 3 * 4


def test_transposed_conv_counts_input_positions():
    # Each of the 4x4 input pixels scatters a 4x4x5 block per input channel.
    m = _model((4, 4, 3), keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same"))
    assert m.output_shape == (None, 8, 8, 5)
    assert count_flops(m) == 2 * 4 * 4 * 4 * 4 * 3 * 5


def test_dense_on_vectors_and_on_feature_maps():
    assert count_flops(_model((7,), keras.layers.Dense(3))) == 2 * 7 * 3
    assert count_flops(_model((2, 5, 7), keras.layers.Dense(3))) == 2 * 2 * 5 * 7 * 3  # per position


def test_spectral_norm_adds_the_power_iteration_once_per_call():
    m = _model((8, 8, 3), SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same")))
    conv = 2 * 8 * 8 * 3 * 3 * 3 * 4
    kernel = 3 * 3 * 3 * 4
    assert count_flops(m) == conv
    assert count_flops(m, batch=2) == 2 * conv
    # training: W u and W^T v of the power iteration, W u again for sigma: 3 matrix-vector products of 2K each
    assert count_flops(m, batch=2, training=True) == 2 * conv + 6 * kernel


@pytest.mark.parametrize("variant", ["paper", "biggan"])
def test_attention_counts_its_convs_and_both_matmuls(variant):
    c, s = 16, 4
    n = s * s
    m_keys = n // 4 if variant == "biggan" else n
    ck = c // 8
    cv = c // 2 if variant == "biggan" else c
    expected = (2 * n * c * ck * 2  # f and g: 1x1 convs C -> C/8 over N positions
                + 2 * n * c * cv  # h: C -> C_v
                + 2 * n * m_keys * ck  # scores g(x) f(x)^T: N x M, inner dimension C/8
                + 2 * n * m_keys * cv)  # beta h(x): N x C_v, inner dimension M
    if variant == "biggan":
        expected += 2 * n * cv * c  # v: the output conv C/2 -> C
    m = _model((s, s, c), SelfAttention(variant=variant, spectral_norm=False))
    assert count_flops(m) == expected


def test_elementwise_layers_count_zero_and_unknown_kernels_are_an_error():
    m = _model((4, 4, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.AveragePooling2D(2))
    assert count_flops(m) == 0
    with pytest.raises(ValueError, match="does not know how to count"):
        count_flops(_model((4, 4, 3), keras.layers.DepthwiseConv2D(3)))
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        count_flops(m, batch=0)


def _tf_conv_flops(model, batch=2):
    """TensorFlow's own FLOP statistics (tf.compat.v1.profiler) of every convolution op in the model's graph."""
    spec = tf.TensorSpec((batch,) + tuple(model.input_shape[1:]))
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    report = tf.compat.v1.profiler.profile(graph=graph, cmd="scope", options=options)
    per_node, stack = {}, [report]
    while stack:
        node = stack.pop()
        per_node[node.name] = node.float_ops
        stack.extend(node.children)
    convs = [op.name for op in graph.get_operations() if op.type in ("Conv2D", "Conv2DBackpropInput")]
    assert convs, "no convolution ops in the graph"
    return sum(per_node[name] for name in convs)


@pytest.mark.parametrize("arch", ["blog", "paper"])
def test_convolutions_agree_with_tensorflows_own_flop_statistics(arch):
    # TensorFlow registers FLOP counts for its convolution ops (Conv2DBackpropInput = transposed conv); summing
    # them over the graph is an independent count of the convolution part of our total.
    kw = dict(arch=arch, resolution=32, width=0.125, attention_res=None)
    for model in (make_generator(**kw), make_discriminator(**kw)):
        convs = [r for r in flop_breakdown(model) if "conv" in r["name"] or "to_rgb" in r["name"]]
        ours = 2 * sum(r["matmul"] for r in convs)
        assert ours > 0
        assert ours == _tf_conv_flops(model, batch=2)


def test_iteration_accounting():
    kw = dict(arch="blog", resolution=32, width=0.125, attention_res=16)
    G, D = make_generator(**kw), make_discriminator(**kw)
    f_g, f_d = count_flops(G, 4), count_flops(D, 4)
    sn_g = count_flops(G, 1, training=True) - count_flops(G, 1)
    sn_d = count_flops(D, 1, training=True) - count_flops(D, 1)
    one = iteration_flops(G, D, batch=4)
    # D update: G forward + D forward on real and fake + their backward (2x); G update: G and D forward, D's input
    # gradient, G's backward. SN: G runs twice (D update, G update), D three times.
    assert one["F_G"] == f_g and one["F_D"] == f_d
    assert one["total"] == (f_g + 6 * f_d) + (3 * f_g + 2 * f_d) + 2 * sn_g + 3 * sn_d
    two = iteration_flops(G, D, batch=4, n_dis=2)
    assert two["total"] == 2 * (f_g + 6 * f_d) + (3 * f_g + 2 * f_d) + 3 * sn_g + 5 * sn_d
    # the unneeded first-layer input gradients are a small part of the count
    first_g = 2 * 128 * (4 * 4 * 64)  # G's first layer: dense z (128) -> 4x4x64 (width 1/8 of 512)
    first_d = 2 * 16 * 16 * 4 * 4 * 3 * 16  # D's first layer: 4x4 stride-2 conv 3 -> 16 (1/8 of 128), 16x16 out
    assert one["first_layer_input_grad"] == 4 * (first_g + 2 * first_d)
    assert one["first_layer_input_grad"] < 0.05 * one["total"]
