"""The cost of one self-attention block: time, CPU time, page faults and FLOPs (benchmarks/bench_attention.py and
chapter 3's study of why attention at 128x128 and above is expensive).

    attention_cost(32, "paper", channels=64)    # {"fwd_ms": ..., "train_ms": ..., "score_bytes": ..., ...}
"""
from __future__ import annotations


def attention_cost(size: int, variant: str = "paper", channels: int = 64, batch: int = 1, min_repeats: int = 3,
                   min_seconds: float = 1.0, max_repeats: int = 20, on_phase=None) -> dict:
    """Time one :class:`~sagan_tut.attention.SelfAttention` block on a ``(batch, size, size, channels)`` input.

    The block (spectral norm on, training mode, gamma = 0.5) runs inside ``tf.function``: forward only, then
    forward + backward (gradients for the input and every weight). Each is called once untimed, then repeated
    until ``min_repeats`` calls and ``min_seconds`` have passed (at most ``max_repeats``). Returns median wall
    milliseconds (``fwd_ms``, ``train_ms``), CPU milliseconds and page faults per call, the number of queries
    ``n`` and keys ``m`` (``n / 4`` when pooled), the float32 ``score_bytes`` (batch x n x m x 4) and the
    forward FLOPs ``gflop_fwd`` (``sagan_tut.flops``). ``on_phase(name)`` is called after the "forward" and the
    "train" repetitions (the benchmark reads the memory high-water mark there).
    """
    import resource
    import statistics
    import time

    import tensorflow as tf

    from .attention import SelfAttention
    from .flops import layer_flops

    shape = (int(batch), int(size), int(size), int(channels))
    layer = SelfAttention(variant=variant, spectral_norm=True)
    layer.build(shape)
    layer.gamma.assign(0.5)  # as in a trained block (at gamma = 0 the output ignores the attention)
    x = tf.random.stateless_normal(shape, seed=(1, 2))
    dy = tf.random.stateless_normal(shape, seed=(3, 4))

    @tf.function
    def forward(x):
        return layer(x, training=True)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * dy)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    def timed(fn):
        fn(x)  # untimed first call
        times, ru0, cpu0, start = [], resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
        while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_seconds):
            t = time.perf_counter()
            out = fn(x)
            [o.numpy() for o in tf.nest.flatten(out)]  # wait for the result
            times.append(time.perf_counter() - t)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        return (statistics.median(times) * 1e3, (time.process_time() - cpu0) / len(times) * 1e3,
                (ru1.ru_minflt - ru0.ru_minflt) / len(times), len(times))

    forward.get_concrete_function(x)  # trace both now, so an on_phase baseline taken by the caller before
    forward_backward.get_concrete_function(x)  # this call includes the tracing
    if on_phase:
        on_phase("built")
    fwd = timed(forward)
    if on_phase:
        on_phase("forward")
    train = timed(forward_backward)
    if on_phase:
        on_phase("train")
    n = shape[1] * shape[2]
    m = n // 4 if variant == "biggan" else n
    return {
        "size": shape[1], "variant": variant, "channels": shape[3], "batch": shape[0], "n": n, "m": m,
        "score_bytes": shape[0] * n * m * 4, "gflop_fwd": layer_flops(layer, shape, shape)["matmul"] * shape[0] / 1e9,
        "fwd_ms": fwd[0], "fwd_cpu_ms": fwd[1], "fwd_page_faults": fwd[2], "fwd_reps": fwd[3],
        "train_ms": train[0], "train_cpu_ms": train[1], "train_page_faults": train[2], "train_reps": train[3],
    }


__all__ = ["attention_cost"]
