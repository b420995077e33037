"""The ``sagan-tut`` command (also ``python -m sagan_tut``): train, sample, evaluate.

    sagan-tut train --preset quick --out runs/quick
    sagan-tut train --preset celeba128 --data celeba --data-root ~/data/celeba --out runs/celeba128
    sagan-tut sample --run runs/quick --n 64 --out grid.png
    sagan-tut evaluate --run runs/quick --n 10000

A thin layer over :mod:`sagan_tut.train` and :mod:`sagan_tut.metrics`: parse, build a config, call; the trainer and
the metrics are imported only once the arguments parsed and the config validated. Bad arguments exit with
status 2 (argparse's usage message); an invalid config value, a missing dataset or a non-finite loss exits with
status 1 and a one-line ``error: ...`` naming the problem.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DATASETS, PRESETS, ConfigError

EXTRACTORS = ("offline", "inception")


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
    from .config import TrainConfig, get_config, parse_overrides

    overrides = parse_overrides(args.set)
    for flag, field in (("data", "dataset"), ("data_root", "data_root"), ("data_source", "data_source"),
                        ("steps", "steps")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    out = Path(args.out or Path("runs") / (args.preset or "quick"))
    saved = out / "config.json"
    if args.preset is None and args.resume and saved.exists():
        config = TrainConfig.from_json(str(saved)).replace(**overrides)  # continue the run as it was set up
    else:
        config = get_config(args.preset or "quick", **overrides)

    from .train import Trainer

    trainer = Trainer(config, out, resume=args.resume, verbose=not args.quiet)
    if trainer.initial_step:
        print(f"resumed {out} at step {trainer.initial_step}")
    if not args.quiet:
        path = "XLA (jit_compile=True)" if trainer.jit_compile else "tf.function"
        print(f"training step: {path}; jit_compile={config.jit_compile!r}: {trainer.jit_compile_reason}")
    trainer.fit()
    step = int(trainer.step.numpy())
    print(f"trained {out} to step {step}: samples in {out / 'samples'}, checkpoints in {out / 'ckpt'}, "
          f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


def cmd_sample(args) -> int:
    from .train import generate, load_generator
    from .viz import save_grid

    G = load_generator(args.run, ema=args.ema)
    images = generate(G, args.n, seed=args.seed)
    out = save_grid(images, args.out or Path(args.run) / "samples" / "sample.png", nrow=args.nrow)
    print(f"wrote {out} ({args.n} images)")
    return 0


def cmd_evaluate(args) -> int:
    from .metrics import evaluate_run, format_result

    result = evaluate_run(args.run, data=args.data, n=args.n, extractor=args.extractor, out_json=args.out,
                          batch_size=args.batch_size, seed=args.seed, ema=args.ema)
    print(format_result(result))
    print(f"wrote {result['json']}")
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("n", "steps", "batch_size", "nrow"):
        _positive(parser, f"--{name.replace('_', '-')}", getattr(args, name, None))
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
