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
kagglehub cache, Kaggle's ``/kaggle/input``). Nothing found raises one ``FileNotFoundError`` listing every way
to get CelebA with the exact command. Downloads happen only with ``download=True`` (tfds or Kaggle): an
offline tfds download attempt spends minutes in retries, and tfds' Google Drive links often hit their quota
on Colab, which is why the Kaggle mirror exists.

**Bad files** never stop an epoch. Non-JPEG names in the folder, files that do not start with a JPEG header,
JPEGs without an end-of-image marker (truncated downloads or unzips) and JPEGs that are not 178 x 218 are
skipped, named in ``dataset.skip_report`` (a :class:`SkipReport`) and reported with one log warning.
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

import csv
import dataclasses
import glob
import io
import logging
import os
import re
import threading
import zipfile

import numpy as np
import tensorflow as tf

from .faces import shuffled_index

log = logging.getLogger("sagan_tut.data")

IMAGE_HEIGHT, IMAGE_WIDTH = 218, 178
#: (top, left, height, width): the centred 178 x 178 square (torchvision ``CenterCrop(178)``, as mimicry).
CROP = (20, 0, 178, 178)
OFFICIAL_SPLIT_SIZES = {"train": 162_770, "val": 19_867, "test": 19_962}
SPLITS = {"train": 0, "val": 1, "test": 2}  # ids in list_eval_partition; "all" takes every image
SOURCES = ("auto", "tfds", "folder", "zip", "kaggle")
FOLDER_NAME = "img_align_celeba"
ZIP_NAMES = ("img_align_celeba.zip", "archive.zip", "celeba-dataset.zip")
PARTITION_NAMES = ("list_eval_partition.txt", "list_eval_partition.csv")
KAGGLE_HANDLE = "jessicali9530/celeba-dataset"
TFDS_NAME = "celeb_a"
TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test", "all": "train+validation+test"}
TFDS_SHUFFLE_BUFFER = 2048  # encoded JPEGs (~10 kB each) after tfds' own shard shuffling
CACHE_SHUFFLE_BUFFER = 10_000  # decoded images, only with cache=True (the names are no longer shuffled)
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
_JPEG_SOI = b"\xff\xd8\xff"
_NAME_SALT = 0x5CE1EBA  # separates the name permutation from the faces' permutations


# ------------------------------------------------------------------------------------------ skipped files
class SkipReport:
    """Files a CelebA pipeline skipped: ``skipped`` maps a file name to the reason; ``count`` is its length.

    A file is counted once however many epochs meet it. The first skip found while reading logs one warning;
    later ones are only counted (read ``dataset.skip_report`` at any time). Files skipped while listing a
    folder or zip (names that are not JPEGs) are reported together in one line when the dataset is built.
    """

    def __init__(self, where: str):
        self.where = where
        self.skipped: dict[str, str] = {}
        self.missing = 0  # names in the partition file with no image (an incomplete download)
        self._lock = threading.Lock()
        self._warned = False

    @property
    def count(self) -> int:
        return len(self.skipped)

    def add(self, name: str, reason: str) -> None:
        with self._lock:
            self.skipped.setdefault(name, reason)

    def record(self, name, reason) -> bool:
        """Called from inside the tf.data graph (through ``tf.numpy_function``) for each bad file."""
        name = name.decode() if isinstance(name, bytes) else str(name)
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        with self._lock:
            reason = self.skipped.setdefault(name, reason)  # the first reason given for a file wins
            warn, self._warned = not self._warned, True
        if warn:
            log.warning("CelebA (%s): skipping unreadable image %s (%s). Further skips are counted silently "
                        "in dataset.skip_report.", self.where, name, reason)
        return False

    def __repr__(self):
        return f"SkipReport({self.where!r}, count={self.count}, missing={self.missing})"


# ---------------------------------------------------------------------------------------- finding CelebA
@dataclasses.dataclass
class CelebASource:
    """Where the images are. ``kind`` is ``"tfds"`` (``path`` = a prepared version directory),
    ``"folder"`` (``path`` = the folder holding the JPEGs) or ``"zip"`` (``path`` = the zip file).
    ``partition`` is the partition file (for a zip possibly ``"<zip path>::<member>"``) or ``None``."""

    kind: str
    path: str
    partition: str | None = None


def tfds_data_dir(data_dir=None) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def kaggle_cache_dirs() -> list[str]:
    """Version folders of the Kaggle CelebA mirror in the kagglehub cache, newest first."""
    cache = os.path.expanduser(os.environ.get("KAGGLEHUB_CACHE") or "~/.cache/kagglehub")
    base = os.path.join(cache, "datasets", *KAGGLE_HANDLE.split("/"))
    versions = glob.glob(os.path.join(base, "versions", "*"))
    return sorted(versions, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0), reverse=True)


def default_roots() -> list[str]:
    """Places ``source="auto"`` looks in when no ``root`` is given, in order."""
    return ["data/celeba", "data", "celeba", os.path.expanduser("~/data/celeba"),
            "/content/drive/MyDrive/celeba", "/content/data/celeba",
            *kaggle_cache_dirs(), "/kaggle/input/celeba-dataset"]


def _prepared_tfds(data_dir: str) -> str | None:
    """The newest prepared ``celeb_a`` version directory under ``data_dir`` (looked up on disk only: building a
    tfds builder for an absent dataset is slow and must never lead to a download)."""
    infos = glob.glob(os.path.join(data_dir, TFDS_NAME, "*", "dataset_info.json"))
    if not infos:
        return None

    def version(p):
        return tuple(int(v) if v.isdigit() else 0 for v in os.path.basename(os.path.dirname(p)).split("."))
    return os.path.dirname(max(infos, key=version))


def _has_images(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file() for e in it)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False


def _find_folder(base: str, accept_base: bool = True) -> str | None:
    """Kaggle's doubled ``base/img_align_celeba/img_align_celeba``, ``base/img_align_celeba``, or (only for a
    ``root`` the user named, never for a guessed place like ``./data``) ``base`` itself."""
    cands = [os.path.join(base, FOLDER_NAME, FOLDER_NAME), os.path.join(base, FOLDER_NAME)]
    for cand in cands + ([base] if accept_base else []):
        if _has_images(cand):
            return cand
    return None


def _find_zip(base: str) -> str | None:
    if os.path.isfile(base) and base.lower().endswith(".zip"):
        return base
    for name in ZIP_NAMES:
        if os.path.isfile(os.path.join(base, name)):
            return os.path.join(base, name)
    return None


def _find_partition(*places: str) -> str | None:
    for place in places:
        for sub in ("", "Eval", "eval"):
            for name in PARTITION_NAMES:
                p = os.path.join(place, sub, name)
                if os.path.isfile(p):
                    return p
    return None


def _zip_image_members(zf: zipfile.ZipFile) -> tuple[list[str], list[str]]:
    """Members inside a folder named ``img_align_celeba`` (at any depth): (JPEG names, other file names)."""
    images, others = [], []
    for info in zf.infolist():
        parts = info.filename.rstrip("/").split("/")
        if info.is_dir() or len(parts) < 2 or parts[-2] != FOLDER_NAME:
            continue
        (images if parts[-1].lower().endswith(IMAGE_EXTENSIONS) else others).append(info.filename)
    return images, others


def _check_zip(path: str) -> str | None:
    """Validate the zip's layout; return a partition member (``"zip::member"``) if the zip holds one."""
    try:
        with zipfile.ZipFile(path) as zf:
            images, _ = _zip_image_members(zf)
            if not images:
                first = ", ".join(n for n in zf.namelist()[:5]) or "(empty)"
                raise ValueError(
                    f"{path} has no {FOLDER_NAME}/ folder of JPEGs (first entries: {first}). CelebA's official "
                    f"zip holds {FOLDER_NAME}/000001.jpg ...; check that this is img_align_celeba.zip, or unpack "
                    f"your images into a folder named {FOLDER_NAME} and pass its parent as root=.")
            for name in zf.namelist():
                if name.rsplit("/", 1)[-1] in PARTITION_NAMES:
                    return f"{path}::{name}"
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a readable zip file ({e}); the download is probably incomplete: "
                         "download it again.") from None
    return None


def how_to_get_celeba(searched: list[str] | None = None) -> str:
    """The message listing every way to get CelebA, with the exact commands."""
    where = "".join(f"\n    - {s}" for s in (searched or []))
    return (
        "CelebA was not found." + (f" Looked for:{where}" if where else "") + "\n"
        "Get it in one of these ways, then call load_dataset('celeba', ...) again:\n"
        "  1. Kaggle mirror (most reliable, also on Colab; may ask for a Kaggle API token):\n"
        "       pip install kagglehub\n"
        "       load_dataset('celeba', source='kaggle', download=True)\n"
        "     or: python -c \"from sagan_tut.data import download_kaggle; print(download_kaggle())\"\n"
        "         and pass the printed folder as root=...\n"
        "  2. The official files (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, 'Align&Cropped Images'):\n"
        "       put img_align_celeba.zip (1.4 GB; no need to unpack) and Eval/list_eval_partition.txt into\n"
        "       ./data/celeba/, then load_dataset('celeba', root='data/celeba')\n"
        "  3. TensorFlow Datasets (Google Drive links, often over quota on Colab):\n"
        "       load_dataset('celeba', source='tfds', download=True, data_dir='~/tensorflow_datasets')\n"
        "     or: python -c \"import tensorflow_datasets as tfds; tfds.builder('celeb_a').download_and_prepare()\"\n"
        "  No download possible? load_dataset('faces', ...) is the procedural offline dataset."
    )


def find_celeba(root=None, source: str = "auto", data_dir=None) -> CelebASource:
    """Locate CelebA without touching the network (see the module docstring for the search order)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    if root is not None:
        root = os.path.expanduser(os.fspath(root))
        if not os.path.exists(root):
            raise FileNotFoundError(f"root={root!r} does not exist. Pass the folder that holds "
                                    f"{FOLDER_NAME}/ or img_align_celeba.zip (or the zip itself).\n"
                                    + how_to_get_celeba())
    searched = []
    if source in ("auto", "tfds"):
        dirs = [os.path.expanduser(os.fspath(data_dir))] if data_dir else []
        if root and os.path.isdir(root):
            dirs.append(root)
        if not dirs and not root:  # a root the user named wins over the default tfds folder
            dirs = [tfds_data_dir()]
        for d in dirs:
            version_dir = _prepared_tfds(d)
            if version_dir:
                return CelebASource("tfds", version_dir)
            searched.append(f"a prepared tfds '{TFDS_NAME}' in {d}")
        if source == "tfds":
            raise FileNotFoundError(
                f"No prepared tfds '{TFDS_NAME}' in {', '.join(dirs)}. Pass download=True to let tfds download "
                "and prepare it (Google Drive links, ~1.4 GB; they often fail on Colab), point data_dir= at an "
                "existing tensorflow_datasets folder, or use another source.\n" + how_to_get_celeba())
    if source == "kaggle":
        bases = ([root] if root else []) + kaggle_cache_dirs() + ["/kaggle/input/celeba-dataset"]
        kinds = ("folder",)
    else:
        bases = [root] if root else default_roots()
        kinds = ("folder", "zip") if source == "auto" else (source,)
    for kind in kinds:
        for base in bases:
            if kind == "folder":
                folder = _find_folder(base, accept_base=base == root)
                if folder:
                    parent = os.path.dirname(folder)
                    return CelebASource("folder", folder, _find_partition(
                        folder, parent, os.path.dirname(parent), base))
                searched.append(f"an {FOLDER_NAME}/ folder of .jpg files in {base}")
            else:
                zpath = _find_zip(base)
                if zpath:
                    inside = _check_zip(zpath)
                    return CelebASource("zip", zpath, _find_partition(os.path.dirname(zpath), base) or inside)
                searched.append(f"{' or '.join(ZIP_NAMES)} in {base}")
    if root and os.path.isdir(root) and not os.listdir(root):
        searched.append(f"({root} is an empty folder)")
    raise FileNotFoundError(how_to_get_celeba(searched))


# --------------------------------------------------------------------------------------- listing files
def read_partition(spec: str) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` (``000001.jpg 0``) or ``.csv`` (``image_id,partition`` header)."""
    if "::" in spec:
        zpath, member = spec.split("::", 1)
        with zipfile.ZipFile(zpath) as zf:
            text = zf.read(member).decode("utf-8", "replace")
    else:
        with open(spec, encoding="utf-8", errors="replace") as f:
            text = f.read()
    out = {}
    for row in csv.reader(io.StringIO(text.replace(" ", ",").replace("\t", ","))):
        row = [c for c in row if c]
        if len(row) < 2 or not row[1].strip().isdigit():
            continue  # header or blank line
        out[row[0].strip()] = int(row[1])
    if not out or set(out.values()) - {0, 1, 2}:
        raise ValueError(f"{spec} is not a CelebA partition file (lines like '000001.jpg 0', ids 0/1/2).")
    return out


def _select_split(names: list[str], partition: dict[str, int] | None, split: str, report: SkipReport,
                  where: str) -> list[str]:
    if split == "all":
        return names
    if partition is None:
        if split == "train":
            log.warning("CelebA (%s): no list_eval_partition file found, so split='train' uses all %d images. "
                        "Put list_eval_partition.txt next to the images for the official split.", where,
                        len(names))
            return names
        raise FileNotFoundError(
            f"split={split!r} needs CelebA's partition file list_eval_partition.txt (or Kaggle's .csv) next to "
            f"{where}; download it from the CelebA page (folder Eval/) or use split='train' / 'all'.")
    by_base = {os.path.basename(n): n for n in names}
    wanted = sorted(k for k, v in partition.items() if v == SPLITS[split])
    report.missing = sum(1 for k in wanted if k not in by_base)
    if report.missing:
        log.warning("CelebA (%s): %d images of split %r listed in the partition file are missing "
                    "(incomplete download?).", where, report.missing, split)
    return [by_base[k] for k in wanted if k in by_base]


def list_images(src: CelebASource, split: str, report: SkipReport) -> list[str]:
    """Sorted image paths (folder) or member names (zip) of ``split``; non-JPEG names go to ``report``."""
    if src.kind == "folder":
        with os.scandir(src.path) as it:
            entries = sorted((e.name for e in it if e.is_file()))
        names = [os.path.join(src.path, n) for n in entries if n.lower().endswith(IMAGE_EXTENSIONS)]
        others = [os.path.join(src.path, n) for n in entries if not n.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        with zipfile.ZipFile(src.path) as zf:
            names, others = _zip_image_members(zf)
        names.sort()
    for n in others:
        report.add(n, "not a .jpg file")
    if others:
        log.warning("CelebA (%s): skipped %d file(s) that are not .jpg images, e.g. %s.", src.path,
                    len(others), os.path.basename(others[0]))
    if not names:
        raise FileNotFoundError(f"No .jpg images in {src.path}.\n" + how_to_get_celeba())
    partition = read_partition(src.partition) if src.partition else None
    names = _select_split(names, partition, split, report, src.path)
    if not names:
        raise ValueError(f"Split {split!r} of {src.path} is empty: the partition file {src.partition} names "
                         "none of its images. Is the partition file from another dataset?")
    return names


# ------------------------------------------------------------------------------------------ reading bytes
_ZIPS: dict[str, zipfile.ZipFile] = {}
_ZIPS_LOCK = threading.Lock()


def _open_zip(path: str) -> zipfile.ZipFile:
    # One ZipFile per process, shared by tf.data's threads: CPython's ZipFile serialises reads of its shared
    # file handle, so concurrent member reads are safe.
    with _ZIPS_LOCK:
        if path not in _ZIPS:
            _ZIPS[path] = zipfile.ZipFile(path)
        return _ZIPS[path]


def _zip_reader(path: str, report: SkipReport):
    def read(name):
        name = name.decode()
        try:
            return _open_zip(path).read(name)
        except Exception as e:  # noqa: BLE001 -- a damaged member must not end the epoch
            report.add(name, f"unreadable zip member: {type(e).__name__}: {e}")
            return b""
    return read


def _bytes_ok(data: bytes) -> bool:
    """The byte checks of the pipeline, in Python: a JPEG header and an end-of-image marker near the end."""
    return data[:3] == _JPEG_SOI and b"\xff\xd9" in data[-32:]


def _probe(src: CelebASource, names: list[str]) -> None:
    """Fail fast, with a clear message, when the files are JPEGs of the wrong size (not CelebA's aligned
    images) or when none of the first files would pass the pipeline's checks. The pipeline skips bad files,
    so a set with no good file at all would otherwise loop forever looking for one."""
    from PIL import Image

    zf = _open_zip(src.path) if src.kind == "zip" else None
    for name in names[:20]:
        try:
            if zf:
                data = zf.read(name)
            else:
                with open(name, "rb") as f:
                    data = f.read()
            if not _bytes_ok(data):
                continue
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 -- a bad file here is skipped later; look at the next one
            continue
        if (h, w) != (IMAGE_HEIGHT, IMAGE_WIDTH):
            raise ValueError(f"{name} is {w}x{h} pixels; CelebA's aligned images are {IMAGE_WIDTH}x{IMAGE_HEIGHT}"
                             f" (img_align_celeba, not the in-the-wild or HQ sets). Check root=.")
        return
    raise ValueError(f"None of the first {min(20, len(names))} images in {src.path} is a complete JPEG: "
                     "the download or unpacking is probably broken; download it again.")


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
        _probe(src, names)
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
    version_dir = _prepared_tfds(data_dir)
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


# ------------------------------------------------------------------------------------ fake CelebA for tests
def fake_celeba_image(index: int) -> np.ndarray:
    """The test pattern of fake image ``index``: uint8 ``(218, 178, 3)``.

    Red ramps down the rows of the crop window (0 at row ``CROP[0]``, 255 at its last row, flat outside it),
    green ramps across the columns (0 at column 0, 255 at column 177), blue is a per-image code
    ``40 + 4 * (index % 48)``. After cropping and resizing, red and green tell exactly which rows and columns
    were kept, and blue tells which file an output image came from.
    """
    top, _, ch, _ = CROP
    rows = np.clip((np.arange(IMAGE_HEIGHT) - top) / (ch - 1), 0.0, 1.0) * 255.0
    cols = np.arange(IMAGE_WIDTH) / (IMAGE_WIDTH - 1) * 255.0
    img = np.empty((IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.float64)
    img[..., 0] = rows[:, None]
    img[..., 1] = cols[None, :]
    img[..., 2] = 40 + 4 * (index % 48)
    return np.round(img).astype(np.uint8)


def fake_code(images) -> np.ndarray:
    """Recover the fake image index (mod 48) from output images in [-1, 1] via the blue channel."""
    blue = (np.asarray(images)[..., 2].mean(axis=(-1, -2)) + 1.0) * 127.5
    return np.round((blue - 40) / 4).astype(int)


def write_fake_celeba(root, n: int = 24, layout: str = "folder", split_sizes=None, extra_files=None,
                      seed: int = 0, quality: int = 95, annotations: bool = False, image_fn=None,
                      subsampling: int = 0) -> dict:
    """Write ``n`` fake CelebA images (:func:`fake_celeba_image`) in the official format; nothing is downloaded.

    ``layout``: ``"folder"`` (``root/img_align_celeba/000001.jpg`` + ``root/list_eval_partition.txt``),
    ``"zip"`` (``root/img_align_celeba.zip`` + the partition file) or ``"kaggle"``
    (``root/img_align_celeba/img_align_celeba/...`` + ``root/list_eval_partition.csv``).
    ``split_sizes``: (train, val, test), default about 2/3, 1/6, 1/6; ids are assigned in a shuffled order so a
    reader that guessed the split from file order would fail. ``extra_files``: ``{name: bytes}`` written next
    to the images (corrupt files for tests). ``annotations``: also write the attribute, landmark and identity
    files tfds' ``celeb_a`` builder reads. ``image_fn``: index -> uint8 ``(218, 178, 3)`` array, instead of
    the test pattern (the benchmark uses textured pictures); ``quality``, ``subsampling``: JPEG settings (the
    default 4:4:4 keeps the colour ramps exact; 2 is the usual 4:2:0). Returns a dict of the written paths and
    ``"split"``: {name: id}.
    """
    from PIL import Image

    if layout not in ("folder", "zip", "kaggle"):
        raise ValueError(f"layout must be 'folder', 'zip' or 'kaggle', got {layout!r}.")
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    if split_sizes is None:
        n_val = max(1, n // 6)
        split_sizes = (n - 2 * n_val, n_val, n_val)
    if sum(split_sizes) != n:
        raise ValueError(f"split_sizes {split_sizes} must add up to n={n}.")
    ids = np.repeat([0, 1, 2], split_sizes)
    np.random.default_rng(seed).shuffle(ids)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    blobs = {}
    for i, name in enumerate(names):
        buf = io.BytesIO()
        Image.fromarray((image_fn or fake_celeba_image)(i)).save(buf, format="JPEG", quality=quality,
                                                                 subsampling=subsampling)
        blobs[name] = buf.getvalue()
    blobs.update(extra_files or {})
    out = {"split": dict(zip(names, (int(v) for v in ids)))}
    if layout == "zip":
        out["zip"] = os.path.join(root, "img_align_celeba.zip")
        with zipfile.ZipFile(out["zip"], "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in blobs.items():
                zf.writestr(f"{FOLDER_NAME}/{name}", data)
    else:
        folder = os.path.join(root, FOLDER_NAME, FOLDER_NAME) if layout == "kaggle" else os.path.join(root, FOLDER_NAME)
        os.makedirs(folder, exist_ok=True)
        for name, data in blobs.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        out["folder"] = folder
    if layout == "kaggle":
        out["partition"] = os.path.join(root, "list_eval_partition.csv")
        lines = ["image_id,partition"] + [f"{k},{v}" for k, v in out["split"].items()]
    else:
        out["partition"] = os.path.join(root, "list_eval_partition.txt")
        lines = [f"{k} {v}" for k, v in out["split"].items()]
    with open(out["partition"], "w") as f:
        f.write("\n".join(lines) + "\n")
    if annotations:
        out.update(_write_annotations(root, names))
    return out


def _write_annotations(root: str, names: list[str]) -> dict:
    """The three annotation files of the official release, in its text formats (values are dummies)."""
    attrs = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
             "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
             "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
             "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
             "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
    marks = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
             "rightmouth_y").split()
    paths = {k: os.path.join(root, f) for k, f in (("attributes", "list_attr_celeba.txt"),
                                                    ("landmarks", "list_landmarks_align_celeba.txt"),
                                                    ("identity", "identity_CelebA.txt"))}
    with open(paths["attributes"], "w") as f:
        f.write(f"{len(names)}\n{' '.join(attrs)}\n")
        f.writelines(f"{n} {' '.join(['-1'] * len(attrs))}\n" for n in names)
    with open(paths["landmarks"], "w") as f:
        f.write(f"{len(names)}\n{' '.join(marks)}\n")
        f.writelines(f"{n} 69 111 108 111 88 134 72 152 105 152\n" for n in names)
    with open(paths["identity"], "w") as f:
        f.writelines(f"{n} {i + 1}\n" for i, n in enumerate(names))
    return paths
