"""Every benchmark at its default setting (what ``make bench`` runs): about 20 minutes on a 2-core CPU.

    python benchmarks/run_all.py                  # hardware, training speed, attention cost, GPU estimates
    python benchmarks/run_all.py --peak-gflops 300  # the machine's real peak, if you know it
    python benchmarks/run_all.py --skip-train     # only the quick parts

Writes to ``benchmarks/results/`` (the performance page of the book includes the Markdown files):

* ``hardware.md``: the machine and software versions, and the peak FLOP/s estimate;
* ``train_speed.{json,md}``: ``bench_train.py``'s default suite (includes the official SAGAN-128 line
  ``img/s: X``);
* ``attention_cost.{json,md,png}``: ``bench_attention.py`` at 16², 32², 64², 128²;
* ``kernels_quick.md``, ``kernels_celeba128.md``: ``bench_kernels.py``, each matrix kernel alone and the
  iteration's kernel-time floor (the best "% of peak" the model can reach here);
* ``xla_cache.md``: ``bench_compile_cache.py``, what XLA's persistent compilation cache saves;
* ``peer_speed.md``: ``bench_peer.py``, the official SAGAN-128 against torch-mimicry's, when the peer is
  installed (``make peer-venv``);
* ``gpu_estimates.md``: FLOPs per iteration of every preset and estimated Colab GPU times (estimates, not
  measurements: this machine has no GPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

# Dense peak throughput from NVIDIA's data sheets (TFLOP/s). TensorFlow runs float32 convolutions and matmuls
# in TF32 on Ampere and newer GPUs by default (tf.config.experimental.enable_tensor_float_32_execution), so
# for A100 and L4 the float32 column uses the TF32 tensor-core peak; the T4 has no TF32.
GPUS = [
    # name, float32 training peak (TF32 where TensorFlow uses it), what that peak is, fp16 tensor-core peak
    ("T4 (Colab free tier)", 8.1, "FP32", 65.0),
    ("L4", 60.0, "TF32 tensor cores, dense", 121.0),
    ("A100 40 GB", 156.0, "TF32 tensor cores, dense", 312.0),
]
UTILISATION = 0.20  # assumed fraction of peak in training; the range below brackets it
UTILISATION_RANGE = (0.10, 0.35)
# A small model cannot go faster than TensorFlow can launch its ops: each op of the step graph costs the host a
# few microseconds on a GPU, whatever its size. The estimate is max(FLOP time, ops x this).
US_PER_OP = 5.0


def hardware_markdown(info: dict, peak_gflops, peak_how, estimate_how=None) -> str:
    rows = [
        ("CPU", info.get('cpu_label') or f"{info['cpu']}, {info['cores']} cores usable"),
        ("SIMD (from /proc/cpuinfo)", ", ".join(info["simd_flags"]) or "unknown"),
        ("Peak float32 FLOP/s used for '% of peak'",
         f"{peak_gflops:.1f} GFLOP/s ({peak_how})" if peak_gflops else "unknown"),
        ("Estimate from /proc/cpuinfo", estimate_how or "unavailable"),
        ("Memory", f"{info['memory_gib']:.1f} GiB" if info["memory_gib"] else "unknown"),
        ("GPU", ", ".join(info["gpus"]) or "none"),
        ("Python / TensorFlow / Keras / NumPy",
         f"{info['python']} / {info['tensorflow']} / {info['keras']} / {info['numpy']}"),
        ("OS", info["os"]),
        ("Date", info["date"]),
        ("Load average (1, 5, 15 min) at the start",
         ", ".join(f"{x:.1f}" for x in info["load_average"]) if info["load_average"] else "unknown"),
    ]
    if info.get("env"):
        rows.append(("Environment", ", ".join(f"`{k}={v}`" for k, v in info["env"].items())))
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if "avx512f" not in info["simd_flags"] and info["simd_flags"]:
        lines += ["", "The operating system reports no AVX-512 on this machine (a virtual machine may hide it even "
                      "when the host CPU has it), so TensorFlow's kernels use AVX2 and the peak above counts 8 "
                      "float32 lanes per vector."]
    load = info["load_average"][0] if info["load_average"] else 0
    if load > 0.5 * info["cores"]:
        lines += ["", f"**Note:** the machine was busy when these numbers were taken (load {load:.1f} on "
                      f"{info['cores']} cores); timings are slower than on an idle machine."]
    return "\n".join(lines) + "\n"


def preset_flops() -> list[dict]:
    """FLOPs per training iteration of every preset at its own batch size."""
    from sagan_tut.config import PRESETS, get_config
    from sagan_tut.flops import iteration_flops
    from sagan_tut.train import build_models

    out = []
    for name in PRESETS:
        cfg = get_config(name)
        G, D = build_models(cfg)
        flops = iteration_flops(G, D, cfg.batch_size, cfg.n_dis)
        out.append(dict(preset=name, arch=cfg.arch, resolution=cfg.resolution, width=cfg.width,
                        batch=cfg.batch_size, steps=cfg.steps, gflop=flops["total"] / 1e9,
                        gflop_per_image=flops["total"] / 1e9 / cfg.batch_size))
        del G, D
    return out


def _hours(seconds_per_iter: float, steps: int) -> str:
    h = seconds_per_iter * steps / 3600
    return f"{h:.1f} h" if h < 10 else f"{h:.0f} h"


def gpu_markdown(presets: list[dict], cpu_rows: list[dict] | None = None) -> str:
    lo, hi = UTILISATION_RANGE
    ops = {r["preset"]: r["compute_ops"] for r in cpu_rows or () if r.get("compute_ops")}
    head = ["preset", "model", "batch", "GFLOP / iteration", "ops / iteration"] + [g[0] for g in GPUS]
    lines = [
        "**Estimates, not measurements** (no GPU here). Time per iteration = FLOPs per iteration "
        "(`sagan_tut.flops.iteration_flops`, matrix products only) / (peak × utilisation), with utilisation "
        f"{UTILISATION:.0%} of the data-sheet peak (the range in brackets assumes {lo:.0%}–{hi:.0%}), and the "
        "preset's full number of steps. A time is never below the launch floor ops × "
        f"{US_PER_OP:g} µs (the step's compute ops counted in its traced graph; a floor shown as ≥). Float32 training as the trainer runs it by default; TensorFlow uses TF32 "
        "tensor cores on the L4 and A100 automatically. Peaks used: "
        + "; ".join(f"{g[0]} {g[1]:g} TFLOP/s ({g[2]})" for g in GPUS) + ".",
        "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
    ]
    for p in presets:
        cells = [p["preset"], f"{p['arch']} {p['resolution']}², width {p['width']:g}", str(p["batch"]),
                 f"{p['gflop']:,.0f}", f"{ops[p['preset']]:,}" if p["preset"] in ops else "–"]
        floor = ops.get(p["preset"], 0) * US_PER_OP * 1e-6
        for _, peak, _, _ in GPUS:
            def at(util):
                return max(p["gflop"] / (peak * 1e3 * util), floor)
            t = at(UTILISATION)
            bound = "≥ " if t == floor else ""
            cells.append(f"{bound}{t:.2f} s/it ({at(hi):.2f}–{at(lo):.2f}); {p['steps']:,} steps ≈ "
                         f"{_hours(t, p['steps'])}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mixed precision (`mixed_precision=\"float16\"`) can use the fp16 tensor cores "
        f"({', '.join(f'{g[0]} {g[3]:g}' for g in GPUS)} TFLOP/s dense), so on a T4 it is the option most likely "
        "to help; its speed-up depends on how much of the step is convolution versus memory-bound work and is "
        "not estimated here. Measure on the GPU you have: `python benchmarks/bench_train.py --suite full` there "
        "also records whether XLA is faster on it, which `jit_compile=\"auto\"` then uses.",
    ]
    if cpu_rows:
        lines += ["", "For scale, on this CPU (measured, the training-speed table above):"]
        for r in cpu_rows:
            path = "XLA" if r.get("jit_compile") is True else "tf.function"
            lines.append(f"- {r['preset']} at batch {r['batch']} ({path}): {r['ms_median'] / 1e3:.2f} s per "
                         f"iteration ({r['gflops_achieved']:.0f} GFLOP/s).")
    return "\n".join(lines) + "\n"


def results_index(folder: Path = RESULTS) -> str:
    """Which machine and date every results table came from (read off each table's own first line and, where
    the table's JSON has them, its CPU flags), as a Markdown table for the performance page."""
    import json
    import re

    rows = []
    for md in sorted(folder.glob("*.md")):
        if md.name in ("index.md", "hardware.md", "gpu_estimates.md"):
            continue
        first = md.read_text().splitlines()[0] if md.read_text().strip() else ""
        m = re.match(r"Measured (\d{4}-\d\d-\d\d \d\d:\d\d) on (.+? x\d+ cores|[^;,]+)", first)
        date, machine = (m.group(1), m.group(2)) if m else ("?", "?")
        js = md.with_suffix(".json")
        if js.exists() and "oneDNN" not in machine:
            hw = json.loads(js.read_text()).get("hardware") or {}
            flags = set(hw.get("simd_flags") or ())
            if flags:
                isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "SSE"
                machine += f" ({isa}; oneDNN {'on' if hw.get('onednn') else 'off' if 'onednn' in hw else 'not recorded'})"
        rows.append(f"| `{md.name}` | {date} | {machine} |")
    return "\n".join(["| table | measured | machine |", "|---|---|---|", *rows]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peak-gflops", type=float, help="the machine's peak float32 GFLOP/s (default: estimate)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-train", action="store_true", help="skip the training-speed suite")
    parser.add_argument("--skip-attention", action="store_true", help="skip the attention-cost study")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per training row")
    parser.add_argument("--no-record", action="store_true", help="don't record the jit_compile choice")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import bench_attention
    import bench_train

    from sagan_tut.perf import estimate_cpu_peak_gflops, machine_peak_gflops, system_info

    info = system_info()
    peak, how = machine_peak_gflops(args.peak_gflops, measure=not info["gpus"])
    estimate, estimate_how = estimate_cpu_peak_gflops()
    args.out.mkdir(parents=True, exist_ok=True)
    text = hardware_markdown(info, peak, how, estimate_how)
    (args.out / "hardware.md").write_text(text)
    print("== hardware\n" + text)

    presets = preset_flops()
    train_rows = []
    if not args.skip_train:
        print("== training speed (benchmarks/bench_train.py)")
        train_argv = ["--out", str(args.out), "--iters", str(args.iters)]
        if args.no_record:
            train_argv.append("--no-record")
        train_rows = bench_train.main(train_argv, peak=(peak, how))
    if not args.skip_attention:
        print("\n== attention cost (benchmarks/bench_attention.py)")
        bench_attention.main(["--out", str(args.out)])
    if not args.skip_train:
        import bench_compile_cache
        import bench_kernels
        import bench_peer

        for preset, batch in (("quick", 64), ("celeba128", 16)):
            print(f"\n== kernel efficiency, {preset} (benchmarks/bench_kernels.py)")
            bench_kernels.main(["--preset", preset, "--batch", str(batch), "--out", str(args.out),
                                "--peak-gflops", str(peak)])
        print("\n== XLA's persistent compilation cache (benchmarks/bench_compile_cache.py)")
        bench_compile_cache.main(["--out", str(args.out)])
        print("\n== against the PyTorch peer (benchmarks/bench_peer.py; `make peer-venv` installs it)")
        try:
            bench_peer.main(["--out", str(args.out)])
        except SystemExit as stop:  # nothing measured: the peer is not installed and --only peer was not asked
            print(f"peer benchmark skipped ({stop})")

    # the trainer's own path on this machine for each preset: the "auto" row if there is one, else the faster of
    # tf.function and XLA
    best = {}
    for r in train_rows:
        if "error" not in r and r["mode"] in ("auto", "function", "xla") and r["data"] == "const" \
                and r["alloc"] == "inherit" and (r["preset"] not in best or r["ms_median"] < best[r["preset"]]["ms_median"]):
            best[r["preset"]] = r
    cpu_rows = list(best.values())
    text = gpu_markdown(presets, cpu_rows)
    (args.out / "gpu_estimates.md").write_text(text)
    print("\n== GPU estimates\n" + text)
    (args.out / "index.md").write_text(results_index(args.out))
    minutes = (time.perf_counter() - t0) / 60
    print(f"all benchmarks: {minutes:.1f} min; results in {args.out}")
    if minutes > 25:
        print("note: over the 25-minute budget -- was the machine busy? (see the load average in hardware.md)")


if __name__ == "__main__":
    main()
