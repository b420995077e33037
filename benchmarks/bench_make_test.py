"""How long `make test` takes on a fresh clone, phase by phase (issue #11: <= 15 minutes on a quiet 2-core machine).

    python benchmarks/bench_make_test.py                 # JOBS=2 (the Makefile's default)
    python benchmarks/bench_make_test.py --jobs 1 2      # one after another, then two at a time: side by side

Clones this repository's HEAD into a scratch folder (so the install is a fresh one, as in CI) and runs the phases
`make test` runs, in its order, each as its own make target -- install (the venv and every dependency), unit,
nbval, book-from-nbval, browser -- timing each one's wall and CPU time (of the make process and its children).
A failing phase stops the run: a time of a broken test suite means nothing. Prints a table and writes it to
benchmarks/results/make_test.md (and .json) with the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHASES = ("install", "unit", "nbval", "book-from-nbval", "browser")  # what `make test` runs, in order
RESULTS = ROOT / "benchmarks" / "results"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_phases(clone: Path, jobs: int, log) -> list[dict]:
    rows = []
    for phase in PHASES:
        t0, c0 = time.perf_counter(), children_cpu()
        proc = subprocess.run(["make", "--no-print-directory", phase, f"JOBS={jobs}"], cwd=clone, stdout=log,
                              stderr=subprocess.STDOUT)
        row = dict(phase=phase, wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(children_cpu() - c0, 1))
        rows.append(row)
        print(f"  JOBS={jobs} {phase:<16} {row['wall_s']:7.1f} s wall {row['cpu_s']:7.1f} s CPU", flush=True)
        if proc.returncode:
            raise SystemExit(f"`make {phase}` failed (exit {proc.returncode}); see {log.name}")
    return rows


def main(argv=None) -> int:
    from sagan_tut import runinfo
    from sagan_tut.machine import cpu_label

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2], help="JOBS values to time, in order")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clones")
    args = parser.parse_args(argv)
    commit = runinfo.git_commit()
    record = dict(date=runinfo.now(), machine=cpu_label(), git_commit=commit,
                  load_average_start=runinfo.load_average(), runs=[])
    for jobs in args.jobs:
        scratch = Path(tempfile.mkdtemp(prefix="make_test_"))
        clone = scratch / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        with open(scratch / "make.log", "w") as log:
            print(f"JOBS={jobs}: fresh clone of {commit[:10]} in {clone} (log: {log.name})", flush=True)
            rows = run_phases(clone, jobs, log)
        record["runs"].append(dict(jobs=jobs, phases=rows, total_wall_s=round(sum(r["wall_s"] for r in rows), 1),
                                   total_cpu_s=round(sum(r["cpu_s"] for r in rows), 1)))
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    record["load_average_end"] = runinfo.load_average()
    lines = [f"Measured {record['date'][:16].replace('T', ' ')} on {record['machine']}; load average "
             f"{record['load_average_start'][0]:.1f} at the start, {record['load_average_end'][0]:.1f} at the end; "
             f"commit {commit[:10]}; each run a fresh clone, install included "
             "(`python benchmarks/bench_make_test.py`).", "",
             "| phase | " + " | ".join(f"JOBS={r['jobs']} wall (s) | CPU (s)" for r in record["runs"]) + " |",
             "|---|" + "---|---|" * len(record["runs"])]
    for i, phase in enumerate(PHASES):
        lines.append(f"| {phase} | " + " | ".join(f"{r['phases'][i]['wall_s']:.0f} | {r['phases'][i]['cpu_s']:.0f}"
                                                   for r in record["runs"]) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['total_wall_s']:.0f}** ({r['total_wall_s'] / 60:.1f} min) | "
                                              f"{r['total_cpu_s']:.0f}" for r in record["runs"]) + " |")
    lines += ["", "CPU time over wall time is how many of the cores the phase kept busy on average."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "make_test.md").write_text("\n".join(lines) + "\n")
    runinfo.write_json(record, RESULTS / "make_test.json")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
