"""The ablation campaign: train and score every (rung, seed), resuming whatever an earlier invocation finished.

``results.json`` in the output folder is the campaign's state. It is rewritten after every run, so an interrupted
campaign loses at most the run in flight; run the same command again (or with more seeds or rungs) and the runs
already in it are reused, not retrained, and the new ones appended. A run is reused only if it was made with
the same settings: the same TrainConfig, evaluation size, extractor and ladder version, and metrics that still
give the stored numbers on the reference rows (recomputed every time, they fingerprint the scoring code).
Anything else is an error that names the difference, never an overwrite.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import runinfo
from .ablation_config import (BASE, DEFAULT_N_EVAL, DEFAULT_OUT, DEFAULT_SEEDS, DEFAULT_STEPS, EVAL_SEED_OFFSET,
                              KID_SUBSETS, LABELS, NAMES, RUNGS, AblationError, check_resolution, make_config,
                              parse_configs)
from .ablation_report import load_samples, save_samples, write_report

# 2: the "+ spectral norm" rung's discriminator lost its BatchNorm. Runs of another version measure other
# networks under the same names, so they are never mixed into one table.
LADDER_VERSION = 2
_SAME_SETTINGS = ("ladder_version", "steps", "n_eval", "resolution", "extractor", "kid_subsets", "overrides")


# -- scoring ------------------------------------------------------------------------------------------------------
def _score(images, real, extractor) -> dict:
    from . import metrics
    from .faces import structure_score, structure_scores

    # The score through its entry point; the per-part breakdown whatever parts it has.
    parts = {k: float(np.mean(v)) for k, v in structure_scores(images).items() if k != "score"}
    fake = metrics.compute_stats(images, extractor, keep=len(images))
    kid_mean, kid_std = metrics.kid(real.features, fake.features, num_subsets=KID_SUBSETS, seed=0)
    return dict(structure=structure_score(images), **parts, fid=metrics.fid_from_stats(real, fake),
                kid=kid_mean, kid_subset_std=kid_std)


def _reference(extractor, n: int, resolution: int) -> dict:
    """Features of n real training faces, plus the two reference rows (real val faces, broken faces)."""
    from . import metrics
    from .faces import SPLIT_STREAMS, generate_faces

    real = metrics.compute_stats(generate_faces(n, resolution, seed=SPLIT_STREAMS["train"]), extractor, keep=n)
    rows = {}
    for key, label, images in (
        ("real_val", "real faces (val split)", generate_faces(n, resolution, seed=SPLIT_STREAMS["val"])),
        ("broken_val", "broken faces (control)",
         generate_faces(n, resolution, seed=SPLIT_STREAMS["val"], broken=True)),
    ):
        rows[key] = dict(label=label, metrics=_score(images, real, extractor))
    return dict(stats=real, rows=rows)


def run_one(name: str, seed: int, config, run_dir, reference: dict, extractor, n_eval: int,
            machine: dict | None = None) -> dict:
    """Train one configuration with one seed and score it; returns the run's record for results.json. A run
    folder that holds an interrupted run's checkpoint is resumed (exact resume, see sagan_tut.train)."""
    import keras

    from .train import Trainer, generate

    keras.backend.clear_session()  # forget the previous run's models and graphs (memory, layer-name counters)
    date, load_start = runinfo.now(), runinfo.load_average()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config, run_dir, verbose=False, resume=True)
    t1 = time.perf_counter()
    history = trainer.fit()
    t2, c2 = time.perf_counter(), time.process_time()
    images = generate(trainer.G, n_eval, seed=EVAL_SEED_OFFSET + int(seed))
    scores = _score(images, reference["stats"], extractor)
    t3, c3 = time.perf_counter(), time.process_time()
    keep = ("step", "d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec")
    log = [{k: v for k, v in rec.items() if k in keep or k.startswith("gamma/")} for rec in history]
    return dict(
        config=name, label=LABELS[name], seed=int(seed), metrics=scores, train_config=config.to_dict(),
        final=dict(log[-1]) if log else {}, log=log,
        gamma={k: v for k, v in trainer.scalars().items() if k.startswith("gamma/")},
        params=dict(G=int(sum(np.prod(w.shape) for w in trainer.G.trainable_weights)),
                    D=int(sum(np.prod(w.shape) for w in trainer.D.trainable_weights))),
        resumed_from_step=int(trainer.initial_step), date=date, git_commit=runinfo.git_commit(),
        machine=machine if machine is not None else runinfo.machine_info(),
        load_average_start=load_start, load_average_end=runinfo.load_average(),
        time_build_s=round(t1 - t0, 2), time_train_s=round(t2 - t1, 2), time_eval_s=round(t3 - t2, 2),
        time_total_s=round(t3 - t0, 2), cpu_time_s=round(c3 - c0, 2), cpu_time_eval_s=round(c3 - c2, 2),
        samples=np.asarray(images[:8]),  # for samples.png; stored in samples.npz, not in the JSON
    )


# -- the campaign's state -----------------------------------------------------------------------------------------
def _differences(old: dict, new: dict, keys) -> list[str]:
    return [f"{k}: {old.get(k)!r} in results.json, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


def _check_reference(stored: dict, fresh: dict, path: Path):
    """The reference rows are recomputed each time; if they moved, the scoring code changed and the stored
    runs' numbers would not compare with new ones."""
    for key, row in fresh.items():
        old = stored.get(key, {}).get("metrics", {})
        for metric in ("structure", "fid", "kid"):
            a, b = old.get(metric), row["metrics"][metric]
            if a is None or not np.isclose(a, b, rtol=1e-3, atol=1e-5):
                raise AblationError(
                    f"{path} was scored by other metrics: {metric} of '{row['label']}' is {a} there and {b:.6g} "
                    "now (the structure score or the extractor changed). Its runs cannot be mixed with new ones: "
                    "start a new campaign with another --out, or move results.json away.")


def _new_results(configs, seeds, steps, n_eval, resolution, extractor, overrides) -> dict:
    from . import metrics

    return dict(
        description="sagan_tut.ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge/TTUR on the "
                    "procedural faces; see the module docstring.",
        date=runinfo.now(), git_commit=runinfo.git_commit(), machine=runinfo.machine_info(),
        load_average_start=runinfo.load_average(),
        settings=dict(ladder_version=LADDER_VERSION, configs=configs, seeds=list(range(seeds)), steps=steps,
                      n_eval=n_eval, resolution=resolution, extractor=extractor.name, kid_subsets=KID_SUBSETS,
                      kid_subset_size=metrics.effective_kid_subset_size(n_eval, n_eval),
                      real_reference=f"the first {n_eval} faces of the train split (generate_faces(n, R, seed=0))",
                      eval_noise_seed=f"{EVAL_SEED_OFFSET} + run seed", std="sample std over seeds (ddof=1)",
                      overrides=overrides, base=BASE, rungs=[dict(name=n, label=l, changes=c) for n, l, c in RUNGS]),
        configs={}, complete=False, runs=[], sessions=[],
    )


# -- the whole ablation -------------------------------------------------------------------------------------------
def run_ablation(out=DEFAULT_OUT, configs=NAMES, seeds=DEFAULT_SEEDS, steps=DEFAULT_STEPS, n_eval=DEFAULT_N_EVAL,
                 runs_dir=None, verbose=True, argv=None, resolution=BASE["resolution"], **overrides) -> dict:
    """Train and score ``configs`` x ``seeds`` (seeds 0 .. seeds-1) at ``resolution``; reuse the runs
    ``out/results.json`` already holds (same settings), append the others; write results.json after every run,
    then table.md, ablation.png and samples.png; return the results dict. ``overrides`` (e.g.
    ``width=0.125, batch_size=8``) apply to every run; ``runs_dir`` keeps the run folders (checkpoints, logs; an
    interrupted run resumes from its checkpoint), by default a temporary folder deleted at the end."""
    import json

    from . import metrics
    from .config import FIELDS

    configs = parse_configs(configs)
    seeds, steps, n_eval = int(seeds), int(steps), int(n_eval)
    resolution = check_resolution(resolution)
    if seeds < 1:
        raise AblationError(f"seeds must be >= 1 (seeds 0 .. seeds-1 are run); got {seeds}.")
    if steps < 1:
        raise AblationError(f"steps must be >= 1; got {steps}.")
    if n_eval < 4:
        raise AblationError(f"n_eval must be >= 4 (KID needs subsets of at least 2 images); got {n_eval}.")
    bad = sorted(set(overrides) - set(FIELDS))
    if bad:
        raise AblationError(f"unknown config field(s) {bad}; any TrainConfig field may be overridden.")
    # Validate every config before any training, so a bad override fails in a second, not after a run.
    planned = [(name, seed, make_config(name, seed, steps, resolution=resolution, **overrides))
               for name in configs for seed in range(seeds)]

    out = Path(out)
    path = out / "results.json"
    extractor = metrics.get_extractor("offline")
    results = _new_results(configs, seeds, steps, n_eval, resolution, extractor, overrides)
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous is not None:
        old = dict(previous["settings"], ladder_version=previous["settings"].get("ladder_version", 1),
                   resolution=previous["settings"].get("resolution", BASE["resolution"]))
        diffs = _differences(old, results["settings"], _SAME_SETTINGS)
        if diffs:
            raise AblationError(
                f"{path} holds a campaign with other settings ({'; '.join(diffs)}). Continue it with its own "
                "settings, or start a new one with another --out (or move results.json away).")
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if runs_dir is None:
        runs_dir = tmp = tempfile.mkdtemp(prefix="sagan_ablation_")
    runs_dir = Path(runs_dir)
    started = time.perf_counter()
    session = dict(date=runinfo.now(), git_commit=results["git_commit"], machine=results["machine"],
                   command=" ".join(["python -m sagan_tut.ablation", *(argv if argv is not None else sys.argv[1:])]),
                   load_average_start=results["load_average_start"], runs_added=[])
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        reference = _reference(extractor, n_eval, resolution)
        session["time_reference_s"] = round(time.perf_counter() - t0, 2)
        session["cpu_time_reference_s"] = round(time.process_time() - c0, 2)
        if previous is not None:
            _check_reference(previous.get("reference", {}), reference["rows"], path)
            # Keep everything the campaign had: its first date, machine and command, its runs and sessions.
            results = dict(previous, settings=dict(previous["settings"], ladder_version=LADDER_VERSION,
                                                   resolution=resolution))
            results["sessions"] = list(previous.get("sessions", []))
            s = results["settings"]
            s["configs"] = [n for n in NAMES if n in s["configs"] or n in configs]
            s["seeds"] = sorted(set(s["seeds"]) | set(range(seeds)))
        results["reference"] = reference["rows"]
        for name in configs:  # each configuration's settings, as its seed-0 run gets them
            cfg = next(c for n, sd, c in planned if (n, sd) == (name, 0))
            results["configs"].setdefault(name, dict(label=LABELS[name], train_config=cfg.to_dict()))
        results["sessions"].append(session)
        done = {(r["config"], r["seed"]): r for r in results["runs"]}
        samples = load_samples(out)
        for k, (name, seed, cfg) in enumerate(planned):
            if (name, seed) in done:
                stored = done[(name, seed)]["train_config"]
                diffs = _differences(stored, cfg.to_dict(), sorted(set(stored) | set(cfg.to_dict())))
                if diffs:
                    raise AblationError(f"{path}: run {name} seed {seed} was trained with another config "
                                        f"({'; '.join(diffs)}); use another --out for a new campaign.")
                if verbose:
                    print(f"[{k + 1}/{len(planned)}] {name} seed {seed}: done before, kept", flush=True)
                continue
            if verbose:
                print(f"[{k + 1}/{len(planned)}] {name} seed {seed}: {steps} steps ...", flush=True)
            record = run_one(name, seed, cfg, runs_dir / f"{name}_seed{seed}", reference, extractor, n_eval,
                             machine=session["machine"])
            if name not in samples:
                samples[name] = record["samples"]
                save_samples(samples, out)
            del record["samples"]
            results["runs"].append(record)
            session["runs_added"].append(f"{name}_seed{seed}")
            if verbose:
                m = record["metrics"]
                print(f"    structure {m['structure']:.3f}  FID {m['fid']:.2f}  KID {m['kid'] * 1e3:.2f}e-3  "
                      f"({record['time_total_s']:.0f} s)", flush=True)
            session["time_s"] = round(time.perf_counter() - started, 1)
            runinfo.write_json(results, path)  # after every run: an interrupted campaign keeps its data
        have = {(r["config"], r["seed"]) for r in results["runs"]}
        s = results["settings"]
        results["complete"] = all((n, sd) in have for n in s["configs"] for sd in s["seeds"])
        session["time_s"] = round(time.perf_counter() - started, 1)
        session["load_average_end"] = runinfo.load_average()
        results["time_total_s"] = round(sum(x.get("time_s", 0) for x in results["sessions"]), 1)
        results["load_average_end"] = session["load_average_end"]
        runinfo.write_json(results, path)
        write_report(results, out, samples=samples)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results
