"""Feature extractors, and the statistics of n images streamed through one.

An extractor is anything with a ``name`` (part of every cache key) and ``__call__(images) -> (B, d)``:

* :class:`InceptionExtractor` -- Keras' InceptionV3 ImageNet weights, 2048-d pool features, the usual choice.
  The weights are downloaded once (needs the internet) and cached in ``~/.keras/models``. Keras' weights are
  not the graph TF-GAN / pytorch-fid use, so these FIDs are *not* comparable to published numbers; they are
  comparable among themselves.
* :class:`RandomConvExtractor` (``"offline"``) -- a fixed, seeded, randomly initialised conv net: needs no
  download and runs anywhere. Its FIDs are comparable only to other FIDs from the same extractor name.

:func:`compute_stats` streams an array, a ``tf.data.Dataset`` or a sampler through an extractor into a
:class:`~sagan_tut.fid.FeatureStats`, ``batch_size`` images at a time, with a progress line for long runs.
TensorFlow is imported only when an extractor is built or images are read.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .fid import DEFAULT_KID_SAMPLES, FeatureStats
from .progress import Progress


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


def _total(source, n: int | None) -> int | None:
    """How many images :func:`_iter_batches` will yield, when known before reading (for the progress line)."""
    if n is not None:
        return int(n)
    return len(source) if hasattr(source, "__len__") and hasattr(source, "shape") else None


def compute_stats(images_or_dataset, extractor="offline", n: int | None = None, batch_size: int = 64,
                  keep: int = DEFAULT_KID_SAMPLES, meta: dict | None = None, progress: bool | None = None,
                  desc: str = "images") -> FeatureStats:
    """Stream ``n`` images through ``extractor`` and return their :class:`FeatureStats`.

    ``images_or_dataset`` is an array (N, H, W, 3), a ``tf.data.Dataset`` (batched or not; ``(images, labels)``
    tuples take the images) or a sampler ``f(k) -> k images``. Only ``batch_size`` images are in memory at a
    time; ``keep`` feature vectors are kept for KID. ``progress``: a progress line on stderr (``None``: on
    from :data:`sagan_tut.progress.MIN_TOTAL` images), labelled ``desc``.
    """
    extractor = get_extractor(extractor)
    stats = FeatureStats(keep=keep, meta={"extractor": extractor.name, **(meta or {})})
    with Progress(_total(images_or_dataset, n), desc, enabled=progress) as bar:
        for batch in _iter_batches(images_or_dataset, n, batch_size):
            stats.update(extractor(batch))
            bar.update(int(batch.shape[0]))
    stats.meta["n"] = stats.n
    return stats
