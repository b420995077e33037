"""GAN losses as pure functions of discriminator logits (unscaled scores, shape ``(batch, 1)`` or ``(batch,)``).

Each returns a scalar: the mean over the batch, computed in float32 so mixed precision cannot overflow it.
``d_*`` functions are minimised by the discriminator, ``g_*`` by the generator.

* hinge (Lim & Ye 2017; Miyato et al. 2018; SAGAN): D: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))],
  G: -E[D(G(z))].
* non-saturating (Goodfellow et al. 2014): D: the logistic loss with real=1, fake=0; G: -E[log sigmoid(D(G(z)))].
* minimax: G minimises E[log(1 - sigmoid(D(G(z))))], the original game, whose gradient vanishes early on.
* wasserstein (Arjovsky et al. 2017): D: E[D(G(z))] - E[D(x)], G: -E[D(G(z))] (needs a Lipschitz D).
"""
from __future__ import annotations

from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def d_hinge(real_logits, fake_logits):
    return ops.mean(ops.relu(1.0 - _f32(real_logits))) + ops.mean(ops.relu(1.0 + _f32(fake_logits)))


def g_hinge(fake_logits):
    return -ops.mean(_f32(fake_logits))


def d_nonsaturating(real_logits, fake_logits):
    # -log sigmoid(r) = softplus(-r);  -log(1 - sigmoid(f)) = softplus(f)
    return ops.mean(ops.softplus(-_f32(real_logits))) + ops.mean(ops.softplus(_f32(fake_logits)))


def g_nonsaturating(fake_logits):
    return ops.mean(ops.softplus(-_f32(fake_logits)))


def g_minimax(fake_logits):
    # log(1 - sigmoid(f)) = -softplus(f)
    return -ops.mean(ops.softplus(_f32(fake_logits)))


def d_wasserstein(real_logits, fake_logits):
    return ops.mean(_f32(fake_logits)) - ops.mean(_f32(real_logits))


def g_wasserstein(fake_logits):
    return -ops.mean(_f32(fake_logits))


LOSSES = {
    "hinge": (d_hinge, g_hinge),
    "nonsaturating": (d_nonsaturating, g_nonsaturating),
    "minimax": (d_nonsaturating, g_minimax),
    "wasserstein": (d_wasserstein, g_wasserstein),
}


def get_loss(name: str):
    """``(d_loss, g_loss)`` for a loss name: one of ``hinge``, ``nonsaturating``, ``minimax``, ``wasserstein``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}.") from None
