"""The ablation's report from its results.json: table.md (mean ± std per rung, the tests between neighbouring
rungs and what they allow one to conclude), ablation.png (per-seed points) and samples.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .ablation_config import BASE, CHANGES, HALF_RESOLUTION, LABELS, METRICS, NAMES
from .ablation_stats import ALPHA, conclusions, neighbour_tests, summarize

SAMPLES_FILE = "samples.npz"  # 8 samples of each configuration's first run: samples.png without retraining


def _pm(mean, std, scale, decimals):
    if np.isnan(std):
        return f"{mean * scale:.{decimals}f}"
    return f"{mean * scale:.{decimals}f} ± {std * scale:.{decimals}f}"


def _change_texts(results: dict) -> dict:
    """``{config: its change, as recorded}``: results made by an older ladder show their own rungs."""
    s = results["settings"]
    rungs = {r["name"]: r["changes"] for r in s.get("rungs", [])} or CHANGES
    R, version = _resolution(results), s.get("ladder_version", 1)
    out = {}
    for name, changes in rungs.items():
        if not changes:
            b = s.get("base", BASE)
            out[name] = f"{b['arch']}, {b['loss']}, lr {b['lr_g']:g}/{b['lr_d']:g}, β ({b['beta1']:g}, {b['beta2']:g})"
            continue
        changes = {k: R // 2 if v == HALF_RESOLUTION else v for k, v in changes.items()}
        out[name] = ", ".join(f"{k}={v}" for k, v in changes.items())
        if changes.get("spectral_norm") and version >= 2:
            out[name] += " (D without BatchNorm)"
    return out


def _resolution(results: dict) -> int:
    first = next(iter(results["configs"].values()))
    return first["train_config"]["resolution"]


def _machines(results: dict) -> str:
    """The distinct machines the runs were trained on (a campaign may be continued elsewhere)."""
    seen = {}
    for run in results["runs"]:
        m = run.get("machine") or results["machine"]
        key = (m["cpu_model"], m.get("vector_width"), m["cpu_cores"], m["tensorflow"])
        seen[key] = seen.get(key, 0) + 1
    if not seen:
        m = results["machine"]
        seen[(m["cpu_model"], m.get("vector_width"), m["cpu_cores"], m["tensorflow"])] = 0
    parts = [f"{cpu}{f' ({vw})' if vw else ''}, {cores} cores, TensorFlow {tf}" + (f" ({n} runs)" if len(seen) > 1
             else "") for (cpu, vw, cores, tf), n in seen.items()]
    return "; ".join(parts)


def tests_markdown(results: dict) -> str:
    """The table of neighbouring-rung comparisons: difference of means, bootstrap 95% interval, Welch p."""
    tests = neighbour_tests(results)
    if not tests:
        return ""
    fmt = {key: (scale, dec) for key, _, scale, dec, _ in METRICS}
    head = ["step"] + [title for _, title, *_ in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pair in dict.fromkeys((t["a"], t["b"]) for t in tests):
        cells = [f"{LABELS[pair[0]]} → {LABELS[pair[1]]}"]
        for t in (t for t in tests if (t["a"], t["b"]) == pair):
            scale, dec = fmt[t["metric"]]
            cell = f"{t['diff'] * scale:+.{dec}f}"
            if np.isfinite(t["p"]):
                lo, hi = (v * scale for v in t["ci"])
                cell += f" [{lo:+.{dec}f}, {hi:+.{dec}f}], p = {t['p']:.2f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nDifference of means (later minus earlier rung), its bootstrap 95% interval (seeds resampled within "
            f"each rung) and the two-sided p-value of Welch's t-test; {len(tests)} tests, so at level {ALPHA} about "
            f"{ALPHA * len(tests):.1f} would come out 'significant' by chance alone. With few seeds the bootstrap "
            "interval is too narrow (it takes the seeds' spread as known); the t-test allows for that.\n\n"
            "What the seeds allow one to conclude:\n\n" + "\n".join(f"- {line}" for line in conclusions(results)))
    return "\n".join(lines) + "\n" + note + "\n"


def table_markdown(results: dict) -> str:
    """table.md: one row per configuration (mean ± std over seeds), the references, then the tests."""
    s = results["settings"]
    summary, change = summarize(results), _change_texts(results)
    head = ["configuration", "change"] + [title for _, title, *_ in METRICS] + ["time per run (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, stats in summary.items():
        n = len(stats["fid"][2])
        cells = [f"{LABELS[name]} (n={n})", change[name]]
        cells += [_pm(stats[key][0], stats[key][1], scale, dec) for key, _, scale, dec, _ in METRICS]
        cells.append(_pm(*stats["time"][:2], 1.0, 0))
        lines.append("| " + " | ".join(cells) + " |")
    for row in results.get("reference", {}).values():
        cells = [row["label"], "reference"]
        cells += [f"{row['metrics'][key] * scale:.{dec}f}" for key, _, scale, dec, _ in METRICS]
        cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in results["runs"]}) or s["seeds"]
    first = results["configs"][next(iter(results["configs"]))]["train_config"]
    R, total, load = _resolution(results), results.get("time_total_s"), results.get("load_average_start")
    cores = results["machine"]["cpu_cores"] or 1
    note = (
        f"\nMean ± sample standard deviation (ddof=1) over seeds {seeds[0]}..{seeds[-1]} "
        f"(n = number of seeds). {s['steps']} iterations per run, {R}×{R} procedural faces, width "
        f"{first['width']}, batch {first['batch_size']}. Structure score, FID and KID on "
        f"{s['n_eval']} generated vs {s['n_eval']} real faces; FID/KID use the offline extractor `{s['extractor']}` "
        f"(comparable only among themselves at equal n, not to published FIDs); KID is the mean over "
        f"{s['kid_subsets']} subsets of {s['kid_subset_size']}. Reference rows: {s['n_eval']} faces of the val split "
        f"scored like a generator. Machine: {_machines(results)}"
        + (f"; whole ablation {total / 60:.1f} min" if total else "")
        + (f", load average {load[0]:.1f} at the start (other jobs shared the CPU, so times are upper bounds)"
           if load and load[0] > 1.5 * cores else "")
        + ".\n"
    )
    tests = tests_markdown(results)
    return "\n".join(lines) + "\n" + note + ("\n" + tests if tests else "")


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
    s, R = results["settings"], _resolution(results)
    n_seeds = len({r["seed"] for r in results["runs"]})
    fig.suptitle(f"Ablation on {R}×{R} procedural faces: {s['steps']} iterations, {n_seeds} seeds, "
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


def load_samples(out) -> dict:
    """``{config: images in [-1, 1]}`` from ``out/samples.npz`` (empty if there is none)."""
    path = Path(out) / SAMPLES_FILE
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {k: data[k].astype(np.float32) / 127.5 - 1.0 for k in data.files}


def save_samples(samples: dict, out):
    """Write ``{config: images}`` to ``out/samples.npz`` as uint8 (atomically), for samples.png."""
    out = Path(out)
    arrays = {k: np.round((np.clip(v, -1, 1) + 1) * 127.5).astype(np.uint8) for k, v in samples.items()}
    with atomic_open(out / SAMPLES_FILE, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_report(results: dict, out, samples: dict | None = None) -> dict:
    """Write table.md and ablation.png into ``out``, and samples.png from ``samples`` (default: those in
    ``out/samples.npz``, if any)."""
    out = Path(out)
    samples = load_samples(out) if samples is None else samples
    paths = dict(table=out / "table.md", figure=out / "ablation.png")
    paths["table"].write_text(table_markdown(results))
    plot_results(results).savefig(paths["figure"], dpi=100)
    if samples:
        paths["samples"] = out / "samples.png"
        plot_samples(samples).savefig(paths["samples"], dpi=100)
    return paths
