"""Training configuration: one dataclass of plain values, a few named presets, strict validation.

    cfg = get_config("quick", steps=200, lr_d=2e-4)     # a preset with overrides
    cfg.to_json("run/config.json"); TrainConfig.from_json("run/config.json")

Every field is checked when a config is made (also by ``dataclasses.replace``); a bad value raises
:class:`ConfigError` naming the field and what it accepts, so a typo in ``--set`` fails before any TensorFlow work.

Defaults are the SAGAN paper's optimisation settings (Zhang et al., 2019, Sec. 5): hinge loss, one D step per G
step, TTUR with Adam lr_G = 1e-4, lr_D = 4e-4, beta1 = 0, beta2 = 0.9. Two disagreements worth knowing:

* The official code (brain-research/self-attention-gan) leaves beta2 at TensorFlow's default 0.999 although the
  paper says 0.9; we follow the paper.
* The blog post's text says lr 0.004 / 0.001; its code, like the paper, uses 4e-4 / 1e-4; we follow the code.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from dataclasses import dataclass

ARCHS = ("blog", "paper", "dcgan")
RESOLUTIONS = (32, 64, 128)
ATTENTION_VARIANTS = (None, "paper", "icml", "biggan")  # sagan_tut.attention.VARIANTS; None = the arch's own
LOSS_NAMES = ("hinge", "nonsaturating", "minimax", "wasserstein")
DATASETS = ("faces", "celeba")
DATA_SOURCES = ("auto", "tfds", "folder", "zip", "kaggle")  # sagan_tut.celeba.SOURCES (the faces ignore it)
MIXED_PRECISION = ("none", "float16", "bfloat16")
DISTRIBUTE = ("none", "mirrored", "multiworker", "tpu")
JIT_COMPILE = (False, True, "auto")  # "auto": sagan_tut.perf picks the faster path measured on this device


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the values it accepts."""


@dataclass(frozen=True)
class TrainConfig:
    # -- model (see sagan_tut.models) ----------------------------------------------------------------------------
    arch: str = "blog"  # "blog" (DCGAN-style SAGAN of the blog), "paper" (official ResNet SAGAN), "dcgan"
    resolution: int = 128
    z_dim: int = 128
    width: float = 1.0  # channel multiplier: 0.25 = a quarter of the channels everywhere
    # Feature-map size that gets self-attention: "auto" = the architecture's own placement (sagan_tut.models: 32x32
    # for SAGAN, capped at each network's largest map; none for DCGAN), None = no attention, or a size.
    attention_res: typing.Union[int, str, None] = "auto"
    attention_variant: typing.Optional[str] = None  # None = the architecture's own choice
    spectral_norm: typing.Optional[bool] = None  # None = the architecture's own choice (SAGAN: SN in G and D)
    # -- objective and optimiser ---------------------------------------------------------------------------------
    loss: str = "hinge"
    n_dis: int = 1  # D updates per G update
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9  # the paper's value; the official code ran with 0.999
    batch_size: int = 64  # the global batch, split evenly over replicas under tf.distribute
    steps: int = 100_000  # iterations; one iteration = n_dis D updates + one G update
    # -- data ----------------------------------------------------------------------------------------------------
    dataset: str = "faces"
    data_root: typing.Optional[str] = None
    data_source: str = "auto"
    seed: int = 0
    # -- exponential moving average of G's weights (used for samples and evaluation when on) ---------------------
    ema: bool = False
    ema_decay: float = 0.999
    ema_start: int = 1000  # before this step the EMA copy simply tracks G
    # -- bookkeeping ---------------------------------------------------------------------------------------------
    log_every: int = 100
    sample_every: int = 1000
    ckpt_every: int = 2000
    keep_checkpoints: int = 3
    n_samples: int = 64  # images in each sample grid (fixed noise for the whole run)
    # -- performance ---------------------------------------------------------------------------------------------
    mixed_precision: str = "none"
    jit_compile: typing.Union[bool, str] = "auto"  # True (XLA), False (tf.function) or "auto" (per device)
    distribute: str = "none"
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism(): bit-exact reruns, slower

    def __post_init__(self):
        validate(self)

    # -- (de)serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ConfigError(_unknown_message(sorted(unknown)[0]))
        return cls(**values)

    @classmethod
    def from_json(cls, path_or_text: str) -> "TrainConfig":
        text = path_or_text
        if not path_or_text.lstrip().startswith("{"):
            with open(path_or_text) as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text))

    def replace(self, **overrides) -> "TrainConfig":
        """A copy with some fields changed (validated); unknown names raise :class:`ConfigError`."""
        for name in overrides:
            if name not in FIELDS:
                raise ConfigError(_unknown_message(name))
        return dataclasses.replace(self, **overrides)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# -- presets ---------------------------------------------------------------------------------------------------------
# Plain dicts of overrides on the defaults above, so a reader sees exactly what each preset changes.
PRESETS: dict[str, dict] = {
    # CPU-sized: the blog architecture at 32x32 with a quarter of the channels and attention on the 16x16 maps,
    # on the offline procedural faces. ~0.23 s per iteration on a 2-core CPU (COURSE.md Sec. 6), so 500 steps
    # take about two minutes and leave five grids and checkpoints behind.
    # Learning rates: 500 steps are far too few for TTUR's lr_G = 1e-4. Measured here (seed 0): with 1e-4/4e-4
    # the step-500 grid is still near-identical checkerboard noise (per-pixel std over samples 0.08), with
    # 4e-4/4e-4 it shows varied faces (std 0.28). The full presets keep the paper's TTUR.
    "quick": dict(
        arch="blog", resolution=32, width=0.25, attention_res=16, dataset="faces", batch_size=64,
        lr_g=4e-4, lr_d=4e-4, steps=500, log_every=25, sample_every=100, ckpt_every=100, keep_checkpoints=3,
        ema=True, ema_decay=0.99, ema_start=100,
    ),
    # CelebA 64x64 with the blog architecture (attention on the 32x32 maps).
    "celeba64": dict(
        arch="blog", resolution=64, width=1.0, attention_res=32, dataset="celeba", batch_size=64,
        steps=100_000, ema=True, ema_decay=0.999, ema_start=5000,
    ),
    # The final chapter's model: blog architecture at 128x128, attention at 32x32 (where the paper's ablation
    # and the official code put it), hinge loss, TTUR, batch 64 as in the blog; EMA on.
    "celeba128": dict(
        arch="blog", resolution=128, width=1.0, attention_res=32, dataset="celeba", batch_size=64,
        steps=100_000, ema=True, ema_decay=0.999, ema_start=5000,
    ),
    # The official architecture (ResNet G and D, attention with pooled keys/values and an output conv, as in
    # brain-research/self-attention-gan and BigGAN) at 128x128. The official run used batch 256 on 4 GPUs for
    # ~1M steps; batch 64 here fits one GPU. beta2 is the paper's 0.9 (the official code ran with 0.999).
    "paper128": dict(
        arch="paper", resolution=128, width=1.0, attention_res=32, attention_variant="biggan",
        dataset="celeba", batch_size=64, steps=100_000, ema=True, ema_decay=0.999, ema_start=5000,
    ),
}


def get_config(preset: str = "quick", **overrides) -> TrainConfig:
    """The named preset with ``overrides`` applied; every field validated."""
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    return TrainConfig().replace(**{**PRESETS[preset], **overrides})


# -- validation ------------------------------------------------------------------------------------------------------
def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config field {name!r}.{hint} Fields: {', '.join(FIELDS)}."


def _choices(name, value, allowed):
    if value not in allowed or type(value) is not type(next(a for a in allowed if a == value)):
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name} must be one of {shown}; got {value!r}.")


def _int(name, value, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be an integer {bound}; got {value!r}.")


def _float(name, value, low, high=None, low_open=False, high_open=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {value!r}.")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high or value != value:  # value != value catches NaN
        lo = ("(" if low_open else "[") + f"{low}"
        hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
        raise ConfigError(f"{name} must be a number in {lo}, {hi}; got {value!r}.")


def _bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false; got {value!r}.")


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid field (checked in declaration order)."""
    _choices("arch", cfg.arch, ARCHS)
    _choices("resolution", cfg.resolution, RESOLUTIONS)
    _int("z_dim", cfg.z_dim, 1)
    _float("width", cfg.width, 0.0, 16.0, low_open=True, high_open=False)
    if cfg.attention_res is not None and cfg.attention_res != "auto":
        # An explicit size: G and D both attend at it; D's feature maps run from resolution/2 (after its first
        # stride-2 block) down to 4, so that is the range both networks have. ("auto" is resolved per network
        # by sagan_tut.models, which never picks a size the network lacks.)
        allowed = [r for r in (4, 8, 16, 32, 64) if r <= cfg.resolution // 2]
        if isinstance(cfg.attention_res, bool) or cfg.attention_res not in allowed:
            raise ConfigError(
                f"attention_res must be 'auto' (the architecture's placement), None (no attention) or a "
                f"feature-map size in {allowed} (at most resolution/2 = {cfg.resolution // 2}); "
                f"got {cfg.attention_res!r}."
            )
    _choices("attention_variant", cfg.attention_variant, ATTENTION_VARIANTS)
    if cfg.spectral_norm is not None:
        _bool("spectral_norm", cfg.spectral_norm)
    _choices("loss", cfg.loss, LOSS_NAMES)
    _int("n_dis", cfg.n_dis, 1, 100)
    _float("lr_g", cfg.lr_g, 0.0, 1.0, low_open=True, high_open=False)
    _float("lr_d", cfg.lr_d, 0.0, 1.0, low_open=True, high_open=False)
    _float("beta1", cfg.beta1, 0.0, 1.0)
    _float("beta2", cfg.beta2, 0.0, 1.0)
    _int("batch_size", cfg.batch_size, 1)
    _int("steps", cfg.steps, 0)
    _choices("dataset", cfg.dataset, DATASETS)
    if cfg.data_root is not None and not isinstance(cfg.data_root, (str, os.PathLike)):
        raise ConfigError(f"data_root must be a path or None; got {cfg.data_root!r}.")
    _choices("data_source", cfg.data_source, DATA_SOURCES)
    _int("seed", cfg.seed, 0, 2**31 - 1)
    _bool("ema", cfg.ema)
    _float("ema_decay", cfg.ema_decay, 0.0, 1.0)
    _int("ema_start", cfg.ema_start, 0)
    _int("log_every", cfg.log_every, 1)
    _int("sample_every", cfg.sample_every, 1)
    _int("ckpt_every", cfg.ckpt_every, 1)
    _int("keep_checkpoints", cfg.keep_checkpoints, 1)
    _int("n_samples", cfg.n_samples, 1, 1024)
    _choices("mixed_precision", cfg.mixed_precision, MIXED_PRECISION)
    _choices("jit_compile", cfg.jit_compile, JIT_COMPILE)
    _choices("distribute", cfg.distribute, DISTRIBUTE)
    _bool("deterministic", cfg.deterministic)


# -- strings from the command line -----------------------------------------------------------------------------------
_TRUE, _FALSE, _NONE = ("true", "yes", "1", "on"), ("false", "no", "0", "off"), ("none", "null")


def _field_type(name: str):
    """``(base_type, optional)`` of a field, e.g. ``(int, True)`` for ``Optional[int]``."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


def parse_value(name: str, text: str):
    """Convert ``--set name=text`` to the field's type (``none`` for optional fields, true/false for flags)."""
    if name not in FIELDS:
        raise ConfigError(_unknown_message(name))
    base, optional = _field_type(name)
    low = text.strip().lower()
    if optional and low in _NONE:
        return None
    if name == "attention_res" and low == "auto":
        return "auto"
    if base is bool:
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        if name == "jit_compile" and low == "auto":
            return "auto"
        allowed = "true, false or auto" if name == "jit_compile" else "true or false"
        raise ConfigError(f"{name} must be {allowed}; got {text!r}.")
    try:
        return base(text) if base in (int, float) else text
    except ValueError:
        kind = "an integer" if base is int else "a number"
        if name == "attention_res":
            kind = "auto, none or a feature-map size (an integer)"
        raise ConfigError(f"{name} must be {kind}; got {text!r}.") from None


def parse_overrides(items) -> dict:
    """``["lr_d=2e-4", "ema=false"]`` -> ``{"lr_d": 2e-4, "ema": False}`` (each value converted and checked)."""
    out = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects key=value (e.g. --set lr_d=2e-4); got {item!r}.")
        out[name.strip()] = parse_value(name.strip(), text)
    return out


def parse_fields(items, option: str = "--allow-change") -> tuple[str, ...]:
    """``["lr_g,lr_d", "beta2"]`` -> ``("lr_g", "lr_d", "beta2")``: config field names, comma-separated or
    repeated, each checked (a misspelt name raises :class:`ConfigError` with the closest field)."""
    names = []
    for item in items or ():
        for name in (n.strip() for n in str(item).split(",")):
            if not name:
                continue
            if name not in FIELDS:
                raise ConfigError(f"{option}: " + _unknown_message(name))
            if name not in names:
                names.append(name)
    return tuple(names)


# Fields a resumed run may change: how long to train, how often to log and save, where the data lives, and how
# the step is compiled. Everything else defines the model, the objective or the data stream, so changing it would
# not continue the same run.
RESUMABLE_CHANGES = (
    "steps", "log_every", "sample_every", "ckpt_every", "keep_checkpoints", "data_root", "data_source",
    "jit_compile", "distribute",
)


# Fields a run may change on resume only when asked explicitly (``Trainer(..., allow_changes=...)``, ``sagan-tut
# train --allow-change lr_g,lr_d``): the optimiser's settings. They are the way out of a diverged run, continued
# from its last good checkpoint with lower learning rates, but a changed value makes the run a different
# experiment from that step on, so the trainer records the change in config.json and the log.
OPTIMISATION_FIELDS = ("lr_g", "lr_d", "beta1", "beta2")


def incompatible_fields(saved: TrainConfig, new: TrainConfig, allow=()) -> list[str]:
    """Fields that differ between a run's saved config and a new one and may not change on resume.

    ``allow`` names further fields that may differ (e.g. :data:`OPTIMISATION_FIELDS`); unknown names raise
    :class:`ConfigError`, so a typo cannot silently allow nothing.
    """
    allow = (allow,) if isinstance(allow, str) else tuple(allow)
    for name in allow:
        if name not in FIELDS:
            raise ConfigError(_unknown_message(name))
    return [name for name in FIELDS if name not in RESUMABLE_CHANGES and name not in allow
            and getattr(saved, name) != getattr(new, name)]


__all__ = [
    "TrainConfig", "PRESETS", "ConfigError", "get_config", "parse_value", "parse_overrides", "parse_fields",
    "incompatible_fields", "RESUMABLE_CHANGES", "OPTIMISATION_FIELDS", "FIELDS",
]
