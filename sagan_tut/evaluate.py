"""Evaluating generators and training runs: cached reference statistics, FID/KID of a generator, a run's JSON.

:func:`reference_stats` computes the statistics of ``n`` real images once and caches them as ``.npz``, keyed by
everything they depend on, including *which* data they came from (source kind, resolved path and a
fingerprint of the file list for CelebA; the generator's code for the procedural faces), so statistics of one
dataset are never served for another at the same ``n``. :func:`evaluate_generator` and :func:`evaluate_run`
score a generator against them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import atomic
from .features import _iter_batches, compute_stats, get_extractor
from .fid import (DEFAULT_KID_SAMPLES, DEFAULT_KID_SUBSET_SIZE, DEFAULT_KID_SUBSETS, FeatureStats,
                  effective_kid_subset_size, fid_from_stats, inception_score, kid)
from .progress import Progress


def default_cache_dir() -> Path:
    return Path(os.environ.get("SAGAN_TUT_CACHE", Path.home() / ".cache" / "sagan_tut")) / "fid_stats"


def _faces_identity() -> dict:
    """The procedural faces are a pure function of their code and (split, seed, resolution, options): their
    identity is a digest of ``sagan_tut/faces.py`` (read as text, so no TensorFlow start-up for a cache hit)."""
    import importlib.util

    from . import __version__

    origin = importlib.util.find_spec(f"{__package__}.faces").origin
    try:
        with open(origin, "rb") as f:
            return {"kind": "faces", "generator": hashlib.sha1(f.read()).hexdigest()[:16]}
    except OSError:  # no source file (a frozen install): the package version is the best we have
        return {"kind": "faces", "generator": f"sagan_tut-{__version__}"}


def data_identity(dataset_name: str, images=None, **load_kwargs) -> dict | None:
    """Which data reference statistics come from, for their cache key (JSON-able), without reading images.

    CelebA: :func:`sagan_tut.celeba_list.fingerprint` of the source ``load_dataset`` would read (kind, resolved
    path, count, bytes and a digest of names / sizes / times or CRCs). Faces: the generator's code. ``images``
    given: a dataset from ``load_celeba`` carries its source; an array is hashed; for anything else (a sampler,
    another dataset) the caller's ``dataset_name`` is the only identity and ``None`` is returned.
    """
    from .celeba_files import CelebASource, find_celeba
    from .celeba_list import fingerprint

    if images is not None:
        if isinstance(getattr(images, "source", None), CelebASource):
            return fingerprint(images.source)
        if isinstance(images, np.ndarray):
            digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
            return {"kind": "array", "shape": list(images.shape), "dtype": str(images.dtype), "digest": digest}
        return None
    if dataset_name == "faces":
        return _faces_identity()
    if dataset_name == "celeba":
        return fingerprint(find_celeba(load_kwargs.get("root"), load_kwargs.get("source", "auto"),
                                       load_kwargs.get("data_dir")))
    return None


def reference_stats(dataset_name: str, resolution: int, extractor="offline", n: int = 10_000, cache_dir=None,
                    batch_size: int = 64, split: str = "train", seed: int = 0, keep: int = DEFAULT_KID_SAMPLES,
                    images=None, recompute: bool = False, progress: bool | None = None,
                    **load_kwargs) -> FeatureStats:
    """Statistics of ``n`` real images, computed once and cached as ``.npz``.

    The cache key is dataset / resolution / split / seed / extractor name / n, loader options such as ``crop``,
    and the data's identity (:func:`data_identity`: for CelebA where the files are and a fingerprint of them,
    so a small test CelebA and the real one never share an entry; for the faces, their generator's code).
    Asking again with the same arguments and unchanged files loads the file instead of recomputing. Images come
    from ``sagan_tut.data.load_dataset(dataset_name, resolution, ...)`` (shuffled with ``seed``, no repeat), or
    from ``images`` (array, dataset or sampler) when given. ``progress``: see :func:`compute_stats`.
    """
    extractor = get_extractor(extractor)

    def load():
        from .data import load_dataset

        # One pass, keeping a last short batch, so that every image of the split can be used.
        return load_dataset(dataset_name, resolution=resolution, batch_size=batch_size, split=split, seed=seed,
                            shuffle=True, repeat=False, **{"drop_remainder": False, **load_kwargs})

    try:
        identity = data_identity(dataset_name, images, **load_kwargs)
    except FileNotFoundError:
        if not load_kwargs.get("download"):
            raise
        images = load()  # nothing local yet: download first, then fingerprint what arrived
        identity = data_identity(dataset_name, images, **load_kwargs)
    meta = dict(dataset=str(dataset_name), resolution=int(resolution), split=str(split), seed=int(seed),
                extractor=extractor.name, n=int(n), keep=int(keep), data=identity)
    fname = f"{dataset_name}_{resolution}px_{split}_seed{seed}_{extractor.name}_n{n}_keep{keep}"
    # Loader options that change the images (e.g. CelebA's crop) are part of the key; where the files live is
    # in the identity (resolved), so root / source / data_dir are left out here.
    options = {k: v for k, v in sorted(load_kwargs.items())
               if k not in ("root", "source", "data_dir", "cache", "drop_remainder", "download")}
    if options:
        meta["options"] = json.loads(json.dumps(options, default=str))
        fname += "_" + hashlib.sha1(json.dumps(meta["options"], sort_keys=True).encode()).hexdigest()[:8]
    if identity is not None:
        fname += "_d" + hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / (fname + ".npz")
    if path.exists() and not recompute:
        cached = FeatureStats.load(path)
        if all(cached.meta.get(k) == v for k, v in meta.items()):
            return cached
    if images is None:
        images = load()
    stats = compute_stats(images, extractor, n=n, batch_size=batch_size, keep=keep, meta=meta, progress=progress,
                          desc=f"real images ({dataset_name} {resolution}px)")
    stats.save(path)
    # Files the pipeline skipped (CelebA), for the command line's summary; None for cached statistics.
    stats.skip_report = getattr(images, "skip_report", None)
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
                       compute_is: bool = False, progress: bool | None = None) -> dict:
    """FID and KID of ``n`` generated images against ``real``.

    ``real`` is a :class:`FeatureStats` (e.g. from :func:`reference_stats`; it must come from the same
    extractor), a path to a saved one, or images (array / dataset), whose statistics are computed with ``n``.
    ``compute_is`` adds IS (needs ``InceptionExtractor(classifier=True)``). ``progress``: a progress line on
    stderr with the images done, images/s and the time left (``None``: on from
    :data:`sagan_tut.progress.MIN_TOTAL` images).
    """
    extractor = get_extractor(extractor)
    if isinstance(real, (str, os.PathLike)):
        real = FeatureStats.load(real)
    if not isinstance(real, FeatureStats):
        real = compute_stats(real, extractor, n=n, batch_size=batch_size, keep=keep, progress=progress,
                             desc="real images")
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
    with Progress(n, "generated images", enabled=progress) as bar:
        for batch in _iter_batches(sample, n, batch_size):
            if compute_is:
                feats, p = extractor.features_and_probs(batch)
                probs.append(p)
            else:
                feats = extractor(batch)
            fake.update(feats)
            bar.update(int(batch.shape[0]))
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
    atomic.write_json(obj, path, indent=2, sort_keys=True)


def evaluate_run(run_dir, data: str | None = None, n: int = 50_000, extractor="offline", out_json=None,
                 batch_size: int = 64, cache_dir=None, seed: int = 0, ema: bool = True, real=None,
                 progress: bool | None = None, **load_kwargs) -> dict:
    """Evaluate a training run: FID/KID of its (EMA) generator against its dataset; writes and returns a dict.

    Reads ``run_dir/config.json`` (``z_dim``, ``resolution``, ``dataset``) and the generator via
    ``sagan_tut.train.load_generator``. ``data`` overrides the run's dataset. The reference statistics
    (``n`` real images against ``n`` generated ones, the usual protocol) come from :func:`reference_stats`
    (cached; ``load_kwargs`` such as ``root=`` go to the data loader, and default to the run's ``data_root`` /
    ``data_source``) unless ``real`` gives them (a :class:`FeatureStats`, a saved ``.npz`` or images). The JSON
    goes to ``out_json`` or ``run_dir/eval_<extractor>_n<n>.json``. ``progress``: progress lines for the
    real and the generated images (``None``: on from :data:`sagan_tut.progress.MIN_TOTAL` images).
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
                               batch_size=batch_size, progress=progress, **load_kwargs)
    result = evaluate_generator(generator, real, n=n, extractor=extractor, batch_size=batch_size,
                                z_dim=int(config["z_dim"]), seed=seed, progress=progress)
    result.update(run=str(run_dir), dataset=dataset, resolution=int(config["resolution"]), ema=bool(ema))
    out = Path(out_json) if out_json is not None else run_dir / f"eval_{extractor.name}_n{n}.json"
    _write_json_atomic(result, out)
    result["json"] = str(out)
    result["skip_report"] = getattr(real, "skip_report", None)  # not in the JSON: the CLI prints its summary
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
