"""Does the input pipeline slow training down? The quick preset with a constant batch against the procedural faces.

    python benchmarks/bench_input.py                 # 4 pairs of fresh processes, 10 timed iterations each
    python benchmarks/bench_input.py --pairs 6 --preset quick

Each pair runs ``bench_train``'s row twice, in fresh processes, one after the other: once on a constant
in-memory batch and once on the trainer's own data (the procedural faces, drawn on the fly by ``tf.data`` while
the step runs). Two processes of the same row differ by several percent on a 2-core machine (which core gets
which thread, what else ran), so one pair says little: the result is the median over pairs of
faces time / constant time. Results: ``benchmarks/results/input_pipeline.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
RESULTS = HERE / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import bench_train

    from sagan_tut.machine import cpu_label

    load = os.getloadavg()[0]
    pairs = []
    for i in range(args.pairs):
        row = {}
        for data in ("const", "faces"):
            r = bench_train.run_row(dict(preset=args.preset, batch=args.batch, mode="auto", data=data), args.iters, 2)
            if "error" in r:
                raise SystemExit(f"{data} row failed: {r['error']}")
            row[data] = r
            print(f"pair {i + 1} {data:5s} {r['ms_median']:7.1f} ms (CPU {r['cpu_ms_per_iter']:.0f} ms)", flush=True)
        pairs.append(row)
    ratios = [p["faces"]["ms_median"] / p["const"]["ms_median"] for p in pairs]
    cpu = [p["faces"]["cpu_ms_per_iter"] / p["const"]["cpu_ms_per_iter"] for p in pairs]
    med = statistics.median(ratios)
    path = "XLA" if pairs[0]["const"]["jit_compile"] else "tf.function"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {cpu_label()}; load average {load:.1f} at the start; "
        f"`{args.preset}` at batch {args.batch} on the trainer's default path ({path}); {args.pairs} pairs of fresh "
        f"processes, median of {args.iters} timed iterations each.",
        "",
        "| pair | constant batch (ms) | procedural faces (ms) | faces / constant | CPU time, faces / constant |",
        "|---|---|---|---|---|",
        *(f"| {i + 1} | {p['const']['ms_median']:.1f} | {p['faces']['ms_median']:.1f} | ×{r:.3f} | ×{c:.3f} |"
          for i, (p, r, c) in enumerate(zip(pairs, ratios, cpu))),
        "",
        f"- Median over the pairs: the faces pipeline makes an iteration **×{med:.3f}** as long as a constant batch "
        f"({'within' if med <= 1.05 else 'more than'} 5%); CPU time per iteration ×{statistics.median(cpu):.3f}.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "input_pipeline.md").write_text("\n".join(lines) + "\n")
    (args.out / "input_pipeline.json").write_text(json.dumps(dict(pairs=pairs, ratios=ratios, cpu_ratios=cpu,
                                                                  median=med, load=load), indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
