"""Input-pipeline throughput: CelebA-format files (folder and zip) and the procedural faces.

    python benchmarks/bench_data.py [--seconds 5] [--files 512] [--batch 64]

Writes fake CelebA files in the official format to a temporary folder (178 x 218 JPEGs, textured so that their
mean size is close to real CelebA's ~7.1 kB: the official zip is 1,443,490,838 bytes for 202,599 images),
then times ``load_dataset`` batches after a warm-up. Three figures per row:

* ``img/s``: images per wall-clock second with the default (parallel) pipeline -- what a training loop sees
  on this machine right now, including whatever else is running on it;
* ``CPU ms/img``: CPU time per image with tf.data restricted to one thread (no spinning thread pools, so the
  figure hardly moves with the machine's other load);
* ``idle est.``: ``cores x 1000 / (CPU ms/img)``, what the parallel pipeline can reach on an idle machine if it
  scales over the cores (an upper bound).

The pipeline must outrun the GPU: SAGAN-128 on a Colab GPU trains at a few hundred images/s, so the target
is >= 1,000 images/s at 128 px from files on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

CELEBA_MEAN_BYTES = 1_443_490_838 / 202_599  # official img_align_celeba.zip size / number of images


def machine() -> str:
    from sagan_tut.machine import cpu_label

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return f"{cpu_label()}, load average {load[0]:.1f} (1 min)"


def photo_like(index: int, faces_cache={}) -> np.ndarray:
    """A 218 x 178 uint8 face with smooth noise texture: JPEG sizes like CelebA's, unlike flat test patterns."""
    from sagan_tut.faces import generate_faces

    if "batch" not in faces_cache or index - faces_cache["start"] >= 64 or index < faces_cache["start"]:
        faces_cache["start"] = index - index % 64
        faces_cache["batch"] = generate_faces(64, 218, seed=11, start=faces_cache["start"])
    img = faces_cache["batch"][index - faces_cache["start"]][:, 20:198]  # 218 x 178
    rng = np.random.default_rng(index)
    noise = rng.normal(0, 1, (218 // 2 + 1, 178 // 2 + 1, 3)).repeat(2, 0).repeat(2, 1)[:218, :178]
    img = (img + 1) * 127.5 + 4.0 * noise
    return np.clip(img, 0, 255).astype(np.uint8)


def write_files(root: str, n: int) -> float:
    from sagan_tut.celeba import write_fake_celeba

    for layout in ("folder", "zip"):
        write_fake_celeba(os.path.join(root, layout), n=n, layout=layout, quality=85, subsampling=2,
                          image_fn=photo_like)
    folder = os.path.join(root, "folder", "img_align_celeba")
    return float(np.mean([os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)]))


def measure(ds, seconds: float) -> float:
    """Images per wall-clock second over ``seconds`` after a warm-up."""
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, thread pools, autotuning
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += int(next(it).shape[0])
    return n / (time.perf_counter() - start)


def cpu_ms_per_image(ds, batches: int = 16) -> float:
    """CPU milliseconds per image with tf.data confined to one thread."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    it = iter(ds.with_options(options))
    for _ in range(2):
        next(it)
    n, start = 0, time.process_time()
    for _ in range(batches):
        n += int(next(it).shape[0])
    return (time.process_time() - start) / n * 1000.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window per row")
    parser.add_argument("--files", type=int, default=512, help="fake CelebA files to write")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                        help="folder for data_pipeline.md")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from sagan_tut.data import load_dataset

    print(f"machine: {machine()}")
    print(f"TensorFlow {tf.__version__}, batch {args.batch}, {args.seconds:.0f} s per row\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mean_bytes = write_files(tmp, args.files)
        print(f"{args.files} fake CelebA JPEGs, mean {mean_bytes / 1000:.1f} kB "
              f"(real CelebA: {CELEBA_MEAN_BYTES / 1000:.1f} kB)\n")
        for source, R in (("folder", 64), ("folder", 128), ("zip", 128)):
            def make():
                return load_dataset("celeba", resolution=R, batch_size=args.batch, root=os.path.join(tmp, source))
            rows.append((f"CelebA files, {source}", R, measure(make(), args.seconds), cpu_ms_per_image(make())))
    for R in (32, 64, 128):
        def make():
            return load_dataset("faces", resolution=R, batch_size=args.batch)
        rows.append(("procedural faces", R, measure(make(), args.seconds), cpu_ms_per_image(make())))

    cores = os.cpu_count() or 1
    print(f"{'pipeline':24s} {'px':>4s} {'img/s':>8s} {'CPU ms/img':>11s} {'idle est.':>10s}")
    for name, R, per_s, ms in rows:
        print(f"{name:24s} {R:4d} {per_s:8.0f} {ms:11.3f} {cores * 1000 / ms:10.0f}")
    if hasattr(os, "getloadavg"):
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    os.makedirs(args.out, exist_ok=True)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}; TensorFlow {tf.__version__}; batch "
        f"{args.batch}; {args.files} fake CelebA JPEGs in the official format (mean {mean_bytes / 1000:.1f} kB; real "
        f"CelebA: {CELEBA_MEAN_BYTES / 1000:.1f} kB); {args.seconds:g} s per row.",
        "",
        "img/s = images per wall-clock second from `load_dataset` with its default parallel pipeline; CPU ms/img = "
        "CPU time per image with tf.data on one thread; idle estimate = cores × 1000 / (CPU ms/img).",
        "",
        "| pipeline | px | img/s | CPU ms / img | idle estimate, img/s |",
        "|---|---|---|---|---|",
        *(f"| {name} | {R} | {per_s:,.0f} | {ms:.3f} | {cores * 1000 / ms:,.0f} |" for name, R, per_s, ms in rows),
    ]
    path = os.path.join(args.out, "data_pipeline.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
