"""The cost of one self-attention block: time, CPU time, page faults and FLOPs (benchmarks/bench_attention.py and
chapter 3's study of why attention at 128x128 and above is expensive).

    attention_cost(32, "paper", channels=64)    # {"fwd_ms": ..., "train_ms": ..., "score_bytes": ..., ...}
    rows = attention_scaling((16, 32, 64), channels=32)   # chapter 3: both variants, interleaved, one row each
    print(format_scaling(rows))
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




def _block_step(size: int, variant: str, channels: int, batch: int):
    """A compiled forward+backward call of a fresh spectrally normalised block (gamma = 0.5), its input and FLOPs."""
    import keras
    import tensorflow as tf

    from .attention import SelfAttention
    from .flops import layer_flops

    keras.utils.set_random_seed(0)
    shape = (int(batch), int(size), int(size), int(channels))
    block = SelfAttention(variant=variant)
    x = tf.random.normal(shape)
    block(x)
    block.gamma.assign(0.5)  # gamma != 0: every weight gets a real gradient (the work is the same either way)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(block(x, training=True)))
        return tape.gradient(loss, [x] + block.trainable_weights)

    forward_backward(x)[0].numpy()  # trace, compile and warm up: untimed
    flops = layer_flops(block, shape, shape, training=True)["matmul"] * shape[0]
    return forward_backward, x, flops


def attention_scaling(sizes, channels: int = 64, variants=("paper", "biggan"), batch: int = 1,
                      min_repeats: int = 5, min_seconds: float = 1.0, max_repeats: int = 50) -> list[dict]:
    """Median wall time of one forward+backward call of each variant of :class:`~sagan_tut.attention.SelfAttention`
    on a ``(batch, size, size, channels)`` map, for every size in ``sizes`` (chapter 3's cost study).

    The variants take turns call by call, so a burst of load on a shared machine slows them alike instead of
    skewing their ratio; each gets at least ``min_repeats`` calls, and small sizes keep going until
    ``min_seconds`` have passed (at most ``max_repeats`` calls). A size that runs out of memory is a result too:
    the variants that did not fit get ``train_ms = nan``. Returns one row per (size, variant), sizes in the
    given order: ``size``, ``variant``, ``n`` queries, ``m`` keys, ``score_bytes`` (float32 ``batch x n x m``),
    ``gflop_fwd`` (``sagan_tut.flops``), ``train_ms`` and ``reps``.
    """
    import math
    import statistics
    import time

    import tensorflow as tf

    unknown = [v for v in variants if v not in ("paper", "icml", "biggan")]
    if unknown or not variants:
        raise ValueError(f"attention_scaling: variants {list(variants)} must name SelfAttention variants "
                         "('paper', 'icml', 'biggan').")
    rows = []
    logger_level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # one new tf.function per size is intended; silence TF's retracing advice
    try:
        for size in sizes:
            steps, times = {}, {}
            for variant in variants:
                try:
                    steps[variant] = _block_step(size, variant, channels, batch)
                    times[variant] = []
                except tf.errors.ResourceExhaustedError:
                    pass

            def more():
                calls = min((len(t) for t in times.values()), default=max_repeats)
                spent = sum(map(sum, times.values()))
                return calls < max_repeats and (calls < min_repeats or spent < min_seconds)

            while steps and more():
                for variant, (step, x, _) in list(steps.items()):
                    t = time.perf_counter()
                    try:
                        step(x)[0].numpy()  # .numpy() waits for the result (GPU work is asynchronous)
                    except tf.errors.ResourceExhaustedError:
                        del steps[variant], times[variant]
                        continue
                    times[variant].append(time.perf_counter() - t)
            n = int(size) * int(size)
            for variant in variants:
                m = n // 4 if variant == "biggan" else n
                done = times.get(variant)
                flops = steps[variant][2] if variant in steps else None
                rows.append({"size": int(size), "variant": variant, "n": n, "m": m,
                             "score_bytes": int(batch) * n * m * 4,
                             "gflop_fwd": flops / 1e9 if flops is not None else math.nan,
                             "train_ms": statistics.median(done) * 1e3 if done else math.nan,
                             "reps": len(done) if done else 0})
    finally:
        tf.get_logger().setLevel(logger_level)
    return rows


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:,.0f} {unit}" if b == int(b) else f"{b:,.1f} {unit}"
        b /= 1024


def scaling_ratios(rows: list[dict], variant: str) -> list[float]:
    """How much longer each size takes than the previous one, for one variant of :func:`attention_scaling`'s rows."""
    t = [r["train_ms"] for r in rows if r["variant"] == variant]
    return [b / a for a, b in zip(t, t[1:])]


def format_scaling(rows: list[dict]) -> str:
    """:func:`attention_scaling`'s rows as a text table (paper vs pooled), with the growth per doubling of the side."""
    by = {(r["size"], r["variant"]): r for r in rows}
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = ["   map |      N | " + " | ".join(f"scores, {v:6s} | time, {v:6s}" for v in variants)
             + (f" | {variants[1]} is faster by" if len(variants) == 2 else "")]
    for s in sizes:
        cells = [f"{_fmt_bytes(by[s, v]['score_bytes']):>14s} | {by[s, v]['train_ms']:9.1f} ms" for v in variants]
        ratio = (f" | {by[s, variants[0]]['train_ms'] / by[s, variants[1]]['train_ms']:5.1f}x"
                 if len(variants) == 2 else "")
        lines.append(f"{s:4d}\u00b2 | {s * s:6,d} | " + " | ".join(cells) + ratio)
    for v in variants:
        lines.append(f"time growth per doubling of the side (N x 4), {v:6s}: "
                     + ", ".join(f"x{g:.1f}" for g in scaling_ratios(rows, v)) + "   (a pure N^2 cost: x16)")
    return "\n".join(lines)


__all__ = ["attention_cost", "attention_scaling", "format_scaling", "scaling_ratios"]
