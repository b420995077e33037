"""Finding CelebA on disk, without TensorFlow: where the images are, which ones form a split, which were skipped.

**Layouts found** (``root`` may name any of the folders or the zip itself):

* the official files as one folder: ``img_align_celeba/000001.jpg ...`` or ``img_align_celeba.zip`` (read in
  place, never unpacked), with ``list_eval_partition.txt`` next to them or in ``Eval/``;
* the official Google Drive folder: ``CelebA/Img/img_align_celeba.zip`` (or the unzipped
  ``CelebA/Img/img_align_celeba/``), ``CelebA/Eval/list_eval_partition.txt``, ``CelebA/Anno/...``; found from
  ``CelebA/``, from ``CelebA/Img/`` and from the zip, since the partition file is looked up in the sibling
  ``Eval/`` as well;
* the Kaggle mirror: ``img_align_celeba/img_align_celeba/...`` with ``list_eval_partition.csv``;
* a prepared tfds ``celeb_a`` (``<data_dir>/celeb_a/<version>/dataset_info.json``).

``source="auto"`` tries a prepared tfds first, then a folder, then a zip, in ``root`` or else in
:func:`default_roots`. The official split needs the partition file: asking for ``train`` / ``val`` / ``test``
without one is an error naming the file and the folders searched (``split="all"`` takes every image).

Everything here runs before TensorFlow starts, so the command line can check ``--data-root`` in a second;
the ``tf.data`` pipeline is :mod:`sagan_tut.celeba`.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import logging
import os
import re
import threading
import zipfile

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
IMAGE_SUBDIRS = ("", "Img")  # Google Drive's CelebA/ keeps the images in Img/
PARTITION_SUBDIRS = ("", "Eval", "eval")  # ... and the partition file in Eval/
KAGGLE_HANDLE = "jessicali9530/celeba-dataset"
TFDS_NAME = "celeb_a"
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
_JPEG_SOI = b"\xff\xd8\xff"


# ------------------------------------------------------------------------------------------ skipped files
class SkipReport:
    """Files a CelebA pipeline skipped: ``skipped`` maps a file name to the reason; ``count`` is its length.

    A file is counted once however many epochs meet it. The first skip found while reading logs one warning;
    later ones are only counted, and :meth:`summary` lists them (the command line prints it at the end).
    Files skipped while listing a folder or zip (names that are not JPEGs) are reported together in one line
    when the dataset is built.
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
            log.warning("CelebA (%s): skipping unreadable image %s (%s). Further skips are only counted: "
                        "dataset.skip_report.summary() lists them all (the sagan-tut command line prints it "
                        "at the end).", self.where, name, reason)
        return False

    def summary(self, max_paths: int = 5) -> str:
        """``""`` when nothing was skipped or missing; else the count by reason, the first ``max_paths``
        skipped files and the number of partition-file images that are missing."""
        with self._lock:
            skipped = dict(self.skipped)
        if not skipped and not self.missing:
            return ""
        lines = [f"CelebA ({self.where}): skipped {len(skipped)} file(s)"]
        if skipped:
            by_reason = collections.Counter(skipped.values()).most_common()
            lines[0] += ": " + ", ".join(f"{k} {reason}" for reason, k in by_reason)
            shown = list(skipped.items())[:max(0, int(max_paths))]
            lines += [f"  {path} ({reason})" for path, reason in shown]
            if len(skipped) > len(shown):
                lines.append(f"  ... and {len(skipped) - len(shown)} more")
        lines[0] += "."
        if self.missing:
            lines.append(f"  {self.missing} image(s) named in the partition file are missing (incomplete "
                         "download or unpacking?).")
        return "\n".join(lines)

    def __repr__(self):
        return f"SkipReport({self.where!r}, count={self.count}, missing={self.missing})"


# ---------------------------------------------------------------------------------------- finding CelebA
@dataclasses.dataclass
class CelebASource:
    """Where the images are. ``kind`` is ``"tfds"`` (``path`` = a prepared version directory),
    ``"folder"`` (``path`` = the folder holding the JPEGs) or ``"zip"`` (``path`` = the zip file).
    ``partition`` is the partition file (for a zip possibly ``"<zip path>::<member>"``) or ``None``;
    ``searched`` the folders where it was looked for (for the error when a split needs it)."""

    kind: str
    path: str
    partition: str | None = None
    searched: tuple = ()


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
    return ["data/celeba", "data/CelebA", "data", "celeba", "CelebA", os.path.expanduser("~/data/celeba"),
            "/content/drive/MyDrive/celeba", "/content/drive/MyDrive/CelebA", "/content/data/celeba",
            *kaggle_cache_dirs(), "/kaggle/input/celeba-dataset"]


def prepared_tfds(data_dir: str) -> str | None:
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
    """Kaggle's doubled ``img_align_celeba/img_align_celeba``, ``img_align_celeba`` (in ``base`` or in its
    ``Img/``, the Drive layout), or (only for a ``root`` the user named, never for a guessed place like
    ``./data``) ``base`` itself."""
    cands = [os.path.join(base, sub, *[FOLDER_NAME] * k) for sub in IMAGE_SUBDIRS for k in (2, 1)]
    for cand in cands + ([base] if accept_base else []):
        if _has_images(cand):
            return os.path.normpath(cand)
    return None


def _find_zip(base: str) -> str | None:
    if os.path.isfile(base) and base.lower().endswith(".zip"):
        return base
    for sub in IMAGE_SUBDIRS:
        for name in ZIP_NAMES:
            if os.path.isfile(os.path.join(base, sub, name)):
                return os.path.normpath(os.path.join(base, sub, name))
    return None


def _partition_near(places) -> tuple[str | None, tuple]:
    """The first partition file in ``place``, ``place/Eval`` or ``place/eval`` of ``places``; and the places
    searched, for the error message."""
    searched = []
    for place in places:
        place = os.path.abspath(place)
        if place in searched:
            continue
        searched.append(place)
        for sub in PARTITION_SUBDIRS:
            for name in PARTITION_NAMES:
                if os.path.isfile(os.path.join(place, sub, name)):
                    return os.path.join(place, sub, name), tuple(searched)
    return None, tuple(searched)


def zip_image_members(zf: zipfile.ZipFile) -> tuple[list[str], list[str]]:
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
            images, _ = zip_image_members(zf)
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
        "       ./data/celeba/, then load_dataset('celeba', root='data/celeba'); the Google Drive folder\n"
        "       CelebA/ (Img/, Eval/, Anno/) works as it is: root='path/to/CelebA'\n"
        "  3. TensorFlow Datasets (Google Drive links, often over quota on Colab):\n"
        "       load_dataset('celeba', source='tfds', download=True, data_dir='~/tensorflow_datasets')\n"
        "     or: python -c \"import tensorflow_datasets as tfds; tfds.builder('celeb_a').download_and_prepare()\"\n"
        "  No download possible? load_dataset('faces', ...) is the procedural offline dataset."
    )


def find_celeba(root=None, source: str = "auto", data_dir=None) -> CelebASource:
    """Locate CelebA without touching the network (see the module docstring for the layouts and the order)."""
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
            version_dir = prepared_tfds(d)
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
                    parent = os.path.dirname(os.path.abspath(folder))
                    # next to the images, beside their folder, one more up (Drive: CelebA/Img/img_align_celeba
                    # with CelebA/Eval), and in root
                    partition, where = _partition_near([folder, parent, os.path.dirname(parent), base])
                    return CelebASource("folder", folder, partition, where)
                searched.append(f"an {FOLDER_NAME}/ folder of .jpg files in {base} or {os.path.join(base, 'Img')}")
            else:
                zpath = _find_zip(base)
                if zpath:
                    inside = _check_zip(zpath)
                    zdir = os.path.dirname(os.path.abspath(zpath))
                    # beside the zip, then its parent (Drive: CelebA/Img/img_align_celeba.zip with CelebA/Eval)
                    partition, where = _partition_near([zdir, os.path.dirname(zdir), base])
                    return CelebASource("zip", zpath, partition or inside, where)
                searched.append(f"{' or '.join(ZIP_NAMES)} in {base} or {os.path.join(base, 'Img')}")
    if root and os.path.isdir(root) and not os.listdir(root):
        searched.append(f"({root} is an empty folder)")
    raise FileNotFoundError(how_to_get_celeba(searched))
