"""What the seeds allow one to conclude: mean ± std per rung and a test between neighbouring rungs.

A GAN's score moves from seed to seed by about as much as most ingredients move it, so a difference of means says
nothing on its own. For each pair of neighbouring rungs and each metric this module gives

* **Welch's t-test** (unequal variances: one rung's seeds may spread more than another's), written out so the
  formula can be read: ``t = (mean_b - mean_a) / sqrt(s_a²/n_a + s_b²/n_b)`` with the Welch-Satterthwaite
  degrees of freedom; two-sided p from Student's t distribution;
* a **bootstrap 95% interval** of the difference of means (seeds resampled with replacement within each rung;
  with 3 seeds it is coarse, it only has 10 distinct resamples per rung);
* the **smallest difference the seeds resolve**: the difference a test at level ``ALPHA`` would detect with
  80% probability given the observed spread, ``(t_{1-α/2} + t_{0.8}) · se`` (the usual power approximation);
* a sentence that says which of these applies, computed from the numbers.
"""
from __future__ import annotations

import numpy as np

from .ablation_config import LABELS, METRICS, NAMES

ALPHA = 0.05
POWER = 0.8
N_BOOT = 10_000


def summarize(results: dict) -> dict:
    """``{config: {metric: (mean, std, values)}}`` over seeds, std = sample std (ddof=1; NaN for one seed), for
    every configuration with runs, in ladder order; ``"time"`` is each run's total wall time."""
    out = {}
    for name in NAMES:
        runs = [r for r in results["runs"] if r["config"] == name]
        if not runs:
            continue
        out[name] = {}
        for key in [m[0] for m in METRICS] + ["time"]:
            values = np.array([r["time_total_s"] if key == "time" else r["metrics"][key] for r in runs], np.float64)
            std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            out[name][key] = (float(np.mean(values)), std, values.tolist())
    return out


def _standard_error(a, b):
    """sqrt(s_a²/n_a + s_b²/n_b) and the Welch-Satterthwaite degrees of freedom."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else float("nan")
    return float(se), float(df)


def welch_t_test(a, b) -> dict:
    """Welch's two-sided t-test of mean(b) - mean(a): ``{"t", "df", "p"}``; NaNs when a side has fewer than 2
    values or neither side varies (no spread to compare the difference with)."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return dict(t=float("nan"), df=float("nan"), p=float("nan"))
    se, df = _standard_error(a, b)
    if not se > 0:
        return dict(t=float("nan"), df=float("nan"), p=float("nan"))
    t = float((b.mean() - a.mean()) / se)
    return dict(t=t, df=df, p=float(2 * stats.t.sf(abs(t), df)))


def bootstrap_diff_ci(a, b, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0):
    """Percentile bootstrap interval of mean(b) - mean(a), resampling each side with replacement on its own."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1)
    lo, hi = np.quantile(mb - ma, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def detectable_difference(a, b, alpha: float = ALPHA, power: float = POWER) -> float:
    """The difference of means a two-sided Welch test at ``alpha`` detects with probability ``power``, at the
    spread seen in ``a`` and ``b``: ``(t_{1-alpha/2, df} + t_{power, df}) * se``."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    se, df = _standard_error(a, b)
    if not se > 0:
        return float("nan")
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def compare(a, b, direction: str) -> dict:
    """Everything the table says about rung a -> rung b on one metric (``direction``: "higher"/"lower" is
    better)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(b.mean() - a.mean())
    out = dict(diff=diff, n_a=len(a), n_b=len(b), **welch_t_test(a, b),
               detectable=detectable_difference(a, b))
    out["ci"] = bootstrap_diff_ci(a, b) if len(a) > 1 and len(b) > 1 else (float("nan"), float("nan"))
    out["better"] = diff > 0 if direction == "higher" else diff < 0
    return out


def neighbour_tests(results: dict) -> list[dict]:
    """One entry per (neighbouring pair of rungs with runs, metric): ``{"a", "b", "metric", ...compare()}``."""
    summary = summarize(results)
    names = list(summary)
    out = []
    for a, b in zip(names, names[1:]):
        for key, _, _, _, direction in METRICS:
            out.append(dict(a=a, b=b, metric=key, **compare(summary[a][key][2], summary[b][key][2], direction)))
    return out


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(test: dict, scale: float = 1.0, decimals: int = 3, n_tests: int = 1, alpha: float = ALPHA) -> str:
    """The sentence for one comparison, e.g. "difference within seed noise (p = 0.41); ...", from its numbers."""
    if test["n_a"] < 2 or test["n_b"] < 2:
        return (f"not testable: {min(test['n_a'], test['n_b'])} seed on one side "
                "(a test needs at least 2 seeds per rung, e.g. --seeds 3)")
    if not np.isfinite(test["p"]):
        return "not testable: no spread between seeds on either side"
    size = f"{abs(test['diff']) * scale:.{decimals}f}"
    if test["p"] < alpha:
        corrected = alpha / n_tests
        also = "" if n_tests == 1 else (
            f"; also at the Bonferroni level {corrected:.2g} for {n_tests} tests" if test["p"] < corrected
            else f"; not at the Bonferroni level {corrected:.2g} for {n_tests} tests")
        return f"{'better' if test['better'] else 'worse'} by {size} ({_p_text(test['p'])}{also})"
    seeds = f"{test['n_a']} seeds per rung" if test["n_a"] == test["n_b"] else f"{test['n_a']} and {test['n_b']} seeds"
    return (f"within seed noise ({_p_text(test['p'])}; {seeds} resolve only differences above "
            f"~{test['detectable'] * scale:.{decimals}f})")


def conclusions(results: dict) -> list[str]:
    """One line per neighbouring pair: what each metric's test allows one to conclude."""
    tests = neighbour_tests(results)
    fmt = {key: (title, scale, dec) for key, title, scale, dec, _ in METRICS}
    lines = []
    for pair in dict.fromkeys((t["a"], t["b"]) for t in tests):
        parts = []
        for t in (t for t in tests if (t["a"], t["b"]) == pair):
            title, scale, dec = fmt[t["metric"]]
            parts.append(f"{title.rstrip(' ↑↓')}: {verdict(t, scale, dec, n_tests=len(tests))}")
        lines.append(f"{LABELS[pair[0]]} → {LABELS[pair[1]]}: " + "; ".join(parts) + ".")
    return lines
