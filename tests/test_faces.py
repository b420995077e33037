"""The procedural faces: determinism, the structure they promise, the score that measures it, the tf.data stream."""
import numpy as np
import pytest
import tensorflow as tf

from sagan_tut import faces
from sagan_tut.data import load_dataset


# ------------------------------------------------------------------------------------------------ generator
@pytest.mark.parametrize("R", [32, 64, 128])
def test_generate_faces_shape_dtype_range(R):
    x = faces.generate_faces(6, R)
    assert x.shape == (6, R, R, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.std() > 0.2  # real pictures, not a constant
    assert not np.allclose(x[0], x[1])  # different faces


def test_generate_faces_is_a_pure_function_of_seed_and_index():
    a = faces.generate_faces(8, 32, seed=3)
    np.testing.assert_array_equal(a, faces.generate_faces(8, 32, seed=3))
    assert not np.allclose(a, faces.generate_faces(8, 32, seed=4))
    # Image i does not depend on which other images are drawn with it.
    np.testing.assert_allclose(faces.generate_faces(3, 32, seed=3, start=5), a[5:8], atol=1e-6)


def test_face_uniforms_are_uniform_and_independent():
    u = faces.face_uniforms(0, tf.range(4000, dtype=tf.int64)).numpy()
    assert u.shape == (4000, faces.N_PARAMS) and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005  # U(0, 1): mean 1/2, variance 1/12
    c = np.corrcoef(u.T)  # parameters of one face are uncorrelated
    assert np.abs(c[~np.eye(len(c), dtype=bool)]).max() < 0.08


def test_mirror_rendering_equals_full_rendering():
    """Drawing every pixel gives the mirrored half-drawing: the geometry really is left-right symmetric."""
    ids = tf.range(16, dtype=tf.int64)
    for R in (32, 33):  # odd size: the middle column is its own mirror
        half = faces.render_faces(ids, R, mirror=True).numpy()
        full = faces.render_faces(ids, R, mirror=False).numpy()
        np.testing.assert_allclose(full, half, atol=1e-5)
        np.testing.assert_allclose(full, full[:, :, ::-1], atol=1e-5)


def _eye_centre_pixels(x):
    """Pixel at each eye's nominal centre (the jitter of +-0.015 stays inside the iris of radius >= 0.07)."""
    R = x.shape[1]
    row = int(faces.EYE_Y * R)
    left, right = int((0.5 - faces.EYE_DX) * R), R - 1 - int((0.5 - faces.EYE_DX) * R)
    return x[:, row, left], x[:, row, right]


def test_both_eyes_share_one_colour_and_broken_faces_do_not():
    left, right = _eye_centre_pixels(faces.generate_faces(64, 64))
    np.testing.assert_allclose(left, right, atol=1e-5)
    assert np.linalg.norm(left - left.mean(0), axis=1).mean() > 0.3  # the shared colour varies between faces
    left_b, right_b = _eye_centre_pixels(faces.generate_faces(64, 64, broken="colour"))
    np.testing.assert_allclose(left_b, left, atol=1e-5)  # same faces: the left eye is untouched
    assert (np.linalg.norm(left_b - right_b, axis=1) > 0.1).mean() > 0.8


def test_broken_geometry_is_asymmetric_but_keeps_colours():
    x = faces.generate_faces(32, 64, broken="geometry")
    assert np.abs(x - x[:, :, ::-1]).mean() > 0.01
    y = faces.generate_faces(32, 64)
    assert np.abs(y - y[:, :, ::-1]).max() < 1e-5


def test_bad_arguments():
    with pytest.raises(ValueError, match="broken"):
        faces.generate_faces(2, 32, broken="sideways")
    with pytest.raises(ValueError, match="resolution"):
        faces.generate_faces(2, 8)


# ---------------------------------------------------------------------------------------------------- score
@pytest.mark.parametrize("R", [32, 128])
def test_real_faces_score_near_perfect_and_broken_faces_clearly_worse(R):
    real = faces.structure_score(faces.generate_faces(64, R, seed=7))
    broken = faces.structure_scores(faces.generate_faces(64, R, seed=7, broken=True))
    assert real > 0.99
    assert broken["score"].mean() < 0.5
    assert (broken["score"] < 0.9).mean() > 0.9  # nearly every single broken face is caught


def test_each_score_component_sees_its_break():
    colour_only = faces.structure_scores(faces.generate_faces(64, 64, seed=7, broken="colour"))
    geometry_only = faces.structure_scores(faces.generate_faces(64, 64, seed=7, broken="geometry"))
    assert colour_only["eye_colour"].mean() < 0.2   # the colour component sees the colour break
    assert geometry_only["symmetry"].mean() < 0.2   # the symmetry component sees the geometry break
    # Each eye is located on its own, so eyes at different heights still compare their (equal) colours.
    assert geometry_only["eye_colour"].mean() > 0.9


def test_score_is_robust_to_blur_and_colour_changes():
    """GAN samples are blurry and off-colour; neither is a structural error, so neither may cost much."""
    x = faces.generate_faces(64, 64, seed=1)
    blurred = tf.image.resize(tf.image.resize(x, (16, 16), antialias=True), (64, 64)).numpy()
    washed = 0.5 * x + 0.2
    tinted = np.clip(x + np.array([0.2, -0.1, 0.05], np.float32), -1, 1)
    for variant in (blurred, washed, tinted):
        assert faces.structure_score(variant) > 0.97
    # Swapping the right halves between faces destroys both kinds of structure.
    swapped = np.concatenate([x[:, :, :32], x[::-1, :, 32:]], axis=2)
    assert faces.structure_score(swapped) < 0.2


def test_score_input_checks():
    with pytest.raises(ValueError, match="shape"):
        faces.structure_score(np.zeros((2, 32, 16, 3)))
    with pytest.raises(ValueError, match="127.5"):
        faces.structure_score(np.full((1, 32, 32, 3), 200.0))
    single = faces.generate_faces(1, 32)[0]  # one image without a batch axis is accepted
    assert faces.structure_score(single) > 0.99


# -------------------------------------------------------------------------------------------------- tf.data
def _take(ds, k):
    return np.concatenate([b.numpy() for b in ds.take(k)])


def test_dataset_batches_shape_range_and_match_generate_faces():
    ds = load_dataset("faces", resolution=32, batch_size=8, shuffle=False)
    x = next(iter(ds)).numpy()
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x, faces.generate_faces(8, 32), atol=1e-5)  # stream 0 = train split


def test_dataset_same_seed_same_batches_and_batch_size_does_not_change_images():
    a = _take(load_dataset("faces", resolution=32, batch_size=8, seed=5), 3)
    b = _take(load_dataset("faces", resolution=32, batch_size=8, seed=5), 3)
    np.testing.assert_array_equal(a, b)
    c = _take(load_dataset("faces", resolution=32, batch_size=8, seed=6), 3)
    assert not np.allclose(a, c)
    # Position p holds the same face whatever the batch size: batch k is a pure function of (seed, k).
    d = _take(load_dataset("faces", resolution=32, batch_size=12, seed=5), 2)
    np.testing.assert_allclose(a[:24], d[:24], atol=1e-6)


def _ids(images, reference):
    """Index of each image in ``reference`` (exact match of a pixel signature)."""
    sig = {tuple(np.round(r[::4, ::4].ravel(), 4)): i for i, r in enumerate(reference)}
    return [sig[tuple(np.round(x[::4, ::4].ravel(), 4))] for x in images]


def test_dataset_epoch_is_a_permutation_and_epochs_differ():
    size = 40
    ref = faces.generate_faces(size, 32)
    one = _take(load_dataset("faces", resolution=32, batch_size=8, repeat=False, size=size), 100)
    assert one.shape[0] == size
    ids = _ids(one, ref)
    assert sorted(ids) == list(range(size)) and ids != list(range(size))
    two = _take(load_dataset("faces", resolution=32, batch_size=8, size=size), 10)  # 2 epochs
    ids2 = _ids(two, ref)
    assert ids2[:size] == ids and sorted(ids2[size:]) == list(range(size)) and ids2[size:] != ids
    last = _take(load_dataset("faces", resolution=32, batch_size=16, repeat=False, drop_remainder=False,
                              size=size), 100)
    assert last.shape[0] == size  # 16 + 16 + 8


def test_splits_are_different_faces():
    tr, va, te = (next(iter(load_dataset("faces", resolution=32, batch_size=4, split=s, shuffle=False))).numpy()
                  for s in ("train", "val", "test"))
    assert not np.allclose(tr, va) and not np.allclose(va, te) and not np.allclose(tr, te)
    np.testing.assert_allclose(va, faces.generate_faces(4, 32, seed=faces.SPLIT_STREAMS["val"]), atol=1e-5)


def test_iterator_checkpoint_restores_the_next_batch(tmp_path):
    it = iter(load_dataset("faces", resolution=32, batch_size=4, seed=2, size=10))
    for _ in range(3):  # cross an epoch boundary (10 faces, 4 per batch)
        next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "it"))
    expected = [next(it).numpy() for _ in range(2)]
    ckpt.restore(path)
    np.testing.assert_array_equal(next(it).numpy(), expected[0])
    np.testing.assert_array_equal(next(it).numpy(), expected[1])
    # A fresh pipeline restored from the checkpoint continues identically too (a resumed training run).
    it2 = iter(load_dataset("faces", resolution=32, batch_size=4, seed=2, size=10))
    tf.train.Checkpoint(iterator=it2).restore(path)
    np.testing.assert_array_equal(next(it2).numpy(), expected[0])


def test_pipeline_draws_in_parallel_and_prefetches():
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(load_dataset("faces", resolution=32, batch_size=4)._as_serialized_graph().numpy())
    ops = [n.op for n in graph.node]
    assert "ParallelMapDatasetV2" in ops and "PrefetchDataset" in ops


def test_broken_dataset_scores_low():
    x = next(iter(load_dataset("faces", resolution=32, batch_size=32, broken=True))).numpy()
    assert faces.structure_score(x) < 0.5
