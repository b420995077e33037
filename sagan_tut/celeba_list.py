"""The files of a CelebA split, without TensorFlow: the partition file, the image list, a quick probe of the
first files, and the fingerprint that names the data in cache keys.

A source comes from :func:`sagan_tut.celeba_files.find_celeba`; :mod:`sagan_tut.celeba` turns the list into a
``tf.data`` pipeline.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
import zipfile

from .celeba_files import (_JPEG_SOI, IMAGE_EXTENSIONS, IMAGE_HEIGHT, IMAGE_WIDTH, PARTITION_NAMES, SPLITS,
                           CelebASource, SkipReport, how_to_get_celeba, log, zip_image_members)


def _partition_text(spec: str) -> str:
    if "::" in spec:
        zpath, member = spec.split("::", 1)
        with zipfile.ZipFile(zpath) as zf:
            return zf.read(member).decode("utf-8", "replace")
    with open(spec, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_partition(spec: str) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` (``000001.jpg 0``) or ``.csv`` (``image_id,partition`` header)."""
    out = {}
    for row in csv.reader(io.StringIO(_partition_text(spec).replace(" ", ",").replace("\t", ","))):
        row = [c for c in row if c]
        if len(row) < 2 or not row[1].strip().isdigit():
            continue  # header or blank line
        out[row[0].strip()] = int(row[1])
    if not out or set(out.values()) - {0, 1, 2}:
        raise ValueError(f"{spec} is not a CelebA partition file (lines like '000001.jpg 0', ids 0/1/2).")
    return out


def _select_split(names: list[str], src: CelebASource, split: str, report: SkipReport) -> list[str]:
    if split == "all":
        return names
    if src.partition is None:
        # No silent fallback to every image: a "train" that is really train+val+test would make every val/test
        # number meaningless, and nothing would say so.
        where = "".join(f"\n  - {d}" for d in src.searched) or f"\n  - next to {src.path}"
        raise FileNotFoundError(
            f"split={split!r} needs CelebA's partition file {PARTITION_NAMES[0]} (Kaggle: {PARTITION_NAMES[1]}) "
            f"for the images in {src.path}; it was looked for in these folders and in their Eval/:{where}\n"
            f"Download it from the CelebA page (folder Eval/) into one of these folders, or pass split='all' to "
            f"use every image.")
    partition = read_partition(src.partition)
    by_base = {os.path.basename(n): n for n in names}
    wanted = sorted(k for k, v in partition.items() if v == SPLITS[split])
    report.missing = sum(1 for k in wanted if k not in by_base)
    if report.missing:
        log.warning("CelebA (%s): %d images of split %r listed in the partition file are missing "
                    "(incomplete download?).", src.path, report.missing, split)
    return [by_base[k] for k in wanted if k in by_base]


def list_images(src: CelebASource, split: str, report: SkipReport) -> list[str]:
    """Sorted image paths (folder) or member names (zip) of ``split``; non-JPEG names go to ``report``.
    The first files are probed (:func:`probe`) so that wrong images fail here, with a clear message."""
    if src.kind == "folder":
        with os.scandir(src.path) as it:
            entries = sorted((e.name for e in it if e.is_file()))
        names = [os.path.join(src.path, n) for n in entries if n.lower().endswith(IMAGE_EXTENSIONS)]
        others = [os.path.join(src.path, n) for n in entries if not n.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        with zipfile.ZipFile(src.path) as zf:
            names, others = zip_image_members(zf)
        names.sort()
    for n in others:
        report.add(n, "not a .jpg file")
    if others:
        log.warning("CelebA (%s): skipped %d file(s) that are not .jpg images, e.g. %s.", src.path,
                    len(others), os.path.basename(others[0]))
    if not names:
        raise FileNotFoundError(f"No .jpg images in {src.path}.\n" + how_to_get_celeba())
    probe(src, names)  # wrong images (another CelebA set, a broken unzip) are the more basic error
    names = _select_split(names, src, split, report)
    if not names:
        raise ValueError(f"Split {split!r} of {src.path} is empty: the partition file {src.partition} names "
                         "none of its images. Is the partition file from another dataset?")
    return names


def fingerprint(src: CelebASource) -> dict:
    """The data's identity for cache keys: kind, resolved path, and a digest of the file list.

    Folder: every JPEG's name, size and modification time; zip: every member's name, size and CRC (read from
    the zip's directory, nothing is decompressed); tfds: the prepared files' names, sizes and times. The
    partition file's content counts too. Costs one ``stat`` per image (a fraction of a second for CelebA on a
    local disk), against minutes for the statistics it protects.
    """
    digest, count, total = hashlib.sha1(), 0, 0

    def add(name, size, tag):
        nonlocal count, total
        digest.update(f"{name}\0{size}\0{tag}\n".encode())
        count, total = count + 1, total + int(size)

    if src.kind == "folder":
        with os.scandir(src.path) as it:
            entries = sorted((e for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)),
                             key=lambda e: e.name)
        for e in entries:
            st = e.stat()
            add(e.name, st.st_size, st.st_mtime_ns)
    elif src.kind == "zip":
        with zipfile.ZipFile(src.path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            for name in sorted(zip_image_members(zf)[0]):
                add(name, infos[name].file_size, infos[name].CRC)
    else:
        for path in sorted(os.listdir(src.path)):
            st = os.stat(os.path.join(src.path, path))
            add(path, st.st_size, st.st_mtime_ns)
    partition = None
    if src.partition:
        partition = hashlib.sha1(_partition_text(src.partition).encode()).hexdigest()[:16]
    return dict(kind=src.kind, path=os.path.realpath(src.path), files=count, bytes=total,
                digest=digest.hexdigest()[:16], partition=partition)


# ------------------------------------------------------------------------------------------ reading bytes
_ZIPS: dict[str, tuple[tuple, zipfile.ZipFile]] = {}
_ZIPS_LOCK = threading.Lock()


def open_zip(path: str) -> zipfile.ZipFile:
    """One ZipFile per zip and process, shared by tf.data's threads: CPython's ZipFile serialises reads of its
    shared file handle, so concurrent member reads are safe. A zip rewritten since it was opened (same path, new
    size or time) is opened again: the old handle's directory would point into the new file's bytes."""
    st = os.stat(path)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    with _ZIPS_LOCK:
        if path not in _ZIPS or _ZIPS[path][0] != stamp:
            _ZIPS[path] = (stamp, zipfile.ZipFile(path))
        return _ZIPS[path][1]


def bytes_ok(data: bytes) -> bool:
    """The byte checks of the pipeline, in Python: a JPEG header and an end-of-image marker near the end."""
    return data[:3] == _JPEG_SOI and b"\xff\xd9" in data[-32:]


def probe(src: CelebASource, names: list[str]) -> None:
    """Fail fast, with a clear message, when the files are JPEGs of the wrong size (not CelebA's aligned
    images) or when none of the first files would pass the pipeline's checks. The pipeline skips bad files,
    so a set with no good file at all would otherwise loop forever looking for one."""
    from PIL import Image

    zf = open_zip(src.path) if src.kind == "zip" else None
    for name in names[:20]:
        try:
            if zf:
                data = zf.read(name)
            else:
                with open(name, "rb") as f:
                    data = f.read()
            if not bytes_ok(data):
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

