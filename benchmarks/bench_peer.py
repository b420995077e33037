"""The official SAGAN-128 against a PyTorch peer (torch-mimicry), side by side in one run on one machine.

    python benchmarks/bench_peer.py                       # both, 10 timed iterations each (~10 min on 2 cores)
    python benchmarks/bench_peer.py --iters 2 --warmup 1 --out /tmp/peer   # a quick trial
    python benchmarks/bench_peer.py --only peer --peer-python /path/to/venv/bin/python

* **ours**: the official SAGAN-128 (preset ``paper128``: ResNet G and D, 128 px, width 1, attention at 32x32,
  BigGAN-style attention) at batch 8, timed exactly as ``bench_train.py`` times its official row (its
  ``run_row``: a fresh process, ``Trainer.train_step()`` = one D update + one G update, the trainer's default
  path, ``jit_compile="auto"``, a constant in-memory batch).
* **peer**: torch-mimicry's ``SAGANGenerator128(num_classes=1)`` and ``SAGANDiscriminator128(num_classes=1,
  ndf=1024)`` (the same G; its D blocks widen in their second convolution where ours widen in the first, so
  our D has ~9.4M more weights and more FLOPs), Adam with lr 1e-4 (G) / 4e-4 (D) and betas (0, 0.9), hinge loss, one D
  update + one G update per iteration through mimicry's own ``train_step`` methods (what its ``Trainer`` calls),
  batch 8, a constant batch, ``torch.set_num_threads(cores)``. It runs in a separate Python (``--peer-python``)
  because torch and TensorFlow in one process fight over threads and memory, and because the peer has its own
  environment: ``python3.11 -m venv V && V/bin/pip install torch==2.13.0 numpy &&
  V/bin/pip install --no-deps torch-mimicry`` (its declared dependencies would pull torchvision, TensorFlow and
  a CUDA torch, none of which its model classes use).

Both sides get the same ``--warmup`` untimed iterations and the same ``--iters`` timed ones; the table shows the
median and the 25th-75th percentile. The peer is skipped, with the reason, when its Python or packages are missing.
Results: ``benchmarks/results/peer_speed.md`` and ``.json`` (``--out``/``--stem`` to write elsewhere).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# `make peer-venv` makes this one: torch 2.13 (CPU) and torch-mimicry without its training dependencies.
DEFAULT_PEER_PYTHON = str(Path(__file__).resolve().parents[1] / ".venv-peer" / "bin" / "python")
BATCH = 8
PEER_SETTINGS = dict(lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9), loss="hinge", n_dis=1)
INSTALL_HINT = ("python3.11 -m venv V && V/bin/pip install torch==2.13.0 numpy && V/bin/pip install --no-deps "
                "torch-mimicry, then pass --peer-python V/bin/python")
TARGET_RATIO = 1.5  # issue 11: ours >= 1.5x the peer on every machine


# ----------------------------------------------------------------------------------------------------------------
# Small pure helpers (no TensorFlow, no torch: tested in tests/test_bench_peer.py)
# ----------------------------------------------------------------------------------------------------------------
def timing_summary(seconds: list[float], batch: int) -> dict:
    """Median and quartiles of per-iteration wall times, in the same keys (and ms) as bench_train's rows."""
    if not seconds:
        raise ValueError("no timed iterations: pass --iters >= 1")
    q = statistics.quantiles(seconds, n=4) if len(seconds) >= 2 else [seconds[0]] * 3
    median = statistics.median(seconds)
    return {"ms_median": median * 1e3, "ms_q1": q[0] * 1e3, "ms_q3": q[2] * 1e3,
            "ms_all": [s * 1e3 for s in seconds], "img_per_s": batch / median}


def vector_width(hardware: dict) -> tuple[int, str]:
    """(bits, ISA name) of the widest float32 vector unit, from ``sagan_tut.machine.system_info()``."""
    isa = hardware.get("isa") or "SSE"
    return {"AVX-512": 512, "AVX2": 256, "AVX": 256}.get(isa, 128), isa


def ratio(ours: dict | None, peer: dict | None) -> float | None:
    """How many times faster ours is (img/s over img/s); None unless both sides ran."""
    if not ours or not peer or "error" in ours or "error" in peer:
        return None
    return ours["img_per_s"] / peer["img_per_s"]


def _millions(n) -> str:
    return f"{n / 1e6:.2f}M" if n is not None else "–"


def markdown(result: dict) -> str:
    """The results file: when, where, how, a two-row table, the ratio."""
    hw, s = result["hardware"], result["settings"]
    bits, isa = vector_width(hw)
    load = hw.get("load_average")
    head = (f"Measured {hw['date'][:16].replace('T', ' ')} on {hw.get('cpu_label', hw['cpu'])} ({isa}: "
            f"{bits}-bit float32 vectors); TensorFlow {hw.get('tensorflow', '?')}, Keras {hw.get('keras', '?')}"
            + (f", torch {result['peer']['torch']}" if result.get("peer", {}).get("torch") else "")
            + (f"; load average {load[0]:.2f} at the start" if load else "") + ".")
    if s.get("trial"):
        head = "**Trial run, not a measurement** (tiny counts, shared machine). " + head
    lines = [
        head, "",
        f"The official SAGAN-128 at batch {s['batch']}, one D update + one G update per iteration, same machine, "
        f"one after the other in one run: median of {s['iters']} timed iterations after {s['warmup']} warm-up "
        "iteration(s) (25th–75th percentile in brackets). Constant in-memory batch on both sides. Parameter "
        "counts are trainable weights (spectral-norm vectors, BatchNorm statistics and EMA copies excluded).", "",
        "| side | implementation | path | s / iteration | img/s | CPU s / iteration | G params | D params | threads "
        "| load at start |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in ("ours", "peer"):
        r = result.get(side)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {side} | {r.get('impl', '')} | | {r.get('skipped') and 'skipped' or 'failed'}: "
                         f"{r['error'].splitlines()[-1][:100]} | | | | | | |")
            continue
        lines.append(f"| {side} | {r['impl']} | {r['path']} | {r['ms_median'] / 1e3:.2f} "
                     f"({r['ms_q1'] / 1e3:.2f}–{r['ms_q3'] / 1e3:.2f}) | {r['img_per_s']:.3f} | "
                     f"{r['cpu_ms_per_iter'] / 1e3:.1f} | {_millions(r.get('g_params'))} | "
                     f"{_millions(r.get('d_params'))} | {r.get('threads', '–')} | "
                     + (f"{r['load_before']:.1f} |" if r.get("load_before") is not None else "– |"))
    x = ratio(result.get("ours"), result.get("peer"))
    lines.append("")
    if x is not None:
        verdict = "meets" if x >= TARGET_RATIO else "misses"
        lines.append(f"- **ours / peer: ×{x:.2f}** img/s ({verdict} issue 11's target of ×{TARGET_RATIO:g}).")
    else:
        lines.append("- ours / peer: – (one side did not run).")
    ours, peer = result.get("ours") or {}, result.get("peer") or {}
    if x is not None and ours.get("d_params") and peer.get("d_params"):
        extra = ours["d_params"] - peer["d_params"]
        if extra:
            lines.append(f"- D: ours has {abs(extra) / 1e6:.2f}M {'more' if extra > 0 else 'fewer'} trainable weights "
                         f"than the peer (G: {(ours['g_params'] - peer['g_params']) / 1e6:+.2f}M).")
    if x is not None and ours.get("gflop_per_iter") and peer.get("gflop_per_iter"):
        rate = {k: r["gflop_per_iter"] / (r["ms_median"] / 1e3) for k, r in (("ours", ours), ("peer", peer))}
        lines.append(f"- Work per iteration (matrix products, multiply-add = 2, as `sagan_tut.flops` counts them; the "
                     f"peer's counted by hooks on its layers): ours {ours['gflop_per_iter']:.0f} GFLOP, the peer "
                     f"{peer['gflop_per_iter']:.0f} GFLOP, because ours widens each D block in its first convolution "
                     f"as the official code does. Ours computes {rate['ours']:.0f} GFLOP/s, the peer "
                     f"{rate['peer']:.0f}: per unit of work, ours is ×{rate['ours'] / rate['peer']:.2f}.")
    lines.append("- CPU s / iteration: CPU time of all the side's threads per iteration; it moves less than wall "
                 "time when other programs share the machine. Load at start: the 1-minute load average just "
                 "before that side started.")
    if "error" not in ours and ours.get("ema"):
        lines.append("- Ours includes the trainer's EMA update of G and its finiteness checks; the peer has neither.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The peer, in its own Python (imports only torch and torch-mimicry)
# ----------------------------------------------------------------------------------------------------------------
def _bare_package(name: str):
    """Register package ``name`` without running its ``__init__`` so its submodules can be imported on their own.

    ``import torch_mimicry`` runs the package's ``__init__``, which imports its trainer, metrics and datasets:
    TensorFlow, torchvision, tensorboard and ``torch._six`` (gone since torch 2.0), so it fails on torch 2.13.
    The model classes (``nets``, ``modules``) need only torch."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"no module named {name!r}")
    module = importlib.util.module_from_spec(spec)  # module object with __path__, not executed
    sys.modules[name] = module
    return module


def peer_measure(iters: int, warmup: int, batch: int = BATCH, threads: int | None = None) -> dict:
    import platform

    import torch

    _bare_package("torch_mimicry")
    _bare_package("torch_mimicry.training")  # for MetricLog alone (its __init__ imports tensorboard)
    from torch_mimicry.nets.sagan.sagan_128 import SAGANDiscriminator128, SAGANGenerator128
    from torch_mimicry.training.metric_log import MetricLog

    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    G = SAGANGenerator128(num_classes=1)
    D = SAGANDiscriminator128(num_classes=1, ndf=1024)
    assert G.loss_type == D.loss_type == PEER_SETTINGS["loss"]
    opt_g = torch.optim.Adam(G.parameters(), lr=PEER_SETTINGS["lr_g"], betas=PEER_SETTINGS["betas"])
    opt_d = torch.optim.Adam(D.parameters(), lr=PEER_SETTINGS["lr_d"], betas=PEER_SETTINGS["betas"])
    real = (torch.rand(batch, 3, 128, 128) * 2 - 1, torch.zeros(batch, dtype=torch.long))  # NCHW, class 0

    flops = peer_forward_flops(G, D, batch)

    def iteration():  # what mimicry's Trainer does per step with n_dis = 1
        log = MetricLog()
        D.train_step(real_batch=real, netG=G, optD=opt_d, log_data=log, device=device, global_step=0)
        G.train_step(real_batch=real, netD=D, optG=opt_g, log_data=log, device=device, global_step=0)
        return log

    t0 = time.perf_counter()
    for _ in range(warmup):
        iteration()
    warmup_s = time.perf_counter() - t0
    times, cpu0 = [], time.process_time()
    for _ in range(iters):  # CPU torch runs synchronously: the step has finished when the call returns
        t = time.perf_counter()
        log = iteration()
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    losses = {k: log[k] for k in ("errD", "errG")}
    if not all(abs(v) < float("inf") for v in losses.values()):
        raise FloatingPointError(f"the peer's losses are not finite: {losses}")

    def trainable(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    mimicry_version = "?"
    try:
        from importlib.metadata import version
        mimicry_version = version("torch-mimicry")
    except Exception:  # noqa: BLE001 -- only a label
        pass
    return {
        "impl": f"torch-mimicry {mimicry_version}", "path": f"PyTorch {torch.__version__} eager",
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "batch": batch, "iters": iters, "warmup": warmup, "warmup_s": warmup_s,
        "cpu_ms_per_iter": cpu / iters * 1e3, "g_params": trainable(G), "d_params": trainable(D),
        "last_losses": losses, **PEER_SETTINGS, **timing_summary(times, batch),
        "flops_G": flops["G"], "flops_D": flops["D"], "gflop_per_iter": (4 * flops["G"] + 8 * flops["D"]) / 1e9,
    }


def peer_forward_flops(G, D, batch: int) -> dict:
    """Forward FLOPs of the peer's G and D for one batch, in ``sagan_tut.flops``' convention (matrix products only,
    multiply-add = 2): convolutions and linear layers counted by forward hooks, attention's two batched products
    (queries x pooled keys at C/8, attention x pooled values at C/2) from each attention block's input shape."""
    import torch

    counts = {"G": 0, "D": 0}

    def hook_for(net):
        def hook(module, inputs, output):
            x = inputs[0]
            if isinstance(module, torch.nn.Conv2d):
                kh, kw = module.kernel_size
                counts[net] += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, torch.nn.Linear):
                counts[net] += 2 * (x.numel() // module.in_features) * module.in_features * module.out_features
            elif "Attention" in type(module).__name__:
                b, c, h, w = x.shape
                n, m = h * w, h * w // 4
                counts[net] += 2 * b * n * m * (c // 8) + 2 * b * n * m * (c // 2)
        return hook

    handles = [mod.register_forward_hook(hook_for(net)) for net, model in (("G", G), ("D", D))
               for mod in model.modules()
               if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) or "Attention" in type(mod).__name__]
    try:
        with torch.no_grad():
            y = torch.zeros(batch, dtype=torch.long)  # one class: the unconditional model
            D(G(torch.randn(batch, G.nz), y), y)
    finally:
        for h in handles:
            h.remove()
    return counts


def run_peer(python: str | None, iters: int, warmup: int, timeout: float = 3600) -> dict:
    """The peer's row from a child process of ``python``, or ``{"error", "skipped"}`` saying why not."""
    impl = "torch-mimicry"
    if not python or not Path(python).exists():
        return {"impl": impl, "skipped": True, "error": f"torch and torch-mimicry not installed: no peer Python at "
                f"{python!r}. To run the peer: {INSTALL_HINT}"}
    cmd = [python, str(Path(__file__).resolve()), "--peer-worker", "--iters", str(iters), "--warmup", str(warmup)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
    except subprocess.TimeoutExpired:
        return {"impl": impl, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT ") and proc.returncode == 0:
            return json.loads(line[len("RESULT "):])
        if line.startswith("SKIP "):
            return {"impl": impl, "skipped": True, "error": line[len("SKIP "):]}
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    return {"impl": impl, "error": f"exit {proc.returncode}: {tail}"}


def peer_worker(iters: int, warmup: int) -> None:
    missing = [m for m in ("torch", "torch_mimicry") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"SKIP torch and torch-mimicry not installed: {sys.executable} has no {' or '.join(missing)}. "
              f"To run the peer: {INSTALL_HINT}", flush=True)
        return
    print("RESULT " + json.dumps(peer_measure(iters, warmup)), flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Ours, through bench_train (same process layout and timing as its official row)
# ----------------------------------------------------------------------------------------------------------------
def run_ours(iters: int, warmup: int) -> dict:
    import bench_train

    row = bench_train.run_row(dict(bench_train.OFFICIAL, mode="auto"), iters, warmup)
    if "error" not in row:
        row["impl"] = "sagan_tut (this repo)"
        row["path"] = f"TensorFlow, {bench_train.mode_label(row)}"
        row["threads"] = row.get("cores")
    return row


def ours_param_counts(batch: int = BATCH) -> dict:
    """Trainable weights of the official G and D, built here after the timing (nothing else is running)."""
    import bench_train
    import numpy as np

    from sagan_tut.config import get_config
    from sagan_tut.train import build_models

    G, D = build_models(get_config(bench_train.OFFICIAL["preset"], batch_size=batch))
    return {f"{k}_params": int(sum(np.prod(w.shape) for w in m.trainable_weights)) for k, m in (("g", G), ("d", D))}


def run_side(fn, *args) -> dict:
    """``fn(*args)``'s row with the 1-minute load average read just before it started (what it competed with)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return dict(fn(*args), load_before=load)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=10, help="timed iterations on each side (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first on each side (default 2)")
    parser.add_argument("--only", choices=("ours", "peer"), help="run one side only")
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON if Path(DEFAULT_PEER_PYTHON).exists() else None,
                        help=f"the Python with torch and torch-mimicry (default {DEFAULT_PEER_PYTHON} if it exists)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--stem", default="peer_speed", help="result file name without extension")
    parser.add_argument("--trial", action="store_true", help="label the results as a trial, not a measurement")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        parser.error("--iters and --warmup must be >= 1 (the first iteration traces/allocates and is never timed)")
    if args.peer_worker:  # runs under the peer's Python: torch only, no TensorFlow, no sagan_tut
        peer_worker(args.iters, args.warmup)
        return None

    sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench_train, and sagan_tut from a fresh clone
    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # before anything of ours runs
    from sagan_tut.machine import system_info

    info = dict(system_info(), load_average=load)
    bits, isa = vector_width(info)
    print(f"{info['cpu']} x{info['cores']} ({isa}, {bits}-bit), TensorFlow {info['tensorflow']}"
          + (f"; load average {load[0]:.2f}" if load else ""), flush=True)
    result = {"hardware": info, "settings": dict(batch=BATCH, iters=args.iters, warmup=args.warmup, only=args.only,
                                                 trial=args.trial, peer_python=args.peer_python)}
    t0 = time.perf_counter()
    if args.only != "peer":
        print(f"ours: official SAGAN-128, batch {BATCH}, {args.warmup} + {args.iters} iterations ...", flush=True)
        result["ours"] = run_side(run_ours, args.iters, args.warmup)
    if args.only != "ours":
        print(f"peer: torch-mimicry SAGAN-128, batch {BATCH}, {args.warmup} + {args.iters} iterations ...", flush=True)
        result["peer"] = run_side(run_peer, args.peer_python, args.iters, args.warmup)
    if "ours" in result and "error" not in result["ours"]:
        result["ours"].update(ours_param_counts())
    result["ratio"] = ratio(result.get("ours"), result.get("peer"))
    result["total_s"] = time.perf_counter() - t0

    for side in ("ours", "peer"):
        if side in result and "error" in result[side]:
            print(f"{side}: {'skipped' if result[side].get('skipped') else 'FAILED'}: {result[side]['error']}",
                  file=sys.stderr)
    if not any(side in result and "error" not in result[side] for side in ("ours", "peer")):
        sys.exit("nothing was measured: no results written")  # keep the last good results files
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.out / f"{args.stem}.md").write_text(text)
    print("\n" + text + f"\nwritten: {args.out / args.stem}.md/.json; total {result['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
