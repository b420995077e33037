"""The structure score (sagan_tut.structure): its bars at 32, 64 and 128 px, hand-checked parts, determinism."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the untrained-generator control builds a Keras model

import numpy as np
import pytest

from sagan_tut import faces, structure


@pytest.mark.parametrize("R", [32, 64, 128])
def test_structure_table_rows_and_bars(R):
    """Real faces keep >= 0.9 under every forgiven change, broken faces stay <= 0.4 under the same changes, and
    pictures without eyes (flat, noise, an untrained generator, real faces blurred away) stay <= 0.3."""
    rows = faces.structure_table(R, n=200, seed=0)
    kinds = ("real", "broken", "broken colour", "broken geometry")
    controls = [("flat", "none"), ("noise", "none"), ("untrained G", "none"), ("real", "blur away")]
    assert [(r["faces"], r["perturbation"]) for r in rows] == [
        (f, p) for f in kinds for p in structure.PERTURBATIONS] + controls
    faces_rows, control_rows = rows[:-len(controls)], rows[-len(controls):]
    for r in faces_rows:
        if r["faces"] == "real":
            assert r["score"] >= 0.9 and r["p5"] >= 0.5, r  # the mean and the low tail
        else:
            assert r["score"] <= 0.4, r
    for r in control_rows:
        assert r["score"] <= 0.3 and r["presence"] <= 0.3, r  # no eyes: the presence part says so
    assert rows[0]["score"] > 0.99  # real faces as drawn: essentially perfect
    text = structure.table_markdown(rows)
    assert text.count("\n") == len(rows) + 1 and "| broken geometry | blur |" in text
    assert "| untrained G | none |" in text and text.splitlines()[0].endswith("| presence |")


def test_perturbations_do_what_they_say():
    x = faces.generate_faces(30, 32, seed=3)
    s = structure.perturb(x, "shift")
    # Image 0 moved by (dx, dy) = (-2, -2): its pixel (y, x) is the original's (y + 2, x + 2).
    np.testing.assert_array_equal(s[0, :-2, :-2], x[0, 2:, 2:])
    np.testing.assert_array_equal(s[12], x[12])  # (0, 0)
    noisy = structure.perturb(x, "noise")
    assert 0.08 < np.std(noisy - x) < 0.1  # sigma 0.1, a little less after clipping
    np.testing.assert_allclose(structure.perturb(x, "colour")[..., 0], 0.7 * x[..., 0] + 0.1, atol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        structure.perturb(x, "rotate")
    gone = structure.perturb(x, "blur away")  # sigma R / 6 = 5.3 px: a smooth blob, far smoother than "blur"
    assert np.abs(np.diff(gone, axis=2)).max() < 0.5 * np.abs(np.diff(structure.perturb(x, "blur"), axis=2)).max()
    # Pixel (16, 16) by hand: a separable Gaussian (sigma 32 / 6, scipy's radius 4 sigma), edge-padded image.
    sigma = 32 / 6
    r = int(4 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()
    p = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")[:, 16:16 + 2 * r + 1, 16:16 + 2 * r + 1]
    np.testing.assert_allclose(gone[:, 16, 16], np.einsum("y,x,nyxc->nc", w, w, p), atol=1e-5)


def test_control_images_are_what_they_say():
    flat = structure.control_images("flat", 32, 10, seed=1)
    assert flat.shape == (10, 32, 32, 3) and (flat == flat[:, :1, :1]).all() and flat.std(axis=0).min() > 0.1
    noise = structure.control_images("noise", 32, 10, seed=1)
    assert 0.35 < (noise - noise.mean(axis=(1, 2), keepdims=True)).std() < 0.5  # sigma 0.5, less after clipping
    np.testing.assert_array_equal(structure.control_images("noise", 32, 10, seed=1), noise)  # seeded
    state = np.random.get_state()[1].copy()
    g = structure.control_images("untrained G", 32, 4, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global numpy state is restored
    assert g.shape == (4, 32, 32, 3) and np.abs(g).max() <= 1.0
    np.testing.assert_allclose(structure.control_images("untrained G", 32, 4, seed=1), g, atol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        structure.control_images("stripes", 32, 4)


def test_axis_search_finds_the_shift():
    x = structure.perturb(faces.generate_faces(25, 32, seed=4), "shift")
    k = structure._axis_shift(structure._normalise(x), 2)
    np.testing.assert_array_equal(k, 2 * (np.arange(25) % 5 - 2))  # axis moves by dx: k = 2 dx


def _two_discs(R, radius):
    """1 inside two discs of ``radius`` pixels centred on pixel (row 14, column 11) and its mirror image
    (column R - 1 - 11), where the score looks for the eyes at 32 px; 0 elsewhere."""
    yy, xx = np.mgrid[:R, :R]
    left, right = np.hypot(yy - 14, xx - 11), np.hypot(yy - 14, xx - (R - 12))
    return ((left <= radius) | (right <= radius)).astype(np.float32)


def test_symmetry_hand_computed():
    """A symmetric picture with one asymmetric block: the asymmetry is the block's step in units of contrast."""
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[:, :16, :, 0], x[:, 16:, :, 0] = 1.0, -1.0    # symmetric: top / bottom halves
    x[:, 24:, :8, 0] += 0.5                         # an 8 x 8 block at the bottom left, far from the eyes
    x[0, ..., 1] = _two_discs(32, 2.5)              # symmetric eyes in another channel, so presence is 1
    s = structure.structure_scores(x)
    c = x[0, ..., 0]
    asym = 0.5 / (c.std() + structure.SCALE_EPS)  # the 3 x 3 box fits inside the block; other channels are flat
    lo, hi = structure.SYM_TOL
    assert lo < asym < hi
    assert s["symmetry"][0] == pytest.approx((hi - asym) / (hi - lo), abs=1e-5)
    assert s["eye_colour"][0] == 1.0 and s["presence"][0] == 1.0
    assert s["score"][0] == pytest.approx(s["symmetry"][0])
    # The same picture mirrored everywhere is perfect.
    x[:, 24:, 24:, 0] += 0.5
    assert structure.structure_scores(x)["score"][0] == 1.0


def test_presence_hand_computed():
    """Two faint discs on a flat picture: presence is their contrast with the background in units of the
    channel's spread, ``a / (std + SCALE_EPS)``, on the documented ramp; without the discs it is 0."""
    x = np.zeros((3, 32, 32, 3), np.float32)
    discs = _two_discs(32, 2.5)  # the 3 x 3 iris window lies inside, the ring (>= 3.2 px) outside
    for i, a in enumerate((0.02, 0.025, 0.0)):
        x[i, ..., 2] = a * discs
    s = structure.structure_scores(x)
    lo, hi = structure.PRESENCE_TOL
    for i, a in enumerate((0.02, 0.025)):
        c = a / (x[i, ..., 2].std() + structure.SCALE_EPS)
        assert lo < c < hi
        assert s["presence"][i] == pytest.approx((c - lo) / (hi - lo), abs=1e-5)
    assert s["presence"][2] == 0.0 and s["symmetry"][2] == 1.0 and s["eye_colour"][2] == 1.0  # flat: symmetric
    np.testing.assert_allclose(s["score"], s["presence"], atol=1e-6)  # symmetric, eyes of one colour


def test_presence_needs_both_eyes():
    """Paint everything around the right eye flat skin (as far as the eye search and its ring reach): presence,
    the weaker eye's contrast, drops to 0 although the left eye is intact."""
    R = 64
    x = faces.generate_faces(40, R, seed=2)
    skin = x[:, int(0.58 * R), int(0.5 * R)]  # the bridge of the nose, between eyes and nose tip: skin
    x[:, int(0.22 * R):int(0.70 * R), int(0.41 * R):] = skin[:, None, None]
    assert structure.structure_scores(x)["presence"].max() < 0.05
    assert structure.structure_scores(faces.generate_faces(40, R, seed=2))["presence"].min() > 0.5


def test_eye_colour_sees_a_recoloured_iris_only():
    """Recolour the right iris of real faces: the eye part drops; a recoloured cheek does not touch it."""
    R = 64
    x = faces.generate_faces(40, R, seed=2)
    yy, xx = np.mgrid[:R, :R] + 0.5
    iris = (xx / R - 0.64) ** 2 + (yy / R - 0.46) ** 2 < 0.05 ** 2  # inside every iris whatever the jitter
    recoloured = x.copy()
    recoloured[:, iris] = np.where(x[:, iris] > 0, -0.8, 0.8)  # a clearly different colour
    assert structure.structure_scores(recoloured)["eye_colour"].mean() < 0.2
    cheek = (xx / R - 0.64) ** 2 + (yy / R - 0.62) ** 2 < 0.03 ** 2
    other = x.copy()
    other[:, cheek] += 0.3
    s = structure.structure_scores(np.clip(other, -1, 1))
    assert s["eye_colour"].mean() > 0.95 and s["symmetry"].mean() < 0.5


def test_deterministic_and_independent_of_the_batch():
    x = np.concatenate([faces.generate_faces(12, 64, seed=5), faces.generate_faces(12, 64, seed=5, broken=True),
                        structure.perturb(faces.generate_faces(12, 64, seed=6), "noise")])
    a = structure.structure_scores(x)
    b = structure.structure_scores(x)
    for key in ("eye_colour", "symmetry", "presence", "score"):
        np.testing.assert_array_equal(a[key], b[key])
    order = np.random.default_rng(0).permutation(len(x))
    shuffled = structure.structure_scores(x[order])
    alone = [structure.structure_scores(img)["score"][0] for img in x[:6]]
    np.testing.assert_allclose(shuffled["score"], a["score"][order], atol=1e-6)
    np.testing.assert_allclose(alone, a["score"][:6], atol=1e-6)
    assert 0.3 < a["score"].mean() < 0.8  # the batch really mixes high and low scores


def test_faces_entry_points_delegate():
    x = faces.generate_faces(8, 32, seed=1, broken="colour")
    assert faces.structure_score(x) == structure.structure_score(x)
    assert set(faces.structure_scores(x)) == {"eye_colour", "symmetry", "presence", "score"}
