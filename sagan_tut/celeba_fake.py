"""Fake CelebA for tests and benchmarks: images with a known pattern, written in every layout the loader reads.

Nothing is downloaded; the files follow the official formats (JPEGs of 178 x 218, the partition file, the
annotation files), so the finding, splitting and decoding code is tested on what the real download holds.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from .celeba_files import CROP, FOLDER_NAME, IMAGE_HEIGHT, IMAGE_WIDTH

LAYOUTS = ("folder", "zip", "kaggle", "drive", "drive_zip")


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
    ``"zip"`` (``root/img_align_celeba.zip`` + the partition file), ``"kaggle"``
    (``root/img_align_celeba/img_align_celeba/...`` + ``root/list_eval_partition.csv``), or the Google Drive
    folder with ``root`` as its ``CelebA/``: ``"drive"`` (``root/Img/img_align_celeba/...``) or ``"drive_zip"``
    (``root/Img/img_align_celeba.zip``), both with ``root/Eval/list_eval_partition.txt`` and the annotation
    files in ``root/Anno/``.
    ``split_sizes``: (train, val, test), default about 2/3, 1/6, 1/6; ids are assigned in a shuffled order so a
    reader that guessed the split from file order would fail. ``extra_files``: ``{name: bytes}`` written next
    to the images (corrupt files for tests). ``annotations``: also write the attribute, landmark and identity
    files tfds' ``celeb_a`` builder reads. ``image_fn``: index -> uint8 ``(218, 178, 3)`` array, instead of
    the test pattern (the benchmark uses textured pictures); ``quality``, ``subsampling``: JPEG settings (the
    default 4:4:4 keeps the colour ramps exact; 2 is the usual 4:2:0). Returns a dict of the written paths and
    ``"split"``: {name: id}.
    """
    from PIL import Image

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    root = os.fspath(root)
    drive = layout.startswith("drive")
    img_dir, eval_dir = (os.path.join(root, "Img"), os.path.join(root, "Eval")) if drive else (root, root)
    for d in (img_dir, eval_dir):
        os.makedirs(d, exist_ok=True)
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
    if layout in ("zip", "drive_zip"):
        out["zip"] = os.path.join(img_dir, "img_align_celeba.zip")
        with zipfile.ZipFile(out["zip"], "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in blobs.items():
                zf.writestr(f"{FOLDER_NAME}/{name}", data)
    else:
        folder = os.path.join(img_dir, FOLDER_NAME, *([FOLDER_NAME] if layout == "kaggle" else []))
        os.makedirs(folder, exist_ok=True)
        for name, data in blobs.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        out["folder"] = folder
    if layout == "kaggle":
        out["partition"] = os.path.join(root, "list_eval_partition.csv")
        lines = ["image_id,partition"] + [f"{k},{v}" for k, v in out["split"].items()]
    else:
        out["partition"] = os.path.join(eval_dir, "list_eval_partition.txt")
        lines = [f"{k} {v}" for k, v in out["split"].items()]
    with open(out["partition"], "w") as f:
        f.write("\n".join(lines) + "\n")
    if annotations or drive:  # the Drive folder always has its Anno/
        anno_dir = os.path.join(root, "Anno") if drive else root
        os.makedirs(anno_dir, exist_ok=True)
        out.update(_write_annotations(anno_dir, names))
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
