"""What XLA's persistent compilation cache saves: the first training call of a Trainer, compiled or loaded.

    python benchmarks/bench_compile_cache.py                  # the quick preset at batch 64
    python benchmarks/bench_compile_cache.py --preset paper128 --batch 8

``import sagan_tut`` points XLA's persistent cache (``--tf_xla_persistent_cache_directory``) at a folder per
TensorFlow version and CPU (``sagan_tut.perf.use_xla_compile_cache``). This measures, each case in a fresh
process with ``jit_compile=True``, the first ``train_step()`` (trace + compile or load) and the second (a
plain step, for scale):

* **cold**: an empty cache folder (what every process paid before);
* **warm**: a second process with the folder the cold one filled (tests, notebooks and resumed runs);
* **second Trainer, cache off** / **on**: one process that builds the same model twice (a notebook that
  trains twice, a test module), with ``SAGAN_TUT_XLA_CACHE=0`` and with a fresh cache folder.

Results: ``benchmarks/results/xla_cache.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

_CHILD = r"""
import json, sys, tempfile, time
t_start = time.perf_counter()
import sagan_tut
import tensorflow as tf
from sagan_tut.config import get_config
from sagan_tut.train import Trainer
preset, batch, trainers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(trainers):
    cfg = get_config(preset, batch_size=batch, jit_compile=True, dataset="faces")
    x = tf.zeros((batch, cfg.resolution, cfg.resolution, 3))
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, d, dataset=tf.data.Dataset.from_tensors(x).repeat(), resume=False, verbose=False)
        t, c = time.perf_counter(), time.process_time()
        tr.train_step(); int(tr.step.numpy())
        first, first_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        tr.train_step(); int(tr.step.numpy())
        out.append(dict(first_s=first, first_cpu_s=first_cpu, second_s=time.perf_counter() - t))
print("RESULT " + json.dumps(dict(trainers=out, process_s=time.perf_counter() - t_start)))
"""


def run(preset, batch, trainers, cache):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", SAGAN_TUT_XLA_CACHE=cache)
    env.pop("TF_XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", _CHILD, preset, str(batch), str(trainers)], env=env,
                          capture_output=True, text=True, timeout=3600, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][7:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from sagan_tut.machine import cpu_label

    folder = tempfile.mkdtemp(prefix="sagan_tut_xla_bench_")
    load = os.getloadavg()[0]
    try:
        cold = run(args.preset, args.batch, 1, folder)
        files = sorted(Path(folder).rglob("*.pb"))
        size = sum(f.stat().st_size for f in files)
        warm = run(args.preset, args.batch, 1, folder)
        off = run(args.preset, args.batch, 2, "0")
        shutil.rmtree(folder)
        on = run(args.preset, args.batch, 2, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [("cold: empty cache, new process", cold["trainers"][0]),
            ("warm: cache filled by another process", warm["trainers"][0]),
            ("second Trainer in one process, cache off", off["trainers"][1]),
            ("second Trainer in one process, cache on", on["trainers"][1])]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {cpu_label()}; load average {load:.1f} at the start; "
        f"`{args.preset}` at batch {args.batch}, `jit_compile=True`; each case in a fresh process.",
        "",
        "| case | first call (s) | its CPU time (s) | a later call (s) |",
        "|---|---|---|---|",
        *(f"| {name} | {r['first_s']:.1f} | {r['first_cpu_s']:.1f} | {r['second_s']:.2f} |" for name, r in rows),
        "",
        f"- The cache held {len(files)} compiled program(s), {size / 2**20:.1f} MiB, after the cold run. A warm "
        f"process's first call took {warm['trainers'][0]['first_s']:.1f} s instead of "
        f"{cold['trainers'][0]['first_s']:.1f} s ({cold['trainers'][0]['first_s'] - warm['trainers'][0]['first_s']:.1f} "
        "s saved per process that builds this model again).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "xla_cache.md").write_text("\n".join(lines) + "\n")
    (args.out / "xla_cache.json").write_text(json.dumps(dict(cold=cold, warm=warm, off=off, on=on, files=len(files),
                                                             bytes=size, preset=args.preset, batch=args.batch,
                                                             load=load, cpu=cpu_label()), indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
