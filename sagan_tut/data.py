"""One entry point for training data: ``load_dataset("faces" | "celeba", ...)``.

Both datasets yield float32 batches ``(B, R, R, 3)`` in [-1, 1] (the range of G's tanh output), built with
``tf.data``: parallel decoding or drawing, ``prefetch(AUTOTUNE)``, deterministic order for a given ``seed``,
and iterators that ``tf.train.Checkpoint(iterator=it)`` can save and restore exactly.

* ``"faces"`` (:mod:`sagan_tut.faces`): procedural cartoon faces drawn on the fly, nothing to download; the
  default of the quick profile. Their long-range structure (eyes share a colour, the face is mirror-symmetric)
  is measured by :func:`sagan_tut.faces.structure_score`.
* ``"celeba"`` (:mod:`sagan_tut.celeba`): CelebA from tfds, the official folder or zip, or the Kaggle mirror;
  see that module for the crop, the search order and how bad files are handled.
"""
from __future__ import annotations

import tensorflow as tf

from . import faces
from .celeba import (CROP, SkipReport, download_kaggle, find_celeba, how_to_get_celeba,  # noqa: F401
                     load_celeba, write_fake_celeba)
from .faces import faces_dataset, generate_faces, structure_score, structure_scores  # noqa: F401

DATASETS = ("faces", "celeba")


def load_dataset(name: str = "faces", resolution: int = 64, batch_size: int = 64, split: str = "train",
                 seed: int = 0, shuffle: bool = True, cache=False, root=None, source: str = "auto",
                 repeat: bool = True, drop_remainder: bool = True, data_dir=None, **kwargs) -> tf.data.Dataset:
    """Batches of training images, float32 ``(batch_size, resolution, resolution, 3)`` in [-1, 1].

    Args:
        name: ``"faces"`` (procedural, offline) or ``"celeba"``.
        resolution: image side in pixels (the course uses 32, 64 and 128).
        split: ``"train"``, ``"val"``, ``"test"`` (CelebA also ``"all"``).
        seed: fixes the order; the same seed gives the same batches.
        shuffle: shuffle the order (every epoch differently, still determined by ``seed``).
        cache: CelebA only: keep decoded images in memory (``True``) or in a cache file (a path). The faces are
            drawn faster than a cache could be read, so ``cache`` is ignored for them.
        root, source, data_dir: where CelebA is (``sagan_tut.celeba``); ignored for the faces.
        repeat: loop forever (training) or stop after one epoch (evaluation).
        drop_remainder: drop a last, smaller batch so every batch has ``batch_size`` images.
        **kwargs: passed on: to :func:`sagan_tut.celeba.load_celeba` (``download``, ``crop``) or to
            :func:`sagan_tut.faces.faces_dataset` (``broken``, ``size``).
    """
    if name == "faces":
        return faces.faces_dataset(resolution, batch_size, split=split, seed=seed, shuffle=shuffle,
                                   repeat=repeat, drop_remainder=drop_remainder, **kwargs)
    if name == "celeba":
        return load_celeba(resolution, batch_size, split=split, seed=seed, shuffle=shuffle, cache=cache,
                           root=root, source=source, repeat=repeat, drop_remainder=drop_remainder,
                           data_dir=data_dir, **kwargs)
    raise ValueError(f"Unknown dataset {name!r}: use one of {DATASETS}.")
