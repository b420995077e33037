"""Finding CelebA in every layout it ships in, without TensorFlow, and the skipped-files summary.

The Google Drive folder (``CelebA/Img/img_align_celeba.zip`` or ``.../img_align_celeba/``,
``CelebA/Eval/list_eval_partition.txt``, ``CelebA/Anno/...``) is written by the fake-CelebA writer and found
from each place a user may point ``root`` at.
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from sagan_tut.celeba_fake import write_fake_celeba
from sagan_tut.celeba_files import SkipReport, find_celeba
from sagan_tut.celeba_list import list_images

N, SIZES = 12, (7, 3, 2)  # uneven split sizes, so a wrong split cannot pass by accident


def _expected(split_map, split_id):
    return sorted(name for name, s in split_map.items() if s == split_id)


def test_finding_and_listing_modules_do_not_start_tensorflow():
    code = ("import sys, sagan_tut.celeba_files, sagan_tut.celeba_list, sagan_tut.celeba_fake; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """Both Drive variants: the zip as downloaded and the unzipped folder."""
    base = tmp_path_factory.mktemp("drive")
    return {layout: (str(base / layout / "CelebA"), write_fake_celeba(base / layout / "CelebA", n=N, layout=layout,
                                                                       split_sizes=SIZES))
            for layout in ("drive", "drive_zip")}


def test_drive_writer_writes_the_official_tree(drive):
    top, out = drive["drive_zip"]
    assert sorted(os.listdir(top)) == ["Anno", "Eval", "Img"]
    assert os.listdir(os.path.join(top, "Img")) == ["img_align_celeba.zip"]
    assert os.listdir(os.path.join(top, "Eval")) == ["list_eval_partition.txt"]
    assert "list_attr_celeba.txt" in os.listdir(os.path.join(top, "Anno"))
    top, out = drive["drive"]
    assert out["folder"] == os.path.join(top, "Img", "img_align_celeba") and len(os.listdir(out["folder"])) == N


@pytest.mark.parametrize("layout,entry", [("drive", "top"), ("drive", "Img"), ("drive", "images"),
                                          ("drive_zip", "top"), ("drive_zip", "Img"), ("drive_zip", "images")])
def test_drive_layout_found_from_every_entry_point(drive, layout, entry):
    top, out = drive[layout]
    root = {"top": top, "Img": os.path.join(top, "Img"), "images": out.get("zip", out.get("folder"))}[entry]
    src = find_celeba(root)
    assert src.kind == ("zip" if layout == "drive_zip" else "folder")
    assert src.path == out.get("zip", out.get("folder"))
    assert src.partition == os.path.join(top, "Eval", "list_eval_partition.txt")
    for split, split_id in (("train", 0), ("val", 1), ("test", 2)):
        names = list_images(src, split, SkipReport(src.path))
        assert sorted(os.path.basename(n) for n in names) == _expected(out["split"], split_id)
        assert len(names) == SIZES[split_id]
    assert len(list_images(src, "all", SkipReport(src.path))) == N


@pytest.mark.parametrize("layout", ["drive", "drive_zip"])
def test_drive_layout_without_its_partition_file_is_an_error(tmp_path, layout):
    top = tmp_path / "CelebA"
    out = write_fake_celeba(top, n=N, layout=layout, split_sizes=SIZES)
    os.remove(out["partition"])
    for root in (top, top / "Img", out.get("zip", out.get("folder"))):
        src = find_celeba(root)
        assert src.partition is None
        with pytest.raises(FileNotFoundError, match="list_eval_partition.txt") as err:
            list_images(src, "train", SkipReport(src.path))
        assert f"- {top}\n" in str(err.value)  # the Drive folder, whose Eval/ was searched, is named
        assert len(list_images(src, "all", SkipReport(src.path))) == N  # "all" needs no partition


def test_drive_zip_through_the_pipeline(drive):
    from sagan_tut.celeba import fake_code, load_celeba

    top, out = drive["drive_zip"]
    ds = load_celeba(32, 2, split="val", shuffle=False, repeat=False, drop_remainder=False, root=out["zip"])
    codes = sorted(fake_code(np.concatenate([b.numpy() for b in ds])))
    assert codes == sorted(int(name[:6]) - 1 for name in _expected(out["split"], 1))


# ----------------------------------------------------------------------------------------- SkipReport
def test_summary_is_empty_when_nothing_was_skipped():
    assert SkipReport("x").summary() == ""


def test_summary_counts_by_reason_and_names_the_first_paths():
    report = SkipReport("/data/celeba")
    for i in range(4):
        report.add(f"/data/celeba/t{i}.jpg", "truncated JPEG (no end-of-image marker)")
    report.add("/data/celeba/notes.txt", "not a .jpg file")
    report.add("/data/celeba/t0.jpg", "another reason")  # a file is counted once, with its first reason
    report.missing = 3
    text = report.summary(max_paths=2)
    lines = text.splitlines()
    assert lines[0] == ("CelebA (/data/celeba): skipped 5 file(s): 4 truncated JPEG (no end-of-image marker), "
                        "1 not a .jpg file.")
    assert lines[1:3] == ["  /data/celeba/t0.jpg (truncated JPEG (no end-of-image marker))",
                          "  /data/celeba/t1.jpg (truncated JPEG (no end-of-image marker))"]
    assert lines[3] == "  ... and 3 more"
    assert "3 image(s) named in the partition file are missing" in lines[4] and len(lines) == 5
    assert len(report.summary(max_paths=10).splitlines()) == 1 + 5 + 1  # every path, no "... more"


def test_summary_with_only_missing_images():
    report = SkipReport("z")
    report.missing = 2
    assert "skipped 0 file(s)." in report.summary() and "2 image(s)" in report.summary()


def test_first_skip_warning_points_at_the_summary(caplog):
    report = SkipReport("/data/celeba")
    with caplog.at_level(logging.WARNING, logger="sagan_tut.data"):
        report.record(b"/data/celeba/a.jpg", b"not a JPEG (bad header)")
        report.record(b"/data/celeba/b.jpg", b"not a JPEG (bad header)")
    assert len(caplog.records) == 1  # one warning, later skips only counted
    assert "skip_report.summary()" in caplog.text and "silently" not in caplog.text
    assert report.count == 2


def test_summary_of_a_real_pipeline(tmp_path):
    from sagan_tut.celeba import load_celeba

    good = open(write_fake_celeba(tmp_path / "a", n=3)["folder"] + "/000001.jpg", "rb").read()
    write_fake_celeba(tmp_path / "b", n=6, extra_files={"000007.jpg": good[: len(good) // 2],
                                                        "000008.jpg": b"not a jpeg at all"})
    ds = load_celeba(32, 2, split="all", shuffle=False, repeat=False, root=tmp_path / "b")
    assert sum(b.shape[0] for b in ds) == 6
    text = ds.skip_report.summary()
    assert text.startswith(f"CelebA ({ds.source.path}): skipped 2 file(s): ")
    assert "1 truncated JPEG" in text and "1 not a JPEG (bad header)" in text
    assert "000007.jpg" in text and "000008.jpg" in text


def test_a_zip_rewritten_in_place_is_read_anew(tmp_path):
    """The process-wide zip handle must not outlive the file: a rewritten zip at the same path gives its new
    images, not bytes read through the old zip's directory."""
    from sagan_tut.celeba import fake_code, load_celeba

    kw = dict(resolution=32, batch_size=4, split="all", shuffle=False, repeat=False, root=tmp_path)
    write_fake_celeba(tmp_path, n=8, layout="zip")
    first = np.concatenate([b.numpy() for b in load_celeba(**kw)])
    write_fake_celeba(tmp_path, n=8, layout="zip", image_fn=lambda i: _tinted(i))
    second = np.concatenate([b.numpy() for b in load_celeba(**kw)])
    assert list(fake_code(second)) == list(range(8))
    assert second[..., 0].mean() > first[..., 0].mean() + 0.3


def _tinted(i):
    from sagan_tut.celeba_fake import fake_celeba_image

    img = fake_celeba_image(i).astype(np.int16)
    img[..., 0] = np.clip(img[..., 0] + 60, 0, 255)
    return img.astype(np.uint8)
