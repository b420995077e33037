"""Sample-quality metrics: FID, KID and IS, from features of a pluggable extractor.

* **FID** (Heusel et al., 2017): fit a Gaussian to the features of real and of generated images and report the
  Fréchet distance between the two, ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``. It is biased at small
  n (it shrinks as n grows), so FIDs are only comparable at equal n, equal extractor and equal reference set.
* **KID** (Bińkowski et al., 2018): the unbiased estimate of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x^T y / d + 1)^3``, averaged over random subsets and reported as mean ± std over those subsets.
  Unbiased, so two samples of one distribution give ≈ 0 (and may come out slightly negative).
* **IS** (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` from classifier probabilities, mean ± std
  over splits. Only meaningful with an ImageNet classifier (``InceptionExtractor(classifier=True)``).

Extractors (anything with a ``name`` and ``__call__(images) -> (B, d) features``):

* :class:`InceptionExtractor` -- Keras' InceptionV3 ImageNet weights, 2048-d pool features, the usual choice.
  The weights are downloaded once (needs the internet) and cached in ``~/.keras/models``. Keras' weights are
  not the graph TF-GAN / pytorch-fid use, so these FIDs are *not* comparable to published numbers; they are
  comparable among themselves.
* :class:`RandomConvExtractor` (``"offline"``) -- a fixed, seeded, randomly initialised conv net: needs no
  download and runs anywhere. Its FIDs are comparable only to other FIDs from the same extractor name.

Statistics stream: :class:`FeatureStats` accumulates the mean and covariance batch by batch, so 50k images never
sit in memory; :func:`reference_stats` computes a dataset's statistics once and caches them as ``.npz``, keyed
by the data's identity too. Long evaluations print a progress line with the time left.

This module gathers the three that do the work, so ``from sagan_tut.metrics import ...`` reaches everything:
:mod:`sagan_tut.fid` (the math: Fréchet distance, streaming statistics, KID, IS), :mod:`sagan_tut.features`
(the extractors and :func:`compute_stats`) and :mod:`sagan_tut.evaluate` (reference statistics and their
cache, generators, runs). They import each other in that order and never this module.
"""
from __future__ import annotations

from .evaluate import (_write_json_atomic, data_identity, default_cache_dir, evaluate_generator,  # noqa: F401
                       evaluate_run, format_result, generator_sampler, reference_stats)
from .features import (EXTRACTORS, InceptionExtractor, RandomConvExtractor, _check_images,  # noqa: F401
                       _iter_batches, _prepare, compute_stats, get_extractor)
from .fid import (DEFAULT_KID_SAMPLES, DEFAULT_KID_SUBSET_SIZE, DEFAULT_KID_SUBSETS, FeatureStats,  # noqa: F401
                  _psd_sqrt, effective_kid_subset_size, fid_from_stats, frechet_distance, inception_score, kid,
                  mmd2_unbiased, polynomial_kernel)
from .progress import Progress  # noqa: F401
