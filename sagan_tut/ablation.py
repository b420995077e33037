"""The chapter 6 ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge loss and TTUR.

    python -m sagan_tut.ablation                          # the committed run: 4 configurations x 3 seeds
    python -m sagan_tut.ablation --configs dcgan,sn --seeds 2 --steps 50 --out /tmp/ablation
    python -m sagan_tut.ablation --resolution 64 --steps 4000 --seeds 5 --out book/ablation64   # reference budget
    python -m sagan_tut.ablation --report-only            # rebuild table.md and the figures from results.json

Four configurations of one small network, each a single change on top of the one before it, so that every step
of the ladder isolates one of SAGAN's ingredients (Zhang et al., 2019, Sec. 4-5):

==============  =================================================================================================
``dcgan``       Radford et al.'s recipe: ``arch="dcgan"`` (BatchNorm in G and D, N(0, 0.02) init), the
                non-saturating loss, one learning rate 2e-4 for both networks, Adam beta1 = 0.5, beta2 = 0.999
``sn``          + spectral normalisation of every conv and dense layer of G *and* D (SAGAN uses it in both;
                Miyato et al. normalised D only). D loses its BatchNorm, as in SN-GAN and SAGAN: BatchNorm
                divides by a batch statistic, which would void the Lipschitz bound SN gives (chapter 2)
``attention``   + a self-attention block (the paper's variant) on the feature maps of half the image side in G
                and D: 16x16 at 32 px, 32x32 at 64 px
``hinge_ttur``  + the hinge loss and TTUR: lr_G = 1e-4, lr_D = 4e-4, Adam beta1 = 0, beta2 = 0.9
==============  =================================================================================================

Everything else is shared: the procedural faces (:mod:`sagan_tut.faces`) at 32x32 (or ``--resolution 64``), width
1/4, batch 32, one D step per G step, no EMA (the ladder is about the four ingredients; an EMA would be a fifth).
Batch 32 rather than the quick preset's 64: on a 2-core CPU, attention at 16x16 costs 2.7x more per iteration at
batch 64 than at 32 (cache), and within a fixed time budget more, smaller updates get further than fewer, larger
ones. Each run trains with the package's :class:`~sagan_tut.train.Trainer` on ``get_config("quick", **overrides)``
and is scored on ``n`` generated images against ``n`` real training faces:

* the **structure score** (:func:`sagan_tut.faces.structure_score`, and its per-part breakdown): the long-range
  structure self-attention is supposed to help with; real faces score 1;
* **FID** and **KID** with the *offline* extractor (:class:`sagan_tut.metrics.RandomConvExtractor`, a fixed random
  conv net): comparable among themselves at equal ``n``, **not** to any published FID.

Two reference rows put the numbers in scale: real faces of the validation split scored like a generator (the floor
FID reaches at this ``n``: FID is biased upwards at small ``n``), and the "broken" faces (the same faces with
their long-range structure removed; the structure score's control).

A campaign resumes: ``results.json`` is rewritten after every run, and running the command again (after an
interruption, or with more ``--seeds`` or ``--configs``) keeps the runs it holds and appends the missing ones
(:mod:`sagan_tut.ablation_run`). Every run records its machine (CPU, vector width, cores, TensorFlow) and timings.

Outputs in ``--out`` (default ``book/ablation``): ``results.json`` (every run's numbers, settings, timings and
machine), ``table.md`` (mean ± sample std over seeds, Welch tests and bootstrap intervals between neighbouring rungs,
and what the seeds allow one to conclude: :mod:`sagan_tut.ablation_stats`), ``ablation.png`` (per-seed points and
mean ± std), ``samples.png`` and ``samples.npz`` (samples of each configuration's first seed). Everything is
procedural: no network, no files needed.

The pieces: :mod:`sagan_tut.ablation_config` (the ladder), :mod:`sagan_tut.ablation_run` (the campaign),
:mod:`sagan_tut.ablation_stats` (the tests), :mod:`sagan_tut.ablation_report` (table and figures),
:mod:`sagan_tut.runinfo` (machine and commit); this module is the command line and re-exports their names.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .ablation_config import (BASE, CHANGES, DEFAULT_N_EVAL, DEFAULT_OUT, DEFAULT_SEEDS, DEFAULT_STEPS,  # noqa: F401
                              EVAL_SEED_OFFSET, HALF_RESOLUTION, KID_SUBSETS, LABELS, METRICS, NAMES, RESOLUTIONS,
                              RUNGS, AblationError, make_config, parse_configs, rung_overrides)
from .ablation_report import plot_results, plot_samples, table_markdown, tests_markdown, write_report  # noqa: F401
from .ablation_run import LADDER_VERSION, run_ablation, run_one  # noqa: F401
from .ablation_stats import (bootstrap_diff_ci, compare, conclusions, detectable_difference,  # noqa: F401
                             neighbour_tests, summarize, verdict, welch_t_test)
from .runinfo import machine_info  # noqa: F401


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sagan_tut.ablation",
        description="The chapter 6 ablation: DCGAN -> + spectral norm -> + self-attention -> + hinge/TTUR on the "
                    "procedural faces, several seeds each; writes results.json, table.md, ablation.png and "
                    "samples.png. Resumes: runs already in OUT/results.json (same settings) are kept, missing ones "
                    "appended. Needs no network and no data files.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"seeds per configuration, 0 .. N-1 (default {DEFAULT_SEEDS}); more seeds later extend "
                        "the same campaign")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"training iterations per run (default {DEFAULT_STEPS})")
    p.add_argument("--resolution", type=int, default=BASE["resolution"], choices=RESOLUTIONS,
                   help=f"image side; attention goes at half of it (default {BASE['resolution']})")
    p.add_argument("--configs", default=",".join(NAMES), metavar="LIST",
                   help=f"comma-separated subset of {','.join(NAMES)} (default: all)")
    p.add_argument("--n-eval", type=int, default=DEFAULT_N_EVAL,
                   help=f"generated and real images for the scores (default {DEFAULT_N_EVAL})")
    p.add_argument("--width", type=float, default=None, help=f"channel multiplier (default {BASE['width']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size (default {BASE['batch_size']})")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="keep each run's folder (checkpoints, log.jsonl, samples) here; an interrupted run then "
                        "resumes from its checkpoint (default: a temporary folder, deleted at the end)")
    p.add_argument("--report-only", action="store_true",
                   help="no training: rebuild table.md, ablation.png and samples.png from OUT/results.json")
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
                     verbose=not args.quiet, argv=argv, resolution=args.resolution, **overrides)
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
