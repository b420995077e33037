"""The reference-statistics cache never serves one dataset's statistics for another.

Two fake CelebAs with different images at the same n (in two folders, or one after the other in the same
folder) must each get their own statistics; asking twice for the same data must hit the cache. Cache hits
are counted by calls into the extractor and checked by the cache file's modification time, never by timing.
"""
import hashlib
import os

import numpy as np
import pytest

from sagan_tut import evaluate
from sagan_tut.celeba_fake import fake_celeba_image, write_fake_celeba
from sagan_tut.metrics import data_identity, reference_stats


class CountingExtractor:
    """Mean colour and its spread per image: cheap, and different for differently coloured images."""

    name = "counting_test_extractor"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        x = np.asarray(images, np.float64)
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


def _reddish(i):
    img = fake_celeba_image(i).astype(np.int16)
    img[..., 0] = np.clip(img[..., 0] + 60, 0, 255)
    return img.astype(np.uint8)


N = 8


def _stats(tmp_path, ext, root, **kw):
    return reference_stats("celeba", 32, ext, n=N, cache_dir=tmp_path / "cache", batch_size=4, split="all",
                           root=root, **kw)


def _cache_files(tmp_path):
    return sorted((tmp_path / "cache").glob("*.npz"))


def test_two_celeba_folders_at_the_same_n_get_their_own_statistics(tmp_path):
    write_fake_celeba(tmp_path / "a", n=N)
    write_fake_celeba(tmp_path / "b", n=N, image_fn=_reddish)
    ext = CountingExtractor()
    first = _stats(tmp_path, ext, tmp_path / "a")
    calls_after_first = ext.calls
    assert calls_after_first == 2  # 8 images in batches of 4
    second = _stats(tmp_path, ext, tmp_path / "b")
    assert ext.calls == 2 * calls_after_first  # computed, not served from the first's entry
    assert second.mean[0] > first.mean[0] + 0.3  # and really the redder images' statistics
    assert len(_cache_files(tmp_path)) == 2
    assert second.meta["data"]["path"] == os.path.realpath(tmp_path / "b" / "img_align_celeba")
    assert second.meta["data"]["files"] == N

    # the same data again: a cache hit (no extractor call, the file is not rewritten), equal statistics
    mtimes = {p: p.stat().st_mtime_ns for p in _cache_files(tmp_path)}
    again = _stats(tmp_path, ext, tmp_path / "a")
    assert ext.calls == 2 * calls_after_first
    assert {p: p.stat().st_mtime_ns for p in _cache_files(tmp_path)} == mtimes
    np.testing.assert_array_equal(again.mean, first.mean)
    np.testing.assert_array_equal(again.cov, first.cov)


def test_replaced_files_in_the_same_folder_are_not_served_old_statistics(tmp_path):
    root = tmp_path / "celeba"
    write_fake_celeba(root, n=N, layout="zip")
    ext = CountingExtractor()
    first = _stats(tmp_path, ext, root)
    write_fake_celeba(root, n=N, layout="zip", image_fn=_reddish)  # same names, same n, same path
    second = _stats(tmp_path, ext, root)
    assert ext.calls == 4 and second.mean[0] > first.mean[0] + 0.3
    assert first.meta["data"]["digest"] != second.meta["data"]["digest"]


def test_the_folder_fingerprint_is_names_sizes_and_mtimes(tmp_path):
    out = write_fake_celeba(tmp_path, n=4)
    ident = data_identity("celeba", root=tmp_path)
    entries = sorted(os.scandir(out["folder"]), key=lambda e: e.name)
    digest = hashlib.sha1("".join(f"{e.name}\0{e.stat().st_size}\0{e.stat().st_mtime_ns}\n"
                                  for e in entries).encode()).hexdigest()[:16]
    assert ident["kind"] == "folder" and ident["files"] == 4 and ident["digest"] == digest
    assert ident["bytes"] == sum(e.stat().st_size for e in entries)
    # the partition file is part of the identity: another split of the same images is other data
    with open(out["partition"]) as f:
        assert ident["partition"] == hashlib.sha1(f.read().encode()).hexdigest()[:16]
    os.utime(entries[0].path, ns=(0, 0))
    assert data_identity("celeba", root=tmp_path)["digest"] != digest


def test_faces_identity_is_the_generators_code_and_hits_the_cache(tmp_path):
    import sagan_tut.faces

    with open(sagan_tut.faces.__file__, "rb") as f:
        expected = hashlib.sha1(f.read()).hexdigest()[:16]
    assert data_identity("faces") == {"kind": "faces", "generator": expected}
    ext = CountingExtractor()
    kw = dict(n=8, cache_dir=tmp_path, batch_size=4)
    first = reference_stats("faces", 32, ext, **kw)
    assert ext.calls == 2 and first.meta["data"] == {"kind": "faces", "generator": expected}
    again = reference_stats("faces", 32, ext, **kw)
    assert ext.calls == 2
    np.testing.assert_array_equal(again.mean, first.mean)


def test_a_changed_faces_generator_is_recomputed(tmp_path, monkeypatch):
    ext = CountingExtractor()
    reference_stats("faces", 32, ext, n=8, cache_dir=tmp_path, batch_size=4)
    monkeypatch.setattr(evaluate, "_faces_identity", lambda: {"kind": "faces", "generator": "edited"})
    stats = reference_stats("faces", 32, ext, n=8, cache_dir=tmp_path, batch_size=4)
    assert ext.calls == 4 and stats.meta["data"]["generator"] == "edited"
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_images_given_as_arrays_are_keyed_by_their_content(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    b = a.copy()
    b[..., 0] = 0.9
    ext = CountingExtractor()
    sa = reference_stats("mine", 16, ext, n=8, cache_dir=tmp_path, images=a)
    sb = reference_stats("mine", 16, ext, n=8, cache_dir=tmp_path, images=b)
    assert ext.calls == 2 and not np.allclose(sa.mean, sb.mean)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_array_equal(reference_stats("mine", 16, ext, n=8, cache_dir=tmp_path, images=a).mean, sa.mean)
    assert ext.calls == 2  # the same array again: a hit


def test_missing_celeba_is_reported_before_any_image_is_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reference_stats("celeba", 32, CountingExtractor(), n=N, cache_dir=tmp_path, root=tmp_path / "nope")


def test_computed_statistics_carry_the_skip_report_for_the_command_line(tmp_path):
    write_fake_celeba(tmp_path / "a", n=N + 1)
    (tmp_path / "a" / "img_align_celeba" / "000001.jpg").write_bytes(b"\xff\xd8\xff broken")  # a truncated JPEG
    stats = _stats(tmp_path, CountingExtractor(), tmp_path / "a")
    assert stats.skip_report is not None and "000001.jpg" in stats.skip_report.summary()
    assert getattr(_stats(tmp_path, CountingExtractor(), tmp_path / "a"), "skip_report", None) is None  # cached
