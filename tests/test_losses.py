"""Losses against values computed by hand."""
import math

import numpy as np
import pytest

from sagan_tut import losses

REAL = np.array([[2.0], [0.5], [-1.0]], "float32")
FAKE = np.array([[-2.0], [0.0], [1.5]], "float32")


def test_hinge_by_hand():
    # D: mean(max(0, 1 - r)) = (0 + 0.5 + 2) / 3 ; mean(max(0, 1 + f)) = (0 + 1 + 2.5) / 3
    assert float(losses.d_hinge(REAL, FAKE)) == pytest.approx(2.5 / 3 + 3.5 / 3, rel=1e-6)
    assert float(losses.g_hinge(FAKE)) == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3, rel=1e-6)


def test_nonsaturating_by_hand():
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    d = -np.mean([math.log(sig(r)) for r in REAL[:, 0]]) - np.mean([math.log(1 - sig(f)) for f in FAKE[:, 0]])
    g = -np.mean([math.log(sig(f)) for f in FAKE[:, 0]])
    assert float(losses.d_nonsaturating(REAL, FAKE)) == pytest.approx(d, rel=1e-5)
    assert float(losses.g_nonsaturating(FAKE)) == pytest.approx(g, rel=1e-5)


def test_minimax_generator_by_hand():
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    expected = np.mean([math.log(1 - sig(f)) for f in FAKE[:, 0]])
    assert float(losses.g_minimax(FAKE)) == pytest.approx(expected, rel=1e-5)


def test_wasserstein_by_hand():
    assert float(losses.d_wasserstein(REAL, FAKE)) == pytest.approx(np.mean(FAKE) - np.mean(REAL), rel=1e-6)
    assert float(losses.g_wasserstein(FAKE)) == pytest.approx(-np.mean(FAKE), rel=1e-6)


def test_losses_are_float32_even_for_float16_logits():
    out = losses.d_hinge(REAL.astype("float16"), FAKE.astype("float16"))
    assert out.dtype == "float32"


def test_get_loss_names_and_error():
    assert losses.get_loss("hinge") == (losses.d_hinge, losses.g_hinge)
    with pytest.raises(ValueError, match="choose one of hinge, nonsaturating, minimax, wasserstein"):
        losses.get_loss("lsgan")
