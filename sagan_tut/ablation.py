"""The chapter 6 ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge loss and TTUR.

    python -m sagan_tut.ablation                          # the committed run: 4 configurations x 3 seeds
    python -m sagan_tut.ablation --configs dcgan,sn --seeds 2 --steps 50 --out /tmp/ablation
    python -m sagan_tut.ablation --report-only            # rebuild table.md and the figures from results.json

Four configurations of one small network, each a single change on top of the one before it, so that every step
of the ladder isolates one of SAGAN's ingredients (Zhang et al., 2019, Sec. 4-5):

==============  =================================================================================================
``dcgan``       Radford et al.'s recipe: ``arch="dcgan"`` (BatchNorm in G and D, N(0, 0.02) init), the
                non-saturating loss, one learning rate 2e-4 for both networks, Adam beta1 = 0.5, beta2 = 0.999
``sn``          + spectral normalisation of every conv and dense layer of G *and* D (SAGAN uses it in both;
                Miyato et al. normalised D only); the BatchNorm layers stay
``attention``   + a self-attention block (the paper's variant) on the 16x16 feature maps of G and of D
``hinge_ttur``  + the hinge loss and TTUR: lr_G = 1e-4, lr_D = 4e-4, Adam beta1 = 0, beta2 = 0.9
==============  =================================================================================================

Everything else is shared: the procedural faces (:mod:`sagan_tut.faces`) at 32x32, width 1/4, batch 32, one D step
per G step, no EMA (the ladder is about the four ingredients; an EMA would be a fifth). Batch 32 rather than the
quick preset's 64: on a 2-core CPU, attention at 16x16 costs 2.7x more per iteration at batch 64 than at 32
(cache), and within a fixed time budget more, smaller updates get further than fewer, larger ones. Each run trains with the
package's :class:`~sagan_tut.train.Trainer` on ``get_config("quick", **overrides)`` and is scored on ``n``
generated images against ``n`` real training faces:

* the **structure score** (:func:`sagan_tut.faces.structure_score`: shared eye colour and mirror symmetry, the
  long-range structure self-attention is supposed to help with; real faces score 1);
* **FID** and **KID** with the *offline* extractor (:class:`sagan_tut.metrics.RandomConvExtractor`, a fixed random
  conv net): comparable among themselves at equal ``n``, **not** to any published FID.

Two reference rows put the numbers in scale: real faces of the validation split scored like a generator (the floor
FID reaches at this ``n``: FID is biased upwards at small ``n``), and the "broken" faces (the same faces with
their long-range structure removed; the structure score's control).

Outputs in ``--out`` (default ``book/ablation``): ``results.json`` (every run's numbers, settings, timings, and the
machine), ``table.md`` (mean ± sample std over seeds), ``ablation.png`` (per-seed points and mean ± std) and
``samples.png`` (samples of each configuration's first seed). Everything is procedural: no network, no files needed.
"""
from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# -- the ladder ---------------------------------------------------------------------------------------------------
# The first configuration in full; every later one is the previous one plus the listed changes.
BASE = dict(
    arch="dcgan", resolution=32, width=0.25, attention_res=None, spectral_norm=False, attention_variant=None,
    loss="nonsaturating", n_dis=1, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999,
    dataset="faces", batch_size=32, ema=False,
)
RUNGS = (
    ("dcgan", "DCGAN", {}),
    ("sn", "+ spectral norm", dict(spectral_norm=True)),
    ("attention", "+ self-attention", dict(attention_res=16)),
    ("hinge_ttur", "+ hinge / TTUR", dict(loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9)),
)
NAMES = tuple(name for name, _, _ in RUNGS)
LABELS = {name: label for name, label, _ in RUNGS}

# Defaults of the committed run. Measured single-threaded on the 2-core CPU at batch 32: ~0.14 s of CPU per
# iteration without attention, ~0.23 s with it, so 400 iterations keep the 12 runs (plus tracing and scoring,
# ~10 s per run) within ~15 minutes on a quiet machine. results.json records each run's wall and CPU time.
DEFAULT_STEPS = 400
DEFAULT_SEEDS = 3
DEFAULT_N_EVAL = 1000
DEFAULT_OUT = "book/ablation"
KID_SUBSETS = 50  # subsets of n/2 images each: the mean is unbiased whatever the count; 50 keep it quick
EVAL_SEED_OFFSET = 2 ** 30  # noise for evaluation: a seed no training run uses (training uses config.seed)

# The metrics of the table and the figure: key in a run's "metrics", column title, scale, decimals, direction.
METRICS = (
    ("structure", "structure score ↑", 1.0, 3, "higher"),
    ("fid", "FID (offline) ↓", 1.0, 2, "lower"),
    ("kid", "KID ×10³ (offline) ↓", 1e3, 2, "lower"),
)


class AblationError(ValueError):
    """Bad ablation arguments (e.g. an unknown configuration name); the message says what is accepted."""


# -- configurations -----------------------------------------------------------------------------------------------
def parse_configs(text_or_list) -> list[str]:
    """``"dcgan,sn"`` or ``["dcgan", "sn"]`` -> the names, in ladder order; unknown names raise AblationError."""
    items = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    names = [str(n).strip() for n in items if str(n).strip()]
    if not names:
        raise AblationError(f"no configuration given: choose from {', '.join(NAMES)} (comma-separated).")
    for name in names:
        if name not in NAMES:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise AblationError(f"unknown configuration {name!r}.{hint} Choose from {', '.join(NAMES)} "
                                "(comma-separated, e.g. --configs dcgan,sn; hinge_ttur is the full SAGAN recipe).")
    return [n for n in NAMES if n in names]


def rung_overrides(name: str) -> dict:
    """The TrainConfig overrides of configuration ``name``: BASE plus the changes of every rung up to it."""
    parse_configs([name])
    out = dict(BASE)
    for rung, _, changes in RUNGS:
        out.update(changes)
        if rung == name:
            return out
    raise AssertionError("unreachable")


def make_config(name: str, seed: int = 0, steps: int = DEFAULT_STEPS, **overrides):
    """The :class:`~sagan_tut.config.TrainConfig` of one run: the quick preset, the rung's settings, the run's
    seed and length, and ``overrides`` (e.g. ``width``/``batch_size`` for a tiny test). Samples and a checkpoint
    are written once, at the end; the log every ``steps // 12`` iterations (for gamma over training)."""
    from .config import get_config

    steps = int(steps)
    log_every = max(1, steps // 12)
    return get_config("quick", **{
        **rung_overrides(name), "seed": int(seed), "steps": steps, "log_every": log_every,
        "sample_every": max(steps, 1), "ckpt_every": max(steps, 1), "keep_checkpoints": 1, **overrides})


# -- the machine --------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    """CPU model and cores, memory, library versions and the load average: what the timings depend on."""
    import keras
    import tensorflow as tf

    cpu, flags = None, ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu is None:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:  # not Linux
        pass
    cpu = cpu or platform.processor() or "unknown"
    info = dict(
        cpu_model=cpu, cpu_cores=os.cpu_count(),
        simd=sorted(f for f in flags.split() if f.startswith(("avx", "fma", "sse4"))),
        gpus=[d.name for d in tf.config.list_physical_devices("GPU")],
        python=platform.python_version(), platform=platform.platform(),
        tensorflow=tf.__version__, keras=keras.__version__, numpy=np.__version__,
    )
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def _load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# -- one run ------------------------------------------------------------------------------------------------------
def _reference(extractor, n: int, resolution: int) -> dict:
    """Features of n real training faces, plus the two reference rows (real val faces, broken faces)."""
    from . import metrics
    from .faces import SPLIT_STREAMS, generate_faces, structure_score

    real = metrics.compute_stats(generate_faces(n, resolution, seed=SPLIT_STREAMS["train"]), extractor, keep=n)
    rows = {}
    for key, label, images in (
        ("real_val", "real faces (val split)", generate_faces(n, resolution, seed=SPLIT_STREAMS["val"])),
        ("broken_val", "broken faces (control)",
         generate_faces(n, resolution, seed=SPLIT_STREAMS["val"], broken=True)),
    ):
        rows[key] = dict(label=label, metrics=_score(images, real, extractor))
    return dict(stats=real, rows=rows)


def _score(images, real, extractor) -> dict:
    from . import metrics
    from .faces import structure_scores

    parts = structure_scores(images)
    fake = metrics.compute_stats(images, extractor, keep=len(images))
    kid_mean, kid_std = metrics.kid(real.features, fake.features, num_subsets=KID_SUBSETS, seed=0)
    return dict(structure=float(np.mean(parts["score"])), eye_colour=float(np.mean(parts["eye_colour"])),
                symmetry=float(np.mean(parts["symmetry"])), fid=metrics.fid_from_stats(real, fake),
                kid=kid_mean, kid_subset_std=kid_std)


def run_one(name: str, seed: int, config, run_dir, reference: dict, extractor, n_eval: int) -> dict:
    """Train one configuration with one seed and score it; returns the run's record for results.json."""
    import keras

    from .train import Trainer, generate

    keras.backend.clear_session()  # forget the previous run's models and graphs (memory, layer-name counters)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config, run_dir, verbose=False, resume=False)
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
        time_build_s=round(t1 - t0, 2), time_train_s=round(t2 - t1, 2), time_eval_s=round(t3 - t2, 2),
        time_total_s=round(t3 - t0, 2), cpu_time_s=round(c3 - c0, 2), cpu_time_eval_s=round(c3 - c2, 2),
        samples=np.asarray(images[:8]),  # for samples.png; dropped before writing the JSON
    )


# -- the whole ablation ---------------------------------------------------------------------------------------------
def run_ablation(out=DEFAULT_OUT, configs=NAMES, seeds=DEFAULT_SEEDS, steps=DEFAULT_STEPS, n_eval=DEFAULT_N_EVAL,
                 runs_dir=None, verbose=True, argv=None, **overrides) -> dict:
    """Train and score ``configs`` x ``seeds`` (seeds 0 .. seeds-1); write results.json, table.md, ablation.png
    and samples.png into ``out``; return the results dict. ``overrides`` (e.g. ``width=0.125, batch_size=8``)
    apply to every run; ``runs_dir`` keeps the run folders (checkpoints, logs), by default a temporary folder
    that is deleted at the end."""
    from . import metrics
    from .config import FIELDS

    configs = parse_configs(configs)
    seeds, steps, n_eval = int(seeds), int(steps), int(n_eval)
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
    planned = [(name, seed, make_config(name, seed, steps, **overrides)) for name in configs for seed in range(seeds)]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if runs_dir is None:
        tmp = tempfile.mkdtemp(prefix="sagan_ablation_")
        runs_dir = tmp
    runs_dir = Path(runs_dir)
    extractor = metrics.get_extractor("offline")
    started = time.perf_counter()
    results = dict(
        description="sagan_tut.ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge/TTUR on the "
                    "procedural faces; see the module docstring.",
        command=" ".join(["python -m sagan_tut.ablation", *(argv if argv is not None else sys.argv[1:])]),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        git_commit=_git_commit(), machine=machine_info(), load_average_start=_load_average(),
        settings=dict(configs=configs, seeds=list(range(seeds)), steps=steps, n_eval=n_eval,
                      extractor=extractor.name, kid_subsets=KID_SUBSETS,
                      kid_subset_size=metrics.effective_kid_subset_size(n_eval, n_eval),
                      real_reference=f"the first {n_eval} faces of the train split (generate_faces(n, R, seed=0))",
                      eval_noise_seed=f"{EVAL_SEED_OFFSET} + run seed", std="sample std over seeds (ddof=1)",
                      overrides=overrides, base=BASE, rungs=[dict(name=n, label=l, changes=c) for n, l, c in RUNGS]),
        configs={name: dict(label=LABELS[name], train_config=make_config(name, 0, steps, **overrides).to_dict())
                 for name in configs},
        complete=False, runs=[],
    )
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        reference = _reference(extractor, n_eval, planned[0][2].resolution)
        results["reference"] = reference["rows"]
        results["time_reference_s"] = round(time.perf_counter() - t0, 2)
        results["cpu_time_reference_s"] = round(time.process_time() - c0, 2)
        samples = {}
        for k, (name, seed, cfg) in enumerate(planned):
            if verbose:
                print(f"[{k + 1}/{len(planned)}] {name} seed {seed}: {steps} steps ...", flush=True)
            record = run_one(name, seed, cfg, runs_dir / f"{name}_seed{seed}", reference, extractor, n_eval)
            samples.setdefault(name, record.pop("samples"))
            results["runs"].append(record)
            if verbose:
                m = record["metrics"]
                print(f"    structure {m['structure']:.3f}  FID {m['fid']:.2f}  KID {m['kid'] * 1e3:.2f}e-3  "
                      f"({record['time_total_s']:.0f} s)", flush=True)
            _write_json(results, out / "results.json")  # after every run: an interrupted ablation keeps its data
        results["complete"] = True
        results["time_total_s"] = round(time.perf_counter() - started, 1)
        results["load_average_end"] = _load_average()
        _write_json(results, out / "results.json")
        write_report(results, out, samples=samples)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def _write_json(obj, path: Path):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- reports ------------------------------------------------------------------------------------------------------
def summarize(results: dict) -> dict:
    """``{config: {metric: (mean, std, values)}}`` over seeds, std = sample std (ddof=1; NaN for one seed)."""
    out = {}
    for name in results["settings"]["configs"]:
        runs = [r for r in results["runs"] if r["config"] == name]
        if not runs:
            continue
        out[name] = {}
        for key, *_ in METRICS:
            values = np.array([r["metrics"][key] for r in runs], np.float64)
            std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            out[name][key] = (float(np.mean(values)), std, values.tolist())
        times = np.array([r["time_total_s"] for r in runs])
        out[name]["time"] = (float(np.mean(times)), float(np.std(times, ddof=1)) if len(times) > 1 else float("nan"),
                             times.tolist())
    return out


def _pm(mean, std, scale, decimals):
    if np.isnan(std):
        return f"{mean * scale:.{decimals}f}"
    return f"{mean * scale:.{decimals}f} ± {std * scale:.{decimals}f}"


def _change_text(changes: dict) -> str:
    if not changes:
        b = BASE
        return (f"{b['arch']}, {b['loss']}, lr {b['lr_g']:g}/{b['lr_d']:g}, β ({b['beta1']:g}, {b['beta2']:g})")
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def table_markdown(results: dict) -> str:
    """The markdown table of table.md: one row per configuration (mean ± std over seeds), then the references."""
    s, m = results["settings"], results["machine"]
    summary = summarize(results)
    changes = {name: c for name, _, c in RUNGS}
    head = ["configuration", "change"] + [title for _, title, *_ in METRICS] + ["time per run (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, stats in summary.items():
        n = len(stats["fid"][2])
        cells = [f"{LABELS[name]} (n={n})", _change_text(changes[name])]
        cells += [_pm(stats[key][0], stats[key][1], scale, dec) for key, _, scale, dec, _ in METRICS]
        cells.append(_pm(*stats["time"][:2], 1.0, 0))
        lines.append("| " + " | ".join(cells) + " |")
    for row in results.get("reference", {}).values():
        cells = [row["label"], "reference"]
        cells += [f"{row['metrics'][key] * scale:.{dec}f}" for key, _, scale, dec, _ in METRICS]
        cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    total = results.get("time_total_s")
    note = (
        f"\nMean ± sample standard deviation (ddof=1) over seeds {s['seeds'][0]}..{s['seeds'][-1]} "
        f"(n = number of seeds). {s['steps']} iterations per run, 32×32 procedural faces, width "
        f"{results['configs'][s['configs'][0]]['train_config']['width']}, batch "
        f"{results['configs'][s['configs'][0]]['train_config']['batch_size']}. Structure score, FID and KID on "
        f"{s['n_eval']} generated vs {s['n_eval']} real faces; FID/KID use the offline extractor `{s['extractor']}` "
        f"(comparable only among themselves at equal n, not to published FIDs); KID is the mean over "
        f"{s['kid_subsets']} subsets of {s['kid_subset_size']}. Reference rows: {s['n_eval']} faces of the val split "
        f"scored like a generator. Machine: {m['cpu_model']}, {m['cpu_cores']} cores, TensorFlow {m['tensorflow']}"
        + (f"; whole ablation {total / 60:.1f} min" if total else "")
        + (f", load average {results['load_average_start'][0]:.1f} at the start (other jobs shared the CPU, so "
           "times are upper bounds)" if results.get("load_average_start") and
           results["load_average_start"][0] > 1.5 * (m["cpu_cores"] or 1) else "")
        + ".\n"
    )
    return "\n".join(lines) + "\n" + note


def plot_results(results: dict):
    """Per-seed points and mean ± std for each metric; dashed lines: the real-faces reference row."""
    from matplotlib.figure import Figure

    summary = summarize(results)
    names = list(summary)
    fig = Figure(figsize=(3.4 * len(METRICS), 3.3), layout="constrained")
    axes = fig.subplots(1, len(METRICS))
    rng = np.random.default_rng(0)
    for ax, (key, title, scale, _, _) in zip(axes, METRICS):
        for i, name in enumerate(names):
            mean, std, values = summary[name][key]
            x = i + rng.uniform(-0.12, 0.12, len(values))
            ax.plot(x, np.array(values) * scale, "o", ms=4, color="0.55", alpha=0.8,
                    label="one seed" if i == 0 else None)
            ax.errorbar([i + 0.28], [mean * scale], yerr=None if np.isnan(std) else [std * scale], fmt="D",
                        color=f"C{i}", ms=5, capsize=4, label="mean ± std" if i == 0 else None)
        ref = results.get("reference", {}).get("real_val")
        if ref is not None:
            ax.axhline(ref["metrics"][key] * scale, ls="--", color="k", lw=1, label="real faces (val)")
        ax.set_xticks(range(len(names)), [LABELS[n].replace("+ ", "+").replace(" / ", "/\n") for n in names],
                      fontsize=8, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    s = results["settings"]
    fig.suptitle(f"Ablation on 32×32 procedural faces: {s['steps']} iterations, {len(s['seeds'])} seeds, "
                 f"n = {s['n_eval']}", fontsize=10)
    return fig


def plot_samples(samples: dict):
    """One row of 8 samples per configuration (its first seed), under a row of real faces."""
    from matplotlib.figure import Figure

    from .faces import generate_faces
    from .viz import image_grid

    rows = [("real faces", generate_faces(8, next(iter(samples.values())).shape[1], seed=1))]
    rows += [(LABELS[n], samples[n]) for n in NAMES if n in samples]
    fig = Figure(figsize=(8, 1.15 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, images) in zip(axes, rows):
        ax.imshow(image_grid(images, nrow=len(images), padding=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def write_report(results: dict, out, samples: dict | None = None) -> dict:
    """Write table.md and ablation.png (and samples.png when ``samples`` are given) into ``out``."""
    out = Path(out)
    paths = dict(table=out / "table.md", figure=out / "ablation.png")
    paths["table"].write_text(table_markdown(results))
    plot_results(results).savefig(paths["figure"], dpi=100)
    if samples:
        paths["samples"] = out / "samples.png"
        plot_samples(samples).savefig(paths["samples"], dpi=100)
    return paths


# -- command line -------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sagan_tut.ablation",
        description="The chapter 6 ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge/TTUR on the "
                    "procedural faces, several seeds each; writes results.json, table.md, ablation.png and "
                    "samples.png. Needs no network and no data files.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"seeds per configuration, 0 .. N-1 (default {DEFAULT_SEEDS})")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"training iterations per run (default {DEFAULT_STEPS})")
    p.add_argument("--configs", default=",".join(NAMES), metavar="LIST",
                   help=f"comma-separated subset of {','.join(NAMES)} (default: all)")
    p.add_argument("--n-eval", type=int, default=DEFAULT_N_EVAL,
                   help=f"generated and real images for the scores (default {DEFAULT_N_EVAL})")
    p.add_argument("--width", type=float, default=None, help=f"channel multiplier (default {BASE['width']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size (default {BASE['batch_size']})")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="keep each run's folder (checkpoints, log.jsonl, samples) here (default: a temporary "
                        "folder, deleted at the end)")
    p.add_argument("--report-only", action="store_true",
                   help="no training: rebuild table.md and ablation.png from OUT/results.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        configs = parse_configs(args.configs)
    except AblationError as err:
        parser.error(str(err))  # exits with status 2 and the usage line
    if args.report_only:
        path = Path(args.out) / "results.json"
        if not path.exists():
            parser.error(f"--report-only needs {path}; run the ablation first (without --report-only).")
        results = json.loads(path.read_text())
        paths = write_report(results, args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        return 0
    overrides = {k: v for k, v in (("width", args.width), ("batch_size", args.batch_size)) if v is not None}
    try:
        from .config import ConfigError

        run_ablation(args.out, configs, args.seeds, args.steps, args.n_eval, runs_dir=args.runs_dir,
                     verbose=not args.quiet, argv=argv, **overrides)
    except (AblationError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = Path(args.out)
    if not args.quiet:
        print((out / "table.md").read_text())
        print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'ablation.png'}, {out / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
