"""The attention explorer (sagan_tut.explorer) in headless Chromium: real pointer events change the map, and the
map drawn is the layer's own softmax for the query under the pointer (within the uint8 quantisation)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from test_book_browser import CHROMIUM_ARGS, _find_chromium, _missing  # tests/ is on the path (no __init__.py)

from sagan_tut import explorer
from sagan_tut.attention import SelfAttention

pytestmark = pytest.mark.browser
R, Z = 32, 16


def _toy_generator(side=16, resolution=R, seed=0):
    """z -> dense -> side x side x 16 features (large enough for a sharp softmax) -> SelfAttention -> RGB."""
    keras.utils.set_random_seed(seed)
    z = keras.Input((Z,))
    x = keras.layers.Dense(side * side * 16, kernel_initializer=keras.initializers.RandomNormal(stddev=0.6))(z)
    x = keras.layers.Reshape((side, side, 16))(x)
    x = SelfAttention(name=f"attention_{side}")(x)
    x = keras.layers.UpSampling2D(resolution // side)(x)
    return keras.Model(z, keras.layers.Conv2D(3, 1, activation="tanh")(x), name="toy")


def _numpy_beta(G, z):
    """softmax_i f(x_i)^T g(x_j), from the layer's input and its spectrally normalised 1x1 kernels, in numpy."""
    layer = next(l for l in G.layers if isinstance(l, SelfAttention))
    x = np.asarray(keras.Model(G.inputs[0], layer.input)(z, training=False), np.float64)

    def kernel(sn):
        w, u = sn.layer.kernel.numpy(), sn.u.numpy()
        return (w / np.linalg.norm(w.reshape(-1, w.shape[-1]) @ u))[0, 0]

    b, h, w, _ = x.shape
    s = (x @ kernel(layer.g)).reshape(b, h * w, -1) @ (x @ kernel(layer.f)).reshape(b, h * w, -1).transpose(0, 2, 1)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def page_setup(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")  # fails under SAGAN_TUT_REQUIRE_BOOK=1
    G = _toy_generator()
    z = np.random.default_rng(1).standard_normal((3, Z)).astype(np.float32)
    html = explorer.explorer_html(G, z=z, query_stride=2)
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    path.write_text(f"<!DOCTYPE html><html><body>{html}</body></html>")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_find_chromium(), headless=True, args=CHROMIUM_ARGS)
        yield dict(browser=browser, url=path.as_uri(), G=G, z=z, beta=_numpy_beta(G, z),
                   images=np.asarray(G(z, training=False)), html=html)
        browser.close()


def _open(setup, javascript=True):
    context = setup["browser"].new_context(java_script_enabled=javascript, viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(setup["url"])
    return context, page, errors, requests


def _point(page, selector, row, col, index=0):
    """A real mouse move (CDP Input events: mousemove + pointermove) onto image pixel (row, col) of a canvas."""
    box = page.locator(selector).nth(index).bounding_box()
    page.mouse.move(box["x"] + (col + 0.5) / R * box["width"], box["y"] + (row + 0.5) / R * box["height"])
    return page.evaluate("window.saganExplorer.state()")


def _canvas(page, selector):
    return np.array(page.evaluate(f"""() => Array.from(document.querySelector('{selector}').getContext('2d')
        .getImageData(0, 0, {R}, {R}).data)"""), np.int64).reshape(R, R, 4)


def _expected_cell(row, col):
    """Pixel of 32 -> cell of 16 -> the stride-2 grid query of its 2x2 block (cells 1, 3, ..., 15)."""
    return [min((row // 2) // 2 * 2 + 1, 15), min((col // 2) // 2 * 2 + 1, 15)]


def test_pointer_moves_change_the_map_and_it_is_the_layers_softmax(page_setup):
    context, page, errors, requests = _open(page_setup)
    try:
        shown = {}
        for face, (row, col) in ((0, (14, 11)), (0, (14, 20)), (0, (3, 28))):
            state = _point(page, ".se-query", row, col)
            assert state["face"] == face and [state["row"], state["col"]] == [row, col]
            assert state["cell"] == _expected_cell(row, col)
            j = state["cell"][0] * 16 + state["cell"][1]
            truth = page_setup["beta"][face, j]
            # The map shown is the layer's softmax row within the uint8 quantisation (half a level of its peak).
            np.testing.assert_allclose(state["map"], truth, atol=truth.max() / 510 + 1e-6)
            assert truth.max() > 5 / 256  # a sharp map, so a neighbouring row would not pass
            # The pixels drawn: 35% grey face under 65% of the colour of each key cell's quantised level.
            level = np.rint(truth / truth.max() * 255).astype(int).reshape(16, 16).repeat(2, 0).repeat(2, 1)
            face_px = np.clip(np.rint((page_setup["images"][face] + 1) * 127.5), 0, 255)
            expected = explorer._blend(face_px.astype(np.uint8), explorer._lut()[level])
            drawn = _canvas(page, ".se-attn")
            assert np.abs(drawn[..., :3] - expected).max() <= 1
            shown[(row, col)] = drawn
        a, b, c = shown.values()
        assert np.abs(a - b).sum() > 0 and np.abs(b - c).sum() > 0  # moving the pointer changed the picture
        # Pointing at the second face in the strip selects that face.
        state = _point(page, ".se-strip canvas", 20, 5, index=1)
        assert state["face"] == 1 and state["cell"] == _expected_cell(20, 5)
        j = state["cell"][0] * 16 + state["cell"][1]
        np.testing.assert_allclose(state["map"], page_setup["beta"][1, j], atol=page_setup["beta"][1, j].max() / 510
                                   + 1e-6)
        # The JS entry point gives what the pointer gave.
        api = page.evaluate("window.saganExplorer.show(0, 14, 20)")
        assert api["cell"] == _expected_cell(14, 20) and api["face"] == 0
        np.testing.assert_array_equal(_canvas(page, ".se-attn"), b)
        assert errors == []
        assert all(u.startswith(("file:", "data:")) for u in requests), requests  # no network
    finally:
        context.close()


def test_without_javascript_the_static_figure_shows(page_setup):
    context, page, errors, _ = _open(page_setup, javascript=False)
    try:
        img = page.locator(".se-static img")
        assert img.is_visible()
        assert page.evaluate("document.querySelector('.se-static img').naturalWidth") > 0
        assert not page.locator(".se-live").is_visible()
    finally:
        context.close()
    # A viewer that sanitises the output (drops <script> and <style>, as untrusted notebook viewers do).
    import re

    stripped = re.sub(r"<(script|style)\b.*?</\1>", "", page_setup["html"], flags=re.S)
    path = page_setup["url"].replace("explorer.html", "stripped.html")
    from pathlib import Path
    from urllib.parse import urlparse

    Path(urlparse(path).path).write_text(f"<!DOCTYPE html><html><body>{stripped}</body></html>")
    context = page_setup["browser"].new_context()
    try:
        page = context.new_page()
        page.goto(path)
        assert page.locator(".se-static img").is_visible() and not page.locator(".se-live").is_visible()
    finally:
        context.close()
    context, page, _, _ = _open(page_setup)  # with scripts, the live explorer replaces the static figure
    try:
        assert page.locator(".se-live").is_visible() and not page.locator(".se-static").is_visible()
    finally:
        context.close()


def test_self_contained_and_within_budget():
    html = explorer.explorer_html(_toy_generator(side=16), n_faces=2)
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    # A 32x32 attention map (the SAGAN-64 case): four faces at every cell would be 5.6 MB of base64, so the
    # explorer takes every second cell (1.4 MB).
    data = explorer.explorer_data(_toy_generator(side=32, resolution=64),
                                  np.zeros((4, Z), np.float32))
    assert data["stride"] == 2 and data["maps"].shape == (4, 256, 1024)
    np.testing.assert_array_equal(data["query_rows"], np.arange(1, 32, 2))
    assert explorer.choose_stride(1, (16, 16), (16, 16)) == 1
    with pytest.raises(ValueError, match="do not fit in max_bytes=1000"):
        explorer.choose_stride(4, (32, 32), (32, 32), max_bytes=1000)
    with pytest.raises(ValueError, match="z must have shape"):
        explorer.explorer_data(_toy_generator(side=16), np.zeros((2, 3), np.float32))
