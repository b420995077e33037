"""An attention explorer for a notebook cell: point at a pixel of a generated face, see where attention reads.

    from sagan_tut.explorer import show_explorer
    show_explorer(G)            # IPython HTML: a few faces of G with precomputed attention maps

The output is one self-contained HTML fragment (no network, no external script): the faces as raw RGB bytes and,
for a grid of query positions of the attention layer's feature map, that query's row of the layer's own softmax
(:class:`sagan_tut.attention_maps.AttentionProbe`), each row scaled to its maximum and quantised to uint8
(error at most 1/510 of the row's peak), all base64 in a JSON block. A small script draws the map of the query
under the pointer. Where scripts do not run (a notebook viewer that strips them, a reader with JavaScript off),
a static PNG of the same faces with their left-eye maps is shown instead.

Size: ``faces x queries x keys`` bytes, times 4/3 for base64. A 32x32 map has 1,024 queries and 1,024 keys, so
1 MB per face at every query; ``query_stride=None`` picks the smallest stride (1, 2, 4, ...) that keeps the
maps under ``max_bytes``: every second feature-map cell for four 64x64 faces (about 1.4 MB).

For tests and for a reader's console, ``window.saganExplorer.show(face, row, col)`` selects a face and an image
pixel, and ``window.saganExplorer.state()`` returns what is drawn (the dequantised map included).
"""
from __future__ import annotations

import base64
import io
import json
import uuid

import numpy as np

from .attention_maps import AttentionProbe, query_pixel

DEFAULT_MAX_BYTES = 2_500_000  # the base64 maps; the faces and the static PNG add a few tens of kB


def _b64(array) -> str:
    return base64.b64encode(np.ascontiguousarray(array, np.uint8).tobytes()).decode("ascii")


def _lut(cmap: str = "magma") -> np.ndarray:
    """Colour of each uint8 level (level / 255 = attention / the map's peak). The colour follows the square root
    of the level: trained maps are peaked (a few cells hold most of the mass), and on a linear scale everything
    but the peak would be black."""
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.sqrt(np.arange(256) / 255))[:, :3]
    return (colours * 255).round().astype(np.uint8)


def choose_stride(n_faces: int, hw, key_hw, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """The smallest query stride (1, 2, 4, ...) whose base64 maps for ``n_faces`` faces fit in ``max_bytes``."""
    (h, w), (hk, wk), stride = hw, key_hw, 1
    while n_faces * -(-h // stride) * -(-w // stride) * hk * wk * 4 / 3 > max_bytes:
        if stride >= max(h, w):
            raise ValueError(f"{n_faces} faces do not fit in max_bytes={max_bytes} even with one query per face: "
                             "show fewer faces or raise max_bytes.")
        stride *= 2
    return stride


def explorer_data(generator, z, query_stride: int | None = None, layer_name: str | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """What the explorer embeds: faces ``images`` (n, R, R, 3) uint8; ``maps`` (n, Q, Hk*Wk) uint8 with
    ``scale`` (n, Q) float32 so that ``maps * scale / 255`` is beta within 1/510 of each row's peak; the query
    grid (``query_rows`` x ``query_cols`` feature-map cells, row-major, ``stride`` apart), ``hw``, ``key_hw``."""
    probe = generator if isinstance(generator, AttentionProbe) else AttentionProbe(generator, layer_name)
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != probe.z_dim or len(z) < 1:
        raise ValueError(f"z must have shape (faces, {probe.z_dim}) with at least one face, got {z.shape}.")
    h, w = probe.hw
    stride = int(choose_stride(len(z), probe.hw, probe.key_hw, max_bytes) if query_stride is None else query_stride)
    if stride < 1:
        raise ValueError(f"query_stride must be a positive integer, got {query_stride!r}.")
    # The grid's cells sit in the middle of each stride x stride block, so a pointer anywhere in the block is
    # at most stride / 2 cells from its query.
    rows, cols = np.arange(stride // 2, h, stride), np.arange(stride // 2, w, stride)
    cells = (rows[:, None] * w + cols[None, :]).ravel()
    images, beta = probe.beta(z)
    rows_beta = beta[:, cells]  # (n, Q, M)
    scale = rows_beta.max(-1).astype(np.float32)
    maps = np.rint(rows_beta / scale[..., None] * 255).astype(np.uint8)
    pixels = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8)
    return dict(images=pixels, maps=maps, scale=scale, stride=stride, query_rows=rows, query_cols=cols,
                hw=probe.hw, key_hw=probe.key_hw, resolution=probe.resolution, layer=probe.layer.name)


def _static_png(data: dict, query="left eye") -> str:
    """Faces (top) and their attention maps for one query (bottom), as a PNG data URI: the no-script fallback."""
    from PIL import Image

    R, lut = data["resolution"], _lut()
    (h, w), (hk, wk), s = data["hw"], data["key_hw"], data["stride"]
    row, col = query_pixel(query, R)
    k = min((row * h // R) // s, len(data["query_rows"]) - 1) * len(data["query_cols"]) + \
        min((col * w // R) // s, len(data["query_cols"]) - 1)
    pad, n = 2, len(data["images"])
    canvas = np.full((2 * R + 3 * pad, n * (R + pad) + pad, 3), 255, np.uint8)
    for i, face in enumerate(data["images"]):
        q = data["maps"][i, k].reshape(hk, wk).repeat(R // hk, 0).repeat(R // wk, 1)
        x0 = pad + i * (R + pad)
        canvas[pad:pad + R, x0:x0 + R] = face
        canvas[2 * pad + R:2 * pad + 2 * R, x0:x0 + R] = _blend(face, lut[q])
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _blend(face, colour):
    """What the script draws: 35% of the face in grey under 65% of the map's colour (same integer rounding)."""
    grey = face.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.floor(0.35 * grey[..., None] + 0.65 * colour + 0.5).astype(np.uint8)


def explorer_html(generator, n_faces: int = 4, seed: int = 0, z=None, query_stride: int | None = None,
                  layer_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, panel_px: int = 256) -> str:
    """The explorer as one HTML string (see the module docstring); ``z`` (faces, z_dim) overrides n_faces/seed."""
    probe = generator if isinstance(generator, AttentionProbe) else AttentionProbe(generator, layer_name)
    if z is None:
        if int(n_faces) < 1:
            raise ValueError(f"n_faces must be at least 1, got {n_faces}.")
        z = np.random.default_rng(seed).standard_normal((int(n_faces), probe.z_dim)).astype(np.float32)
    data = explorer_data(probe, z, query_stride, max_bytes=max_bytes)
    uid = "sagan-explorer-" + uuid.uuid4().hex[:8]
    R, (h, w), (hk, wk) = data["resolution"], data["hw"], data["key_hw"]
    payload = dict(R=R, n=len(data["images"]), h=h, w=w, hk=hk, wk=wk, stride=data["stride"],
                   rows=data["query_rows"].tolist(), cols=data["query_cols"].tolist(),
                   scale=[float(v) for v in data["scale"].ravel()], images=_b64(data["images"]),
                   maps=_b64(data["maps"]), lut=_b64(_lut()), layer=data["layer"],
                   start=list(query_pixel("left eye", R)))
    thumb = max(64, panel_px // 2)
    html = _TEMPLATE
    for key, value in (("%ID%", uid), ("%PANEL%", str(int(panel_px))), ("%THUMB%", str(thumb)), ("%H%", str(h)),
                       ("%W%", str(w)), ("%STATIC%", _static_png(data)),  # data last: nothing is replaced inside it
                       ("%DATA%", json.dumps(payload).replace("</", "<\\/"))):
        html = html.replace(key, value)
    return html


def show_explorer(generator, **kwargs):
    """:func:`explorer_html` wrapped in ``IPython.display.HTML``, for the last line of a notebook cell."""
    from IPython.display import HTML

    return HTML(explorer_html(generator, **kwargs))


_TEMPLATE = """<div id="%ID%" class="sagan-explorer">
<style>
#%ID% {font: 13px/1.4 sans-serif; color: #222;}
#%ID% canvas {image-rendering: pixelated; image-rendering: crisp-edges; display: block;}
#%ID% .se-strip {display: flex; gap: 6px; margin: 4px 0 8px; padding: 2px;}
#%ID% .se-strip canvas {width: %THUMB%px; height: %THUMB%px; cursor: crosshair; outline: 2px solid transparent;}
#%ID% .se-strip canvas.se-on {outline-color: #e6550d;}
#%ID% .se-main {display: flex; gap: 12px; flex-wrap: wrap;}
#%ID% .se-panel {position: relative; width: %PANEL%px;}
#%ID% .se-panel canvas {width: %PANEL%px; height: %PANEL%px;}
#%ID% .se-query {cursor: crosshair;}
#%ID% .se-mark {position: absolute; width: 10px; height: 10px; margin: -7px 0 0 -7px; border: 2px solid #fff;
  border-radius: 50%; box-shadow: 0 0 0 1px #000; pointer-events: none;}
#%ID% .se-static img {image-rendering: pixelated; width: 100%; max-width: 720px;}
</style>
<div class="se-static"><img alt="Generated faces (top) and the attention maps of a query on the left eye (bottom)"
 src="%STATIC%"><br><em>Faces (top) and where a query on the left eye attends (bottom; bright = more attention, on a square-root scale).
 The interactive explorer needs JavaScript.</em></div>
<noscript><p>JavaScript is off: the picture above is the static version of the attention explorer.</p></noscript>
<div class="se-live" hidden>
<div>Point at any pixel of a face (or tap it): the right panel shows that query's attention map over the image
(the layer's softmax over the %H%x%W% feature map; colour = square root of attention / its peak, so weaker
reads show too).</div>
<div class="se-strip"></div>
<div class="se-main">
<div class="se-panel"><canvas class="se-query"></canvas><div class="se-mark"></div><div>query</div></div>
<div class="se-panel"><canvas class="se-attn"></canvas><div class="se-mark"></div><div class="se-caption"></div></div>
</div></div>
<script type="application/json" class="se-data">%DATA%</script>
<script>
(function () {
  var root = document.getElementById("%ID%");
  var D = JSON.parse(root.querySelector(".se-data").textContent);
  function bytes(s) { var b = atob(s), a = new Uint8Array(b.length); for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i); return a; }
  var images = bytes(D.images), maps = bytes(D.maps), lut = bytes(D.lut);
  var R = D.R, M = D.hk * D.wk, Q = D.rows.length * D.cols.length;
  var strip = root.querySelector(".se-strip"), qCanvas = root.querySelector(".se-query");
  var aCanvas = root.querySelector(".se-attn"), caption = root.querySelector(".se-caption");
  var marks = root.querySelectorAll(".se-mark"), thumbs = [];
  qCanvas.width = qCanvas.height = aCanvas.width = aCanvas.height = R;
  function facePixels(i) {
    var img = new ImageData(R, R), o = i * R * R * 3;
    for (var p = 0; p < R * R; p++) { img.data.set(images.subarray(o + 3 * p, o + 3 * p + 3), 4 * p); img.data[4 * p + 3] = 255; }
    return img;
  }
  for (var i = 0; i < D.n; i++) {
    var c = document.createElement("canvas"); c.width = c.height = R; c.getContext("2d").putImageData(facePixels(i), 0, 0);
    c.dataset.face = i; strip.appendChild(c); thumbs.push(c);
  }
  var state = null;
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function show(face, row, col) {
    face = clamp(face | 0, 0, D.n - 1); row = clamp(row | 0, 0, R - 1); col = clamp(col | 0, 0, R - 1);
    // image pixel -> feature-map cell -> the grid query whose stride x stride block holds that cell
    var kr = Math.min(Math.floor(Math.floor(row * D.h / R) / D.stride), D.rows.length - 1);
    var kc = Math.min(Math.floor(Math.floor(col * D.w / R) / D.stride), D.cols.length - 1);
    var k = kr * D.cols.length + kc, off = (face * Q + k) * M, scale = D.scale[face * Q + k];
    var img = facePixels(face), out = new ImageData(R, R), fy = R / D.hk, fx = R / D.wk, map = new Array(M);
    for (var m = 0; m < M; m++) map[m] = maps[off + m] * scale / 255;
    for (var y = 0; y < R; y++) for (var x = 0; x < R; x++) {
      var p = 4 * (y * R + x), q = maps[off + Math.floor(y / fy) * D.wk + Math.floor(x / fx)];
      var grey = 0.299 * img.data[p] + 0.587 * img.data[p + 1] + 0.114 * img.data[p + 2];
      for (var ch = 0; ch < 3; ch++) out.data[p + ch] = Math.floor(0.35 * grey + 0.65 * lut[3 * q + ch] + 0.5);
      out.data[p + 3] = 255;
    }
    qCanvas.getContext("2d").putImageData(img, 0, 0);
    aCanvas.getContext("2d").putImageData(out, 0, 0);
    var cellR = D.rows[kr], cellC = D.cols[kc];
    for (var j = 0; j < marks.length; j++) {  // the marker sits on the query cell's centre
      marks[j].style.left = (100 * (cellC + 0.5) / D.w) + "%";
      marks[j].style.top = (((cellR + 0.5) / D.h) * qCanvas.clientHeight) + "px";
    }
    thumbs.forEach(function (t, j) { t.classList.toggle("se-on", j === face); });
    caption.textContent = "attention of feature cell (" + cellR + ", " + cellC + ") of " + D.h + "x" + D.w +
      ": peak " + (scale * M).toFixed(1) + "x uniform";
    state = {face: face, row: row, col: col, cell: [cellR, cellC], query: k, scale: scale, map: map};
    return state;
  }
  function pointer(canvas, face) {
    return function (e) {
      var r = canvas.getBoundingClientRect();
      show(face === null ? state.face : face, Math.floor((e.clientY - r.top) / r.height * R),
           Math.floor((e.clientX - r.left) / r.width * R));
    };
  }
  ["pointermove", "pointerdown"].forEach(function (type) {
    thumbs.forEach(function (t, j) { t.addEventListener(type, pointer(t, j)); });
    qCanvas.addEventListener(type, pointer(qCanvas, null));
  });
  // The live view is `hidden` in the markup (an attribute that survives HTML sanitisers, unlike scripts), the
  // static figure visible: a viewer that strips the script shows the figure, never empty canvases.
  root.querySelector(".se-static").hidden = true;
  root.querySelector(".se-live").hidden = false;
  show(0, D.start[0], D.start[1]);
  var api = {show: show, state: function () { return state; }, data: D};
  var reg = window.saganExplorer || {instances: {}};
  reg.instances["%ID%"] = api;
  reg.show = function (f, r, c) { return api.show(f, r, c); };  // the last explorer on the page
  reg.state = function () { return api.state(); };
  window.saganExplorer = reg;
})();
</script>
</div>
"""
