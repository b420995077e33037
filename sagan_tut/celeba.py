"""CelebA as a ``tf.data`` pipeline: tfds, the official folder or zip, or Kaggle; never an unasked download.

**Images.** The aligned-and-cropped CelebA set (Liu et al., ICCV 2015) is 202,599 JPEGs of 178 x 218 pixels
(width x height), faces aligned so the eyes sit at about the same place in every image. The official partition
file ``list_eval_partition.txt`` (Kaggle: ``list_eval_partition.csv``) gives train / val / test =
162,770 / 19,867 / 19,962 images.

**Crop.** We take the centred 178 x 178 square, rows 20..197 of the 218 (:data:`CROP`), then resize with an
antialiasing filter to 32, 64 or 128. That is torchvision's ``CenterCrop(178)`` as used by mimicry
(Lee & Town 2020, ``torch_mimicry/datasets/data_utils.py``), the closest published CelebA GAN baseline
(SNGAN 128 x 128, FID 12.93), so our preprocessing matches the numbers we compare against. It keeps the whole
face, the hair and a little background. Tighter crops exist and change FID: DCGAN-tensorflow's centred
108 x 108 (face only), heykeetae's SAGAN ``CenterCrop(160)``; pass ``crop=(top, left, height, width)`` to use
one. Decoding uses ``tf.io.decode_and_crop_jpeg``, which decodes only the rows of the crop window.

**Sources** (``source=``): ``"tfds"`` a *prepared* ``celeb_a`` in ``data_dir``; ``"folder"`` an
``img_align_celeba/`` folder of JPEGs; ``"zip"`` ``img_align_celeba.zip`` read in place (members are read on
demand, nothing is unpacked); ``"kaggle"`` the Kaggle mirror ``jessicali9530/celeba-dataset`` in the
``kagglehub`` cache. ``"auto"`` tries, in this order: (1) a prepared tfds ``celeb_a`` under ``data_dir``
(default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; or ``root`` if given), (2) an ``img_align_celeba``
folder, (3) an ``img_align_celeba.zip``, looking in ``root`` when given and otherwise in
:func:`default_roots` (``./data/celeba``, ``./data``, ``./celeba``, ``~/data/celeba``, Colab's Drive, the
kagglehub cache, Kaggle's ``/kaggle/input``). The official Google Drive folder (``CelebA/Img``,
``CelebA/Eval``, ``CelebA/Anno``) is found from any of its levels; :mod:`sagan_tut.celeba_files` lists the
layouts. Nothing found raises one ``FileNotFoundError`` listing every way to get CelebA with the exact
command; a split other than ``"all"`` without the partition file is an error too. Downloads happen only with
``download=True`` (tfds or Kaggle): an offline tfds download attempt spends minutes in retries, and tfds'
Google Drive links often hit their quota on Colab, which is why the Kaggle mirror exists.

**Bad files** never stop an epoch. Non-JPEG names in the folder, files that do not start with a JPEG header,
JPEGs without an end-of-image marker (truncated downloads or unzips) and JPEGs that are not 178 x 218 are
skipped, named in ``dataset.skip_report`` (a :class:`SkipReport`; ``.summary()`` lists them) and reported
with one log warning.
Files that pass those checks but still fail inside the decoder (we have not seen one) are dropped by
``Dataset.ignore_errors`` as a last resort; TensorFlow logs those itself and they are not in the count.

**Order and resuming.** For the folder and the zip, the *file names* are shuffled, before anything is read,
by a stateless random permutation per epoch (:func:`sagan_tut.faces.shuffled_index`): batch k is a pure
function of (seed, k), independent of TensorFlow's global seed, and ``tf.train.Checkpoint(iterator=it)``
saves little more than a counter and restores the exact next batch. tfds reads its own shard files, so there
the order comes from tfds' file shuffling plus a 2,048-image buffer of encoded JPEGs (deterministic for a given
``seed`` and global seed; a checkpoint holds that buffer, ~20 MB).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

# Finding the files needs no TensorFlow and lives in celeba_files / celeba_list; the fake-CelebA writer in
# celeba_fake. Their public names are re-exported, so ``from sagan_tut.celeba import find_celeba`` still works.
from .celeba_fake import LAYOUTS, fake_celeba_image, fake_code, write_fake_celeba  # noqa: F401
from .celeba_files import (CROP, FOLDER_NAME, IMAGE_EXTENSIONS, IMAGE_HEIGHT, IMAGE_WIDTH,  # noqa: F401
                           KAGGLE_HANDLE, OFFICIAL_SPLIT_SIZES, PARTITION_NAMES, SOURCES, SPLITS, TFDS_NAME,
                           ZIP_NAMES, CelebASource, SkipReport, default_roots, find_celeba, how_to_get_celeba,
                           kaggle_cache_dirs, log, prepared_tfds, tfds_data_dir)
from .celeba_list import bytes_ok, fingerprint, list_images, open_zip, probe, read_partition  # noqa: F401
from .faces import shuffled_index

TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test", "all": "train+validation+test"}
TFDS_SHUFFLE_BUFFER = 2048  # encoded JPEGs (~10 kB each) after tfds' own shard shuffling
CACHE_SHUFFLE_BUFFER = 10_000  # decoded images, only with cache=True (the names are no longer shuffled)
_NAME_SALT = 0x5CE1EBA  # separates the name permutation from the faces' permutations
_JPEG_SOI = b"\xff\xd8\xff"


def _zip_reader(path: str, report: SkipReport):
    zf = open_zip(path)  # the zip as it is when the dataset is built

    def read(name):
        name = name.decode()
        try:
            return zf.read(name)
        except Exception as e:  # noqa: BLE001 -- a damaged member must not end the epoch
            report.add(name, f"unreadable zip member: {type(e).__name__}: {e}")
            return b""
    return read


# ------------------------------------------------------------------------------------------- the pipeline
def _decode_fn(crop, report: SkipReport):
    """(name, bytes) -> (uint8 crop (h, w, 3), ok). Bad files give ok=False and are recorded in ``report``."""
    top, left, ch, cw = crop
    window = tf.constant([top, left, ch, cw], tf.int32)

    def record(name, reason):
        return tf.numpy_function(report.record, [name, reason], tf.bool, stateful=True)

    @tf.autograph.experimental.do_not_convert  # explicit tf.cond below; AutoGraph would only add tracing time
    def fn(name, data):
        n = tf.strings.length(data)
        head_ok = tf.equal(tf.strings.substr(data, 0, 3), _JPEG_SOI)
        # End-of-image marker FF D9 within the last 32 bytes (a few encoders pad after it). Inside JPEG's
        # entropy-coded data an FF is always followed by 00 or a restart marker, so FF D9 there means "done".
        tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(n - 32, 0), 32), tf.uint8)
        tail_ok = tf.reduce_any(tf.logical_and(tail[:-1] == 0xFF, tail[1:] == 0xD9))
        blank = tf.zeros([ch, cw, 3], tf.uint8)

        def decode():
            # INTEGER_ACCURATE is libjpeg's exact integer IDCT, the one PIL (hence torchvision) uses. TF's
            # default fast IDCT is no faster here and darkens red by ~1 level in 255 (seen on the test pattern).
            img = tf.io.decode_and_crop_jpeg(data, window, channels=3, dct_method="INTEGER_ACCURATE")
            return tf.ensure_shape(img, [ch, cw, 3]), tf.constant(True)

        def sized():
            shape = tf.io.extract_jpeg_shape(data)
            right = tf.logical_and(shape[0] == IMAGE_HEIGHT, shape[1] == IMAGE_WIDTH)
            return tf.cond(right, decode, lambda: (blank, record(name, f"not {IMAGE_WIDTH}x{IMAGE_HEIGHT}")))

        def bad():
            reason = tf.where(head_ok, "truncated JPEG (no end-of-image marker)", "not a JPEG (bad header)")
            return blank, record(name, reason)

        return tf.cond(tf.logical_and(head_ok, tail_ok), sized, bad)

    return fn


def _resize_fn(resolution: int, to_uint8: bool = False):
    """uint8 crops (..., h, w, 3) -> float32 (..., R, R, 3) in [-1, 1]. Antialiased bilinear (a triangle filter
    widened by the scale factor, like PIL's resize, which torchvision uses). Applied to whole batches: one
    resize op per batch costs about a third of 64 single-image ones. ``to_uint8``: round to uint8 instead
    (what the cache stores: 4x less memory than float32)."""
    R = int(resolution)

    def fn(images):
        images = tf.image.resize(images, [R, R], method="bilinear", antialias=True)
        if to_uint8:
            return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 255.0)), tf.uint8)
        return tf.clip_by_value(images / 127.5 - 1.0, -1.0, 1.0)

    return fn


def _to_float(images):
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def _is_ok(img, ok):
    return ok


def _image_only(img, ok):
    return img


def _finish(ds, decode, resolution, *, batch_size, drop_remainder, cache=False, shuffle_buffer=0, seed=0,
            repeat=False):
    """Common tail: (name, bytes) -> decoded, filtered, (cached, shuffled, repeated), batched, resized."""
    AUTOTUNE = tf.data.AUTOTUNE
    resize, resize_u8 = _resize_fn(resolution), _resize_fn(resolution, to_uint8=True)
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(_is_ok).map(_image_only)
    ds = ds.ignore_errors()  # last resort for decoder failures the byte checks cannot see
    if cache:  # cache the small resized images as uint8, not the crops
        ds = ds.map(resize_u8, num_parallel_calls=AUTOTUNE).cache(cache if isinstance(cache, str) else "")
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(_to_float if cache else resize, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    # The skip report is Python state reached through tf.numpy_function; it is not part of the iterator
    # state, so let iterator checkpoints ignore it (otherwise saving raises "PyFunc is stateful").
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options)


def _name_stream(names: list[str], seed: int, shuffle: bool, repeat: bool):
    """File names in a stateless shuffled order: position p is name ``perm_e(p mod N)`` with a random
    permutation per (seed, epoch e = p // N) from :func:`sagan_tut.faces.shuffled_index`. No shuffle buffer and
    no dependence on TensorFlow's global seed: batch k is a pure function of (seed, k), and an iterator
    checkpoint holds a counter."""
    n = len(names)
    table = tf.constant(names)

    def pick(p):
        j = p % n
        if shuffle:
            j = shuffled_index(j, p // n, seed, n, salt=_NAME_SALT)
        return tf.gather(table, j)

    return tf.data.Dataset.range(2 ** 62 if repeat else n).map(pick)


def _check_args(resolution, batch_size, split, crop):
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 8 <= resolution <= 512:
        raise ValueError(f"resolution must be an integer pixel size such as 32, 64 or 128, got {resolution!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}.")
    top, left, ch, cw = (int(v) for v in crop)
    if top < 0 or left < 0 or top + ch > IMAGE_HEIGHT or left + cw > IMAGE_WIDTH or ch < 1 or cw < 1:
        raise ValueError(f"crop={crop} (top, left, height, width) must lie inside the "
                         f"{IMAGE_WIDTH}x{IMAGE_HEIGHT} image.")
    return (top, left, ch, cw)


def load_celeba(resolution: int = 64, batch_size: int = 64, split: str = "train", seed: int = 0,
                shuffle: bool = True, cache=False, root=None, source: str = "auto", repeat: bool = True,
                drop_remainder: bool = True, data_dir=None, download: bool = False, crop=CROP) -> tf.data.Dataset:
    """CelebA batches, float32 ``(B, R, R, 3)`` in [-1, 1]; ``split`` in train / val / test / all.

    ``cache``: ``False``; ``True`` keeps the resized images (uint8) in memory after the first epoch
    (``R*R*3`` bytes per image: 0.5 GB for the train split at 32 px, 2 GB at 64, 8 GB at 128); a file name
    caches to disk instead (e.g. the Colab VM's disk when the images sit on a slow Google Drive). With a
    cache, the decoded images (not the names) are shuffled through a 10,000-image buffer, which also makes
    iterator checkpoints large.
    ``download=True`` allows a download when nothing local is found: with ``source="tfds"`` (tfds
    ``download_and_prepare`` into ``data_dir``) or ``source="kaggle"`` (:func:`download_kaggle`).
    The returned dataset has a ``skip_report`` attribute (:class:`SkipReport`).
    """
    crop = _check_args(resolution, batch_size, split, crop)
    if download and source == "auto":
        try:
            src = find_celeba(root, "auto", data_dir)
        except FileNotFoundError:
            raise ValueError("download=True needs an explicit source: source='kaggle' (the Kaggle mirror, "
                             "reliable on Colab) or source='tfds' (Google Drive links).") from None
    elif download and source == "kaggle":
        try:
            src = find_celeba(root, "kaggle", data_dir)
        except FileNotFoundError:
            src = find_celeba(download_kaggle(), "folder")
    elif download and source == "tfds":
        try:
            src = find_celeba(root, "tfds", data_dir)
        except FileNotFoundError:
            src = CelebASource("tfds", _tfds_download(data_dir or root))
    else:
        src = find_celeba(root, source, data_dir)
    report = SkipReport(src.path)
    decode = _decode_fn(crop, report)
    common = dict(batch_size=int(batch_size), drop_remainder=drop_remainder, cache=cache, seed=int(seed))
    if src.kind == "tfds":
        ds = _tfds_records(src.path, split, shuffle, int(seed))
        # tfds shuffles its shard files; a buffer of encoded JPEGs mixes examples within shards.
        buffer = (CACHE_SHUFFLE_BUFFER if cache else TFDS_SHUFFLE_BUFFER) if shuffle else 0
        ds = _finish(ds, decode, resolution, shuffle_buffer=buffer, repeat=repeat, **common)
    else:
        names = list_images(src, split, report)
        if cache:  # decode every file once in sorted order, then shuffle the decoded images
            names_ds = tf.data.Dataset.from_tensor_slices(tf.constant(names))
        else:  # shuffle names, not pixels, before anything is read
            names_ds = _name_stream(names, int(seed), shuffle, repeat)
        if src.kind == "folder":
            ds = names_ds.map(_read_file, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            read = _zip_reader(src.path, report)
            ds = names_ds.map(lambda m: (m, tf.numpy_function(read, [m], tf.string, stateful=False)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            buffer = CACHE_SHUFFLE_BUFFER if shuffle else 0
            ds = _finish(ds, decode, resolution, shuffle_buffer=buffer, repeat=repeat, **common)
        else:  # order and repetition are already in the name stream
            ds = _finish(ds, decode, resolution, **common)
    ds.skip_report = report
    ds.source = src
    return ds


def _read_file(path):
    return path, tf.io.read_file(path)


# --------------------------------------------------------------------------------------------------- tfds
def _tfds_records(version_dir: str, split: str, shuffle: bool, seed: int):
    """(tfds_id, encoded JPEG) pairs from a prepared tfds directory. The images are not decoded by tfds
    (``SkipDecoding``), so our crop-aware decoder does the work once."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(version_dir)  # reads the prepared files only: no code, no network
    read_config = tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True, try_autocache=False)
    ds = builder.as_dataset(split=TFDS_SPLITS[split], shuffle_files=shuffle, read_config=read_config,
                            decoders={"image": tfds.decode.SkipDecoding()})
    return ds.map(lambda ex: (ex["tfds_id"], ex["image"]), num_parallel_calls=tf.data.AUTOTUNE)


def _tfds_download(data_dir) -> str:
    """Download and prepare tfds ``celeb_a`` (only ever called with ``download=True``)."""
    import tensorflow_datasets as tfds

    data_dir = tfds_data_dir(data_dir)
    log.warning("Downloading CelebA with tensorflow_datasets into %s (~1.4 GB from Google Drive). If it fails "
                "with a quota error, use source='kaggle', download=True instead.", data_dir)
    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    builder.download_and_prepare()
    version_dir = prepared_tfds(data_dir)
    if version_dir is None:
        raise RuntimeError(f"tfds reported success but no prepared {TFDS_NAME} is in {data_dir}.")
    return version_dir


# ------------------------------------------------------------------------------------------------- Kaggle
def download_kaggle(dest=None) -> str:
    """Download the Kaggle mirror of CelebA (``jessicali9530/celeba-dataset``, ~1.4 GB) with ``kagglehub``
    and return the folder to pass as ``root=``. Only runs when called.

    kagglehub keeps the files in its cache (``~/.cache/kagglehub``, or ``$KAGGLEHUB_CACHE``), where
    ``source="auto"`` also looks. With ``dest``, a symbolic link ``dest`` -> the cached folder is made (or the
    files go straight to ``dest`` when the installed kagglehub supports ``output_dir``).
    Needs ``pip install kagglehub``; public datasets usually download without a token, otherwise run
    ``kagglehub.login()`` or set ``KAGGLE_USERNAME`` / ``KAGGLE_KEY``.
    """
    try:
        import kagglehub
    except ImportError:
        raise ImportError("download_kaggle needs the optional package kagglehub: pip install kagglehub "
                          "(or pip install 'sagan-tut[kaggle]').") from None
    import inspect

    kwargs = {}
    if dest is not None and "output_dir" in inspect.signature(kagglehub.dataset_download).parameters:
        kwargs["output_dir"] = os.fspath(os.path.expanduser(dest))
    path = kagglehub.dataset_download(KAGGLE_HANDLE, **kwargs)
    if dest is not None and not kwargs:
        dest = os.path.expanduser(os.fspath(dest))
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
            os.symlink(os.path.abspath(path), dest, target_is_directory=True)
        elif os.path.realpath(dest) != os.path.realpath(path):
            raise FileExistsError(f"dest={dest} exists and is not the kagglehub folder {path}; pass root={path!r}.")
        path = dest
    return os.fspath(path)
