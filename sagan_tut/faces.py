"""Procedural faces: an offline dataset with long-range structure you can measure.

Every image is a cartoon face drawn from about thirty random numbers (colours of skin, hair, background,
shirt, lips and eyes; sizes; a small vertical shift). Two constraints tie far-apart pixels together:

* **shared eye colour** -- both eyes get one random colour (any hue), so the colour of the right eye is
  predictable only from the left eye, about 0.28 * R pixels away;
* **left-right mirror symmetry** -- every shape is centred on the vertical midline (eyes, eyebrows, mouth,
  fringe, hair, shading), so pixel (y, x) equals pixel (y, R-1-x).

A convolution sees a few pixels; a generator only gets these constraints right by carrying information across
the face. That is the job self-attention claims to do better (SAGAN, Zhang et al. 2019, section 1), so
chapter 6 measures it with :func:`structure_score`.

Determinism: image ``i`` of stream ``s`` is a pure function of ``(s, i)``. Its random numbers come from an
integer hash of ``(s, i, parameter index)`` (no random state), so a batch never depends on which batches came
before it, on the batch size, or on how many threads produced it. That is what lets
:func:`faces_dataset` restart exactly from a checkpointed position.

``broken=True`` draws the *same* faces with the structure removed: the right eye gets its own colour, its own
height, the mouth and the fringe move sideways. The broken set is the control for the score.

Everything runs in TensorFlow ops on whole batches (a few dozen element-wise ops on ``(B, R, R)`` grids).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

#: Nominal split sizes of ``load_dataset("faces")``: an epoch of the train split is 100,000 fixed images.
SPLIT_SIZES = {"train": 100_000, "val": 10_000, "test": 10_000}
#: Hash stream of each split. ``generate_faces(n, R, seed=s)`` draws from stream ``s``, so seed 0 gives the
#: first training images; streams 0-2 are the splits, any other seed gives faces outside every split.
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
BROKEN_MODES = ("colour", "geometry")

# Geometry, in fractions of the image side (x to the right, y down, pixel centres at (i + 0.5) / R).
EYE_DX = 0.14       # eye centres at x = 0.5 -/+ EYE_DX: 0.28 R apart
EYE_Y = 0.46        # eye centre height before the vertical jitter
JITTER = 0.015      # the whole face moves up or down by at most this much
EYE_R = (0.07, 0.08)  # eye (iris) radius range; the score's window (sigma 0.03) stays inside it

N_PARAMS = 40  # random numbers per face (a few are spare, so new features don't reshuffle old faces)


# ----------------------------------------------------------------------------------------------- randomness
def _hash32(x):
    """Bijective 32-bit integer mixer ("lowbias32", C. Wellons' hash-prospector): neighbouring inputs give
    unrelated outputs, which is all a counter-based random number generator needs."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def face_uniforms(stream, ids, n_params: int = N_PARAMS):
    """Uniform numbers in [0, 1), shape ``(len(ids), n_params)``: entry ``[k, j]`` depends only on
    ``(stream, ids[k], j)``."""
    stream = tf.cast(tf.bitwise.bitwise_and(tf.cast(stream, tf.int64), 0xFFFFFFFF), tf.uint32)
    ids = tf.cast(tf.bitwise.bitwise_and(tf.cast(ids, tf.int64), 0xFFFFFFFF), tf.uint32)
    key = _hash32(_hash32(stream + tf.constant(0x9E3779B9, tf.uint32)) ^ ids)  # (B,)
    j = tf.cast(tf.range(n_params, dtype=tf.int64), tf.uint32) * tf.constant(0x85EBCA6B, tf.uint32)
    bits = _hash32(_hash32(key[:, None] + j[None, :]))
    # The top 24 bits fit a float32 mantissa exactly: values k / 2**24, never 1.0.
    return tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) * (1.0 / (1 << 24))


# -------------------------------------------------------------------------------------------------- drawing
def _lerp(u, lo, hi):
    return lo + (hi - lo) * u


def _hsv(h, s, v):
    """(B,) HSV in [0, 1] (h wraps) -> (B, 3) RGB in [0, 1]."""
    return tf.image.hsv_to_rgb(tf.stack([h - tf.floor(h), s, v], axis=-1))


def _params(p, broken_colour, broken_geometry):
    """Turn the (B, N_PARAMS) uniforms into named face parameters (all (B,) or (B, 3) tensors)."""
    columns = tf.unstack(p, num=N_PARAMS, axis=1)  # one op instead of one slice per parameter

    def c(j):
        return columns[j]

    jy = _lerp(c(0), -JITTER, JITTER)
    q = {
        "jy": jy,
        "bg": _hsv(c(1), _lerp(c(2), 0.0, 0.45), _lerp(c(3), 0.3, 0.95)),
        "shirt": _hsv(c(4), _lerp(c(5), 0.3, 0.9), _lerp(c(6), 0.25, 0.9)),
        "skin": _hsv(_lerp(c(7), 0.02, 0.11), _lerp(c(8), 0.2, 0.6), _lerp(c(9), 0.35, 0.97)),
        "hair": _hsv(_lerp(c(10), 0.0, 0.14), _lerp(c(11), 0.15, 0.9), _lerp(c(12), 0.08, 0.85)),
        "lips": _hsv(_lerp(c(13), -0.05, 0.02), _lerp(c(14), 0.35, 0.8), _lerp(c(15), 0.45, 0.85)),
        "eye_l": _hsv(c(16), _lerp(c(17), 0.6, 1.0), _lerp(c(18), 0.45, 0.95)),
        "face_rx": _lerp(c(19), 0.24, 0.28),
        "face_ry": _lerp(c(20), 0.30, 0.34),
        "hair_rx": _lerp(c(21), 0.33, 0.39),
        "hair_ry": _lerp(c(22), 0.36, 0.46),
        "fringe_ry": _lerp(c(23), 0.07, 0.13),
        "eye_r": _lerp(c(24), *EYE_R),
        "mouth_rx": _lerp(c(25), 0.07, 0.11),
        "mouth_ry": _lerp(c(26), 0.02, 0.035),
        "shade": _lerp(c(27), 0.0, 0.3),
    }
    q["eye_r_right"] = q["eye_r"]
    q["eye_y_left"] = q["eye_y_right"] = EYE_Y + jy
    q["eye_right"] = q["eye_l"]
    q["mouth_dx"] = q["fringe_dx"] = tf.zeros_like(jy)
    if broken_colour:  # the right eye gets its own colour from spare uniforms
        q["eye_right"] = _hsv(c(30), _lerp(c(31), 0.6, 1.0), _lerp(c(32), 0.45, 0.95))
    if broken_geometry:  # the right eye moves and resizes, mouth and fringe slide sideways
        q["eye_y_right"] = EYE_Y + jy + _lerp(c(33), -0.05, 0.05)
        q["eye_r_right"] = _lerp(c(34), *EYE_R)
        q["mouth_dx"] = _lerp(c(35), -0.06, 0.06)
        q["fringe_dx"] = _lerp(c(36), -0.12, 0.12)
    return q


def render_faces(ids, resolution: int, stream=0, broken=False, mirror: bool = True):
    """Draw faces ``ids`` (int vector) of hash ``stream`` as a ``(B, R, R, 3)`` float32 tensor in [-1, 1].

    ``broken``: ``False``; ``True`` (both breaks); ``"colour"`` (independent eye colours only) or
    ``"geometry"`` (asymmetric eyes, mouth and fringe only). Intact faces are mirror-symmetric, so by default
    only the left half is drawn and then mirrored (half the work); ``mirror=False`` draws every pixel (the
    tests check the two agree, which checks that the drawing really is symmetric).
    """
    broken_colour, broken_geometry = _broken_flags(broken)
    R = int(resolution)
    q = _params(face_uniforms(stream, ids), broken_colour, broken_geometry)
    if mirror and not (broken_colour or broken_geometry):
        left = _draw(q, R, (R + 1) // 2, sides=("left",))
        img = tf.concat([left, tf.reverse(left[:, :, : R // 2], axis=[2])], axis=2)
    else:
        img = _draw(q, R, R, sides=("left", "right"))
    return tf.clip_by_value(img * 2.0 - 1.0, -1.0, 1.0)


def _draw(q, R: int, n_cols: int, sides):
    """Paint the face shapes back to front on the first ``n_cols`` columns; RGB in [0, 1]."""
    grid = (tf.range(R, dtype=tf.float32) + 0.5) / R
    x = grid[None, None, :n_cols]  # (1, 1, C)
    y = grid[None, :, None]        # (1, R, 1)

    def col(t):  # (B,) -> (B, 1, 1) for broadcasting against the pixel grid
        return tf.reshape(t, [-1, 1, 1]) if isinstance(t, tf.Tensor) and t.shape.rank == 1 else t

    def ellipse(cx, cy, rx, ry):
        """Coverage in [0, 1] with a one-pixel soft edge (antialiased at every resolution).

        With d the normalised radius (d = 1 on the outline), the distance to the outline is about
        (d - 1) * min(rx, ry), and d - 1 ~ (d^2 - 1) / 2 near the outline. d^2 is a sum of an x-only and a
        y-only term, so each shape costs two small 1-D arrays and one add + clip per pixel (no sqrt).
        """
        cx, cy, rx, ry = col(cx), col(cy), col(rx), col(ry)
        k = 0.5 * R * tf.minimum(rx, ry)
        along_x = k * tf.square((x - cx) / rx) - (0.5 + k)  # (B, 1, C)
        along_y = k * tf.square((y - cy) / ry)              # (B, R, 1)
        return tf.clip_by_value(-(along_x + along_y), 0.0, 1.0)

    def paint(img, mask, rgb):
        return img + tf.expand_dims(mask, -1) * (tf.reshape(rgb, [-1, 1, 1, 3]) - img)

    jy = q["jy"]
    B = tf.shape(jy)[0]
    # Background: flat colour darkening towards the bottom (vertical only, so it stays mirror-symmetric).
    img = q["bg"][:, None, None, :] * (1.0 - 0.25 * y[..., None]) * tf.ones([B, R, n_cols, 1])
    img = paint(img, ellipse(0.5, 1.08, 0.46, 0.26), q["shirt"])                          # shoulders
    img = paint(img, ellipse(0.5, 0.47 + jy, q["hair_rx"], q["hair_ry"]), q["hair"])      # hair behind head
    img = paint(img, ellipse(0.5, 0.82 + jy, 0.09, 0.14), q["skin"] * 0.85)              # neck
    face = ellipse(0.5, 0.53 + jy, q["face_rx"], q["face_ry"])
    # Skin with symmetric side shading: darker towards the cheeks' edges.
    shade = 1.0 - col(q["shade"]) * tf.square((x - 0.5) / col(q["face_rx"]))  # (B, 1, C)
    img = img + face[..., None] * (q["skin"][:, None, None, :] * shade[..., None] - img)
    img = paint(img, ellipse(0.5 + q["fringe_dx"], 0.26 + jy, q["face_rx"] + 0.02, q["fringe_ry"]), q["hair"])
    for side in sides:
        ex = 0.5 + (EYE_DX if side == "right" else -EYE_DX)
        ey = q[f"eye_y_{side}"]
        r = q["eye_r"] if side == "left" else q["eye_r_right"]
        img = paint(img, ellipse(ex, ey - 0.085, 0.075, 0.02), q["hair"] * 0.8)          # eyebrow
        img = paint(img, ellipse(ex, ey, r + 0.018, r + 0.018), q["skin"] * 0.25)         # eyelid outline
        img = paint(img, ellipse(ex, ey, r, r), q["eye_l"] if side == "left" else q["eye_right"])  # iris
    img = paint(img, ellipse(0.5, 0.62 + jy, 0.028, 0.05), q["skin"] * 0.8)              # nose
    return paint(img, ellipse(0.5 + q["mouth_dx"], 0.74 + jy, q["mouth_rx"], q["mouth_ry"]), q["lips"])


def _broken_flags(broken):
    if broken is True:
        return True, True
    if broken is False or broken is None:
        return False, False
    if broken in BROKEN_MODES:
        return broken == "colour", broken == "geometry"
    raise ValueError(f"broken must be True, False, 'colour' or 'geometry', got {broken!r}.")


def _check_resolution(resolution):
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 16:
        raise ValueError(f"resolution must be an integer >= 16 (the course uses 32, 64 or 128), got {resolution!r}.")
    return int(resolution)


def generate_faces(n: int, resolution: int = 64, seed: int = 0, broken=False, start: int = 0) -> np.ndarray:
    """``n`` faces as a float32 array ``(n, R, R, 3)`` in [-1, 1]: faces ``start .. start+n-1`` of stream ``seed``.

    Stream 0 is the training split of ``load_dataset("faces")`` (so ``generate_faces(8, 32)`` equals the first
    8 training images in unshuffled order), 1 and 2 are the val and test splits. ``broken`` draws the same faces
    with the structure removed (see :func:`render_faces`).
    """
    R = _check_resolution(resolution)
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    _broken_flags(broken)
    chunks, chunk = [], max(1, 2 ** 20 // (R * R))  # ~12 MB of pixels per TF call
    for lo in range(int(start), int(start) + int(n), chunk):
        ids = tf.range(lo, min(lo + chunk, int(start) + int(n)), dtype=tf.int64)
        chunks.append(_render_fn(R, broken)(ids, tf.constant(int(seed), tf.int64)).numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, R, R, 3), np.float32)


_RENDER_CACHE: dict = {}


def _render_fn(R, broken):
    """One traced ``tf.function`` per (resolution, broken), reused across calls (tracing costs ~0.3 s)."""
    key = (R, broken)
    if key not in _RENDER_CACHE:
        _RENDER_CACHE[key] = tf.function(
            lambda ids, stream: render_faces(ids, R, stream, broken), autograph=False,
            input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
    return _RENDER_CACHE[key]


# ------------------------------------------------------------------------------------------------- tf.data
def shuffled_index(j, epoch, seed, n: int, salt=0):
    """Entry ``j`` (0 <= j < n) of a random permutation of ``range(n)`` chosen by ``(seed, epoch, salt)``.

    Stateless (TF's RandomIndexShuffle, a keyed pseudo-random bijection): nothing is stored, any entry costs the
    same, and the result ignores TensorFlow's global seed. ``j`` may be a scalar or a vector. The public wrapper
    ``tf.random.experimental.index_shuffle`` mis-pads per-element seeds in TF 2.21, so the raw op is called.
    """
    j = tf.convert_to_tensor(j, tf.int64)

    def full(v):
        return tf.broadcast_to(tf.cast(v, tf.int64), tf.shape(j))

    seeds = tf.stack([full(seed), full(epoch), full(salt)], axis=-1)
    return tf.raw_ops.RandomIndexShuffle(index=j, seed=seeds, max_index=full(n - 1), rounds=4)


def faces_dataset(resolution: int = 64, batch_size: int = 64, split: str = "train", seed: int = 0,
                  shuffle: bool = True, repeat: bool = True, drop_remainder: bool = True, broken=False,
                  size: int | None = None) -> tf.data.Dataset:
    """Batches of procedural faces, float32 ``(B, R, R, 3)`` in [-1, 1].

    The split is a fixed set of ``size`` faces (default :data:`SPLIT_SIZES`); ``seed`` only sets the order.
    Batch ``k`` covers stream positions ``k*B .. k*B+B-1``; position ``p`` shows face
    ``shuffled_index(p mod size, epoch, seed)`` (a stateless random permutation per epoch), or face
    ``p mod size`` with ``shuffle=False``. So batch ``k`` is a pure function of ``(seed, k)`` (whatever
    TensorFlow's global seed), the pipeline holds no shuffle buffer, and checkpointing the iterator
    (``tf.train.Checkpoint(iterator=it)``) saves a single counter. ``repeat=True`` runs through epoch after
    epoch, each in a new order; ``broken`` gives the structure-free control set (:func:`render_faces`).
    """
    R = _check_resolution(resolution)
    if split not in SPLIT_STREAMS:
        raise ValueError(f"split must be one of {sorted(SPLIT_STREAMS)}, got {split!r}.")
    B = int(batch_size)
    if B < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    _broken_flags(broken)
    n = int(size or SPLIT_SIZES[split])
    stream = tf.constant(SPLIT_STREAMS[split], tf.int64)
    seed_t = tf.constant(int(seed), tf.int64)

    def face_ids(positions):
        j = positions % n
        return shuffled_index(j, positions // n, seed_t, n, salt=stream) if shuffle else j

    @tf.autograph.experimental.do_not_convert  # plain TF ops, no Python control flow: skip AutoGraph's cost
    def batch(k):
        positions = k * B + tf.range(B, dtype=tf.int64)
        if not repeat:  # the last batch of a finite epoch may be short
            positions = positions[: tf.minimum(tf.constant(B, tf.int64), n - k * B)]
        # The shared tf.function is traced once per (R, broken) per process, not once per pipeline.
        return _render_fn(R, broken)(face_ids(positions), stream)

    if repeat:
        ds = tf.data.Dataset.range(2 ** 62)  # batch indices k = 0, 1, 2, ... (effectively endless)
    else:
        ds = tf.data.Dataset.range(n // B if drop_remainder else -(-n // B))
    ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------------- score
# The score lives in sagan_tut.structure (numpy only); these are its entry points next to the faces it scores.
from .structure import structure_score, structure_scores, table_markdown  # noqa: E402,F401


def structure_table(resolution: int = 64, n: int = 200, seed: int = 0) -> list[dict]:
    """The structure score of ``n`` faces of stream ``seed``: real, broken (``True``, ``"colour"``,
    ``"geometry"``), each as drawn and under every change of :func:`sagan_tut.structure.perturb`; then pictures
    with no eyes: the :func:`sagan_tut.structure.control_images` (flat, noise, an untrained generator; that row
    builds a small Keras model) and real faces blurred away (``"blur away"``).

    One dict per row: ``faces`` (``"real"``, ``"broken"``, ``"broken colour"``, ``"broken geometry"``, then
    ``"flat"``, ``"noise"``, ``"untrained G"`` and ``"real"``), ``perturbation``, and the means ``score``,
    ``eye_colour``, ``symmetry``, ``presence`` and the 5th percentile ``p5`` of the per-image scores.
    :func:`sagan_tut.structure.table_markdown` prints them.
    """
    from .structure import CONTROLS, PERTURBATIONS, control_images, perturb, table_row

    rows = []
    for label, broken in (("real", False), ("broken", True), ("broken colour", "colour"),
                          ("broken geometry", "geometry")):
        images = generate_faces(n, resolution, seed=seed, broken=broken)
        for kind in PERTURBATIONS:
            rows.append(table_row(label, kind, perturb(images, kind, seed=seed)))
    for kind in CONTROLS:
        rows.append(table_row(kind, "none", control_images(kind, resolution, n, seed=seed)))
    rows.append(table_row("real", "blur away", perturb(generate_faces(n, resolution, seed=seed), "blur away")))
    return rows
