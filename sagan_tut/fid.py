"""The math of sample-quality metrics, on feature vectors: FID, KID, IS and streaming statistics.

* **FID** (Heusel et al., 2017): fit a Gaussian to the features of real and of generated images and report the
  Fréchet distance between the two, ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``. It is biased at small
  n (it shrinks as n grows), so FIDs are only comparable at equal n, equal extractor and equal reference set.
* **KID** (Bińkowski et al., 2018): the unbiased estimate of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x^T y / d + 1)^3``, averaged over random subsets and reported as mean ± std over those subsets.
* **IS** (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` from classifier probabilities.

NumPy only (SciPy for IS); the networks that make the features are in :mod:`sagan_tut.features`, the
evaluation of generators and runs in :mod:`sagan_tut.evaluate`, and :mod:`sagan_tut.metrics` gathers all three.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_open

DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
# Features kept (besides the streaming mean/cov) for KID, which needs samples, not moments. 10k is plenty for
# 100 subsets of 1000 and costs 80 MB at 2048-d in float32.
DEFAULT_KID_SAMPLES = 10_000


# ----------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------------------------
def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) positive semi-definite matrix via its eigendecomposition."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    # Round-off can make zero eigenvalues of a rank-deficient covariance slightly negative.
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    The hard term is ``tr((S1 S2)^{1/2})``. ``S1 S2`` is not symmetric, and ``scipy.linalg.sqrtm`` of it can
    return complex values or fail when a covariance is singular (fewer samples than dimensions), which is why
    other implementations add ``eps * I`` and retry. We use instead that ``S1 S2`` is similar to the symmetric
    PSD matrix ``M = S1^{1/2} S2 S1^{1/2}`` (same eigenvalues), so ``tr((S1 S2)^{1/2}) = sum(sqrt(eig(M)))``:
    only symmetric eigendecompositions, real by construction, exact for singular covariances too.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance needs two means of shape (d,) and two covariances of shape (d, d) with one d; got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}. Were the features made by one extractor?"
        )
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"frechet_distance: {name} contains NaN or inf (did the generator diverge?).")
    s1_half = _psd_sqrt(sigma1)
    m = s1_half @ sigma2 @ s1_half
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    # The true value is >= 0; round-off can leave ~-1e-12 for identical Gaussians.
    return float(max(value, 0.0))


# ----------------------------------------------------------------------------------------------------------------
# Streaming statistics
# ----------------------------------------------------------------------------------------------------------------
class FeatureStats:
    """Running mean and covariance of feature vectors, updated batch by batch, in float64.

    Each batch's mean and centred scatter matrix are merged with Chan et al.'s pairwise update rather than by
    summing ``x`` and ``x x^T``: the naive ``E[x x^T] - mu mu^T`` cancels catastrophically when the mean is
    large next to the spread, the pairwise form does not, and it costs the same.

    Args:
        keep: also keep the first ``keep`` feature vectors (float32) for KID, which needs samples.
    """

    def __init__(self, keep: int = 0, meta: dict | None = None):
        self.keep = int(keep)
        self.meta = dict(meta or {})
        self.n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of (x - mean)(x - mean)^T
        self._kept: list[np.ndarray] = []
        self._n_kept = 0

    @property
    def dim(self) -> int | None:
        return None if self._mean is None else self._mean.shape[0]

    def update(self, features) -> "FeatureStats":
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.update expects a (batch, dim) array, got shape {x.shape}.")
        if self._mean is not None and x.shape[1] != self.dim:
            raise ValueError(f"FeatureStats holds {self.dim}-d features but got a batch of {x.shape[1]}-d ones.")
        if not np.all(np.isfinite(x)):
            raise ValueError("FeatureStats.update: features contain NaN or inf (did the generator diverge?).")
        nb = x.shape[0]
        if nb == 0:
            return self
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        m2_b = xc.T @ xc
        if self._mean is None:
            self._mean, self._m2 = mean_b, m2_b
        else:
            n = self.n + nb
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (nb / n)
            self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.n * nb / n)
        self.n += nb
        if self._n_kept < self.keep:
            take = x[: self.keep - self._n_kept].astype(np.float32)
            self._kept.append(take)
            self._n_kept += take.shape[0]
        return self

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            raise ValueError("FeatureStats is empty: call update() with some features first.")
        return self._mean

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (divides by n - 1, like ``np.cov``)."""
        if self.n < 2:
            raise ValueError(f"A covariance needs at least 2 samples; FeatureStats has {self.n}.")
        return self._m2 / (self.n - 1)

    @property
    def features(self) -> np.ndarray | None:
        """The kept feature vectors (up to ``keep`` of them), or None if none were kept."""
        if not self._kept:
            return None
        if len(self._kept) > 1:
            self._kept = [np.concatenate(self._kept)]
        return self._kept[0]

    def save(self, path) -> Path:
        """Write mean, covariance, n, the kept features and ``meta`` to ``path`` (.npz), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(mean=self.mean, cov=self.cov, n=np.int64(self.n), keep=np.int64(self.keep),
                      meta=np.array(json.dumps(self.meta, sort_keys=True)))
        if self.features is not None:
            arrays["features"] = self.features
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "FeatureStats":
        with np.load(path, allow_pickle=False) as data:
            stats = cls(keep=int(data["keep"]), meta=json.loads(str(data["meta"])))
            stats.n = int(data["n"])
            stats._mean = data["mean"].astype(np.float64)
            stats._m2 = data["cov"].astype(np.float64) * (stats.n - 1)
            if "features" in data:
                stats._kept = [data["features"].astype(np.float32)]
                stats._n_kept = stats._kept[0].shape[0]
        return stats

    def __repr__(self):
        return f"FeatureStats(n={self.n}, dim={self.dim}, kept={self._n_kept}, meta={self.meta})"


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


# ----------------------------------------------------------------------------------------------------------------
# KID and IS
# ----------------------------------------------------------------------------------------------------------------
def polynomial_kernel(x, y) -> np.ndarray:
    """KID's kernel ``k(x, y) = (x^T y / d + 1)^3`` for all pairs of rows of x (m, d) and y (n, d)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d) with :func:`polynomial_kernel`.

    The within-sample means leave out the diagonal k(x_i, x_i) (that is what makes it unbiased), so the result
    can be slightly negative when the two distributions are equal.
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"Unbiased MMD² needs at least 2 samples on each side, got {m} and {n}.")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def effective_kid_subset_size(n_a: int, n_b: int, subset_size: int = DEFAULT_KID_SUBSET_SIZE) -> int:
    """The subset size :func:`kid` uses: ``subset_size``, but at most half the smaller sample, so that subsets
    differ and their std measures something (subsets as large as the sample are all the same set, std 0)."""
    return min(int(subset_size), min(int(n_a), int(n_b)) // 2)


def kid(feats_a, feats_b, num_subsets: int = DEFAULT_KID_SUBSETS, subset_size: int = DEFAULT_KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of the unbiased MMD² over ``num_subsets`` random subsets.

    Each subset draws m rows from each side without replacement (first ``a``, then ``b``, from
    ``np.random.default_rng(seed)``), with m = :func:`effective_kid_subset_size`: ``subset_size`` (1000, as in
    Bińkowski et al.) once each sample has 2000 images, half the smaller sample below that. Reported as is;
    papers often multiply by 1000.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"kid needs two (n, d) feature arrays with one d, got {a.shape} and {b.shape}.")
    if int(num_subsets) < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")
    m = effective_kid_subset_size(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 4 samples per side (subsets of 2), got {len(a)} and {len(b)}.")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(num_subsets)):
        ia = rng.choice(len(a), m, replace=False)
        ib = rng.choice(len(b), m, replace=False)
        values.append(mmd2_unbiased(a[ia], b[ib]))
    return float(np.mean(values)), float(np.std(values))


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over ``splits`` contiguous splits.

    ``p(y)`` is the mean prediction within each split. Confident predictions spread evenly over K classes score
    K; identical predictions score 1.
    """
    from scipy.special import xlogy

    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise ValueError(f"inception_score expects (n, classes) probabilities, got shape {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("inception_score expects softmax probabilities (non-negative rows that sum to 1), "
                         "not logits: apply a softmax first.")
    if not 1 <= int(splits) <= len(p):
        raise ValueError(f"splits must be between 1 and the number of samples ({len(p)}), got {splits}.")
    scores = []
    for part in np.array_split(p, int(splits)):
        py = part.mean(axis=0, keepdims=True)
        kl = np.sum(xlogy(part, part) - xlogy(part, py)) / len(part)  # xlogy: 0 log 0 = 0
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
