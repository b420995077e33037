"""Speed of the structure score (sagan_tut.structure) on one core, at 32, 64 and 128 px.

    python benchmarks/bench_structure.py [--n 2000] [--repeats 3]

Scores ``n`` procedural faces (mixed real and broken) in batches of 500 and prints images per second of
CPU time, the best of ``repeats`` runs. numpy and scipy run these loops on one thread (BLAS is not involved),
so CPU time per image is what one core delivers. The target is >= 5,000 images/s at 64 px.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # keep any BLAS call on one core, as the target says
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def bench(resolution: int, n: int, repeats: int, batch: int = 500) -> float:
    from sagan_tut.faces import generate_faces
    from sagan_tut.structure import structure_scores

    half = n // 2
    images = np.concatenate([generate_faces(half, resolution, seed=5),
                             generate_faces(n - half, resolution, seed=5, broken=True)])
    structure_scores(images[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(0, n, batch):
            structure_scores(images[i:i + batch])
        best = min(best, time.process_time() - t0)
    return n / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for R in (32, 64, 128):
        print(f"{R:4d} px: {bench(R, args.n, args.repeats):8,.0f} img/s (CPU time, one core)")


if __name__ == "__main__":
    main()
