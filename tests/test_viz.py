"""Sample grids, attention maps of a generator, and gamma plots."""
import json

import keras
import numpy as np
import pytest
from PIL import Image

from sagan_tut import viz
from sagan_tut.attention import SelfAttention


# ---------------------------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------------------------
def test_image_grid_places_each_image_in_its_tile():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (5, 4, 6, 3)).astype(np.float32)
    grid = viz.image_grid(images, nrow=3, padding=2, pad_value=255)
    assert grid.dtype == np.uint8 and grid.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2, 3)
    for k in range(5):
        top, left = 2 + (k // 3) * 6, 2 + (k % 3) * 8
        expected = np.round((images[k].astype(np.float64) + 1) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(grid[top:top + 4, left:left + 6], expected)
    assert np.all(grid[8:12, 18:24] == 255)  # the sixth tile is empty
    assert np.all(grid[:2] == 255) and np.all(grid[:, :2] == 255)  # padding


def test_image_grid_values_grayscale_and_default_layout():
    images = np.stack([np.full((2, 2, 1), v, np.float32) for v in (-1.0, 0.0, 1.0, 3.0)])
    grid = viz.image_grid(images, padding=0)  # 4 images -> 2 per row
    assert grid.shape == (4, 4, 3)
    np.testing.assert_array_equal(grid[0, 0], [0, 0, 0])  # -1 -> 0
    np.testing.assert_array_equal(grid[0, 2], [128, 128, 128])  # 0 -> 127.5 -> 128
    np.testing.assert_array_equal(grid[2, 0], [255, 255, 255])  # 1 -> 255
    np.testing.assert_array_equal(grid[2, 2], [255, 255, 255])  # out of range is clipped
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        viz.image_grid(np.zeros((2, 4, 4, 2)))


def test_save_grid_writes_png_atomically(tmp_path, monkeypatch):
    images = np.random.default_rng(1).uniform(-1, 1, (3, 5, 5, 3)).astype(np.float32)
    path = viz.save_grid(images, tmp_path / "samples" / "grid.png", nrow=2)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), viz.image_grid(images, nrow=2))
    before = path.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        viz.save_grid(-images, path)
    assert path.read_bytes() == before  # the old file survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # and no temp file is left


# ---------------------------------------------------------------------------------------------------------------
# Attention maps
# ---------------------------------------------------------------------------------------------------------------
def tiny_generator(variant, z_dim=8, res=8, channels=16):
    keras.utils.set_random_seed(0)
    z = keras.Input((z_dim,))
    x = keras.layers.Dense(res * res * channels)(z)
    x = keras.layers.Reshape((res, res, channels))(x)
    x = keras.layers.UpSampling2D()(x)
    x = SelfAttention(variant=variant, name="attn")(x)
    x = keras.layers.Conv2D(3, 1, activation="tanh")(x)
    return keras.Model(z, x, name="tiny_g")


def numpy_beta(layer, x, pool):
    """beta from the layer's own f and g sublayers, with the reshape, pooling and softmax done in numpy."""
    q = np.asarray(layer.g(x, training=False), np.float64)
    k = np.asarray(layer.f(x, training=False), np.float64)
    b, h, w, c = k.shape
    if pool:
        k = k.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    q, k = q.reshape(b, -1, q.shape[-1]), k.reshape(b, -1, c)
    s = q @ k.transpose(0, 2, 1)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("variant,key_hw", [("paper", (16, 16)), ("biggan", (8, 8))])
def test_attention_maps_equal_the_layers_own(variant, key_hw):
    gen = tiny_generator(variant)
    z = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    for _ in range(3):  # move the spectral-norm u away from its initial value: the twin must copy it
        gen(z, training=True)
    layer = gen.get_layer("attn")
    layer.gamma.assign(0.7)
    images, beta, hw, khw = viz.attention_maps(gen, z)
    assert hw == (16, 16) and khw == key_hw
    assert beta.shape == (2, 256, key_hw[0] * key_hw[1])
    np.testing.assert_allclose(images, gen(z, training=False).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(beta.sum(-1), 1.0, atol=1e-5)
    x = keras.Model(gen.input, layer.input)(z, training=False)
    np.testing.assert_allclose(beta, numpy_beta(layer, x, pool=variant == "biggan"), rtol=1e-4, atol=1e-6)
    assert not layer.return_attention  # the generator's layer is untouched


def test_attention_maps_layer_lookup_errors():
    gen = tiny_generator("paper")
    z = np.zeros((1, 8), np.float32)
    with pytest.raises(ValueError, match=r"available: \['attn'\]"):
        viz.attention_maps(gen, z, layer_name="attention_32")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match="no SelfAttention"):
        viz.attention_maps(plain, np.zeros((1, 4), np.float32))


def test_upsample_map_and_query_map():
    m = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(viz.upsample_map(m, (4, 4)),
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    beta = np.random.default_rng(3).dirichlet(np.ones(16), size=64)  # 8x8 queries, 4x4 keys
    # Pixel (13, 5) of a 16x16 image lies in query cell (6, 2) of the 8x8 map: row 6 * 8 + 2 = 50.
    np.testing.assert_array_equal(viz.query_map(beta, (13, 5), (16, 16)), beta[50].reshape(4, 4))
    with pytest.raises(ValueError, match="outside"):
        viz.query_map(beta, (16, 0), (16, 16))


def test_plot_attention_axes_and_overlays():
    gen = tiny_generator("biggan")
    z = np.random.default_rng(4).standard_normal((3, 8)).astype(np.float32)
    images, beta, hw, khw = viz.attention_maps(gen, z)
    queries = [(2, 3), (10, 12)]
    fig = viz.plot_attention(images, beta, queries, index=[0, 2])
    assert len(fig.axes) == 2 * (1 + len(queries)) + 1  # panels + colour bar
    # Row 1 (image 2), query 2: the overlay is that query's key map upsampled to 16x16, in units of uniform
    # attention (x 64 keys), on a colour scale shared by all panels.
    overlay = fig.axes[5].images[1]
    m = viz.query_map(beta[2], (10, 12), (16, 16))
    np.testing.assert_allclose(overlay.get_array(), viz.upsample_map(m * 64, (16, 16)), rtol=1e-6)
    shown = [viz.query_map(beta[i], q, (16, 16)).max() * 64 for i in (0, 2) for q in queries]
    assert overlay.norm.vmin == 0 and overlay.norm.vmax == pytest.approx(max(2.0, *shown))
    assert fig.axes[1].images[1].norm.vmax == overlay.norm.vmax
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), viz.image_grid(images[2:3], padding=0))
    assert len(viz.plot_attention(images, beta, [(0, 0)], colorbar=False).axes) == 2


# ---------------------------------------------------------------------------------------------------------------
# Logs and gamma
# ---------------------------------------------------------------------------------------------------------------
def write_log(run_dir, records, tail=""):
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run_dir / "log.jsonl").write_text(text)


def test_read_log_dedupes_resumed_steps_and_skips_a_torn_last_line(tmp_path):
    records = [{"step": s, "d_loss": 1.0, "g_loss": 2.0} for s in (0, 100, 200)]
    records += [{"step": 200, "d_loss": 9.0, "g_loss": 9.0}, {"step": 300, "d_loss": 0.5, "g_loss": 0.5}]
    write_log(tmp_path / "run", records, tail='{"step": 400, "d_lo')
    log = viz.read_log(tmp_path / "run")
    assert [r["step"] for r in log] == [0, 100, 200, 300]
    assert log[2]["d_loss"] == 9.0  # the resumed run's record wins
    assert len(viz.read_log(tmp_path / "run" / "log.jsonl", dedupe=False)) == 5
    (tmp_path / "run" / "log.jsonl").write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        viz.read_log(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        viz.read_log(tmp_path / "missing")


def test_plot_gamma_draws_each_attention_layer(tmp_path):
    steps = np.arange(0, 500, 50)
    records = [{"step": int(s), "d_loss": 1.0, "g_loss": 1.0, "gamma/g_attn": 1e-4 * s, "gamma/d_attn": -2e-4 * s}
               for s in steps]
    write_log(tmp_path / "run", records)
    fig = viz.plot_gamma(tmp_path / "run")
    assert len(fig.axes) == 1
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"g_attn", "d_attn"}
    np.testing.assert_array_equal(lines["g_attn"].get_xdata(), steps)
    np.testing.assert_allclose(lines["d_attn"].get_ydata(), -2e-4 * steps)
    write_log(tmp_path / "plain", [{"step": 0, "d_loss": 1.0, "g_loss": 1.0}])
    with pytest.raises(ValueError, match="gamma"):
        viz.plot_gamma(tmp_path / "plain")


def test_read_log_leaves_event_records_out_of_the_steps(tmp_path):
    (tmp_path / "log.jsonl").write_text(
        '{"step": 1, "d_loss": 1.0}\n{"event": "config_change", "at_step": 1, "changes": {"lr_g": [1e-4, 5e-5]}}\n'
        '{"step": 2, "d_loss": 0.5}\n')
    for dedupe in (True, False):
        assert [r["step"] for r in viz.read_log(tmp_path, dedupe=dedupe)] == [1, 2]
