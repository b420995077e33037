"""The CelebA pipeline, on fake CelebA files written at test time in the official formats (no network).

Fake images carry a known pattern (:func:`sagan_tut.celeba.fake_celeba_image`): red ramps down the rows of the
expected crop window, green across the columns, blue encodes the file. So the tests can check the crop
position, which file each output came from, the splits and the order.
"""
import io
import logging
import os
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sagan_tut import celeba
from sagan_tut.celeba import CROP, fake_code, find_celeba, load_celeba, write_fake_celeba
from sagan_tut.data import download_kaggle, load_dataset

N = 24  # fake images; the default split is 16 / 4 / 4


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    base = tmp_path_factory.mktemp("celeba")
    folder = write_fake_celeba(base / "official", n=N, layout="folder")
    zipped = write_fake_celeba(base / "zipped", n=N, layout="zip")  # same seed: same partition as the folder
    return {"folder_root": str(base / "official"), "zip_root": str(base / "zipped"), "split": folder["split"],
            "zip": zipped["zip"]}


def _all(ds):
    return np.concatenate([b.numpy() for b in ds])


def _codes_of(split_map, split_id):
    return sorted(int(name[:6]) - 1 for name, s in split_map.items() if s == split_id)


def _ramp_residuals(x):
    """Observed minus expected red (per output row) and green (per output column), in [-1, 1] units.

    Output row r of an R-pixel image covers crop rows centred on y = (r + 0.5) * 178 / R - 0.5; the pattern's red
    is 255 * y / 177 there (a linear ramp is unchanged by a symmetric resampling filter). Same for green.
    The first and last output rows/columns are left out: there the resampling filter is cut off by the image
    border and renormalised, which bends the ramp slightly whatever the crop.
    """
    R = x.shape[1]
    centre = (np.arange(R) + 0.5) * CROP[2] / R - 0.5
    expected = np.clip(centre / (CROP[2] - 1), 0, 1) * 2.0 - 1.0
    rows, cols = x[..., 0].mean(axis=2) - expected, x[..., 1].mean(axis=1) - expected
    return rows[:, 1:-1], cols[:, 1:-1]


# ------------------------------------------------------------------------------------------- images, crop
@pytest.mark.parametrize("R", [32, 64, 128])
def test_folder_images_shape_dtype_range_and_crop_position(fake, R):
    ds = load_dataset("celeba", resolution=R, batch_size=8, split="all", shuffle=False, repeat=False,
                      root=fake["folder_root"])
    assert ds.source.kind == "folder" and ds.element_spec.dtype == tf.float32
    x = _all(ds)
    assert x.shape == (N, R, R, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert list(fake_code(x)) == list(range(N))  # every file once, sorted order without shuffling
    rows, cols = _ramp_residuals(x)
    # A crop off by one source row would shift red by 255/177 levels = 0.011; JPEG + resize error is < 0.004.
    assert np.abs(rows).max() < 0.005 and np.abs(rows.mean()) < 0.003
    assert np.abs(cols).max() < 0.005 and np.abs(cols.mean()) < 0.003


def test_crop_check_detects_a_wrong_crop(fake):
    """The check above is sensitive: the top square (rows 0..177) or a one-row shift both fail it."""
    for crop, min_error in (((0, 0, 178, 178), 0.05), ((21, 0, 178, 178), 0.008)):
        x = _all(load_celeba(64, 8, split="all", shuffle=False, repeat=False, root=fake["folder_root"], crop=crop))
        rows, _ = _ramp_residuals(x)
        assert np.abs(rows).mean() > min_error


def test_zip_is_read_in_place_and_equals_the_folder(fake):
    kw = dict(resolution=32, batch_size=6, split="all", shuffle=False, repeat=False)
    from_zip = load_dataset("celeba", root=fake["zip_root"], **kw)
    assert from_zip.source.kind == "zip"
    np.testing.assert_array_equal(_all(from_zip), _all(load_dataset("celeba", root=fake["folder_root"], **kw)))
    assert sorted(os.listdir(fake["zip_root"])) == ["img_align_celeba.zip", "list_eval_partition.txt"]


@pytest.mark.parametrize("split,split_id,size", [("train", 0, 16), ("val", 1, 4), ("test", 2, 4)])
def test_splits_follow_the_partition_file(fake, split, split_id, size):
    ds = load_celeba(32, 4, split=split, shuffle=False, repeat=False, root=fake["zip_root"])
    codes = sorted(fake_code(_all(ds)))
    assert len(codes) == size and codes == _codes_of(fake["split"], split_id)


def test_kaggle_layout_with_csv_partition(tmp_path):
    out = write_fake_celeba(tmp_path, n=12, layout="kaggle", split_sizes=(8, 2, 2))
    ds = load_celeba(32, 2, split="val", shuffle=False, repeat=False, root=tmp_path)
    assert ds.source.path == out["folder"] and ds.source.partition.endswith(".csv")
    assert sorted(fake_code(_all(ds))) == _codes_of(out["split"], 1)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_without_partition_file_a_split_is_an_error(tmp_path, split):
    """No silent fallback to every image: the error names the file and the folders searched."""
    out = write_fake_celeba(tmp_path, n=6, layout="folder")
    os.remove(out["partition"])
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt") as err:
        load_celeba(32, 3, split=split, root=tmp_path)
    assert f"- {tmp_path}\n" in str(err.value) and "Eval/" in str(err.value)
    assert "split='all'" in str(err.value)
    x = _all(load_celeba(32, 3, split="all", shuffle=False, repeat=False, root=tmp_path))
    assert x.shape[0] == 6


def test_drop_remainder_and_finite_epoch(fake):
    ds = load_celeba(32, 5, split="all", repeat=False, root=fake["folder_root"], drop_remainder=False)
    sizes = [b.shape[0] for b in ds]
    assert sizes == [5, 5, 5, 5, 4]
    ds = load_celeba(32, 5, split="all", repeat=False, root=fake["folder_root"])
    assert [b.shape[0] for b in ds] == [5, 5, 5, 5]


def dataset_ops(ds):
    """Names of the tf.data ops in a pipeline's graph (e.g. ParallelMapDatasetV2, PrefetchDataset)."""
    graph = tf.compat.v1.GraphDef()
    policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    graph.ParseFromString(ds._as_serialized_graph(external_state_policy=policy).numpy())
    return [n.op for n in graph.node if n.op.endswith("Dataset") or "DatasetV" in n.op]


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_pipeline_decodes_in_parallel_and_prefetches(fake, kind):
    ops = dataset_ops(load_celeba(32, 4, root=fake[f"{kind}_root"]))
    assert ops.count("ParallelMapDatasetV2") >= 2  # reading/decoding and batch resizing run in parallel
    assert "PrefetchDataset" in ops and "IgnoreErrorsDataset" in ops
    assert "ShuffleDataset" not in ops and "ShuffleDatasetV3" not in ops  # names are permuted statelessly
    assert "CacheDatasetV2" in dataset_ops(load_celeba(32, 4, root=fake[f"{kind}_root"], cache=True))


# -------------------------------------------------------------------------------------- order, resuming
def _codes(ds, k):
    return [list(fake_code(b.numpy())) for b in ds.take(k)]


def test_same_seed_same_batches_whatever_the_global_seed(fake):
    kw = dict(resolution=32, batch_size=8, split="all", root=fake["folder_root"])
    a = _codes(load_celeba(seed=1, **kw), 6)  # two epochs of 24
    tf.random.set_seed(1234)  # a trainer may set TF's global seed; our order must not depend on it
    try:
        b = _codes(load_celeba(seed=1, **kw), 6)
    finally:
        tf.random.set_seed(None)  # leave no global seed behind for other tests
    assert a == b
    assert a != _codes(load_celeba(seed=2, **kw), 6)
    epoch1, epoch2 = sum(a[:3], []), sum(a[3:], [])
    assert sorted(epoch1) == sorted(epoch2) == list(range(N))  # each epoch is a permutation
    assert epoch1 != list(range(N)) and epoch1 != epoch2      # shuffled, and differently each epoch


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_iterator_checkpoint_restores_the_next_batch(fake, tmp_path, kind):
    def make():
        return iter(load_celeba(32, 5, split="all", seed=3, root=fake[f"{kind}_root"]))
    it = make()
    for _ in range(4):  # 20 of 24 images: the next batch crosses into epoch 2
        next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "it"))
    expected = [next(it).numpy() for _ in range(2)]
    ckpt.restore(path)
    np.testing.assert_array_equal(next(it).numpy(), expected[0])
    np.testing.assert_array_equal(next(it).numpy(), expected[1])
    fresh = make()  # a new process resuming from the checkpoint
    tf.train.Checkpoint(iterator=fresh).restore(path)
    np.testing.assert_array_equal(next(fresh).numpy(), expected[0])


def test_cache_gives_the_same_images(fake):
    kw = dict(resolution=32, batch_size=8, split="train", root=fake["folder_root"])
    plain = _all(load_celeba(shuffle=False, repeat=False, **kw))
    cached = _all(load_celeba(shuffle=False, repeat=False, cache=True, **kw))
    np.testing.assert_allclose(plain, cached, atol=0.5 / 127.5 + 1e-6)  # the cache rounds to uint8
    epochs = _codes(load_celeba(cache=True, seed=0, **kw), 4)  # shuffled from the cache, two epochs
    assert sorted(sum(epochs[:2], [])) == sorted(sum(epochs[2:], [])) == _codes_of(fake["split"], 0)


# ------------------------------------------------------------------------------------------- bad input
def _jpeg(shape=(218, 178), value=128):
    buf = io.BytesIO()
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_bad_files_are_skipped_counted_and_reported_once(tmp_path, caplog):
    good = _jpeg()
    bad = {"000002.jpg": b"this is not a jpeg", "000003.jpg": good[: len(good) // 2],
           "000004.jpg": _jpeg((100, 100)), "000005.jpg": b"", "notes.txt": b"hello"}
    write_fake_celeba(tmp_path, n=12, layout="folder", extra_files=bad)
    with caplog.at_level(logging.WARNING, logger="sagan_tut.data"):
        ds = load_celeba(32, 4, split="all", shuffle=False, root=tmp_path)
        codes = sum(_codes(ds, 4), [])  # two epochs of the 8 good images
    assert sorted(codes[:8]) == sorted(codes[8:]) == [0, 5, 6, 7, 8, 9, 10, 11]
    reasons = {os.path.basename(k): v for k, v in ds.skip_report.skipped.items()}
    assert ds.skip_report.count == 5  # counted once each, not once per epoch
    assert "header" in reasons["000002.jpg"] and "truncated" in reasons["000003.jpg"]
    assert "178x218" in reasons["000004.jpg"] and "not a .jpg" in reasons["notes.txt"]
    assert caplog.text.count("skipping unreadable image") == 1
    assert caplog.text.count("not .jpg images") == 1


def test_corrupt_zip_member_is_skipped(tmp_path):
    good = _jpeg()
    write_fake_celeba(tmp_path, n=6, layout="zip", extra_files={"000003.jpg": good[:500]})
    ds = load_celeba(32, 5, split="all", shuffle=False, repeat=False, root=tmp_path)
    assert list(fake_code(_all(ds))) == [0, 1, 3, 4, 5]
    assert ds.skip_report.count == 1


def test_clear_errors_for_wrong_places(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_celeba(root=tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_celeba(root=empty)
    msg = str(e.value)  # one message with every option and its command
    for needle in ("empty folder", "pip install kagglehub", "source='kaggle', download=True",
                   "img_align_celeba.zip", "download_and_prepare", "load_dataset('faces'"):
        assert needle in msg
    with pytest.raises(FileNotFoundError, match="folder of .jpg files in"):
        load_celeba(root=empty, source="folder")
    (tmp_path / "wrongzip").mkdir()
    with zipfile.ZipFile(tmp_path / "wrongzip" / "img_align_celeba.zip", "w") as zf:
        zf.writestr("photos/000001.jpg", _jpeg())
    with pytest.raises(ValueError, match="no img_align_celeba/ folder"):
        load_celeba(root=tmp_path / "wrongzip")
    (tmp_path / "brokenzip").mkdir()
    (tmp_path / "brokenzip" / "img_align_celeba.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match="not a readable zip"):
        load_celeba(root=tmp_path / "brokenzip")
    (tmp_path / "other" / "img_align_celeba").mkdir(parents=True)
    (tmp_path / "other" / "img_align_celeba" / "a.jpg").write_bytes(_jpeg((256, 256)))
    with pytest.raises(ValueError, match="178x218"):
        load_celeba(root=tmp_path / "other")
    (tmp_path / "allbad" / "img_align_celeba").mkdir(parents=True)
    (tmp_path / "allbad" / "img_align_celeba" / "a.jpg").write_bytes(_jpeg()[:300])
    with pytest.raises(ValueError, match="complete JPEG"):
        load_celeba(root=tmp_path / "allbad")


def test_bad_arguments(fake):
    for kwargs, match in ((dict(resolution=0), "resolution"), (dict(split="validation"), "split"),
                          (dict(source="drive"), "source"), (dict(crop=(50, 0, 178, 178)), "crop"),
                          (dict(batch_size=0), "batch_size")):
        with pytest.raises(ValueError, match=match):
            load_celeba(root=fake["folder_root"], **kwargs)
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("cifar10")


# --------------------------------------------------------------------------------- sources and search
def test_auto_search_order(tmp_path):
    write_fake_celeba(tmp_path, n=6, layout="zip")
    assert find_celeba(tmp_path).kind == "zip"
    write_fake_celeba(tmp_path, n=6, layout="folder")
    assert find_celeba(tmp_path).kind == "folder"  # a folder beats a zip
    marker = tmp_path / "celeb_a" / "2.1.0" / "dataset_info.json"  # what a prepared tfds dataset leaves
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    found = find_celeba(tmp_path)
    assert found.kind == "tfds" and found.path == str(marker.parent)  # tfds beats both
    assert find_celeba(tmp_path, source="zip").kind == "zip"


def _forbid_network(monkeypatch):
    """Any use of tfds or kagglehub fails the test: `auto` must never start a download."""
    class Forbidden(types.ModuleType):
        def __getattr__(self, name):
            raise AssertionError(f"{self.__name__}.{name} used during an offline search")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", Forbidden("tensorflow_datasets"))
    monkeypatch.setitem(sys.modules, "kagglehub", Forbidden("kagglehub"))


def test_auto_never_downloads(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    with pytest.raises(FileNotFoundError, match="CelebA was not found"):
        load_dataset("celeba")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("celeba", source="tfds")
    with pytest.raises(ValueError, match="explicit source"):
        load_dataset("celeba", download=True)
    # Found in ./data/celeba with no root given.
    write_fake_celeba(tmp_path / "data" / "celeba", n=6, layout="zip")
    assert load_dataset("celeba", resolution=32, batch_size=2).source.kind == "zip"


def test_download_kaggle_needs_kagglehub(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # makes `import kagglehub` fail
    with pytest.raises(ImportError, match="pip install kagglehub"):
        download_kaggle()


def test_kaggle_download_path_with_a_stand_in_kagglehub(tmp_path, monkeypatch):
    cache = tmp_path / "kagglehub" / "datasets" / "jessicali9530" / "celeba-dataset" / "versions" / "2"
    calls = []

    def dataset_download(handle, path=None, *, force_download=False):
        calls.append(handle)
        write_fake_celeba(cache, n=6, layout="kaggle")
        return str(cache)

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    with pytest.raises(FileNotFoundError):  # nothing cached and no download asked for
        load_dataset("celeba", source="kaggle")
    assert calls == []
    ds = load_dataset("celeba", resolution=32, batch_size=2, source="kaggle", download=True)
    assert calls == [celeba.KAGGLE_HANDLE] and ds.source.kind == "folder"
    load_dataset("celeba", resolution=32, batch_size=2, source="kaggle", download=True)
    assert len(calls) == 1  # found in the cache the second time
    link = download_kaggle(tmp_path / "celeba")
    assert os.path.realpath(link) == os.path.realpath(cache)
    assert find_celeba(link).kind == "folder"


# ---------------------------------------------------------------------------------------------------- tfds
@pytest.fixture(scope="module")
def tfds_prepared(tmp_path_factory):
    """A real tfds `celeb_a` prepared offline: tfds' own builder runs on fake official files.

    Only the network is replaced (DownloadManager.download returns the local files), so this covers our
    download=True call, tfds' TFRecord writing and our reading of the prepared directory. It does not cover
    tfds' Google Drive download or checksum verification.
    """
    import tensorflow_datasets as tfds

    base = tmp_path_factory.mktemp("tfds")
    raw = write_fake_celeba(base / "raw", n=12, layout="zip", split_sizes=(8, 2, 2), annotations=True)
    files = {"img_align_celeba": raw["zip"], "list_eval_partition": raw["partition"],
             "list_attr_celeba": raw["attributes"], "landmarks_celeba": raw["landmarks"],
             "identity_celeba": raw["identity"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfds.download.DownloadManager, "download", lambda self, urls: {k: files[k] for k in urls})
        ds = load_celeba(32, 2, split="train", source="tfds", data_dir=base / "tfds", download=True)
    return {"data_dir": str(base / "tfds"), "split": raw["split"], "first": ds}


def test_tfds_prepared_offline_is_read_with_the_official_splits(tfds_prepared):
    assert tfds_prepared["first"].source.kind == "tfds"
    for split, split_id in (("train", 0), ("val", 1), ("test", 2)):
        ds = load_celeba(32, 2, split=split, repeat=False, data_dir=tfds_prepared["data_dir"])  # auto finds it
        assert ds.source.kind == "tfds"
        x = _all(ds)
        assert x.shape[1:] == (32, 32, 3) and x.min() >= -1 and x.max() <= 1
        assert sorted(fake_code(x)) == _codes_of(tfds_prepared["split"], split_id)
        rows, cols = _ramp_residuals(x)
        assert np.abs(rows).max() < 0.005 and np.abs(cols).max() < 0.005


def test_tfds_same_seed_same_batches_and_checkpoint(tfds_prepared, tmp_path):
    def make():
        return iter(load_celeba(32, 3, split="train", seed=4, source="tfds", data_dir=tfds_prepared["data_dir"]))
    a, b = make(), make()
    first = [next(a).numpy() for _ in range(2)]
    np.testing.assert_array_equal(first[0], next(b).numpy())
    ckpt = tf.train.Checkpoint(iterator=a)
    path = ckpt.save(str(tmp_path / "it"))
    expected = next(a).numpy()
    ckpt.restore(path)
    np.testing.assert_array_equal(next(a).numpy(), expected)
