"""Pictures of a GAN: sample grids, attention maps for chosen query pixels, and gamma over training.

The two questions users of every SAGAN repository ask are "how do I see the attention maps?" and "why does gamma
stay near 0?". :func:`attention_maps` + :func:`plot_attention` answer the first; :func:`plot_gamma` the second.

Figures are built with :class:`matplotlib.figure.Figure` rather than ``pyplot``: no global state, no GUI
backend needed, and a notebook shows the returned figure once (pyplot would show it twice).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .attention import SelfAttention


# ----------------------------------------------------------------------------------------------------------------
# Sample grids
# ----------------------------------------------------------------------------------------------------------------
def to_uint8(images) -> np.ndarray:
    """[-1, 1] float images -> uint8 in [0, 255] (values outside [-1, 1] are clipped)."""
    x = np.asarray(images, np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, nrow: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile a batch (B, H, W, 3 or 1) of [-1, 1] images into one uint8 (rows, cols, 3) image.

    ``nrow`` is the number of images per row (torchvision's convention); default ``ceil(sqrt(B))``. Image k sits
    in row ``k // nrow``, column ``k % nrow``, with ``padding`` pixels of ``pad_value`` around every tile.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(f"image_grid expects a non-empty batch (B, H, W, 3) or (B, H, W, 1), got {x.shape}.")
    x = to_uint8(x)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    b, h, w, _ = x.shape
    ncol = int(nrow) if nrow else math.ceil(math.sqrt(b))
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}.")
    nrows = math.ceil(b / ncol)
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), pad_value, np.uint8)
    for k in range(b):
        top, left = padding + (k // ncol) * (h + padding), padding + (k % ncol) * (w + padding)
        grid[top:top + h, left:left + w] = x[k]
    return grid


def save_grid(images, path, nrow: int | None = None, **grid_kwargs) -> Path:
    """Save :func:`image_grid` as a PNG, atomically (temp file in the same folder, then ``os.replace``), so a
    crash or a reader mid-write never sees a half-written file."""
    from PIL import Image

    path = Path(path)
    grid = image_grid(images, nrow=nrow, **grid_kwargs)
    with atomic_open(path, "wb") as fh:
        Image.fromarray(grid).save(fh, format="PNG")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Attention maps
# ----------------------------------------------------------------------------------------------------------------
def attention_layers(model) -> list:
    """The :class:`SelfAttention` layers called in ``model``'s functional graph, in order."""
    return [layer for layer in model.layers if isinstance(layer, SelfAttention)]


def _find_attention(model, layer_name):
    found = attention_layers(model)
    if not found:
        nested = [layer.name for layer in model._flatten_layers(include_self=False)
                  if isinstance(layer, SelfAttention)]
        hint = (f" It holds SelfAttention layers {nested} inside other layers; attention_maps needs them at the "
                "top level of a functional model." if nested else "")
        raise ValueError(f"Model {model.name!r} has no SelfAttention layer.{hint}")
    if layer_name is None:
        return found[0]
    for layer in found:
        if layer.name == layer_name:
            return layer
    raise ValueError(f"No SelfAttention layer named {layer_name!r} in {model.name!r}; "
                     f"available: {[layer.name for layer in found]}.")


def attention_maps(generator, z, layer_name: str | None = None):
    """Generated images and the attention maps beta of one SelfAttention layer of ``generator``.

    Returns ``(images, beta, (H, W), (Hk, Wk))``: images (B, R, R, 3) in [-1, 1]; beta (B, H*W, Hk*Wk) whose
    row ``j`` is the distribution over key positions for query position ``j`` (row-major, ``j = r * W + c``);
    (H, W) the attention layer's feature-map size, (Hk, Wk) the key grid ((H/2, W/2) for the pooled "biggan"
    variant). The layer is left untouched: a twin built from its config with ``return_attention=True`` and its
    weights (including the spectral-norm ``u``) computes beta on the layer's own input.
    """
    import keras

    layer = _find_attention(generator, layer_name)
    z = np.asarray(z, np.float32)
    inputs = generator.inputs[0] if len(generator.inputs) == 1 else generator.inputs  # match how z is passed
    probe = keras.Model(inputs, [generator.outputs[0], layer.input])
    images, x = probe(z, training=False)
    twin = SelfAttention.from_config({**layer.get_config(), "return_attention": True})
    twin.build(tuple(x.shape))
    twin.set_weights(layer.get_weights())
    _, beta = twin(x, training=False)
    h, w = int(x.shape[1]), int(x.shape[2])
    hk, wk = (h // 2, w // 2) if twin.pool else (h, w)
    return np.asarray(images), np.asarray(beta, np.float32), (h, w), (hk, wk)


def upsample_map(attn_map, size) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to ``size = (rows, cols)``: each key cell becomes the block of
    image pixels it covers, so the picture shows the map's true resolution."""
    attn_map = np.asarray(attn_map)
    rows = (np.arange(size[0]) * attn_map.shape[0]) // size[0]
    cols = (np.arange(size[1]) * attn_map.shape[1]) // size[1]
    return attn_map[rows[:, None], cols[None, :]]


def _grid_shape(count, given):
    if given is not None:
        return tuple(int(v) for v in given)
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"Cannot infer a square grid from {count} positions: pass hw= / key_hw= explicitly.")
    return side, side


def query_map(beta, query, image_size, hw=None, key_hw=None) -> np.ndarray:
    """The attention of one image's ``beta`` (N, M) for ``query = (row, col)`` in *image* pixels, as a
    (Hk, Wk) map over key positions (sums to 1)."""
    beta = np.asarray(beta)
    (h, w), (hk, wk) = _grid_shape(beta.shape[0], hw), _grid_shape(beta.shape[1], key_hw)
    r, c = query
    if not (0 <= r < image_size[0] and 0 <= c < image_size[1]):
        raise ValueError(f"Query pixel {query} lies outside the {image_size[0]}x{image_size[1]} image.")
    j = (r * h // image_size[0]) * w + (c * w // image_size[1])
    return beta[j].reshape(hk, wk)


def plot_attention(images, beta, queries, index=0, hw=None, key_hw=None, alpha: float = 0.6, cmap="magma",
                   panel_size: float = 2.2, colorbar: bool = True):
    """Overlay, for each query pixel, its attention map on the generated image.

    ``queries`` are (row, col) in image pixels. For each image in ``index`` (an int or a list) one row of panels:
    the image with all queries marked, then per query the image with its attention map upsampled to image size
    and overlaid. Maps are drawn in units of uniform attention (``beta * n_keys``: 1 = attends everywhere
    equally) on one colour scale for the whole figure, from 0 to ``max(2, largest value shown)``, so a diffuse
    map looks flat and mid-range rather than saturated; titles give each map's peak.
    Returns a matplotlib Figure with ``len(index) * (1 + len(queries))`` axes, plus one for the colour bar.
    """
    from matplotlib.figure import Figure

    images = np.asarray(images)
    beta = np.asarray(beta)
    indices = [index] if np.isscalar(index) else list(index)
    queries = [tuple(int(v) for v in q) for q in queries]
    if not queries:
        raise ValueError("plot_attention needs at least one query pixel (row, col).")
    size = images.shape[1:3]
    ratios = {(i, q): query_map(beta[i], q, size, hw, key_hw) * beta.shape[-1] for i in indices for q in queries}
    vmax = max(2.0, max(float(m.max()) for m in ratios.values()))
    colors = [f"C{k % 10}" for k in range(len(queries))]
    fig = Figure(figsize=(panel_size * (1 + len(queries)) + (0.6 if colorbar else 0), panel_size * len(indices)),
                 layout="constrained")
    axes = fig.subplots(len(indices), 1 + len(queries), squeeze=False)
    overlay = None
    for row, i in zip(axes, indices):
        picture = image_grid(images[i:i + 1], padding=0)
        row[0].imshow(picture)
        row[0].set_title("queries", fontsize=9)
        for q, color in zip(queries, colors):
            row[0].plot(q[1], q[0], marker="o", ms=6, mec="white", mfc=color)
        for ax, q, color in zip(row[1:], queries, colors):
            ratio = ratios[(i, q)]
            ax.imshow(picture)
            overlay = ax.imshow(upsample_map(ratio, size), cmap=cmap, alpha=alpha, vmin=0, vmax=vmax)
            ax.plot(q[1], q[0], marker="o", ms=6, mec="white", mfc=color)
            ax.set_title(f"({q[0]}, {q[1]}): peak {ratio.max():.1f}x", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if colorbar:
        fig.colorbar(overlay, ax=axes, shrink=0.8, label="attention / uniform")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Training logs
# ----------------------------------------------------------------------------------------------------------------
def read_log(run_dir_or_path, dedupe: bool = True) -> list[dict]:
    """Records of a run's ``log.jsonl`` (one JSON dict per logging step), sorted by step; event records such as a
    resume's ``config_change`` are left out (read the file, or the run's ``config_changes.jsonl``, for those).

    With ``dedupe``, a step logged twice (a run resumed from an earlier checkpoint repeats steps) keeps its last
    record. A truncated last line (the run was killed mid-write) is skipped; any other bad line is an error.
    """
    path = Path(run_dir_or_path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"No training log at {path}: the trainer writes log.jsonl into the run folder.")
    lines = path.read_text().splitlines()
    records = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if k == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {k + 1} is not JSON: {err}") from err
    # Event records (e.g. {"event": "config_change", "at_step": ...} after a resume with --allow-change) have no
    # "step": they are not metrics of a step, so they are left out of the per-step records.
    records = [r for r in records if "step" in r or not r.get("event")]
    if dedupe:
        by_step = {}
        for rec in records:
            by_step[rec.get("step")] = rec
        records = [by_step[s] for s in sorted(by_step, key=lambda s: (s is None, s or 0))]
    return records


def plot_gamma(log_path_or_run_dir, ax=None):
    """gamma of each attention layer over training steps, from the run's ``log.jsonl`` (keys ``gamma/<layer>``).

    gamma starts at 0 (the block is the identity) and grows only as far as the non-local term helps; a gamma that
    stays small is the network choosing to rely on convolutions, not a bug.
    """
    from matplotlib.figure import Figure

    records = read_log(log_path_or_run_dir)
    keys = sorted({k for rec in records for k in rec if k.startswith("gamma/")})
    if not keys:
        raise ValueError(f"No 'gamma/<layer>' entries in the log of {log_path_or_run_dir}: does the model have "
                         "attention layers?")
    if ax is None:
        fig = Figure(figsize=(5, 3), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    for key in keys:
        pts = [(rec["step"], rec[key]) for rec in records if key in rec and rec.get("step") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key.split("/", 1)[1])
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(r"$\gamma$")
    ax.legend(fontsize=8)
    return fig
