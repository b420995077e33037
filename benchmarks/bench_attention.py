"""The cost of self-attention alone: time and memory of one ``SelfAttention`` block vs feature-map size.

    python benchmarks/bench_attention.py                       # 16², 32², 64², 128²; paper and pooled variants
    python benchmarks/bench_attention.py --sizes 16,32 --channels 256 --batch 4
    python benchmarks/bench_attention.py --alloc both --sizes 64,128   # every row with and without TF's BFC allocator

For each feature-map size and variant the block (``sagan_tut.attention.SelfAttention``, spectral norm on, in
training mode, inside ``tf.function``) is timed forward only and forward + backward (gradients for the input
and every weight), on a ``(batch, S, S, channels)`` input; the table shows the median over repeated calls after
one warm-up call. Variants:

* ``paper``: keys, queries C/8 and values C over all N = S² positions: an N x N score matrix;
* ``biggan`` (the official code and BigGAN): values C/2 and 2x2 max-pooled keys and values: N x N/4.

Each (size, variant) runs in its own process. Memory is the growth of the process's resident-set high-water
mark (``VmHWM``) over its value after building the layer and its input: first after the forward calls,
then after the backward calls. The score matrix alone is ``batch x N x M x 4`` bytes, listed for comparison.
Sizes whose estimated training memory exceeds half the machine's available memory are skipped and say so. By
default two more rows repeat full attention at 64² with TensorFlow's default CPU allocator and with its BFC
allocator (``TF_CPU_ALLOCATOR_USE_BFC``), which reuses freed blocks instead of asking the OS for fresh pages.
Results: ``benchmarks/results/attention_cost.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

VARIANT_LABEL = {"paper": "full (paper)", "biggan": "pooled keys/values (official, BigGAN)"}


def score_bytes(size: int, variant: str, batch: int) -> int:
    n = size * size
    m = n // 4 if variant == "biggan" else n
    return batch * n * m * 4


def measure(spec: dict) -> dict:
    """One (size, variant) row: ``sagan_tut.perf.attention_cost`` plus the memory high-water marks."""
    from sagan_tut.perf import attention_cost, peak_rss_mib

    marks = {}
    result = attention_cost(spec["size"], spec["variant"], spec["channels"], spec["batch"],
                            min_repeats=spec["min_reps"], min_seconds=spec["min_seconds"],
                            max_repeats=spec["max_reps"], on_phase=lambda phase: marks.update({phase: peak_rss_mib()}))
    return {
        **spec, **result, "score_mib": result["score_bytes"] / 2**20,
        "fwd_mem_mib": marks["forward"] - marks["built"], "train_mem_mib": marks["train"] - marks["built"],
        "base_rss_mib": marks["built"], "gflops_train": 3 * result["gflop_fwd"] / (result["train_ms"] / 1e3),
    }


def run_one(spec: dict, alloc: str, timeout: float = 1200) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    if alloc in ("bfc", "default"):
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true" if alloc == "bfc" else "false"
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "alloc": alloc, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-10:])
        return {**spec, "alloc": alloc, "error": f"exit {proc.returncode}: {tail}"}
    return {**json.loads(lines[-1][len("RESULT "):]), "alloc": alloc}


def _mem(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def markdown_table(rows: list[dict]) -> str:
    head = ["feature map", "N", "variant", "score matrix", "forward ms", "fwd + bwd ms", "memory, forward",
            "memory, fwd + bwd", "GFLOP/s (fwd + bwd)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        var = VARIANT_LABEL[r["variant"]] + ("" if r.get("alloc", "inherit") == "inherit" else
                                             f", {'BFC' if r['alloc'] == 'bfc' else 'default'} allocator")
        pre = f"| {r['size']}×{r['size']} | {r['size'] ** 2:,} | {var} | {_mem(score_bytes(r['size'], r['variant'], r['batch']) / 2**20)} |"
        if "skipped" in r:
            out.append(pre + f" skipped: {r['skipped']} |" + " |" * 4)
        elif "error" in r:
            out.append(pre + f" failed: {r['error'].splitlines()[-1][:60]} |" + " |" * 4)
        else:
            out.append(pre + f" {r['fwd_ms']:.1f} | {r['train_ms']:.1f} | {_mem(r['fwd_mem_mib'])} | "
                             f"{_mem(r['train_mem_mib'])} | {r['gflops_train']:.1f} |")
    return "\n".join(out)


def findings(rows: list[dict]) -> list[str]:
    ok = {(r["size"], r["variant"]): r for r in rows if "error" not in r and "skipped" not in r
          and r.get("alloc", "inherit") == "inherit"}
    lines = []
    sizes = sorted({s for s, _ in ok})
    for a, b in zip(sizes, sizes[1:]):
        if (a, "paper") in ok and (b, "paper") in ok:
            lines.append(f"- {a}² → {b}² (N ×4): full attention fwd + bwd time ×"
                         f"{ok[(b, 'paper')]['train_ms'] / ok[(a, 'paper')]['train_ms']:.1f}, memory ×"
                         f"{max(ok[(b, 'paper')]['train_mem_mib'], 1) / max(ok[(a, 'paper')]['train_mem_mib'], 1):.1f}"
                         " (N² predicts ×16 once the score matrix dominates).")
    for s in sizes:
        if (s, "paper") in ok and (s, "biggan") in ok:
            lines.append(f"- {s}²: pooling keys/values makes fwd + bwd ×"
                         f"{ok[(s, 'paper')]['train_ms'] / ok[(s, 'biggan')]['train_ms']:.1f} faster.")
    allocs = {}
    for r in rows:
        if "error" not in r and "skipped" not in r and r.get("alloc") in ("bfc", "default"):
            allocs.setdefault((r["size"], r["variant"]), {})[r["alloc"]] = r
    for (s, v), pair in allocs.items():
        if len(pair) == 2:
            d, b = pair["default"], pair["bfc"]
            lines.append(f"- TF_CPU_ALLOCATOR_USE_BFC at {s}² ({v}), fwd + bwd: {d['train_ms']:.0f} ms wall, "
                         f"{d['train_cpu_ms']:.0f} ms CPU, {d['train_page_faults']:,.0f} page faults per call with "
                         f"the default allocator; {b['train_ms']:.0f} ms, {b['train_cpu_ms']:.0f} ms, "
                         f"{b['train_page_faults']:,.0f} with BFC.")
    return lines


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for variant, style in (("paper", "o-"), ("biggan", "s--")):
        sel = [r for r in rows if r["variant"] == variant and "fwd_ms" in r and r.get("alloc", "inherit") == "inherit"]
        if not sel:
            continue
        n = [r["n"] for r in sel]
        axes[0].loglog(n, [r["train_ms"] for r in sel], style, label=VARIANT_LABEL[variant])
        axes[1].loglog(n, [max(r["train_mem_mib"], 1) for r in sel], style, label=VARIANT_LABEL[variant])
    for ax, ylabel in zip(axes, ("forward + backward (ms)", "memory growth, fwd + bwd (MiB)")):
        ax.set_xlabel("positions N = H·W")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="16,32,64,128")
    parser.add_argument("--variants", default="paper,biggan")
    parser.add_argument("--channels", type=int, default=64, help="C of the feature map (64 = the blog G at 32²)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--alloc", choices=("inherit", "default", "bfc", "both"), default="inherit",
                        help="TF_CPU_ALLOCATOR_USE_BFC for the child processes ('both' runs each row twice)")
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=20)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="keep repeating until this long")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="attention_cost")
    parser.add_argument("--compare-alloc", type=int, default=64, metavar="SIZE",
                        help="also run full attention at SIZE² with TF_CPU_ALLOCATOR_USE_BFC=false and =true "
                             "(default 64; 0 = don't)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import sagan_tut  # noqa: F401  -- first, as a user's script would, so start-up settings apply
        print("RESULT " + json.dumps(measure(json.loads(args.worker))), flush=True)
        return

    from sagan_tut.machine import available_mib, system_info

    info = system_info()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANT_LABEL]
    if bad:
        parser.error(f"unknown variant(s) {bad}; choose from {', '.join(VARIANT_LABEL)}")
    allocs = ["default", "bfc"] if args.alloc == "both" else [args.alloc]
    jobs = [(s, v, a) for s in sizes for v in variants for a in allocs]
    if args.compare_alloc and args.alloc == "inherit":
        jobs += [(args.compare_alloc, "paper", "default"), (args.compare_alloc, "paper", "bfc")]
    print(f"{info['cpu']} x{info['cores']}, TensorFlow {info['tensorflow']}: SelfAttention, C={args.channels}, "
          f"batch {args.batch}\n")
    rows, t0 = [], time.perf_counter()
    available = available_mib()
    for size, variant, alloc in jobs:
        spec = dict(size=size, variant=variant, batch=args.batch, channels=args.channels, min_reps=args.min_reps,
                    max_reps=args.max_reps, min_seconds=args.min_seconds)
        # scores, softmax output, their two gradients and TF's temporaries: about 5 score matrices at once
        need = 5 * score_bytes(size, variant, args.batch) / 2**20
        if available is not None and need > available / 2:
            rows.append({**spec, "alloc": alloc, "skipped": f"needs ~{_mem(need)}, {_mem(available)} available"})
            print(f"  {size:4d}² {variant:7s} skipped (needs ~{_mem(need)})")
            continue
        t = time.perf_counter()
        row = run_one(spec, alloc)
        rows.append(row)
        if "error" in row:
            print(f"  {size:4d}² {variant:7s} FAILED {row['error'][-300:]}")
        else:
            print(f"  {size:4d}² {variant:7s} {alloc:8s} fwd {row['fwd_ms']:9.1f} ms  fwd+bwd {row['train_ms']:9.1f} ms"
                  f"  mem {_mem(row['train_mem_mib']):>9s}  [{time.perf_counter() - t:.0f} s]", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(
        dict(hardware=info, settings=dict(channels=args.channels, batch=args.batch, alloc=args.alloc,
                                          min_reps=args.min_reps, min_seconds=args.min_seconds), rows=rows),
        indent=1) + "\n")
    has_plot = plot(rows, args.out / f"{args.stem}.png")
    load = info.get("load_average")
    text = "\n".join([
        f"Measured {info['date'][:16].replace('T', ' ')} on {info.get('cpu_label') or info['cpu']}; TensorFlow "
        f"{info['tensorflow']}" + (f"; load average {load[0]:.1f} at the start" if load else "") + ".",
        "",
        f"One `SelfAttention` block (spectral norm on, training mode, `tf.function`) on a batch of {args.batch} "
        f"feature map(s) with C = {args.channels} channels; median over ≥{args.min_reps} calls after a warm-up. "
        "Memory = growth of the process's peak resident memory while running the block (forward calls first, "
        "then forward + backward). 'score matrix' = batch × N × M float32 scores (M = N, or N/4 when pooled).",
        "",
        markdown_table(rows),
        "",
        *findings(rows),
        "",
    ])
    (args.out / f"{args.stem}.md").write_text(text)
    print("\n" + text)
    if has_plot:
        print(f"figure: {args.out / (args.stem + '.png')}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main()
