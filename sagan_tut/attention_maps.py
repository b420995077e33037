"""What a trained generator's self-attention looks at, in image coordinates, and whether it is long-range.

A :class:`~sagan_tut.attention.SelfAttention` layer on an ``r x r`` feature map computes, for every query
position j, a softmax beta_j over the key positions i (``r x r`` of them, or ``r/2 x r/2`` for the pooled
"biggan" variant). The image has side R > r, so one feature-map cell stands for a block of image pixels. This
module

* runs the layer's *own* computation (a twin of the layer with ``return_attention=True`` and the layer's weights,
  on the layer's own input; see :class:`AttentionProbe`) and keeps only the rows of chosen query pixels, so
  1,000 samples of a 32x32 map (a 1024 x 1024 beta per image) fit in memory;
* maps each row to the image: every image pixel gets the mass of the key cell it lies in divided by the
  pixels of that cell, so a map sums to 1 over the image and the mass of any image region is a plain sum;
* measures long-range attention on the procedural faces (:mod:`sagan_tut.faces`): the mass a query on one eye
  puts on the *other* eye's region divided by that region's share of the image (:func:`mass_ratio`), so 1 means
  "no preference" and 3 means "three times more than a uniform map would".

Positions are (row, col) in image pixels, or the named points of :data:`QUERIES` (fractions of the side).
"""
from __future__ import annotations

import numpy as np

from .attention import SelfAttention
from .faces import EYE_DX, EYE_R, EYE_Y

MOUTH_Y = 0.74  # centre of the mouth (before the vertical jitter), as faces.py draws it
#: The query points of chapter 6, as (y, x) fractions of the image side (pixel centres at (i + 0.5) / R).
QUERIES = {
    "left eye": (EYE_Y, 0.5 - EYE_DX),
    "right eye": (EYE_Y, 0.5 + EYE_DX),
    "mouth": (MOUTH_Y, 0.5),
    "background": (0.06, 0.06),  # top-left corner: outside the hair at every face size
}
#: Regions whose received mass is measured, as ellipses (y, x, radius y, radius x) in fractions of the side.
#: An eye's region is its largest iris (EYE_R[1]); the mouth's covers its widest, tallest drawing.
REGIONS = {
    "left eye": (EYE_Y, 0.5 - EYE_DX, EYE_R[1], EYE_R[1]),
    "right eye": (EYE_Y, 0.5 + EYE_DX, EYE_R[1], EYE_R[1]),
    "mouth": (MOUTH_Y, 0.5, 0.04, 0.11),
}
OTHER_EYE = {"left eye": "right eye", "right eye": "left eye"}


# ----------------------------------------------------------------------------------------------- positions
def query_pixel(query, resolution: int) -> tuple[int, int]:
    """``query`` as a (row, col) image pixel: a name of :data:`QUERIES`, or a (row, col) pair of ints."""
    if isinstance(query, str):
        if query not in QUERIES:
            raise ValueError(f"unknown query {query!r}; named queries are {list(QUERIES)}, or pass (row, col).")
        y, x = QUERIES[query]
        return int(y * resolution), int(x * resolution)
    try:
        row, col = (int(v) for v in query)
    except (TypeError, ValueError):
        raise ValueError(f"a query is a name from {list(QUERIES)} or a (row, col) pixel, got {query!r}.") from None
    if not (0 <= row < resolution and 0 <= col < resolution):
        raise ValueError(f"query pixel (row {row}, col {col}) lies outside the {resolution}x{resolution} image: "
                         f"rows and columns run from 0 to {resolution - 1}.")
    return row, col


def region_mask(name: str, resolution: int) -> np.ndarray:
    """Boolean ``(R, R)`` mask of the pixels whose centres lie in region ``name`` of :data:`REGIONS`."""
    if name not in REGIONS:
        raise ValueError(f"unknown region {name!r}; choose from {list(REGIONS)}.")
    cy, cx, ry, rx = REGIONS[name]
    grid = (np.arange(resolution) + 0.5) / resolution
    return ((grid[:, None] - cy) / ry) ** 2 + ((grid[None, :] - cx) / rx) ** 2 <= 1.0


# ------------------------------------------------------------------------------------------- the layer's beta
class AttentionProbe:
    """The attention maps of one SelfAttention layer of ``generator``, computed by the layer itself.

    A sub-model returns the generated images and the layer's input x; a twin of the layer (same config plus
    ``return_attention=True``, same weights including spectral normalization's ``u``) returns ``(y, beta)`` on
    that x. The generator is left untouched. ``hw`` is the feature map's (rows, cols), ``key_hw`` the key grid.
    """

    def __init__(self, generator, layer_name: str | None = None):
        import keras

        layers = [layer for layer in generator.layers if isinstance(layer, SelfAttention)]
        if not layers:
            raise ValueError(f"model {generator.name!r} has no SelfAttention layer: attention maps need a "
                             "generator built with attention (e.g. make_generator(..., attention_res=16)).")
        names = [layer.name for layer in layers]
        if layer_name is not None and layer_name not in names:
            raise ValueError(f"no SelfAttention layer named {layer_name!r} in {generator.name!r}; it has {names}.")
        self.layer = layers[names.index(layer_name)] if layer_name else layers[0]
        inputs = generator.inputs[0] if len(generator.inputs) == 1 else generator.inputs
        self._images_and_x = keras.Model(inputs, [generator.outputs[0], self.layer.input])
        self._x = keras.Model(inputs, self.layer.input)
        self.resolution = int(generator.outputs[0].shape[1])
        self.z_dim = int(generator.inputs[0].shape[-1])
        shape = tuple(self.layer.input.shape)
        self.twin = SelfAttention.from_config({**self.layer.get_config(), "return_attention": True})
        self.twin.build(shape)
        self.twin.set_weights(self.layer.get_weights())
        self.hw = (int(shape[1]), int(shape[2]))
        self.key_hw = (self.hw[0] // 2, self.hw[1] // 2) if self.twin.pool else self.hw

    def beta(self, z, with_images: bool = True):
        """``(images or None, beta)`` for a batch of z: beta ``(B, N, M)``, row j = query cell j (row-major)."""
        z = np.asarray(z, np.float32)
        if with_images:
            images, x = self._images_and_x(z, training=False)
            images = np.asarray(images)
        else:
            images, x = None, self._x(z, training=False)
        _, beta = self.twin(x, training=False)
        return images, np.asarray(beta, np.float32)

    def cell(self, pixel) -> int:
        """The row-major index of the feature-map cell that holds image pixel ``(row, col)``."""
        row, col = pixel
        return (row * self.hw[0] // self.resolution) * self.hw[1] + col * self.hw[1] // self.resolution

    def to_image(self, key_maps) -> np.ndarray:
        """``(..., Hk*Wk)`` or ``(..., Hk, Wk)`` key maps -> ``(..., R, R)`` mass per image pixel (same sums)."""
        hk, wk = self.key_hw
        R = self.resolution
        if R % hk or R % wk:
            raise ValueError(f"the {R}x{R} image is not a whole number of {hk}x{wk} key cells.")
        m = np.asarray(key_maps, np.float32)
        if m.shape[-2:] != (hk, wk):
            if m.shape[-1] != hk * wk:
                raise ValueError(f"key maps of shape {m.shape} are neither (..., {hk}, {wk}) nor (..., {hk * wk}).")
            m = m.reshape(*m.shape[:-1], hk, wk)
        fy, fx = R // hk, R // wk
        return np.repeat(np.repeat(m, fy, axis=-2), fx, axis=-1) / (fy * fx)


def query_maps(generator, z, queries=tuple(QUERIES), layer_name: str | None = None, batch_size: int = 50,
               with_images: bool = True) -> dict:
    """The attention maps of ``queries`` for a batch of ``z``, in image coordinates.

    ``queries``: names of :data:`QUERIES` and/or (row, col) image pixels. Returns a dict with ``maps``
    ``(B, Q, R, R)`` (attention mass per image pixel; each map sums to 1), ``key_maps`` ``(B, Q, Hk, Wk)`` (the
    softmax rows themselves), ``images`` ``(B, R, R, 3)`` (or None), ``names``, ``pixels`` (row, col), ``cells``
    (row-major feature-map indices), ``hw`` and ``key_hw``.
    """
    probe = generator if isinstance(generator, AttentionProbe) else AttentionProbe(generator, layer_name)
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != probe.z_dim:
        raise ValueError(f"z must have shape (batch, {probe.z_dim}), got {z.shape}.")
    queries = [queries] if isinstance(queries, str) else list(queries)
    if not queries:
        raise ValueError("query_maps needs at least one query: a name from QUERIES or a (row, col) pixel.")
    pixels = [query_pixel(q, probe.resolution) for q in queries]
    cells = [probe.cell(p) for p in pixels]
    rows, images = [], []
    for lo in range(0, len(z), int(batch_size)):
        imgs, beta = probe.beta(z[lo:lo + int(batch_size)], with_images=with_images)
        rows.append(beta[:, cells])  # (b, Q, M): only the rows asked for, so 1,000 samples fit in memory
        if with_images:
            images.append(imgs)
    key_maps = np.concatenate(rows).reshape(len(z), len(cells), *probe.key_hw)
    return dict(maps=probe.to_image(key_maps), key_maps=key_maps,
                images=np.concatenate(images) if with_images else None,
                names=[q if isinstance(q, str) else f"({p[0]}, {p[1]})" for q, p in zip(queries, pixels)],
                pixels=pixels, cells=cells, hw=probe.hw, key_hw=probe.key_hw)


# ------------------------------------------------------------------------------------------------ long range
def mass_ratio(maps, mask) -> np.ndarray:
    """Attention mass inside ``mask`` divided by the mask's share of the image: 1 = what a uniform map gives.

    ``maps``: ``(..., R, R)`` maps that sum to 1 over the image; ``mask``: boolean ``(R, R)``. Returns ``(...)``.
    """
    maps, mask = np.asarray(maps, np.float64), np.asarray(mask, bool)
    if maps.shape[-2:] != mask.shape:
        raise ValueError(f"maps of shape {maps.shape} do not match a mask of shape {mask.shape}.")
    if not mask.any():
        raise ValueError("the region mask is empty: a region must cover at least one pixel.")
    return maps[..., mask].sum(-1) / mask.mean()


def long_range(generator, n: int = 1000, seed: int = 0, layer_name: str | None = None,
               batch_size: int = 50) -> dict:
    """How much each query of :data:`QUERIES` attends to each region of :data:`REGIONS`, over ``n`` samples.

    Returns ``ratio`` (the long-range number: the mean over both eyes of the mass a query on one eye puts on the
    other eye's region, divided by that region's share of the image), ``ratio_sem`` (its standard error over
    the samples), ``table[query][region]`` (mean ratios), ``per_sample[query][region]`` (``(n,)`` arrays),
    ``n``, ``hw`` and ``key_hw``.
    """
    if int(n) < 2:
        raise ValueError(f"n must be at least 2 samples (a mean and its standard error), got {n}.")
    probe = AttentionProbe(generator, layer_name)
    z = np.random.default_rng(seed).standard_normal((int(n), probe.z_dim)).astype(np.float32)
    out = query_maps(probe, z, tuple(QUERIES), batch_size=batch_size, with_images=False)
    per_sample = {q: {r: mass_ratio(out["maps"][:, k], region_mask(r, probe.resolution)) for r in REGIONS}
                  for k, q in enumerate(QUERIES)}
    cross = 0.5 * (per_sample["left eye"]["right eye"] + per_sample["right eye"]["left eye"])
    return dict(ratio=float(cross.mean()), ratio_sem=float(cross.std(ddof=1) / np.sqrt(len(cross))),
                table={q: {r: float(v.mean()) for r, v in row.items()} for q, row in per_sample.items()},
                per_sample=per_sample, n=int(n), hw=probe.hw, key_hw=probe.key_hw)


def table_markdown(result: dict) -> str:
    """The ``table`` of :func:`long_range` as markdown: one row per query, one column per region."""
    lines = ["| query | " + " | ".join(f"on the {r}" for r in REGIONS) + " |",
             "|---|" + "---|" * len(REGIONS)]
    for q, row in result["table"].items():
        lines.append(f"| {q} | " + " | ".join(f"{row[r]:.2f}" for r in REGIONS) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- figure
def plot_query_maps(out: dict, faces=(0, 1, 2), panel_size: float = 2.3, cmap: str = "magma"):
    """One row per face of ``out`` (from :func:`query_maps`): the face with the queries and the measured regions
    (dotted), then per query the face under its attention map, titled with the query's name. Maps are in units
    of uniform attention (1 = a uniform map) on one square-root colour scale for the whole figure: trained maps
    are peaked, and on a linear scale everything but the peak would look black."""
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    from .viz import image_grid

    faces = [int(i) for i in faces]
    if out.get("images") is None:
        raise ValueError("plot_query_maps needs the images: call query_maps(..., with_images=True).")
    R = out["maps"].shape[-1]
    ratio = out["maps"][faces] * (R * R)
    norm = PowerNorm(0.5, vmin=0.0, vmax=float(ratio.max()))
    n_q = len(out["names"])
    fig = Figure(figsize=(panel_size * (1 + n_q) + 0.9, panel_size * len(faces) + 0.3), layout="constrained")
    axes = fig.subplots(len(faces), 1 + n_q, squeeze=False)
    overlay = None
    for row_axes, i, ratios in zip(axes, faces, ratio):
        picture = image_grid(out["images"][i:i + 1], padding=0)
        row_axes[0].imshow(picture)
        for name in REGIONS:
            row_axes[0].contour(region_mask(name, R), levels=[0.5], colors="white", linewidths=0.8,
                                linestyles="dotted")
        row_axes[0].set_title("queries; dotted: regions", fontsize=9)
        for k, (ax, name, (r, c)) in enumerate(zip(row_axes[1:], out["names"], out["pixels"])):
            ax.imshow(picture)
            overlay = ax.imshow(ratios[k], cmap=cmap, norm=norm, alpha=0.8, interpolation="nearest")
            for a in (row_axes[0], ax):
                a.plot(c, r, marker="o", ms=7, mec="white", mfc=f"C{k}")
            ax.set_title(f"query: {name}\npeak {ratios[k].max():.0f}x uniform", fontsize=9)
        for ax in row_axes:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(overlay, ax=axes, shrink=0.8, label="attention / uniform (square-root scale)")
    return fig
