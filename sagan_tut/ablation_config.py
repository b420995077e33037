"""The ablation's ladder: four configurations, each the previous one plus one of SAGAN's ingredients.

The first rung in full (``BASE``), then each rung's changes (``RUNGS``); :func:`make_config` turns a rung, a seed,
a length and a resolution into the :class:`~sagan_tut.config.TrainConfig` of one run. No TensorFlow is imported
here, so the command line can check its arguments in a fraction of a second.
"""
from __future__ import annotations

import difflib

# The first configuration in full; every later one is the previous one plus the listed changes.
BASE = dict(
    arch="dcgan", resolution=32, width=0.25, attention_res=None, spectral_norm=False, attention_variant=None,
    loss="nonsaturating", n_dis=1, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999,
    dataset="faces", batch_size=32, ema=False,
)
# Attention goes on the largest feature map G and D share, half the image side: 16x16 at 32 px, 32x32 at 64 px
# (where the paper's ablation found it most useful). Written as this string in RUNGS, so the settings saved in
# results.json say where attention went whatever the resolution; make_config resolves it.
HALF_RESOLUTION = "resolution // 2"
RUNGS = (
    ("dcgan", "DCGAN", {}),
    # spectral_norm=True also removes the DCGAN discriminator's BatchNorm (see sagan_tut.models): SN-GAN's and
    # SAGAN's D have none, and a BatchNorm layer would void the Lipschitz bound that SN is there to give.
    ("sn", "+ spectral norm", dict(spectral_norm=True)),
    ("attention", "+ self-attention", dict(attention_res=HALF_RESOLUTION)),
    ("hinge_ttur", "+ hinge / TTUR", dict(loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9)),
)
NAMES = tuple(name for name, _, _ in RUNGS)
LABELS = {name: label for name, label, _ in RUNGS}
CHANGES = {name: changes for name, _, changes in RUNGS}
RESOLUTIONS = (32, 64)  # 128 px would need hours per run on a CPU

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


def check_resolution(resolution) -> int:
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        raise AblationError(f"resolution must be one of {RESOLUTIONS} (e.g. --resolution 64); got {resolution!r}.")
    return int(resolution)


def rung_overrides(name: str, resolution: int = BASE["resolution"]) -> dict:
    """The TrainConfig overrides of configuration ``name`` at ``resolution``: BASE plus the changes of every
    rung up to it (attention's placement resolved for this resolution)."""
    parse_configs([name])
    resolution = check_resolution(resolution)
    out = dict(BASE, resolution=resolution)
    for rung, _, changes in RUNGS:
        out.update(changes)
        if rung == name:
            break
    if out["attention_res"] == HALF_RESOLUTION:
        out["attention_res"] = resolution // 2
    return out


def make_config(name: str, seed: int = 0, steps: int = DEFAULT_STEPS, **overrides):
    """The :class:`~sagan_tut.config.TrainConfig` of one run: the quick preset, the rung's settings, the run's
    seed and length, and ``overrides`` (``resolution`` 32 or 64, or e.g. ``width``/``batch_size`` for a tiny
    test). Samples and a checkpoint are written once, at the end; the log every ``steps // 12`` iterations (for
    gamma over training)."""
    from .config import get_config

    steps = int(steps)
    resolution = overrides.pop("resolution", BASE["resolution"])
    log_every = max(1, steps // 12)
    return get_config("quick", **{
        **rung_overrides(name, resolution), "seed": int(seed), "steps": steps, "log_every": log_every,
        "sample_every": max(steps, 1), "ckpt_every": max(steps, 1), "keep_checkpoints": 1, **overrides})
