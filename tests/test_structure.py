"""The structure score (sagan_tut.structure): its bars at 32, 64 and 128 px, hand-checked parts, determinism."""
import numpy as np
import pytest

from sagan_tut import faces, structure


@pytest.mark.parametrize("R", [32, 64, 128])
def test_structure_table_rows_and_bars(R):
    """Real faces keep >= 0.9 under every forgiven change, broken faces stay <= 0.4 under the same changes."""
    rows = faces.structure_table(R, n=200, seed=0)
    kinds = ("real", "broken", "broken colour", "broken geometry")
    assert [(r["faces"], r["perturbation"]) for r in rows] == [(f, p) for f in kinds for p in structure.PERTURBATIONS]
    for r in rows:
        if r["faces"] == "real":
            assert r["score"] >= 0.9 and r["p5"] >= 0.5, r  # the mean and the low tail
        else:
            assert r["score"] <= 0.4, r
    assert rows[0]["score"] > 0.99  # real faces as drawn: essentially perfect
    text = structure.table_markdown(rows)
    assert text.count("\n") == len(rows) + 1 and "| broken geometry | blur |" in text


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


def test_axis_search_finds_the_shift():
    x = structure.perturb(faces.generate_faces(25, 32, seed=4), "shift")
    k = structure._axis_shift(structure._normalise(x), 2)
    np.testing.assert_array_equal(k, 2 * (np.arange(25) % 5 - 2))  # axis moves by dx: k = 2 dx


def test_symmetry_hand_computed():
    """A symmetric picture with one asymmetric block: the asymmetry is the block's step in units of contrast."""
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[:, :16, :, 0], x[:, 16:, :, 0] = 1.0, -1.0    # symmetric: top / bottom halves
    x[:, 24:, :8, 0] += 0.5                         # an 8 x 8 block at the bottom left, far from the eyes
    s = structure.structure_scores(x)
    c = x[0, ..., 0]
    asym = 0.5 / (c.std() + structure.SCALE_EPS)  # the 3 x 3 box fits inside the block; other channels are flat
    lo, hi = structure.SYM_TOL
    assert lo < asym < hi
    assert s["symmetry"][0] == pytest.approx((hi - asym) / (hi - lo), abs=1e-5)
    assert s["eye_colour"][0] == 1.0 and s["score"][0] == pytest.approx(s["symmetry"][0])
    # The same picture mirrored everywhere is perfect.
    x[:, 24:, 24:, 0] += 0.5
    assert structure.structure_scores(x)["score"][0] == 1.0


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
    for key in ("eye_colour", "symmetry", "score"):
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
    assert set(faces.structure_scores(x)) == {"eye_colour", "symmetry", "score"}
