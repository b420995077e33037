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
sit in memory; :func:`reference_stats` computes a dataset's statistics once and caches them as ``.npz``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:  # a file object, so numpy does not append ".npz" to the name
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
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


# ----------------------------------------------------------------------------------------------------------------
# Feature extractors
# ----------------------------------------------------------------------------------------------------------------
def _prepare(images, size: int, quantize: bool, antialias: bool):
    """[-1, 1] images -> float32 (B, size, size, 3) in [-1, 1], optionally rounded to 8 bits first."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    x = tf.clip_by_value(x, -1.0, 1.0)
    if quantize:
        # Score images as they would be saved (8-bit PNG) and as real photos arrive (8-bit JPEG), so real and
        # generated images take the same path.
        x = tf.round((x + 1.0) * 127.5) / 127.5 - 1.0
    return tf.image.resize(x, (size, size), method="bilinear", antialias=antialias)


def _check_images(images):
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"Feature extractors expect a batch of RGB images (B, H, W, 3) in [-1, 1]; got shape "
                         f"{shape}.")


class RandomConvExtractor:
    """Offline feature extractor: a fixed random conv net, no download, deterministic.

    Images are quantised to 8 bits and resized to ``input_size`` x ``input_size`` (bilinear, antialiased). The
    560-d feature vector concatenates three blocks, each aimed at a way generated images go wrong:

    * **colour layout** (48): the mean RGB of each cell of a 4 x 4 grid;
    * **texture statistics** (256): the network is 4 x [3x3 conv (no bias), ReLU, 2x2 average pool] with 16, 32,
      64, 16 channels; for every stage, the spatial mean and std of each channel (like texture-synthesis
      statistics: they see noise, blur and checkerboard artefacts that averages wash out);
    * **coarse structure** (256): the last stage's 4 x 4 x 16 map, unpooled, so where things are still counts.

    The first conv's filters are made zero-sum over each 3x3 window, so the conv stack responds to edges and
    texture rather than to flat colour (the colour block covers that); without this, mean colour dominates every
    channel and the features barely register noise or blur. Weights are He-uniform, drawn with NumPy's PCG64
    generator from ``seed`` (bit-stable across machines, unlike TF's random ops), so two instances with one seed
    give the same features up to float32 round-off of the convolution backend.

    Randomly initialised CNN embeddings have been used for GAN evaluation before (Naeem et al., ICML 2020, as a
    way to avoid ImageNet bias); they respond to colour, texture and layout statistics but know no semantics,
    so they are weaker than a trained network. FIDs from them are **not** comparable to published (Inception)
    FIDs, only to FIDs from the same ``name`` at the same n.
    """

    channels = (16, 32, 64, 16)
    grid = 4

    def __init__(self, seed: int = 0, input_size: int = 64, quantize: bool = True):
        import tensorflow as tf

        self.seed, self.input_size, self.quantize = int(seed), int(input_size), bool(quantize)
        if self.input_size % (self.grid * 2 ** len(self.channels)):
            raise ValueError(f"input_size must be a multiple of {self.grid * 2 ** len(self.channels)} (a 4 x 4 "
                             f"grid after {len(self.channels)} 2x2 poolings), got {input_size}.")
        self.name = f"randconv{self.input_size}_s{self.seed}_q{int(self.quantize)}_v2"
        side = self.input_size // 2 ** len(self.channels)
        self.dim = 3 * self.grid ** 2 + 2 * sum(self.channels) + side ** 2 * self.channels[-1]
        rng = np.random.default_rng(self.seed)
        self.kernels, c_in = [], 3
        for k, c_out in enumerate(self.channels):
            fan_in = 3 * 3 * c_in
            w = (rng.random((3, 3, c_in, c_out)) * 2.0 - 1.0) * math.sqrt(6.0 / fan_in)
            if k == 0:
                w -= w.mean(axis=(0, 1), keepdims=True)  # zero-sum filters: blind to flat colour
            self.kernels.append(tf.constant(w.astype(np.float32)))
            c_in = c_out
        self._forward = tf.function(
            self._features, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
            reduce_retracing=True)

    def _features(self, images):
        import tensorflow as tf

        x = _prepare(images, self.input_size, self.quantize, antialias=True)
        batch = tf.shape(x)[0]
        cell = self.input_size // self.grid
        blocks = [tf.reshape(tf.nn.avg_pool2d(x, cell, cell, "VALID"), (batch, -1))]  # colour layout
        for kernel in self.kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
            blocks += [tf.reduce_mean(x, axis=(1, 2)), tf.math.reduce_std(x, axis=(1, 2))]  # texture statistics
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        blocks.append(tf.reshape(x, (batch, -1)))  # coarse structure
        return tf.concat(blocks, axis=1)

    def __call__(self, images) -> np.ndarray:
        _check_images(images)
        import tensorflow as tf

        return self._forward(tf.cast(images, tf.float32)).numpy()

    def __repr__(self):
        return f"RandomConvExtractor(name={self.name!r})"


class InceptionExtractor:
    """InceptionV3 (Keras ImageNet weights) pool features, 2048-d; optionally also class probabilities for IS.

    Images in [-1, 1] are quantised to 8 bits, resized to 299 x 299 bilinearly (as pytorch-fid does) and fed
    as is: Keras' Inception preprocessing maps [0, 255] to [-1, 1], which our images already are. The network is
    built on first use. ``weights="imagenet"`` downloads ~90 MB once (needs the internet) into
    ``~/.keras/models``; ``weights=None`` gives an untrained network (tests only).

    Args:
        classifier: also build the 1000-way head so :meth:`features_and_probs` can feed :func:`inception_score`.
    """

    dim = 2048
    size = 299

    def __init__(self, weights: str | None = "imagenet", classifier: bool = False, quantize: bool = True):
        self.weights, self.classifier, self.quantize = weights, bool(classifier), bool(quantize)
        tag = "" if weights == "imagenet" else ("_untrained" if weights is None else f"_{Path(str(weights)).stem}")
        self.name = f"inception_v3{tag}_q{int(self.quantize)}"
        self._model = None
        self._forward = None

    def _build(self):
        import keras
        import tensorflow as tf

        try:
            net = keras.applications.InceptionV3(
                include_top=self.classifier, weights=self.weights, input_shape=(self.size, self.size, 3),
                pooling=None if self.classifier else "avg")
        except Exception as err:
            if self.weights != "imagenet":
                raise
            raise RuntimeError(
                "Could not get the InceptionV3 ImageNet weights. They are downloaded once (~90 MB, needs the "
                "internet) and then cached in ~/.keras/models. Either run once with internet access, copy the "
                "file into ~/.keras/models, or use the offline extractor (extractor='offline', "
                "RandomConvExtractor), whose FIDs need no download but are not comparable to Inception FIDs. "
                f"Original error: {err}") from err
        if self.classifier:
            net = keras.Model(net.inputs, [net.get_layer("avg_pool").output, net.output])
        self._model = net

        def forward(images):
            return self._model(_prepare(images, self.size, self.quantize, antialias=False), training=False)

        self._forward = tf.function(
            forward, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)], reduce_retracing=True)

    def _run(self, images):
        _check_images(images)
        import tensorflow as tf

        if self._model is None:
            self._build()
        return self._forward(tf.cast(images, tf.float32))

    def __call__(self, images) -> np.ndarray:
        out = self._run(images)
        return (out[0] if self.classifier else out).numpy()

    def features_and_probs(self, images) -> tuple[np.ndarray, np.ndarray]:
        if not self.classifier:
            raise ValueError("This InceptionExtractor has no classifier head: build it with classifier=True.")
        feats, probs = self._run(images)
        return feats.numpy(), probs.numpy()

    def __repr__(self):
        return f"InceptionExtractor(name={self.name!r})"


EXTRACTORS = {"offline": RandomConvExtractor, "inception": InceptionExtractor}


def get_extractor(extractor="offline"):
    """``"offline"`` or ``"inception"`` -> a new extractor; an extractor object is returned unchanged."""
    if isinstance(extractor, str):
        if extractor not in EXTRACTORS:
            raise ValueError(f"Unknown extractor {extractor!r}: use one of {sorted(EXTRACTORS)} or pass an object "
                             "with a `name` and `__call__(images) -> (B, d) features`.")
        return EXTRACTORS[extractor]()
    if not hasattr(extractor, "name") or not callable(extractor):
        raise TypeError("An extractor needs a `name` attribute (used in cache keys) and a "
                        "`__call__(images) -> (B, d) features` method.")
    return extractor


# ----------------------------------------------------------------------------------------------------------------
# Statistics of image sources
# ----------------------------------------------------------------------------------------------------------------
def _iter_batches(source, n: int | None, batch_size: int):
    """Yield image batches from an array, a tf.data.Dataset or a sampler ``f(k) -> images``, n images in all."""
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(source, tf.data.Dataset):
        spec = source.element_spec
        if isinstance(spec, (tuple, list)):
            source = source.map(lambda *el: el[0])
        elif isinstance(spec, dict):
            source = source.map(lambda el: el["image"])
        if len(source.element_spec.shape) == 3:  # unbatched images
            source = source.batch(batch_size)
        if n is None and source.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("The dataset repeats forever: pass n, the number of images to use.")
        seen = 0
        for batch in source:
            if n is not None:
                batch = batch[: n - seen]
            seen += int(batch.shape[0])
            yield batch
            if n is not None and seen >= n:
                return
        if n is not None and seen < n:
            raise ValueError(f"The dataset ran out after {seen} images but n={n} were asked: lower n "
                             "(and compare FIDs only at equal n).")
    elif callable(source):
        if n is None:
            raise ValueError("A sampler source needs n, the number of images to draw.")
        seen = 0
        while seen < n:
            k = min(batch_size, n - seen)
            yield source(k)
            seen += k
    else:
        total = len(source)
        if n is None:
            n = total
        if n > total:
            raise ValueError(f"Asked for n={n} images but the array holds {total}.")
        for start in range(0, n, batch_size):
            yield source[start:min(start + batch_size, n)]


def compute_stats(images_or_dataset, extractor="offline", n: int | None = None, batch_size: int = 64,
                  keep: int = DEFAULT_KID_SAMPLES, meta: dict | None = None) -> FeatureStats:
    """Stream ``n`` images through ``extractor`` and return their :class:`FeatureStats`.

    ``images_or_dataset`` is an array (N, H, W, 3), a ``tf.data.Dataset`` (batched or not; ``(images, labels)``
    tuples take the images) or a sampler ``f(k) -> k images``. Only ``batch_size`` images are in memory at a
    time; ``keep`` feature vectors are kept for KID.
    """
    extractor = get_extractor(extractor)
    stats = FeatureStats(keep=keep, meta={"extractor": extractor.name, **(meta or {})})
    for batch in _iter_batches(images_or_dataset, n, batch_size):
        stats.update(extractor(batch))
    stats.meta["n"] = stats.n
    return stats


def default_cache_dir() -> Path:
    return Path(os.environ.get("SAGAN_TUT_CACHE", Path.home() / ".cache" / "sagan_tut")) / "fid_stats"


def reference_stats(dataset_name: str, resolution: int, extractor="offline", n: int = 10_000, cache_dir=None,
                    batch_size: int = 64, split: str = "train", seed: int = 0, keep: int = DEFAULT_KID_SAMPLES,
                    images=None, recompute: bool = False, **load_kwargs) -> FeatureStats:
    """Statistics of ``n`` real images, computed once and cached as ``.npz``.

    The cache key is dataset / resolution / split / seed / extractor name / n (and loader options such as
    ``crop``), so asking again with the same arguments loads the file instead of recomputing. Images come from
    ``sagan_tut.data.load_dataset(dataset_name, resolution, ...)`` (shuffled with ``seed``, no repeat), or from
    ``images`` (array, dataset or sampler) when given -- then ``dataset_name`` only names the cache entry.
    """
    extractor = get_extractor(extractor)
    meta = dict(dataset=str(dataset_name), resolution=int(resolution), split=str(split), seed=int(seed),
                extractor=extractor.name, n=int(n), keep=int(keep))
    fname = f"{dataset_name}_{resolution}px_{split}_seed{seed}_{extractor.name}_n{n}_keep{keep}"
    # Loader options that change the images (e.g. CelebA's crop) are part of the key; where the files live is not.
    options = {k: v for k, v in sorted(load_kwargs.items())
               if k not in ("root", "source", "data_dir", "cache", "drop_remainder")}
    if options:
        meta["options"] = json.loads(json.dumps(options, default=str))
        fname += "_" + hashlib.sha1(json.dumps(meta["options"], sort_keys=True).encode()).hexdigest()[:8]
    fname += ".npz"
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / fname
    if path.exists() and not recompute:
        cached = FeatureStats.load(path)
        if all(cached.meta.get(k) == v for k, v in meta.items()):
            return cached
    if images is None:
        from .data import load_dataset

        # One pass, keeping a last short batch, so that every image of the split can be used.
        load_kwargs = {"drop_remainder": False, **load_kwargs}
        images = load_dataset(dataset_name, resolution=resolution, batch_size=batch_size, split=split, seed=seed,
                              shuffle=True, repeat=False, **load_kwargs)
    stats = compute_stats(images, extractor, n=n, batch_size=batch_size, keep=keep, meta=meta)
    stats.save(path)
    return stats


# ----------------------------------------------------------------------------------------------------------------
# Generators and runs
# ----------------------------------------------------------------------------------------------------------------
def generator_sampler(generator, z_dim: int | None = None, seed: int = 0):
    """``f(k) -> k images`` from ``generator`` with z ~ N(0, I) drawn by a seeded NumPy generator."""
    import tensorflow as tf

    if z_dim is None:
        z_dim = generator.inputs[0].shape[-1]
    if z_dim is None:
        raise ValueError("Could not read z_dim from the generator's input: pass z_dim.")
    rng = np.random.default_rng(seed)
    forward = tf.function(lambda z: generator(z, training=False), reduce_retracing=True)

    def sample(k):
        return forward(tf.constant(rng.standard_normal((k, int(z_dim))).astype(np.float32)))

    return sample


def evaluate_generator(generator, real, n: int = 10_000, extractor="offline", batch_size: int = 64,
                       z_dim: int | None = None, seed: int = 0, kid_subsets: int = DEFAULT_KID_SUBSETS,
                       kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE, keep: int = DEFAULT_KID_SAMPLES,
                       compute_is: bool = False) -> dict:
    """FID and KID of ``n`` generated images against ``real``.

    ``real`` is a :class:`FeatureStats` (e.g. from :func:`reference_stats`; it must come from the same
    extractor), a path to a saved one, or images (array / dataset), whose statistics are computed with ``n``.
    ``compute_is`` adds IS (needs ``InceptionExtractor(classifier=True)``).
    """
    extractor = get_extractor(extractor)
    if isinstance(real, (str, os.PathLike)):
        real = FeatureStats.load(real)
    if not isinstance(real, FeatureStats):
        real = compute_stats(real, extractor, n=n, batch_size=batch_size, keep=keep)
    if real.meta.get("extractor", extractor.name) != extractor.name:
        raise ValueError(f"The real statistics were made with extractor {real.meta['extractor']!r} but the "
                         f"generated images use {extractor.name!r}: features of different networks cannot be "
                         "compared. Compute the reference statistics with the same extractor.")
    sample = generator_sampler(generator, z_dim, seed)
    fake = FeatureStats(keep=keep, meta={"extractor": extractor.name})
    probs = []
    if compute_is and not hasattr(extractor, "features_and_probs"):
        raise ValueError("compute_is=True needs an extractor with class probabilities: "
                         "InceptionExtractor(classifier=True).")
    for batch in _iter_batches(sample, n, batch_size):
        if compute_is:
            feats, p = extractor.features_and_probs(batch)
            probs.append(p)
        else:
            feats = extractor(batch)
        fake.update(feats)
    result = dict(fid=fid_from_stats(real, fake), kid_mean=None, kid_std=None, n=fake.n, n_real=real.n,
                  extractor=extractor.name, seed=int(seed))
    if real.features is not None and fake.features is not None:
        result["kid_mean"], result["kid_std"] = kid(real.features, fake.features, kid_subsets, kid_subset_size,
                                                    seed=seed)
        result["kid_subset_size"] = effective_kid_subset_size(len(real.features), len(fake.features),
                                                                  kid_subset_size)
        result["kid_subsets"] = int(kid_subsets)
    if compute_is:
        result["is_mean"], result["is_std"] = inception_score(np.concatenate(probs), splits=min(10, fake.n))
    return result


def _write_json_atomic(obj, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def evaluate_run(run_dir, data: str | None = None, n: int = 50_000, extractor="offline", out_json=None,
                 batch_size: int = 64, cache_dir=None, seed: int = 0, ema: bool = True, real=None,
                 **load_kwargs) -> dict:
    """Evaluate a training run: FID/KID of its (EMA) generator against its dataset; writes and returns a dict.

    Reads ``run_dir/config.json`` (``z_dim``, ``resolution``, ``dataset``) and the generator via
    ``sagan_tut.train.load_generator``. ``data`` overrides the run's dataset. The reference statistics
    (``n`` real images against ``n`` generated ones, the usual protocol) come from :func:`reference_stats`
    (cached; ``load_kwargs`` such as ``root=`` go to the data loader, and default to the run's ``data_root`` /
    ``data_source``) unless ``real`` gives them (a :class:`FeatureStats`, a saved ``.npz`` or images). The JSON
    goes to ``out_json`` or ``run_dir/eval_<extractor>_n<n>.json``.
    """
    from .train import load_generator

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: is {run_dir} a run directory written by the trainer?")
    config = json.loads(config_path.read_text())
    missing = [k for k in ("z_dim", "resolution") if k not in config]
    if missing:
        raise ValueError(f"{config_path} lacks {missing}: cannot rebuild the generator's inputs and outputs.")
    dataset = data or config.get("dataset")
    if not dataset:
        raise ValueError(f"{config_path} names no dataset: pass data='faces' or data='celeba'.")
    extractor = get_extractor(extractor)
    generator = load_generator(run_dir, ema=ema)
    if real is None:
        if dataset == config.get("dataset"):  # the run's own data: read it from where the run did
            for key, arg in (("data_root", "root"), ("data_source", "source")):
                if config.get(key) is not None and arg not in load_kwargs and "images" not in load_kwargs:
                    load_kwargs[arg] = config[key]
        real = reference_stats(dataset, int(config["resolution"]), extractor, n=n, cache_dir=cache_dir,
                               batch_size=batch_size, **load_kwargs)
    result = evaluate_generator(generator, real, n=n, extractor=extractor, batch_size=batch_size,
                                z_dim=int(config["z_dim"]), seed=seed)
    result.update(run=str(run_dir), dataset=dataset, resolution=int(config["resolution"]), ema=bool(ema))
    out = Path(out_json) if out_json is not None else run_dir / f"eval_{extractor.name}_n{n}.json"
    _write_json_atomic(result, out)
    result["json"] = str(out)
    return result


def format_result(result: dict) -> str:
    """One line for the CLI: ``FID 12.34 | KID 0.0123 ± 0.0011 | n=50000 | extractor ...``."""
    parts = [f"FID {result['fid']:.3f}"]
    if result.get("kid_mean") is not None:
        parts.append(f"KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}")
    if result.get("is_mean") is not None:
        parts.append(f"IS {result['is_mean']:.3f} ± {result['is_std']:.3f}")
    parts.append(f"n={result['n']}")
    parts.append(f"extractor {result['extractor']}")
    return " | ".join(parts)
