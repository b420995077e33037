"""How fast each matrix kernel of a model runs on its own: the ceiling on "% of peak" for a whole iteration.

    python benchmarks/bench_kernels.py --preset quick --batch 64
    python benchmarks/bench_kernels.py --preset celeba128 --batch 16

For every convolution, transposed convolution and dense layer of G and D (spectral norm unwrapped: its power
iteration is a few matrix-vector products) and for attention's two batched matmuls, at the shapes and batch the
trainer uses, this times -- alone, in a ``tf.function`` loop, on the path the trainer takes on this machine
(``jit_compile="auto"``) -- the forward product, the input gradient and the weight gradient. Each gets its
FLOPs (``sagan_tut.flops`` convention: multiply-add = 2), GFLOP/s and % of the machine's peak.

Then it adds the kernels up the way one training iteration calls them (D three times forward -- real, fake, and
inside G's update --, twice for weight gradients, ...; see ``sagan_tut.flops``) to give the time the iteration's
matrix products need when each runs as fast as it does alone. The iteration cannot beat that floor without
faster kernels, so ``total FLOPs / floor`` is the best "% of peak" this model can reach on this machine, whatever
is done about the element-wise work, the optimizer or the input pipeline. Results: ``results/kernels_<preset>.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

# How often one iteration (n_dis = 1) runs each kernel of a G or D layer (sagan_tut.flops' accounting):
# G: forward in the D update and in the G update, input and weight gradients in the G update.
# D: forward on real, fake, and in the G update; input gradient in all three; weight gradient in the D update only.
CALLS = {"G": {"fwd": 2, "dx": 1, "dw": 1}, "D": {"fwd": 3, "dx": 3, "dw": 2}}


def _time(fn, args, min_s=0.3, reps=5):
    fn(*args)  # trace / compile
    best = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            out = fn(*args)
            n += 1
            if time.perf_counter() - t0 > min_s / reps:
                break
        out.numpy()
        best.append((time.perf_counter() - t0) / n)
    return statistics.median(best)


def layer_kernels(model, net: str, batch: int):
    """(net, layer name, kind, x shape, w shape, output shape, strides) of every matrix layer of ``model``."""
    import keras

    from sagan_tut.attention import SelfAttention
    from sagan_tut.spectral_norm import SpectralNormalization

    out = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, SpectralNormalization) else layer
        if not isinstance(inner, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense,
                                  SelfAttention)):
            continue
        x_shape = (batch, *layer.input.shape[1:])
        y_shape = (batch, *layer.output.shape[1:])
        if isinstance(inner, keras.layers.Conv2DTranspose):
            out.append((net, inner.name, "deconv", x_shape, tuple(inner.kernel.shape), y_shape, inner.strides))
        elif isinstance(inner, keras.layers.Conv2D):
            out.append((net, inner.name, "conv", x_shape, tuple(inner.kernel.shape), y_shape, inner.strides))
        elif isinstance(inner, keras.layers.Dense):
            out.append((net, inner.name, "dense", x_shape, tuple(inner.kernel.shape), y_shape, None))
        elif isinstance(layer, SelfAttention):
            b, h, w, c = x_shape
            n = h * w
            m = n // 4 if layer.pool else n
            ck, cv = _inner(layer.f).filters, _inner(layer.h).filters
            for sub in (layer.f, layer.g, layer.h):  # 1x1 convs on x (keys/values before pooling)
                conv = _inner(sub)
                out.append((net, f"{layer.name}/{conv.name}", "conv", (b, h, w, c), tuple(conv.kernel.shape),
                            (b, h, w, conv.filters), (1, 1)))
            if layer.variant != "paper":  # the output conv v on the attended values
                conv = _inner(layer.v)
                out.append((net, f"{layer.name}/{conv.name}", "conv", (b, h, w, cv), tuple(conv.kernel.shape),
                            (b, h, w, c), (1, 1)))
            out.append((net, f"{layer.name}/scores", "bmm", (b, n, ck), (b, m, ck), (b, n, m), "nt"))
            out.append((net, f"{layer.name}/beta_h", "bmm", (b, n, m), (b, m, cv), (b, n, cv), "nn"))
    return out


def _inner(layer):
    from sagan_tut.spectral_norm import SpectralNormalization

    return layer.layer if isinstance(layer, SpectralNormalization) else layer


def kernel_fns(kind, x_shape, w_shape, y_shape, strides, jit):
    """``{"fwd": (fn, args), "dx": ..., "dw": ...}`` for one layer, as TensorFlow ops."""
    import tensorflow as tf

    x = tf.random.normal(x_shape)
    w = tf.random.normal(w_shape)
    dy = tf.random.normal(y_shape)
    f = lambda g: tf.function(g, jit_compile=jit)  # noqa: E731
    if kind == "conv":
        s = list(strides)
        return {"fwd": (f(lambda x, w: tf.nn.conv2d(x, w, s, "SAME")), (x, w)),
                "dx": (f(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(input_sizes=x_shape, filter=w, out_backprop=dy,
                                                                      strides=[1, *s, 1], padding="SAME")), (dy, w)),
                "dw": (f(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=w_shape, out_backprop=dy,
                                                                       strides=[1, *s, 1], padding="SAME")), (x, dy))}
    if kind == "deconv":  # Keras' kernel is (kh, kw, out, in); its forward is conv2d's input gradient
        s = list(strides)
        return {"fwd": (f(lambda x, w: tf.nn.conv2d_transpose(x, w, y_shape, s, "SAME")), (x, w)),
                "dx": (f(lambda dy, w: tf.nn.conv2d(dy, w, s, "SAME")), (dy, w)),
                "dw": (f(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(input=dy, filter_sizes=w_shape, out_backprop=x,
                                                                       strides=[1, *s, 1], padding="SAME")), (x, dy))}
    if kind == "dense":
        x2 = tf.reshape(x, (-1, w_shape[0]))
        dy2 = tf.reshape(dy, (-1, w_shape[1]))
        return {"fwd": (f(lambda x, w: tf.matmul(x, w)), (x2, w)),
                "dx": (f(lambda dy, w: tf.matmul(dy, w, transpose_b=True)), (dy2, w)),
                "dw": (f(lambda x, dy: tf.matmul(x, dy, transpose_a=True)), (x2, dy2))}
    # bmm: y = a @ b (or a @ b^T); both inputs are activations: the "dw" slot is the second input's gradient
    a, b = x, w
    tb = strides == "nt"
    return {"fwd": (f(lambda a, b: tf.matmul(a, b, transpose_b=tb)), (a, b)),
            "dx": (f(lambda dy, b: tf.matmul(dy, b, transpose_b=not tb)), (dy, b)),
            "dw": (f(lambda a, dy: tf.matmul(dy, a, transpose_a=True) if tb else tf.matmul(a, dy, transpose_a=True)),
                   (a, dy))}


def kernel_flops(kind, x_shape, w_shape, y_shape):
    import math

    if kind == "conv":
        return 2 * math.prod(y_shape) * w_shape[0] * w_shape[1] * w_shape[2]
    if kind == "deconv":
        return 2 * math.prod(x_shape) * w_shape[0] * w_shape[1] * w_shape[2]
    if kind == "dense":
        return 2 * (math.prod(x_shape) // w_shape[0]) * w_shape[0] * w_shape[1]
    return 2 * math.prod(y_shape) * x_shape[-1]  # bmm: (b, n, k) x (b, k, m)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--peak-gflops", type=float)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import sagan_tut  # noqa: F401  -- start-up settings first
    from sagan_tut.config import get_config
    from sagan_tut.machine import machine_peak_gflops, system_info
    from sagan_tut.perf import explain_jit_compile
    from sagan_tut.train import build_models

    info = system_info()
    peak, peak_how = machine_peak_gflops(args.peak_gflops)
    cfg = get_config(args.preset, batch_size=args.batch)
    jit, why = explain_jit_compile("auto")
    G, D = build_models(cfg)
    rows = []
    for net, model in (("G", G), ("D", D)):
        for (net_, name, kind, xs, ws, ys, st) in layer_kernels(model, net, args.batch):
            flops = kernel_flops(kind, xs, ws, ys)
            for which, (fn, fargs) in kernel_fns(kind, xs, ws, ys, st, jit).items():
                if which == "dx" and name == model.layers[1].name:  # the first layer needs no input gradient
                    continue
                ms = _time(fn, fargs) * 1e3
                rows.append(dict(net=net, layer=name, kind=kind, op=which, x=list(xs), w=list(ws), y=list(ys),
                                 flops=flops, ms=ms, gflops=flops / ms / 1e6, calls=CALLS[net][which]))
                print(f"{net} {name:34s} {kind:6s} {which:3s} {str(xs):22s} {ms:8.3f} ms "
                      f"{flops / ms / 1e6:7.1f} GFLOP/s", flush=True)
    total_flops = sum(r["flops"] * r["calls"] for r in rows)
    floor_ms = sum(r["ms"] * r["calls"] for r in rows)
    best = total_flops / floor_ms / 1e6
    by_kind = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], [0, 0.0])
        k[0] += r["flops"] * r["calls"]
        k[1] += r["ms"] * r["calls"]
    lines = [
        f"Measured {info['date'][:16].replace('T', ' ')} on {info['cpu_label']}; TensorFlow {info['tensorflow']}; "
        f"load average {info['load_average'][0]:.1f} at the start; `{args.preset}` at batch {args.batch}; kernels run "
        f"as the trainer runs them here ({'XLA' if jit else 'tf.function'}: {why}).",
        "",
        f"Peak: {peak_how}.",
        "",
        "| net | layer | kind | gradient | input shape | ms | GFLOP/s | % of peak | calls per iteration |",
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {r['net']} | {r['layer']} | {r['kind']} | {r['op']} | {'×'.join(map(str, r['x']))} | {r['ms']:.3f} | "
          f"{r['gflops']:.0f} | {100 * r['gflops'] / peak:.0f}% | {r['calls']} |" for r in rows),
        "",
        "| kind | share of the iteration's FLOPs | GFLOP/s (FLOP-weighted) | % of peak |",
        "|---|---|---|---|",
        *(f"| {k} | {100 * f / total_flops:.0f}% | {f / ms / 1e6:.0f} | {100 * f / ms / 1e6 / peak:.0f}% |"
          for k, (f, ms) in sorted(by_kind.items(), key=lambda kv: -kv[1][0])),
        "",
        f"- The iteration's matrix products ({total_flops / 1e9:.1f} GFLOP) take **{floor_ms:.0f} ms** when each kernel "
        f"runs as fast as it does alone: at best **{best:.0f} GFLOP/s = {100 * best / peak:.0f}% of peak** for the "
        "whole iteration, before any element-wise work, optimizer update or input is counted.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"kernels_{args.preset}"
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(dict(hardware=info, peak_gflops=peak, peak_how=peak_how,
                                                           preset=args.preset, batch=args.batch, rows=rows,
                                                           floor_ms=floor_ms, best_gflops=best), indent=1) + "\n")
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
