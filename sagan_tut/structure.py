"""The structure score of the procedural faces: are there two eyes, of one colour, in a mirror-symmetric face?

A real face (:mod:`sagan_tut.faces`) obeys two long-range constraints: its two irises have one colour, and the
picture is left-right symmetric. Both constraints also hold for a picture with no face in it: a flat image, or
the blurry blob an 80-iteration generator draws, is symmetric, and its "two irises" (two patches of the same
blob) have one colour -- such samples scored 0.67-0.95 on those two parts alone, a flat image 1. So a third
part asks whether there are eyes at all before their agreement counts (now 0.00-0.07 on those samples).

A generator's samples differ from renderings in ways that are *not* structural: the face sits a pixel or two
off centre, edges are soft, pixels are noisy, colours and contrast drift. The score below is built so that none
of those matter and only the eyes and the two constraints do.

Method, per image (numpy only, a few passes over the pixels):

0. **Pool** images of 64 px and more by 2 x 2 (four times less work; 32-px detail is all the score needs).
   Only by 2: a face shifted by one pixel stays exactly symmetric on the pooled grid (about a half-pixel
   axis), which 4 x 4 pooling would break for odd shifts.
1. **Normalise** every channel to zero mean and unit spread, ``z = (x - mean_c) / (std_c + 0.05)``: a global
   colour or contrast change (``x * gain_c + offset_c``) leaves ``z`` (almost) unchanged, so every tolerance
   below is in units of the image's own contrast.
2. **Find the mirror axis.** Mirroring an image whose face sits ``dx`` pixels right of centre gives the image
   shifted by ``2 dx``. So compare ``z`` with its mirror image shifted by ``k`` pixels, ``k`` in
   ``-2S .. 2S`` (a face ``S = max(2, R / 32)`` pixels off centre, in half-pixel steps), on 16 horizontal bands
   (cheap; vertical detail does not locate a vertical axis), and keep the ``k`` with the smallest mean square
   difference. Vertical shifts need nothing: a mirror pair lies in one row.
3. **Symmetry.** The mirror difference ``D = z - mirror(z)`` about that axis (zero for a symmetric face, however
   blurred, tinted or shifted) is averaged over a sliding box of side ``0.09 R`` (about the size of an iris or
   of the mouth, so a displaced feature shows at full strength), and its colour norm ``E`` taken at every
   position. Pixel noise also gives a non-zero ``E``: its expected square ``2 sigma^2 / box^2`` per channel is
   subtracted ``NOISE_LAMBDA`` times, with ``sigma`` the image's own noise level (the median absolute
   difference of horizontal neighbours, which flat areas dominate: 0 for a clean rendering). The asymmetry is
   the largest remaining ``E``; it scores 1 below ``SYM_TOL[0]`` and 0 above ``SYM_TOL[1]``, linear between.
   The largest, not the mean: a broken face is symmetric almost everywhere, its break is one feature.
4. **Eye colour.** The eyes are *located*, not assumed: each eye's column is ``0.14 R`` either side of the
   axis; its height is where the strip profile through the eye (a few columns inside the iris, averaged) is
   most nearly up-down symmetric (iris and eyelid ring are discs) within ``0.07 R + S`` pixels of the nominal
   height. The colour of each iris is the profile averaged over ``+-0.03 R`` around that centre (inside every
   iris, radius >= 0.07 R); their distance, less the part pixel noise explains, scores 1 below ``EYE_TOL[0]``
   and 0 above ``EYE_TOL[1]``. Each eye is located on its own, so eyes at different heights (a geometry
   break) still compare their colours; the symmetry part sees the height difference.
5. **Presence.** Each located iris colour is compared with the mean of a ring around it (radii ``RING`` =
   0.10-0.13 R, just outside every iris: eyelid outline, skin, a little eyebrow). Their distance, less the part
   pixel noise explains (iris window and ring both noisy), is the eye's contrast; the weaker of the two eyes
   counts (both must be there). It scores 0 below ``PRESENCE_TOL[0]`` and 1 above ``PRESENCE_TOL[1]``, linear
   between. In a real face that contrast is 1.1-4.7 (5th-95th percentile; 1st: 0.75; units of the image's
   contrast) since an iris of any hue sits in a dark outline on skin; a flat image has none, pixel noise is
   subtracted, an untrained generator's texture is pixel-scale and so counts as noise, and a face blurred until
   its eyes vanish (sigma R / 6) keeps below 0.43, median 0.15 (1,000 faces at 32, 64, 128 px). The ramp sits
   between the two, nearer the blobs: a face drawn at 16 px and scaled up (its irises 1.2 px) keeps its eyes.
6. ``score = eye_colour * symmetry * presence``: a face has its structure only if there are eyes and both
   constraints hold (with a mean, a face whose only break is its eye colour would still score 0.67).

Everything is a fixed function of each image alone (no randomness, no batch statistics), so a score does not
depend on which other images are scored with it. Not measured, by design: whether the rest of the picture
(hair, mouth, colours) looks like a face -- read the score next to FID and the samples. :func:`control_images`
and ``perturb(x, "blur away")`` make the pictures without eyes the table and tests check this on.
"""
from __future__ import annotations

import numpy as np

EYE_DX, EYE_Y = 0.14, 0.46  # eye centres at x = axis -/+ 0.14 R, y = 0.46 R (faces.EYE_DX, faces.EYE_Y)
MIN_SIZE = 16
SCALE_EPS = 0.05            # added to each channel's std: a flat channel is not blown up into noise
BANDS = 16                  # horizontal bands for the axis search
SYM_BOX = 0.09              # side of the sliding box of the symmetry map, in fractions of R
EYE_STRIP = 0.03            # half-width of the strip through each eye / half-height of its colour window
EYE_SEARCH = 0.07           # how far (fraction of R, plus the shift S) the eye centre may sit from 0.46 R
EYE_SPAN = 0.1              # half-height of the profile compared with its reflection to find the eye centre
EYE_CONTRAST = 0.25          # weight of the contrast reward when locating an eye
NOISE_LAMBDA = 8.0          # multiples of the pure-noise energy subtracted before judging a difference
SYM_TOL = (0.3, 0.8)        # asymmetry (units of the image's contrast) scoring 1 / 0
EYE_TOL = (0.4, 1.0)        # eye colour distance (same units) scoring 1 / 0
RING = (0.10, 0.13)         # inner / outer radius (fractions of R) of the ring an iris is compared with
PRESENCE_TOL = (0.25, 0.55)  # iris-ring contrast (same units) scoring 0 / 1 (note: the other way round)


def as_batch(images) -> np.ndarray:
    """Images as a float32 ``(n, R, R, 3)`` batch in [-1, 1], or a ValueError that says what is wrong."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2] or x.shape[1] < MIN_SIZE:
        raise ValueError(f"images must be (n, R, R, 3) with R >= {MIN_SIZE}, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinity.")
    if x.size and (x.min() < -1.5 or x.max() > 1.5):
        raise ValueError(f"images must be in [-1, 1] (got values in [{x.min():.2f}, {x.max():.2f}]); "
                         "map uint8 images with x / 127.5 - 1.")
    return x


def _ramp(d, tol):
    """1 below tol[0], 0 above tol[1], linear between."""
    return np.clip((tol[1] - d) / (tol[1] - tol[0]), 0.0, 1.0)


def _pool(x, f: int):
    """Average f x f blocks (a sum of f * f strided views: much faster than a reshape-mean), after cropping the
    R mod f leftover rows and columns evenly from both sides."""
    n, R = x.shape[:2]
    W = R // f
    lo = (R - W * f) // 2
    x = x[:, lo:lo + W * f, lo:lo + W * f]
    if f == 1:
        return np.array(x, np.float32)
    out = np.zeros((n, W, W, 3), np.float32)
    for i in range(f):
        for j in range(f):
            out += x[:, i::f, j::f]
    return out * np.float32(1.0 / (f * f))


def _normalise(x):
    flat = x.reshape(len(x), -1, 3)
    m = flat.mean(axis=1)
    s = np.sqrt(np.maximum(np.einsum("npc,npc->nc", flat, flat) / flat.shape[1] - m * m, 0.0))
    return (x - m[:, None, None]) / (s[:, None, None] + SCALE_EPS)


def _noise_var(z):
    """Per-image, per-channel pixel noise variance: the median |horizontal neighbour difference| of white noise
    of std sigma is 0.6745 * sqrt(2) * sigma; edges and shading are too rare to move the median."""
    med = np.median(np.abs(z[:, ::2, 1:] - z[:, ::2, :-1]), axis=(1, 2))  # every other row: half the work
    return (med / (0.6745 * np.sqrt(2.0))) ** 2  # (n, 3)


def _mirror_pairs(R: int, k: int):
    """Columns ``j`` and partners ``R - 1 + k - j`` (the mirror image shifted by k), both inside the image."""
    j = np.arange(max(0, k), R + min(0, k))
    return j, R - 1 + k - j


def _band_matrix(rows: int, cols: int) -> np.ndarray:
    """(rows, cols) matrix averaging ``cols`` positions into ``rows`` nearly equal consecutive bands."""
    edges = np.linspace(0, cols, rows + 1).round().astype(int)
    m = np.zeros((rows, cols), np.float32)
    for i in range(rows):
        m[i, edges[i]:edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
    return m


def _axis_shift(z, S: int) -> np.ndarray:
    """Per image, the k in -2S..2S for which z best matches its mirror image shifted by k (axis at (R-1+k)/2)."""
    n, R = z.shape[:2]
    # Average rows into bands with one matrix product; p[i, x] holds column x of image i as BANDS x 3 numbers.
    p = np.tensordot(z, _band_matrix(min(BANDS, R), R), axes=([1], [1])).reshape(n, R, -1)
    ks = np.arange(-2 * S, 2 * S + 1)
    cost = np.empty((n, len(ks)), np.float32)
    for i, k in enumerate(ks):
        j, m = _mirror_pairs(R, k)
        cost[:, i] = np.square(p[:, j] - p[:, m]).reshape(n, -1).mean(axis=1)
    # Ties (a flat image) go to the smallest |k|: argmin takes the first, so order the candidates by |k|.
    order = np.argsort(np.abs(ks), kind="stable")
    return ks[order][np.argmin(cost[:, order], axis=1)]


def _symmetry(z, k, noise):
    n, R = z.shape[:2]
    D = np.zeros_like(z)
    for kk in np.unique(k):
        idx = np.nonzero(k == kk)[0]
        j, m = _mirror_pairs(R, int(kk))
        D[idx[:, None], :, j] = np.moveaxis(z[idx][:, :, j] - z[idx][:, :, m], 2, 1)
    # Sliding box mean (zero outside the image) along y and x as two matrix products with a banded matrix.
    b = 2 * int(round(SYM_BOX * R / 2)) + 1
    i = np.arange(R)
    box = (np.abs(i[:, None] - i[None, :]) <= b // 2).astype(np.float32) / b
    Dm = np.tensordot(np.tensordot(D, box, axes=([2], [1])), box, axes=([1], [1]))  # (n, 3, x, y)
    E2 = np.einsum("ncxy,ncxy->nxy", Dm, Dm).reshape(n, -1).max(axis=1)
    floor = NOISE_LAMBDA * (2.0 * noise / b ** 2).sum(axis=-1)  # (n,)
    return _ramp(np.sqrt(np.maximum(E2 - floor, 0.0)), SYM_TOL)


def _eyes(z, k, S, noise):
    """Per image: the eye-colour part and the presence part (see the module docstring, steps 4 and 5)."""
    n, R = z.shape[:2]
    h = max(1, int(round(EYE_STRIP * R)))
    # Strip profiles through the left eye and its mirror partner, (n, R, 3) each.
    x_left = (0.5 - EYE_DX) * R - 0.5 + k / 2.0  # pixel index of the left eye's centre, per image
    cx_left = np.rint(x_left).astype(int)
    cx_right = R - 1 + k - cx_left
    cols = cx_left[:, None] + np.arange(-h, h + 1)[None, :]  # (n, 2h+1)
    rows = np.arange(n)[:, None]
    left = z[rows, :, cols].mean(axis=1)                        # z[i, :, cols[i]] -> (n, 2h+1, R, 3) -> mean
    right = z[rows, :, (R - 1 + k)[:, None] - cols].mean(axis=1)
    # Candidate centres c2 / 2 (half-pixel steps) around the nominal height; reflection pairs (c2 - t, t).
    y0, reach = EYE_Y * R - 0.5, EYE_SEARCH * R + S
    c2 = np.arange(int(np.ceil(2 * (y0 - reach))), int(np.floor(2 * (y0 + reach))) + 1)
    span = int(round(EYE_SPAN * R))
    t = np.arange(1, span + 1)
    up = np.clip((c2[:, None] + 1) // 2 + t[None, :] - 1 + (c2[:, None] % 2 == 0), 0, R - 1)  # rows below c
    down = np.clip(c2[:, None] - up, 0, R - 1)                                             # their reflections
    win = np.abs(np.arange(R)[None, :] * 2 - c2[:, None]) <= 2 * h   # rows within +-h of each centre
    win = win / win.sum(axis=1, keepdims=True)

    def locate(profile):
        """The eye's centre (2 x its row, in half pixels) and the iris colour there."""
        a, b = profile[:, up], profile[:, down]  # (n, len(c2), span, 3)
        # Up-down mismatch, less a reward for contrast: flat skin is symmetric too, but has no structure.
        mismatch = np.square(a - b).sum(axis=(2, 3))
        spread = np.square(a + b - (a + b).mean(axis=2, keepdims=True)).sum(axis=(2, 3))
        best = np.argmin(mismatch - EYE_CONTRAST * spread, axis=1)
        return c2[best], np.einsum("ny,nyc->nc", win[best], profile)

    (cy_left, iris_left), (cy_right, iris_right) = locate(left), locate(right)
    # Noise in each colour window: variance noise / (window pixels); two windows are subtracted.
    count = (2 * h + 1) * (2 * h + 1)
    d2 = np.square(iris_left - iris_right).sum(axis=-1)
    d = np.sqrt(np.maximum(d2 - NOISE_LAMBDA * (2.0 * noise / count).sum(axis=-1), 0.0))
    eye = _ramp(d, EYE_TOL)

    # Presence: each iris against the mean of a ring around it (skin, eyelid outline, eyebrow). The ring is a
    # fixed mask on a small patch around the located centre, one mask per row parity (a centre sits on a row or
    # half-way between two rows); gathering the patch costs about as much as the strips above.
    P = int(np.ceil(RING[1] * R))
    dy, dx = np.arange(-P, P + 2), np.arange(-P, P + 1)
    masks = []
    for half in (0.0, 0.5):  # centre on a pixel row, or half-way between two rows
        r = np.hypot(dy[:, None] - half, dx[None, :]) / R
        masks.append((r >= RING[0]) & (r <= RING[1]))
    masks = np.array(masks, np.float32)
    ring_count = masks.sum(axis=(1, 2))  # (2,)
    masks /= ring_count[:, None, None]

    def contrast(cy2, cx, iris):
        ry = np.clip(cy2[:, None] // 2 + dy[None, :], 0, R - 1)  # (n, rows of the patch)
        rx = np.clip(cx[:, None] + dx[None, :], 0, R - 1)
        patch = z[rows[:, :, None], ry[:, :, None], rx[:, None, :]]  # (n, 2P+2, 2P+1, 3)
        ring = np.einsum("nyx,nyxc->nc", masks[cy2 % 2], patch)
        d2 = np.square(iris - ring).sum(axis=-1)
        floor = NOISE_LAMBDA * (noise * (1.0 / count + 1.0 / ring_count[cy2 % 2, None])).sum(axis=-1)
        return np.sqrt(np.maximum(d2 - floor, 0.0))

    c = np.minimum(contrast(cy_left, cx_left, iris_left), contrast(cy_right, cx_right, iris_right))
    return eye, 1.0 - _ramp(c, PRESENCE_TOL)


def structure_scores(images) -> dict:
    """Per-image structure scores in [0, 1] (1 = eyes present, both constraints hold): ``{"eye_colour",
    "symmetry", "presence", "score"}``, float arrays of length n, ``score = eye_colour * symmetry * presence``.
    See the module docstring."""
    x = as_batch(images)
    f = 2 if x.shape[1] >= 64 else 1  # see the module docstring, step 0
    S = max(1, int(np.ceil(max(2, x.shape[1] / 32) / f)))  # shift search, in working pixels
    z = _normalise(_pool(x, f))
    noise = _noise_var(z)
    k = _axis_shift(z, S)
    sym = _symmetry(z, k, noise)
    eye, presence = _eyes(z, k, S, noise)
    return {"eye_colour": eye.astype(np.float64), "symmetry": sym.astype(np.float64),
            "presence": presence.astype(np.float64), "score": (eye * sym * presence).astype(np.float64)}


def structure_score(images) -> float:
    """Mean structure score of a batch of images in [-1, 1] (see :func:`structure_scores`)."""
    return float(np.mean(structure_scores(images)["score"]))


# ------------------------------------------------------------------------------------ what the score forgives
def perturb(images, kind: str, seed: int = 0) -> np.ndarray:
    """``images`` with one of the non-structural changes the score must forgive (the table and tests use these).

    ``"shift"``: image i moves by (dx, dy) = (i mod 5 - 2, (i div 5) mod 5 - 2) pixels, every shift in -2..2 in
    turn, edges padded with the border pixels; ``"blur"``: Gaussian, sigma R / 32 pixels; ``"noise"``: Gaussian
    pixel noise of std 0.1 (seeded), clipped to [-1, 1]; ``"colour"``: per channel ``x * (0.7, 0.8, 0.9) +
    (0.1, -0.05, 0)``, a contrast loss with a tint. Not forgiven, a control: ``"blur away"``, Gaussian blur of
    sigma R / 6 pixels, which leaves a symmetric face-coloured blob with no eyes in it (it must score low).
    """
    from scipy import ndimage

    x = as_batch(images)
    n, R = x.shape[:2]
    if kind == "none":
        return x.copy()
    if kind == "shift":
        out = np.empty_like(x)
        p = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
        for i in range(n):
            dx, dy = i % 5 - 2, (i // 5) % 5 - 2
            out[i] = p[i, 2 - dy:2 - dy + R, 2 - dx:2 - dx + R]
        return out
    if kind in ("blur", "blur away"):
        sigma = R / 32 if kind == "blur" else R / 6
        return ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="nearest").astype(np.float32)
    if kind == "noise":
        noise = np.random.default_rng(seed).normal(0.0, 0.1, x.shape).astype(np.float32)
        return np.clip(x + noise, -1.0, 1.0)
    if kind == "colour":
        return x * np.float32([0.7, 0.8, 0.9]) + np.float32([0.1, -0.05, 0.0])
    raise ValueError(f"kind must be one of {PERTURBATIONS} or 'blur away', got {kind!r}.")


PERTURBATIONS = ("none", "shift", "blur", "noise", "colour")


# ---------------------------------------------------------------------------------- pictures without a face
CONTROLS = ("flat", "noise", "untrained G")


def control_images(kind: str, resolution: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` pictures with no eyes in them, which must score low (the table and tests use these).

    ``"flat"``: one colour per image, uniform in [-1, 1] per channel; ``"noise"``: Gaussian pixel noise of std
    0.5 around one colour per image (uniform in [-0.5, 0.5]), clipped to [-1, 1]; ``"untrained G"``: samples of
    a freshly initialised ``make_generator("blog", resolution, width=0.25)`` on standard normal z, with
    ``training=False`` -- what chapter 4's generator draws before it learns anything. That one needs Keras
    (imported here only) and seeds Keras with ``keras.utils.set_random_seed(seed)``, restoring numpy's and
    Python's global random states afterwards.
    """
    rng = np.random.default_rng(seed)
    R = int(resolution)
    if kind == "flat":
        return np.broadcast_to(rng.uniform(-1, 1, (n, 1, 1, 3)), (n, R, R, 3)).astype(np.float32)
    if kind == "noise":
        colour = rng.uniform(-0.5, 0.5, (n, 1, 1, 3))
        return np.clip(colour + rng.normal(0.0, 0.5, (n, R, R, 3)), -1.0, 1.0).astype(np.float32)
    if kind == "untrained G":
        import random

        import keras

        from .models import make_generator

        states = np.random.get_state(), random.getstate()
        try:
            keras.utils.set_random_seed(seed)
            G = make_generator(arch="blog", resolution=R, width=0.25, attention_res="auto")
        finally:
            np.random.set_state(states[0])
            random.setstate(states[1])
        z = rng.normal(size=(n, G.input_shape[-1])).astype(np.float32)
        return np.clip(np.asarray(G(z, training=False)), -1.0, 1.0)
    raise ValueError(f"kind must be one of {CONTROLS}, got {kind!r}.")


def table_row(faces: str, perturbation: str, images) -> dict:
    """One row of :func:`sagan_tut.faces.structure_table`: the labels, the mean of every part, and the 5th
    percentile ``p5`` of the per-image scores."""
    s = structure_scores(images)
    row = dict(faces=faces, perturbation=perturbation, score=float(s["score"].mean()),
               p5=float(np.percentile(s["score"], 5)))
    row.update({part: float(v.mean()) for part, v in s.items() if part != "score"})
    return row


def table_markdown(rows) -> str:
    """A markdown table of :func:`sagan_tut.faces.structure_table` rows."""
    lines = ["| faces | change | score | 5th percentile | eye colour | symmetry | presence |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['faces']} | {r['perturbation']} | {r['score']:.3f} | {r['p5']:.3f} | "
                     f"{r['eye_colour']:.3f} | {r['symmetry']:.3f} | {r['presence']:.3f} |")
    return "\n".join(lines)
