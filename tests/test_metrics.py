"""FID / KID / IS and the feature pipeline, each checked against an independent computation."""
import json
import math
import sys
import types

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from sagan_tut import metrics
from sagan_tut.metrics import (FeatureStats, InceptionExtractor, RandomConvExtractor, compute_stats,
                               evaluate_generator, evaluate_run, frechet_distance, inception_score, kid,
                               mmd2_unbiased, polynomial_kernel, reference_stats)


def random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


class ColourStats:
    """A cheap, exact extractor for pipeline tests: per-channel mean and std of each image (6-d), counting calls."""

    name = "colourstats"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        x = np.asarray(images, np.float64)
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------------
def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(1)
    mu, sigma = rng.standard_normal(20), random_spd(rng, 20, scale=50.0)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


@pytest.mark.parametrize("zeros", [0, 3])
def test_frechet_commuting_covariances(zeros):
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute, so (S1 S2)^(1/2) = Q diag(sqrt(ab)) Q^T and the distance is
    # |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2. With zeros > 0 both covariances are singular (n < d features).
    rng = np.random.default_rng(2)
    d = 8
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.2, 4, d), rng.uniform(0.2, 4, d)
    a[:zeros] = 0.0
    b[d - zeros:] = 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    # A zero eigenvalue comes out as ~1e-16 and its square root as ~1e-8: singular inputs lose about half the
    # digits in the trace term (any sqrt-based method does), hence the looser tolerance there.
    assert got == pytest.approx(expected, rel=1e-6 if zeros else 1e-10)


def test_frechet_matches_scipy_sqrtm_on_random_features():
    rng = np.random.default_rng(3)
    d = 16
    x = rng.standard_normal((300, d)) @ rng.standard_normal((d, d))
    y = 0.8 * rng.standard_normal((250, d)) @ rng.standard_normal((d, d)) + 0.3
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-6)


def test_frechet_rejects_mismatched_shapes_and_nan():
    with pytest.raises(ValueError, match="same extractor|one extractor"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------------------------------------------
# Streaming statistics
# ---------------------------------------------------------------------------------------------------------------
def test_streaming_stats_equal_one_shot_with_large_offset():
    # A mean of 1e6 next to unit spread: E[xx^T] - mu mu^T would lose ~12 of 16 digits; the pairwise update not.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 5)) @ rng.standard_normal((5, 5)) + 1e6
    stats = FeatureStats()
    start = 0
    for size in (1, 7, 30, 2, 60):
        stats.update(x[start:start + size])
        start += size
    assert stats.n == 100
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-8, atol=1e-9)


def test_stats_save_load_round_trip_and_resume(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 4))
    stats = FeatureStats(keep=30, meta={"extractor": "toy", "note": "ü"})
    stats.update(x[:20]).update(x[20:40])
    path = stats.save(tmp_path / "s.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temp file left behind
    loaded = FeatureStats.load(path)
    assert loaded.n == 40 and loaded.meta == stats.meta and loaded.keep == 30
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_allclose(loaded.cov, stats.cov, rtol=1e-15)
    np.testing.assert_array_equal(loaded.features, x[:30].astype(np.float32))
    loaded.update(x[40:])  # a loaded accumulator keeps accumulating
    np.testing.assert_allclose(loaded.cov, np.cov(x, rowvar=False), rtol=1e-12)
    assert loaded.features.shape == (30, 4)


def test_stats_errors():
    with pytest.raises(ValueError, match="empty"):
        FeatureStats().mean
    stats = FeatureStats().update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        stats.cov
    with pytest.raises(ValueError, match="3-d"):
        stats.update(np.ones((2, 4)))


# ---------------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------------
def test_polynomial_kernel_by_hand():
    # x.y = 1*3 + 2*4 = 11, d = 2: (11/2 + 1)^3 = 6.5^3 = 274.625; x.x = 5: (2.5 + 1)^3 = 42.875
    k = polynomial_kernel([[1.0, 2.0]], [[3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_allclose(k, [[274.625, 42.875]], rtol=1e-15)


def test_mmd2_unbiased_matches_double_loop():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal((7, 3)) + 0.4

    def k(a, b):
        return (np.dot(a, b) / 3 + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_mean_and_std_of_mmd2_over_seeded_subsets():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((26, 4))
    mean, std = kid(a, b, num_subsets=3, subset_size=1000, seed=5)
    # 1000 > the samples: subsets of half the smaller sample (13), so they differ and the std is informative.
    assert metrics.effective_kid_subset_size(30, 26, 1000) == 13
    draw = np.random.default_rng(5)
    values = []
    for _ in range(3):
        ia, ib = draw.choice(30, 13, replace=False), draw.choice(26, 13, replace=False)
        values.append(mmd2_unbiased(a[ia], b[ib]))
    assert (mean, std) == pytest.approx((np.mean(values), np.std(values)), rel=1e-12)
    assert std > 0


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((600, 8)), rng.standard_normal((600, 8))
    mean, std = kid(a, b, num_subsets=40, subset_size=200)
    assert std > 0
    assert abs(mean) < 2 * std
    mean_s, std_s = kid(a, b + 0.5, num_subsets=40, subset_size=200)
    assert mean_s > 5 * std_s and mean_s > 10 * std


def test_kid_errors():
    with pytest.raises(ValueError, match="one d"):
        kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 4"):
        kid(np.zeros((3, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------------------------------------
# IS
# ---------------------------------------------------------------------------------------------------------------
def test_inception_score_closed_forms():
    k, splits = 7, 5
    uniform = np.full((70, k), 1.0 / k)
    assert inception_score(uniform, splits=splits) == pytest.approx((1.0, 0.0), abs=1e-12)
    # Confident predictions, each split holding every class equally often: KL = log K in every split -> IS = K.
    confident = np.eye(k)[np.arange(70) % k]
    assert inception_score(confident, splits=splits) == pytest.approx((k, 0.0), abs=1e-9)


def test_inception_score_hand_computed_case():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])  # p(y) = (0.75, 0.25)
    kl = (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25) + math.log(1 / 0.75)) / 2
    assert inception_score(p, splits=1)[0] == pytest.approx(math.exp(kl), rel=1e-12)
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.array([[2.0, -1.0]]), splits=1)


# ---------------------------------------------------------------------------------------------------------------
# Extractors
# ---------------------------------------------------------------------------------------------------------------
def test_offline_extractor_deterministic_and_batch_independent():
    images = np.random.default_rng(9).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    ext = RandomConvExtractor(seed=0)
    f1, f2 = ext(images), ext(images)
    assert f1.shape == (4, ext.dim) == (4, 48 + 2 * (16 + 32 + 64 + 16) + 4 * 4 * 16)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_allclose(RandomConvExtractor(seed=0)(images), f1, rtol=1e-6, atol=1e-7)
    # Each image's features must not depend on its batch mates, or streaming would change the statistics.
    np.testing.assert_allclose(ext(images[2:3]), f1[2:3], rtol=1e-5, atol=1e-7)
    assert np.abs(f1[0] - f1[1]).max() > 1e-4  # different images, different features
    other = RandomConvExtractor(seed=1)
    assert other.name != ext.name
    assert np.abs(other(images) - f1).max() > 1e-3
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        ext(images[0])


def test_offline_extractor_colour_block_is_the_cell_mean_colour():
    images = np.random.default_rng(17).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    feats = RandomConvExtractor()(images)  # 64 x 64 in: no resize, so the block is exact
    quantised = np.round((images.astype(np.float64) + 1) * 127.5) / 127.5 - 1
    cells = quantised.reshape(2, 4, 16, 4, 16, 3).mean(axis=(2, 4)).reshape(2, 48)
    np.testing.assert_allclose(feats[:, :48], cells, atol=1e-6)


@pytest.mark.slow
def test_offline_extractor_sees_noise_blur_and_shifts():
    """FID with the offline features must rise well above the same-distribution baseline (which at n=200 is
    mostly FID's small-n bias) for images with noise, blur or a 2-pixel shift."""
    faces = pytest.importorskip("sagan_tut.faces")
    ext = RandomConvExtractor()
    a, b = faces.generate_faces(200, 32, seed=0), faces.generate_faces(200, 32, seed=1)
    noisy = np.clip(b + 0.2 * np.random.default_rng(0).standard_normal(b.shape), -1, 1).astype(np.float32)
    blurred = tf.image.resize(tf.image.resize(b, (8, 8), antialias=True), (32, 32)).numpy()
    stats_a = compute_stats(a, ext, batch_size=200)
    fid = {name: metrics.fid_from_stats(stats_a, compute_stats(x, ext, batch_size=200))
           for name, x in dict(same=b, noisy=noisy, blurred=blurred, shifted=np.roll(b, 2, axis=2)).items()}
    assert fid["noisy"] > 2 * fid["same"], fid
    assert fid["blurred"] > 2 * fid["same"], fid
    assert fid["shifted"] > 3 * fid["same"], fid


def _numpy_bilinear(x, size):
    """Half-pixel-centre bilinear resize (what TF/pytorch-fid use, no antialiasing), separable, in numpy."""
    def axis_weights(n_in):
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        w = np.zeros((size, n_in))
        w[np.arange(size), lo] += 1 - (src - lo)
        w[np.arange(size), hi] += src - lo
        return w

    wr, wc = axis_weights(x.shape[1]), axis_weights(x.shape[2])
    return np.einsum("ri,bijc,sj->brsc", wr, x, wc)


def test_inception_preprocessing_is_bilinear_299_and_quantised():
    images = np.random.default_rng(10).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    quantised = np.round((images + 1) * 127.5) / 127.5 - 1
    got = metrics._prepare(images, 299, quantize=True, antialias=False).numpy()
    assert got.shape == (2, 299, 299, 3)
    # float32 round-off is ~1e-6; a half-pixel offset or another filter would miss by ~1e-2.
    np.testing.assert_allclose(got, _numpy_bilinear(quantised.astype(np.float64), 299), atol=1e-5)


@pytest.mark.slow
def test_inception_untrained_gives_2048_features():
    ext = InceptionExtractor(weights=None)
    images = np.random.default_rng(11).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    feats = ext(images)
    assert feats.shape == (2, 2048) and np.all(np.isfinite(feats))
    assert ext._model.input_shape == (None, 299, 299, 3)
    assert ext.name != InceptionExtractor().name  # untrained features never share a cache entry with real ones


@pytest.mark.slow
def test_inception_without_internet_gives_a_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def offline_get_file(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline_get_file)
    ext = InceptionExtractor()  # lazily built: constructing it must not touch the network
    assert ext._model is None
    with pytest.raises(RuntimeError, match="internet") as info:
        ext(np.zeros((1, 32, 32, 3), np.float32))
    assert "offline" in str(info.value) and "URL fetch failure" in str(info.value)


def test_get_extractor():
    assert isinstance(metrics.get_extractor("offline"), RandomConvExtractor)
    custom = ColourStats()
    assert metrics.get_extractor(custom) is custom
    with pytest.raises(ValueError, match="offline"):
        metrics.get_extractor("vgg")
    with pytest.raises(TypeError, match="name"):
        metrics.get_extractor(lambda x: x)


# ---------------------------------------------------------------------------------------------------------------
# Pipelines: sources, reference cache, generator evaluation
# ---------------------------------------------------------------------------------------------------------------
def test_compute_stats_same_from_array_dataset_and_sampler():
    rng = np.random.default_rng(12)
    images = rng.uniform(-1, 1, (23, 4, 4, 3)).astype(np.float32)
    ext = ColourStats()
    direct = ext(images)
    sources = {
        "array": images,
        "batched tuples": tf.data.Dataset.from_tensor_slices((images, np.zeros(23))).batch(5),
        "unbatched": tf.data.Dataset.from_tensor_slices(images),
    }
    for label, source in sources.items():
        stats = compute_stats(source, ext, n=20, batch_size=6, keep=8)
        assert stats.n == 20, label
        np.testing.assert_allclose(stats.mean, direct[:20].mean(0), rtol=1e-6, err_msg=label)
        np.testing.assert_allclose(stats.cov, np.cov(direct[:20], rowvar=False), rtol=1e-5, atol=1e-9, err_msg=label)
        np.testing.assert_allclose(stats.features, direct[:8], rtol=1e-6, err_msg=label)
        assert stats.meta["extractor"] == "colourstats"
    drawn = iter(np.split(images[:20], [6, 12, 18]))
    stats = compute_stats(lambda k: next(drawn)[:k], ext, n=20, batch_size=6)
    np.testing.assert_allclose(stats.mean, direct[:20].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="ran out after 23"):
        compute_stats(sources["unbatched"], ext, n=30, batch_size=6)
    with pytest.raises(ValueError, match="holds 23"):
        compute_stats(images, ext, n=30)


def test_reference_stats_cached_and_reused(tmp_path):
    images = np.random.default_rng(13).uniform(-1, 1, (40, 4, 4, 3)).astype(np.float32)
    ext = ColourStats()
    first = reference_stats("toy", 4, ext, n=40, cache_dir=tmp_path, batch_size=16, images=images, keep=10)
    calls = ext.calls
    assert calls == 3  # 16 + 16 + 8
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and "toy_4px" in files[0].name and "colourstats" in files[0].name
    second = reference_stats("toy", 4, ext, n=40, cache_dir=tmp_path, batch_size=16, images=images, keep=10)
    assert ext.calls == calls  # loaded, not recomputed
    np.testing.assert_array_equal(second.mean, first.mean)
    np.testing.assert_array_equal(second.cov, first.cov)
    np.testing.assert_array_equal(second.features, first.features)
    reference_stats("toy", 4, ext, n=32, cache_dir=tmp_path, batch_size=16, images=images, keep=10)
    assert ext.calls == calls + 2  # another n is another entry
    reference_stats("toy", 4, ext, n=32, cache_dir=tmp_path, batch_size=16, images=images, keep=10, crop=100)
    assert ext.calls == calls + 4  # so are other loader options
    reference_stats("toy", 4, ext, n=32, cache_dir=tmp_path, batch_size=16, images=images, keep=10, root="/x")
    assert ext.calls == calls + 4  # but not where the files are
    assert len(list(tmp_path.glob("*.npz"))) == 3


@pytest.mark.slow
def test_reference_stats_reads_the_dataset_loader(tmp_path):
    """Without images=, reference_stats reads sagan_tut.data.load_dataset: the shuffled train split, one pass."""
    data = pytest.importorskip("sagan_tut.data")
    ext = ColourStats()
    stats = reference_stats("faces", 32, ext, n=40, cache_dir=tmp_path, batch_size=16, keep=40)
    assert stats.n == 40 and stats.meta["dataset"] == "faces" and stats.meta["resolution"] == 32
    # The same 40 faces, read with another batch size: the statistics must not depend on the batching.
    ds = data.load_dataset("faces", resolution=32, batch_size=7, split="train", seed=0, shuffle=True, repeat=False,
                           drop_remainder=False)
    direct = ext(np.concatenate([np.asarray(b) for b in ds.take(6)])[:40])
    np.testing.assert_allclose(stats.features, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.cov, np.cov(direct, rowvar=False), rtol=1e-4, atol=1e-8)


def tiny_generator(z_dim=4, res=4, seed=0):
    keras.utils.set_random_seed(seed)
    z = keras.Input((z_dim,))
    x = keras.layers.Dense(res * res * 3, activation="tanh")(z)
    return keras.Model(z, keras.layers.Reshape((res, res, 3))(x))


def test_evaluate_generator_matches_direct_computation():
    gen = tiny_generator()
    ext = ColourStats()
    real_images = np.random.default_rng(14).uniform(-0.5, 0.5, (60, 4, 4, 3)).astype(np.float32)
    result = evaluate_generator(gen, real_images, n=50, extractor=ext, batch_size=16, seed=3,
                                kid_subsets=10, kid_subset_size=20)
    # Independent path: one draw of z from the same seed, one forward pass, numpy statistics.
    z = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    fake = ext(gen(z).numpy())
    real = ext(real_images[:50])
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert result["fid"] == pytest.approx(expected, rel=1e-5)
    assert result["n"] == 50 and result["extractor"] == "colourstats"
    kid_mean, kid_std = kid(real, fake, 10, 20, seed=3)
    assert result["kid_subset_size"] == 20
    assert result["kid_mean"] == pytest.approx(kid_mean, rel=1e-5)
    assert result["kid_std"] == pytest.approx(kid_std, rel=1e-5)
    other = FeatureStats(meta={"extractor": "inception_v3_q1"}).update(real)
    with pytest.raises(ValueError, match="different networks"):
        evaluate_generator(gen, other, n=10, extractor=ext)


def test_evaluate_run_with_stub_loader(tmp_path, monkeypatch):
    """evaluate_run against the trainer's contract: config.json + train.load_generator(run_dir, ema=True)."""
    gen = tiny_generator()
    seen = {}

    def load_generator(run_dir, ema=True):
        seen.update(run_dir=run_dir, ema=ema)
        return gen

    monkeypatch.setitem(sys.modules, "sagan_tut.train", types.SimpleNamespace(load_generator=load_generator))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"z_dim": 4, "resolution": 4, "dataset": "toy"}))
    real_images = np.random.default_rng(15).uniform(-1, 1, (30, 4, 4, 3)).astype(np.float32)
    ext = ColourStats()
    result = evaluate_run(run, n=30, extractor=ext, batch_size=8, cache_dir=tmp_path / "cache",
                          images=real_images)
    assert seen == {"run_dir": run, "ema": True}
    written = json.loads((run / "eval_colourstats_n30.json").read_text())
    assert written["fid"] == pytest.approx(result["fid"]) and written["dataset"] == "toy"
    direct = evaluate_generator(gen, real_images, n=30, extractor=ext, batch_size=8)
    assert result["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert "FID" in metrics.format_result(result) and "KID" in metrics.format_result(result)
    (run / "config.json").write_text(json.dumps({"resolution": 4}))
    with pytest.raises(ValueError, match="z_dim"):
        evaluate_run(run, n=30, extractor=ext)


@pytest.mark.slow
def test_evaluate_run_end_to_end_with_the_trainers_checkpoint(tmp_path):
    """A run directory as the trainer writes it (config.json + a CheckpointManager checkpoint with G and its EMA
    copy), loaded by the real train.load_generator: evaluate_run must score the EMA generator."""
    train = pytest.importorskip("sagan_tut.train")
    from sagan_tut.config import get_config

    config = get_config("quick", width=0.125)
    run = tmp_path / "run"
    run.mkdir()
    config.to_json(run / "config.json")
    keras.utils.set_random_seed(0)
    g, _ = train.build_models(config)
    keras.utils.set_random_seed(1)
    g_ema, _ = train.build_models(config)  # another initialisation: a visibly different generator
    z = np.random.default_rng(0).standard_normal((16, config.z_dim)).astype(np.float32)
    for model in (g, g_ema):
        # A fresh G's BatchNorm moving statistics (0, 1) shrink its inference outputs to ~1e-6, which would
        # quantise to one grey for both models: set them to one batch's statistics (momentum 0) first.
        bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in bns:
            layer.momentum = 0.0
        model(z, training=True)
        for layer in bns:
            layer.momentum = 0.99
    assert np.abs(np.asarray(g(z, training=False)) - np.asarray(g_ema(z, training=False))).max() > 0.1
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(generator=g, ema_generator=g_ema), str(run / "ckpt"),
                                         max_to_keep=1, checkpoint_name="ckpt")
    manager.save(checkpoint_number=1)
    real_images = np.random.default_rng(16).uniform(-1, 1, (48, 32, 32, 3)).astype(np.float32)
    ext = RandomConvExtractor()
    result = evaluate_run(run, n=48, extractor=ext, batch_size=24, real=real_images)
    assert result["dataset"] == "faces" and result["resolution"] == 32 and result["ema"] is True
    expected = evaluate_generator(g_ema, real_images, n=48, extractor=ext, batch_size=24)
    assert result["fid"] == pytest.approx(expected["fid"], rel=1e-6)
    assert result["kid_mean"] == pytest.approx(expected["kid_mean"], rel=1e-6)
    assert json.loads((run / f"eval_{ext.name}_n48.json").read_text())["fid"] == pytest.approx(result["fid"])
    not_ema = evaluate_run(run, n=48, extractor=ext, batch_size=24, real=real_images, ema=False,
                           out_json=tmp_path / "g.json")
    assert abs(not_ema["fid"] - result["fid"]) > 1e-3 * result["fid"]


# ---------------------------------------------------------------------------------------------------------------
# Progress lines for long evaluations
# ---------------------------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_lines_rate_and_eta_with_a_fake_clock():
    import io

    from sagan_tut.progress import Progress

    clock, out = FakeClock(), io.StringIO()
    with Progress(100, "generated images", enabled=True, stream=out, interval=1e9, clock=clock) as bar:
        for _ in range(10):
            clock.t += 2.0  # 10 images every 2 s: 5 img/s
            bar.update(10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # one per tenth (the interval is out of reach), the last one is the final line
    assert lines[0] == "generated images: 10/100 (10%) | 5.0 img/s | ETA 18s"  # 90 images left at 5 img/s
    assert lines[4] == "generated images: 50/100 (50%) | 5.0 img/s | ETA 10s"
    assert lines[-1] == "generated images: 100/100 (100%) | 5.0 img/s | 20s in all"


def test_progress_every_interval_between_tenths_and_long_etas():
    import io

    from sagan_tut.progress import Progress, format_seconds

    clock, out = FakeClock(), io.StringIO()
    bar = Progress(50_000, "x", enabled=True, stream=out, interval=2.0, clock=clock)
    for _ in range(4):
        clock.t += 1.0
        bar.update(10)  # 10 img/s: an update every second, a line every two
    lines = out.getvalue().splitlines()
    assert lines == ["x: 20/50000 (0%) | 10.0 img/s | ETA 1h23m18s", "x: 40/50000 (0%) | 10.0 img/s | ETA 1h23m16s"]
    assert format_seconds(4998) == "1h23m18s" and format_seconds(61) == "1m01s"


def test_progress_is_on_by_default_only_for_long_evaluations():
    from sagan_tut.progress import MIN_TOTAL, Progress

    assert Progress(MIN_TOTAL).enabled and not Progress(MIN_TOTAL - 1).enabled and not Progress(None).enabled


def test_compute_stats_prints_progress_when_asked_and_nothing_otherwise(capsys):
    images = np.random.default_rng(16).uniform(-1, 1, (40, 4, 4, 3)).astype(np.float32)
    compute_stats(images, ColourStats(), batch_size=8, progress=True, desc="real images")
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("real images: 40/40 (100%) | ") and err[-1].endswith(" in all")
    assert any("ETA" in line for line in err[:-1]) and len(err) == 5  # at 8, 16, 24, 32, then the final line
    compute_stats(images, ColourStats(), batch_size=8, progress=False)
    compute_stats(images, ColourStats(), batch_size=8)  # 40 images: below the default threshold
    assert capsys.readouterr().err == ""


def test_evaluate_generator_and_run_progress(tmp_path, monkeypatch, capsys):
    gen = tiny_generator()
    real_images = np.random.default_rng(17).uniform(-1, 1, (20, 4, 4, 3)).astype(np.float32)
    evaluate_generator(gen, real_images, n=20, extractor=ColourStats(), batch_size=5, progress=True)
    err = capsys.readouterr().err
    assert "real images: 20/20 (100%)" in err and "generated images: 20/20 (100%)" in err and "ETA" in err
    monkeypatch.setitem(sys.modules, "sagan_tut.train", types.SimpleNamespace(load_generator=lambda d, ema: gen))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"z_dim": 4, "resolution": 4, "dataset": "toy"}))
    evaluate_run(run, n=20, extractor=ColourStats(), batch_size=5, cache_dir=tmp_path / "c", images=real_images,
                 progress=True)
    err = capsys.readouterr().err
    assert "real images (toy 4px): 20/20 (100%)" in err and "generated images: 20/20 (100%)" in err
    evaluate_run(run, n=20, extractor=ColourStats(), batch_size=5, cache_dir=tmp_path / "c2",
                 images=real_images, progress=False)
    assert capsys.readouterr().err == ""
