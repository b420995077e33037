"""The ``sagan-tut`` command (also ``python -m sagan_tut``): train, sample, evaluate.

    sagan-tut train --preset quick --out runs/quick
    sagan-tut train --preset celeba128 --data celeba --data-root ~/data/celeba --out runs/celeba128
    sagan-tut sample --run runs/quick --n 64 --out grid.png
    sagan-tut evaluate --run runs/quick --n 10000

A thin layer over :mod:`sagan_tut.train` and :mod:`sagan_tut.metrics`: parse, build a config, check what can be
checked without TensorFlow (the config, where the data is, whether a resume would be refused), then call; the
trainer and the metrics are imported only after that. Bad arguments and missing data exit with status 2
(argparse's usage message, or ``error: ...`` naming the flag to fix); an invalid config value, a refused resume
or a non-finite loss exits with status 1 and an ``error: ...`` line naming the problem. Options that do not apply
to the run (``--data-root`` for the faces, ...) are named in a ``warning:`` line.

TensorFlow's C++ log is quiet by default (``TF_CPP_MIN_LOG_LEVEL=3``: no start-up, CUDA or graph-optimiser
notices; the errors that matter reach Python as exceptions); set ``TF_CPP_MIN_LOG_LEVEL=0`` to see all of it.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import tempfile
from pathlib import Path

from .config import DATASETS, OPTIMISATION_FIELDS, PRESETS, ConfigError, incompatible_fields

EXTRACTORS = ("offline", "inception")


class DataError(Exception):
    """The data a command needs is not where its flags say (exit status 2, like a bad argument)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagan-tut", description="SAGAN from scratch: train a Self-Attention GAN, sample it, evaluate it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,evaluate}")

    train = sub.add_parser(
        "train", help="train a GAN into a run folder (resumes from its latest checkpoint)",
        description="Train a GAN into a run folder. Running the same command again resumes from the latest "
                    "checkpoint; a run interrupted by Ctrl-C, a crash or a kill continues where it stopped.")
    train.add_argument("--preset", choices=list(PRESETS), default=None,
                       help="named configuration (default: the run folder's saved config.json when resuming, "
                            "else 'quick'): " + ", ".join(PRESETS))
    train.add_argument("--data", choices=DATASETS, default=None,
                       help="dataset: 'faces' (procedural, offline) or 'celeba' (default: the preset's)")
    train.add_argument("--data-root", default=None, metavar="DIR",
                       help="folder (or zip) holding the dataset, e.g. the CelebA images")
    train.add_argument("--data-source", default=None, metavar="SRC",
                       help="how to read CelebA (see sagan_tut.data; default 'auto')")
    train.add_argument("--out", default=None, metavar="DIR",
                       help="run folder for config.json, ckpt/, samples/, tb/, log.jsonl (default: runs/PRESET); "
                            "a Google Drive path keeps a Colab run resumable")
    train.add_argument("--steps", type=int, default=None, metavar="N",
                       help="train until the step counter reaches N (default: the preset's)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config field, e.g. --set lr_d=2e-4 --set ema=false (repeatable)")
    train.add_argument("--allow-change", action="append", default=[], metavar="FIELDS",
                       help="when resuming, let these config fields differ from the run's config.json, e.g. "
                            f"--allow-change lr_g,lr_d (comma-separated or repeated; the optimiser's "
                            f"{', '.join(OPTIMISATION_FIELDS)} are the ones a diverged run may change): training "
                            "continues from the last checkpoint with the new values, recorded in config.json and "
                            "the log")
    train.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="resume from the run folder's latest checkpoint (default); --no-resume refuses to "
                            "touch a folder that has checkpoints")
    train.add_argument("--quiet", action="store_true", help="no progress line")

    sample = sub.add_parser("sample", help="write a grid of samples from a run's generator",
                            description="Write a PNG grid of samples from a run's (EMA) generator.")
    sample.add_argument("--run", required=True, metavar="DIR", help="run folder written by 'train'")
    sample.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    sample.add_argument("--out", default=None, metavar="PNG", help="output file (default: RUN/samples/sample.png)")
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--nrow", type=int, default=None, help="images per row (default: a square grid)")
    sample.add_argument("--no-ema", dest="ema", action="store_false",
                        help="use G's own weights rather than their moving average")

    evaluate = sub.add_parser("evaluate", help="FID/KID of a run's generator against its dataset",
                              description="FID and KID of a run's (EMA) generator against its dataset.")
    evaluate.add_argument("--run", required=True, metavar="DIR", help="run folder written by 'train'")
    evaluate.add_argument("--data", choices=DATASETS, default=None, help="reference dataset (default: the run's)")
    evaluate.add_argument("--n", type=int, default=10_000,
                          help="generated and real images each (default 10000; FID is biased at small n, so "
                               "compare only at equal n)")
    evaluate.add_argument("--extractor", choices=EXTRACTORS, default="offline",
                          help="feature extractor: 'offline' (seeded random conv net, no download) or "
                               "'inception' (Keras InceptionV3, downloads weights once)")
    evaluate.add_argument("--out", default=None, metavar="JSON",
                          help="where to write the result (default: RUN/eval_<extractor>_n<n>.json)")
    evaluate.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    evaluate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    evaluate.add_argument("--no-ema", dest="ema", action="store_false",
                          help="evaluate G's own weights rather than their moving average")
    return parser


def _positive(parser, name, value):
    if value is not None and value < 1:
        parser.error(f"{name} must be a positive integer, got {value}")


# ----------------------------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .config import TrainConfig, get_config, parse_fields, parse_overrides

    overrides = parse_overrides(args.set)
    given = {name: f"--set {name}=..." for name in overrides}  # how the user spelled each field, for warnings
    for flag, field in (("data", "dataset"), ("data_root", "data_root"), ("data_source", "data_source"),
                        ("steps", "steps")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
            given[field] = "--" + flag.replace("_", "-")
    allow = parse_fields(args.allow_change, option="--allow-change")
    out = Path(args.out or Path("runs") / (args.preset or "quick"))
    saved = out / "config.json"
    if args.preset is None and args.resume and saved.exists():
        config = TrainConfig.from_json(str(saved)).replace(**overrides)  # continue the run as it was set up
    else:
        config = get_config(args.preset or "quick", **overrides)
    resuming = args.resume and saved.exists() and (out / "ckpt" / "checkpoint").exists()
    for warning in _unused_options(config, given, allow_unused=bool(allow) and not resuming):
        print(f"warning: {warning}", file=sys.stderr)
    if resuming:
        _check_resume(out, TrainConfig.from_json(str(saved)), config, allow)
    _check_data(config)

    _import_tensorflow()
    from .train import Trainer

    extra = {}
    if allow:
        if "allow_changes" not in inspect.signature(Trainer).parameters:
            raise ConfigError("--allow-change needs a sagan_tut whose Trainer takes allow_changes=; update the "
                              "package.")
        extra["allow_changes"] = allow
    trainer = Trainer(config, out, resume=args.resume, verbose=not args.quiet, **extra)
    if trainer.initial_step:
        print(f"resumed {out} at step {trainer.initial_step}")
    if not args.quiet:
        path = "XLA (jit_compile=True)" if trainer.jit_compile else "tf.function"
        print(f"training step: {path}; jit_compile={config.jit_compile!r}: {trainer.jit_compile_reason}")
    try:
        trainer.fit()
    finally:  # also after Ctrl-C or a non-finite loss: the files skipped so far are worth knowing
        _print_skips(getattr(trainer.dataset, "skip_report", None))
    step = int(trainer.step.numpy())
    print(f"trained {out} to step {step}: samples in {out / 'samples'}, checkpoints in {out / 'ckpt'}, "
          f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


def _check_resume(out: Path, saved, config, allow) -> None:
    """Refuse, before TensorFlow starts, a resume the trainer would refuse, naming the flag that allows it."""
    bad = incompatible_fields(saved, config, allow=allow)
    if not bad:
        return
    diffs = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in bad)
    hint = ""
    if set(bad) <= set(OPTIMISATION_FIELDS):
        hint = (f" To continue this run from its last checkpoint with the new values, add --allow-change "
                f"{','.join(bad)}.")
    raise ConfigError(f"cannot resume {out} with a different config ({diffs}).{hint} Otherwise drop those "
                      "options to resume as saved, or train into a new --out folder.")


def _unused_options(config, given: dict, allow_unused: bool = False) -> list[str]:
    """Options given on this command line that the run will ignore, each with the reason."""
    out = []
    for field, reason in (
        ("data_root", "the faces dataset is drawn procedurally; --data-root is for --data celeba"),
        ("data_source", "the faces dataset is drawn procedurally; --data-source is for --data celeba"),
    ):
        if field in given and config.dataset == "faces":
            out.append(f"{given[field]} is ignored: {reason}.")
    for field in ("ema_decay", "ema_start"):
        if field in given and not config.ema:
            out.append(f"{given[field]} is ignored: the run keeps no EMA generator (ema=false).")
    no_attention = config.attention_res is None or (config.attention_res == "auto" and config.arch == "dcgan")
    if "attention_variant" in given and no_attention:
        out.append(f"{given['attention_variant']} is ignored: the model has no self-attention (attention_res="
                   f"{config.attention_res!r} with arch={config.arch!r}).")
    if allow_unused:
        out.append("--allow-change is ignored: there is no run to resume in this --out folder (it applies when "
                   "the folder holds config.json and checkpoints).")
    return out


def _check_data(config) -> None:
    """Find CelebA where the flags say before TensorFlow starts (the files only; the images are read later)."""
    if config.dataset != "celeba":
        return
    root = config.data_root
    if root is not None and not os.path.exists(os.path.expanduser(str(root))):
        raise DataError(f"--data-root {root} does not exist. Pass the folder that holds CelebA "
                        "(img_align_celeba/ or img_align_celeba.zip, Kaggle's archive.zip or celeba-dataset/, or "
                        "the Google Drive folder CelebA/), or the zip itself.")
    try:
        from .celeba_files import find_celeba
    except ImportError:  # a sagan_tut without the TensorFlow-free finder: this import starts TensorFlow
        _import_tensorflow()
        from .celeba import find_celeba
    try:
        find_celeba(root=root, source=config.data_source)
    except FileNotFoundError as err:
        searched = [line.strip()[2:] for line in str(err).splitlines() if line.startswith("    - ")]
        looked = "".join(f"\n  - {s}" for s in searched)
        where = f"in --data-root {root}" if root is not None else "in the default places (no --data-root given)"
        raise DataError(
            f"--data celeba: CelebA was not found {where}" + (f" (--data-source {config.data_source})"
                                                             if config.data_source != "auto" else "")
            + (f". Looked for:{looked}" if looked else ".") + "\n"
            "Pass --data-root DIR: the folder holding img_align_celeba/ or img_align_celeba.zip (the official "
            "files), Kaggle's archive.zip or celeba-dataset/, the Google Drive folder CelebA/ (or its Img/), "
            "the zip itself, or a tensorflow_datasets folder with a prepared celeb_a. How to get CelebA: "
            "'Getting CelebA' in the setup page of the book. No CelebA? --data faces trains on the offline "
            "procedural faces.") from None
    except ValueError as err:  # a file that is there but unusable (e.g. a truncated zip)
        raise DataError(f"--data celeba: {err}") from None


def _print_skips(report) -> None:
    """The skipped-files summary of a dataset's ``skip_report`` (nothing when nothing was skipped)."""
    summary = getattr(report, "summary", None)
    text = summary() if callable(summary) else ""
    if text:
        print(text, file=sys.stderr)


# Lines TensorFlow's C++ code writes to stderr while it is imported, before it has read TF_CPP_MIN_LOG_LEVEL
# (absl's "I0000 00:00:... port.cc:153] oneDNN custom operations are on", "Could not find cuda drivers", ...; also
# the older "2025-01-01 12:00:00.000000: I tensorflow/..." format). Group 1 or 2 is the level: I, W, E or F.
_TF_LOG_LINE = re.compile(r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\]|\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) \S+:\d+\])")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _import_tensorflow() -> None:
    """Import TensorFlow, applying TF_CPP_MIN_LOG_LEVEL to what it prints while importing.

    TensorFlow 2.16+ logs its start-up notices through absl before it reads TF_CPP_MIN_LOG_LEVEL, so they reach
    the terminal whatever the level (tensorflow/tensorflow#100442). They are written by C++ straight to file
    descriptor 2, out of Python's reach, so we point fd 2 at a temporary file for the import and pass on every
    line whose level the variable does not filter (and anything that is not a TensorFlow log line, e.g. a Python
    warning), exactly as TensorFlow would: 1 drops INFO, 2 also WARNING, 3 also ERROR.
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    level = int(level) if level.isdigit() else 0
    if "tensorflow" in sys.modules or level == 0:
        import tensorflow  # noqa: F401
        return
    dropped = "IWE"[:min(level, 3)]
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                match = _TF_LOG_LINE.match(line)
                if line.strip() == _ABSL_PREAMBLE or (match and (match.group(1) or match.group(2)) in dropped):
                    continue
                sys.stderr.write(line)
            sys.stderr.flush()


def cmd_sample(args) -> int:
    _import_tensorflow()
    from .train import generate, load_generator
    from .viz import save_grid

    G = load_generator(args.run, ema=args.ema)
    images = generate(G, args.n, seed=args.seed)
    out = save_grid(images, args.out or Path(args.run) / "samples" / "sample.png", nrow=args.nrow)
    print(f"wrote {out} ({args.n} images)")
    return 0


def cmd_evaluate(args) -> int:
    # No data check before TensorFlow here, unlike train: the reference statistics may come from the cache, and
    # then no image is read.
    _import_tensorflow()
    from .metrics import evaluate_run, format_result

    result = evaluate_run(args.run, data=args.data, n=args.n, extractor=args.extractor, out_json=args.out,
                          batch_size=args.batch_size, seed=args.seed, ema=args.ema)
    print(format_result(result))
    print(f"wrote {result['json']}")
    # The reference images' skip report, when evaluate_run read a dataset (not when its statistics were cached).
    _print_skips(result.get("skip_report"))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}


def main(argv=None) -> int:
    # Before anything imports TensorFlow, which reads it once; the user's own value wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("n", "steps", "batch_size", "nrow"):
        _positive(parser, f"--{name.replace('_', '-')}", getattr(args, name, None))
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # NonFiniteLossError and friends: the message says what to do
        from .train import NonFiniteLossError

        if isinstance(err, NonFiniteLossError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
