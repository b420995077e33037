"""The course's reference runs: SAGAN trained to convergence on the procedural faces, on a 2-core CPU.

    python -m sagan_tut.reference                        # every run in RUNS (what `make reference` does)
    python -m sagan_tut.reference --runs sagan32         # one of them
    python -m sagan_tut.reference --runs sagan32 --steps 40 --out /tmp/ref --runs-dir /tmp/ref-runs  # a try

Each run trains in ``runs/reference/<name>/`` (checkpoints: an interrupted run resumes where it stopped, the
command is simply run again) and, when it has reached its step count, writes what the book shows to
``book/reference/<name>/``, small enough to commit:

* ``generator.keras`` -- the EMA generator (its own BatchNorm statistics, see :mod:`sagan_tut.ema`);
* ``log.jsonl`` -- the training log (losses, gamma of every attention layer, sigma of every SN layer);
* ``samples/step_*.png`` -- the grid of one fixed noise batch at every ``sample_every`` steps, and
  ``progression.png`` -- the first row of each grid stacked, top to bottom = early to late;
* ``metrics.json`` -- offline FID/KID and the structure score of 1,000 EMA samples and of 1,000 samples of the
  raw G, next to the two reference rows (real val faces, and the broken-faces control) at the same n, and
  whether the bar holds: FID below the broken control's and structure score >= 0.85;
* ``meta.json`` -- the command, git commit, machine (CPU, vector width, oneDNN), every setting, why these
  settings, and the wall and CPU time of every session that trained it.

A chapter loads a run in a few lines::

    from sagan_tut.reference import load_reference
    ref = load_reference("sagan64")       # dict: generator, log, metrics, meta, sample grid paths
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "book" / "reference"
DEFAULT_RUNS_DIR = ROOT / "runs" / "reference"
N_EVAL = 1000
EVAL_SEED = 2 ** 30 + 7  # noise no training run uses
BAR_STRUCTURE = 0.85

# Overrides of the `quick` preset (blog architecture, procedural faces). Why each setting, in `why`.
RUNS = {
    "sagan32": dict(
        overrides=dict(steps=16_000, ema_decay=0.999, ema_start=2_000, log_every=50, sample_every=1_000,
                       ckpt_every=500, keep_checkpoints=2),
        why=("The quick preset (blog architecture at 32x32, width 0.25, attention on the 16x16 maps, batch 64) "
             "trained four times as long as the 4,000 iterations that already draw clean faces. Learning rates "
             "4e-4 for both G and D, the quick preset's: with TTUR's lr_G = 1e-4 G learns four times slower and "
             "the budget is the constraint; the EMA generator (decay 0.999 from step 2,000) is what is "
             "evaluated."),
    ),
    "sagan64": dict(
        overrides=dict(resolution=64, attention_res=32, attention_variant="biggan", width=0.5, batch_size=64,
                       steps=8_000, ema_decay=0.999, ema_start=2_000, log_every=50, sample_every=500,
                       ckpt_every=250, keep_checkpoints=2),
        why=("The blog architecture at 64x64 with attention on the 32x32 maps of G and D, where the paper's "
             "ablation and the official code put it, in the official code's form (attention variant 'biggan': "
             "keys and values max-pooled 2x2, as in the official code's sn_non_local_block_sim and in BigGAN), "
             "whose 1024 x 256 map per image made the iteration 2.2x faster per image on the Zen 5 than the "
             "full 1024 x 1024 one (114-123 against 53 images/s at width 0.5). Width 0.5 and batch 64 (as "
             "sagan32's batch) for 8,000 iterations (512,000 images), about 70 minutes on a 2-core CPU. An earlier "
             "run with full "
             "attention at batch 32 for 8,000 iterations (256,000 images, git history) drew faces of few "
             "colours and missed the FID bar by 10x. Learning rates 4e-4 for G and D, as sagan32."),
    ),
}


def config_for(name: str, **overrides):
    from .config import get_config

    if name not in RUNS:
        raise ValueError(f"unknown reference run {name!r}; choose from {', '.join(RUNS)}.")
    return get_config("quick", **{**RUNS[name]["overrides"], **overrides})


def _progression(sample_dir: Path, resolution: int, out: Path, padding: int = 2) -> list[int]:
    """Stack the first row of every sample grid (fixed noise) into one image: training progress top to bottom."""
    from PIL import Image

    grids = sorted(sample_dir.glob("step_*.png"))
    rows = [np.asarray(Image.open(p).convert("RGB"))[: resolution + 2 * padding] for p in grids]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    return [int(p.stem.split("_")[1]) for p in grids]


def evaluate(generator, raw_generator, resolution: int, n: int = N_EVAL) -> dict:
    """Offline FID/KID and structure score of ``n`` samples of both generators, with the reference rows."""
    from .ablation_run import _reference, _score
    from .metrics import get_extractor
    from .train import generate

    extractor = get_extractor("offline")
    ref = _reference(extractor, n, resolution)
    ema = _score(generate(generator, n, seed=EVAL_SEED), ref["stats"], extractor)
    raw = _score(generate(raw_generator, n, seed=EVAL_SEED), ref["stats"], extractor)
    broken = ref["rows"]["broken_val"]["metrics"]
    return dict(
        n=n, extractor="offline", ema=ema, g=raw, reference_rows=ref["rows"],
        bar=dict(fid_below_broken_control=bool(ema["fid"] < broken["fid"]),
                 structure_at_least=BAR_STRUCTURE, structure_ok=bool(ema["structure"] >= BAR_STRUCTURE)),
    )


def train_reference(name: str, out=DEFAULT_OUT, runs_dir=DEFAULT_RUNS_DIR, n_eval: int = N_EVAL,
                    verbose: bool = True, **overrides) -> dict:
    """Train (or resume) reference run ``name`` and write its artefacts to ``out/name``; returns metrics."""
    import keras

    from . import runinfo
    from .train import Trainer

    config = config_for(name, **overrides)
    run_dir, dest = Path(runs_dir) / name, Path(out) / name
    keras.backend.clear_session()
    session = dict(date=runinfo.now(), load_average_start=runinfo.load_average())
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config, run_dir, verbose=verbose)
    session["start_step"] = int(trainer.initial_step)
    trainer.fit()
    session.update(end_step=int(trainer.step.numpy()), wall_s=round(time.perf_counter() - t0, 1),
                   cpu_s=round(time.process_time() - c0, 1), load_average_end=runinfo.load_average(),
                   jit_compile=bool(trainer.jit_compile), jit_reason=trainer.jit_compile_reason)
    sessions_path = run_dir / "sessions.jsonl"  # every session that trained this run, kept with its checkpoints
    with open(sessions_path, "a") as fh:
        fh.write(json.dumps(session) + "\n")
    sessions = [json.loads(line) for line in sessions_path.read_text().splitlines() if line.strip()]

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "samples").mkdir(exist_ok=True)
    for grid in sorted((run_dir / "samples").glob("step_*.png")):
        (dest / "samples" / grid.name).write_bytes(grid.read_bytes())
    steps = _progression(dest / "samples", config.resolution, dest / "progression.png")
    (dest / "log.jsonl").write_bytes((run_dir / "log.jsonl").read_bytes())
    trainer.sampling_generator.save(dest / "generator.keras")
    t_eval, c_eval = time.perf_counter(), time.process_time()
    metrics = evaluate(trainer.sampling_generator, trainer.G, config.resolution, n_eval)
    metrics.update(eval_wall_s=round(time.perf_counter() - t_eval, 1),
                   eval_cpu_s=round(time.process_time() - c_eval, 1),
                   gamma={k: v for k, v in trainer.scalars().items() if k.startswith("gamma/")})
    runinfo.write_json(metrics, dest / "metrics.json")
    meta = dict(
        run=name, command=" ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "sagan_tut.reference",
                                                             *sys.argv[1:]]),
        git_commit=runinfo.git_commit(), machine=runinfo.machine_info(), config=config.to_dict(),
        preset="quick", overrides={**RUNS[name]["overrides"], **overrides}, why=RUNS[name]["why"],
        params=dict(G=int(sum(np.prod(w.shape) for w in trainer.G.trainable_weights)),
                    D=int(sum(np.prod(w.shape) for w in trainer.D.trainable_weights))),
        sample_steps=steps, sessions=sessions,
        wall_s=round(sum(s["wall_s"] for s in sessions), 1), cpu_s=round(sum(s["cpu_s"] for s in sessions), 1),
        ema_bn=getattr(trainer, "ema_bn", None),
    )
    runinfo.write_json(meta, dest / "meta.json")
    return metrics


def load_reference(name: str, folder=DEFAULT_OUT) -> dict:
    """A committed reference run: ``generator`` (Keras model), ``log`` (records), ``metrics``, ``meta``, and the
    paths of its sample grids and progression strip."""
    import keras  # importing sagan_tut registered the layers the .keras file names

    from .viz import read_log

    dest = Path(folder) / name
    if not (dest / "meta.json").exists():
        raise FileNotFoundError(f"no reference run {name!r} in {folder}: run `make reference` (or "
                                f"`python -m sagan_tut.reference --runs {name}`) to train it.")
    return dict(
        generator=keras.models.load_model(dest / "generator.keras"), log=read_log(dest / "log.jsonl"),
        metrics=json.loads((dest / "metrics.json").read_text()), meta=json.loads((dest / "meta.json").read_text()),
        grids=sorted((dest / "samples").glob("step_*.png")), progression=dest / "progression.png",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagan_tut.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--steps", type=int, help="override the runs' step counts (for a try)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artefacts folder (default book/reference)")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="training folders (checkpoints)")
    parser.add_argument("--n-eval", type=int, default=N_EVAL, help="samples for FID/KID/structure (default 1000)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {', '.join(RUNS)}")
    extra = {} if args.steps is None else dict(steps=args.steps)
    for name in names:
        m = train_reference(name, args.out, args.runs_dir, args.n_eval, **extra)
        broken = m["reference_rows"]["broken_val"]["metrics"]
        print(f"{name}: FID (EMA) {m['ema']['fid']:.4f} vs broken control {broken['fid']:.4f}; structure "
              f"{m['ema']['structure']:.3f} (bar {BAR_STRUCTURE}); "
              f"{'meets' if m['bar']['fid_below_broken_control'] and m['bar']['structure_ok'] else 'MISSES'} the bar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
