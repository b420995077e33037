"""The trainer and its config: step counter, TTUR, EMA, logging, checkpoints (keep K, crash safety, resume), NaN
stop, presets and validation.

One tiny run (width 1/8, 32x32, batch 8) is trained once per module and inspected by most tests; tests that need
a fresh process (op determinism, a real SIGKILL) run a child Python.
"""
import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from sagan_tut import losses
from sagan_tut.config import PRESETS, ConfigError, TrainConfig, get_config, parse_overrides, parse_value
from sagan_tut.train import NonFiniteLossError, Progress, Trainer, load_generator

from cli_kill import kill_when, latest_checkpoint_step, logged_steps, start_train

ROOT = Path(__file__).resolve().parents[1]
# The quick preset at width 1/8 and batch 8, with the paper's TTUR rates (the preset itself uses 4e-4 for both).
# jit_compile=False: these tests check what the step does, and the plain graph needs no XLA compile per Trainer;
# the XLA path ("auto" picks it on a CPU, see sagan_tut/perf.py) has tests of its own below.
TINY = dict(width=0.125, batch_size=8, lr_g=1e-4, lr_d=4e-4, jit_compile=False)


def tiny_config(**overrides):
    return get_config("quick", **{**TINY, **overrides})


def _weights(model):
    return [np.array(v) for v in model.trainable_variables]


# ----------------------------------------------------------------------------------------------------------------
# One small run, inspected by many tests
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """6 iterations with n_dis=2 and EMA from step 1 (decay 0.5). The first 3 iterations are driven by hand to
    record G's weights after each one; fit() does the rest, logging, sampling and saving every 2 steps."""
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = tiny_config(n_dis=2, steps=6, ema=True, ema_start=1, ema_decay=0.5, log_every=2, sample_every=2,
                      ckpt_every=2, keep_checkpoints=2)
    trainer = Trainer(cfg, out, verbose=False)
    g_weights, ema_weights = [_weights(trainer.G)], [_weights(trainer.G_ema)]
    d_weights = [_weights(trainer.D)]
    for _ in range(3):
        trainer.train_step()
        g_weights.append(_weights(trainer.G))
        ema_weights.append(_weights(trainer.G_ema))
        d_weights.append(_weights(trainer.D))
    history = trainer.fit()
    return dict(trainer=trainer, cfg=cfg, out=out, g=g_weights, ema=ema_weights, d=d_weights, history=history)


def test_step_counter_advances_once_per_iteration(run):
    t = run["trainer"]
    # 6 iterations, each n_dis=2 D updates and one G update (the blog's loop counted each iteration twice).
    assert int(t.step.numpy()) == 6
    assert int(t.g_opt.iterations.numpy()) == 6
    assert int(t.d_opt.iterations.numpy()) == 12


def test_step_function_traced_once(run):
    # 6 iterations with logging, sampling and checkpointing in between: no retracing.
    assert run["trainer"].trace_count == 1


def test_ttur_learning_rates_reach_the_optimizers(run):
    t, cfg = run["trainer"], run["cfg"]
    assert float(t.g_opt.learning_rate.numpy()) == pytest.approx(cfg.lr_g) == pytest.approx(1e-4)
    assert float(t.d_opt.learning_rate.numpy()) == pytest.approx(cfg.lr_d) == pytest.approx(4e-4)
    for opt in (t.g_opt, t.d_opt):
        assert opt.beta_1 == 0.0 and opt.beta_2 == 0.9
    # Independently: Adam's first step moves each weight by lr * g / (|g| + eps), i.e. by ~lr wherever |g| >> eps,
    # so the largest change of G's weights in the first iteration (one G update) is lr_g, not lr_d.
    g0, g1 = run["g"][0], run["g"][1]
    biggest = max(float(np.abs(a - b).max()) for a, b in zip(g0, g1))
    assert biggest == pytest.approx(cfg.lr_g, rel=1e-2)
    # D's first iteration is two updates; the first alone moves by <= lr_d and the second by <= lr_d*sqrt(1+b2).
    d0, d1 = run["d"][0], run["d"][1]
    d_biggest = max(float(np.abs(a - b).max()) for a, b in zip(d0, d1))
    # (Had D been given lr_g, even two same-sign steps would stay below 2.4 * 1e-4 < 0.99 * lr_d.)
    assert 0.99 * cfg.lr_d < d_biggest <= cfg.lr_d * (1 + np.sqrt(1 + cfg.beta2)) * 1.001


def test_ema_follows_the_closed_form(run):
    # ema_start=1, decay 0.5: iteration 0 copies G; afterwards e <- 0.5 e + 0.5 w (computed here in NumPy).
    g, ema = run["g"], run["ema"]
    expected = [np.copy(w) for w in g[0]]
    for t in range(3):
        decay = 0.0 if t < 1 else 0.5
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, g[t + 1])]
        for got, want in zip(ema[t + 1], expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # ... and after the averaging started, the EMA copy is not simply G.
    assert max(float(np.abs(a - b).max()) for a, b in zip(ema[3], g[3])) > 1e-6


def test_ema_copies_spectral_norm_state(run):
    # Spectral norm's u is copied from G (it must stay a unit vector); the BatchNorm statistics are the EMA
    # generator's own (tests/test_ema.py).
    t = run["trainer"]
    from sagan_tut.ema import batchnorm_layers

    bn = {id(v) for layer in batchnorm_layers(t.G_ema) for v in (layer.moving_mean, layer.moving_variance)}
    pairs = [(e, w) for e, w in zip(t.G_ema.non_trainable_variables, t.G.non_trainable_variables) if id(e) not in bn]
    assert pairs and len(pairs) < len(t.G_ema.non_trainable_variables)
    for e, w in pairs:
        np.testing.assert_array_equal(np.array(e), np.array(w))


def test_run_directory_layout(run):
    out, cfg = run["out"], run["cfg"]
    assert TrainConfig.from_json(str(out / "config.json")) == cfg
    # keep_checkpoints=2 of the saves at steps 2, 4, 6.
    state = tf.train.get_checkpoint_state(str(out / "ckpt"))
    assert [Path(p).name for p in state.all_model_checkpoint_paths] == ["ckpt-4", "ckpt-6"]
    assert sorted(p.name for p in (out / "ckpt").glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]
    # Grids from the fixed noise every 2 steps of fit(), which started at step 3.
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step_000004.png", "step_000006.png"]
    assert (out / "generator.keras").exists()


def test_samples_use_fixed_noise_and_the_ema_generator(run):
    t = run["trainer"]
    from PIL import Image
    from sagan_tut.viz import image_grid

    grid = np.asarray(Image.open(run["out"] / "samples" / "step_000006.png"))
    expected = image_grid(t.G_ema(t._z_fixed, training=False).numpy())
    np.testing.assert_allclose(grid.astype(int), expected.astype(int), atol=1)


def test_log_jsonl_records(run):
    records = [json.loads(line) for line in (run["out"] / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 6]  # fit() ran steps 4..6, logging every 2
    t = run["trainer"]
    for r in records:
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec"):
            assert np.isfinite(r[key]), key
        assert r["steps_per_sec"] > 0
        assert {"gamma/G/attention_16", "gamma/D/attention_16"} <= set(r)
        assert any(k.startswith("sigma/G/") for k in r) and any(k.startswith("sigma/D/") for k in r)
    # The last record is the final state: its gamma and sigma are the layers'.
    last = records[-1]
    assert last["gamma/G/attention_16"] == pytest.approx(float(t.G.get_layer("attention_16").gamma.numpy()))
    assert last["gamma/D/attention_16"] == pytest.approx(float(t.D.get_layer("attention_16").gamma.numpy()))
    logit = t.D.get_layer("sn_logit")
    assert last["sigma/D/sn_logit"] == pytest.approx(float(logit.compute_sigma().numpy()), rel=1e-5)
    # hinge: D's loss is >= 0 and D(x), D(G(z)) are reported separately.
    assert all(r["d_loss"] >= 0 for r in records)


def _events(tb_dir):
    tags = {}
    for path in Path(tb_dir).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, value))
    return tags


def test_tensorboard_events(run):
    tags = _events(run["out"] / "tb")
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec", "gamma/G/attention_16"):
        assert [s for s, _ in tags[key]] == [4, 6], key
        assert tags[key][0][1].metadata.plugin_data.plugin_name == "scalars"
    log = [json.loads(line) for line in (run["out"] / "log.jsonl").read_text().splitlines()]
    scalar = tf.make_ndarray(tags["d_loss"][-1][1].tensor)
    assert float(scalar) == pytest.approx(log[-1]["d_loss"])
    steps = [s for s, _ in tags["samples"]]
    assert steps == [4, 6]
    image = tags["samples"][-1][1]
    assert image.metadata.plugin_data.plugin_name == "images"
    width, height, png = tf.make_ndarray(image.tensor)
    decoded = tf.io.decode_png(png).numpy()
    assert decoded.shape[:2] == (int(height), int(width))


def test_load_generator_restores_ema_and_raw_weights(run):
    t, out = run["trainer"], run["out"]
    for ema, source in ((True, t.G_ema), (False, t.G)):
        G = load_generator(out, ema=ema)
        for a, b in zip(G.weights, source.weights):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    import keras

    final = keras.models.load_model(out / "generator.keras")
    for a, b in zip(final.weights, t.G_ema.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_resume_with_a_changed_model_is_refused(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    with pytest.raises(ConfigError, match=r"lr_d: 0\.0004 -> 0\.001"):
        Trainer(run["cfg"].replace(lr_d=1e-3), out, verbose=False)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        Trainer(run["cfg"], out, resume=False, verbose=False)
    # Changing only the length of the run is a resume.
    t = Trainer(run["cfg"].replace(steps=10), out, verbose=False)
    assert t.initial_step == 6


def test_half_written_checkpoint_never_becomes_latest(run, tmp_path, monkeypatch):
    """A save killed after writing its data files but before updating the state file leaves `latest` alone."""
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    t = Trainer(run["cfg"], out, verbose=False)
    assert t.initial_step == 6
    from tensorflow.python.checkpoint import checkpoint_management

    def die(*args, **kwargs):
        raise SystemExit("killed while updating the checkpoint state")

    monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", die)
    t.step.assign(8)
    with pytest.raises(SystemExit):
        t.save()
    monkeypatch.undo()
    assert (out / "ckpt" / "ckpt-8.index").exists()  # the data was written ...
    assert Path(tf.train.latest_checkpoint(str(out / "ckpt"))).name == "ckpt-6"  # ... but is not "latest"
    assert Trainer(run["cfg"], out, verbose=False).initial_step == 6


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(run, tmp_path, capfd):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    data = next((out / "ckpt").glob("ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[:100])  # e.g. a sync glitch on a network drive
    t = Trainer(run["cfg"], out, verbose=False)
    assert t.initial_step == 4
    assert "could not restore" in capfd.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Non-finite losses
# ----------------------------------------------------------------------------------------------------------------
def _nan_at(batch_index, cfg):
    """Random images, except batch `batch_index`, which holds a NaN (built from tf.data ops: checkpointable)."""
    shape = (cfg.batch_size, cfg.resolution, cfg.resolution, 3)

    def make(k):
        x = tf.random.stateless_uniform(shape, seed=tf.stack([k, tf.constant(1, tf.int64)]), minval=-1, maxval=1)
        return tf.where(k == batch_index, x + float("nan"), x)

    return tf.data.Dataset.range(2**62).map(make)


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nan") / "r"
    cfg = tiny_config(loss="wasserstein", steps=20, log_every=5, sample_every=100, ckpt_every=5, ema=False)
    trainer = Trainer(cfg, out, dataset=_nan_at(6, cfg), verbose=False)  # batch 6 feeds iteration 7
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    return dict(trainer=trainer, cfg=cfg, out=out, error=str(info.value))


def test_nan_stops_training_with_a_clear_message(nan_run):
    msg = nan_run["error"]
    assert "non-finite loss at step 7" in msg
    assert "ckpt-5" in msg and "lr_d" in msg and "mixed_precision" in msg
    assert "--allow-change lr_g,lr_d" in msg and "allow_changes=('lr_g', 'lr_d')" in msg


def test_nan_leaves_the_last_good_checkpoint_intact(nan_run):
    out = nan_run["out"]
    # The NaN appeared at step 7 and was caught at the next check (step 10), before saving.
    assert Path(tf.train.latest_checkpoint(str(out / "ckpt"))).name == "ckpt-5"
    assert not list((out / "ckpt").glob("ckpt-10*"))
    G = load_generator(out)
    assert all(np.isfinite(np.array(w)).all() for w in G.weights)
    assert not (out / "generator.keras").exists()


def test_the_loss_option_selects_the_loss(nan_run):
    # Wasserstein: D's loss is E[D(G(z))] - E[D(x)], exactly d_fake - d_real (averaged over the log interval,
    # which is linear). The hinge loss would not satisfy this.
    record = nan_run["trainer"].history[0]
    assert record["step"] == 5
    assert record["d_loss"] == pytest.approx(record["d_fake"] - record["d_real"], rel=1e-4, abs=1e-6)
    assert nan_run["trainer"].d_loss_fn is losses.d_wasserstein


# ----------------------------------------------------------------------------------------------------------------
# Mixed precision, XLA flag
# ----------------------------------------------------------------------------------------------------------------
def test_mixed_bfloat16_keeps_variables_spectral_norm_and_outputs_float32(tmp_path):
    import keras

    from sagan_tut.spectral_norm import SpectralNormalization

    t = Trainer(tiny_config(mixed_precision="bfloat16", steps=1), tmp_path / "bf16", verbose=False)
    conv = t.G.get_layer("sn_up16_deconv").layer
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert all(v.dtype == "float32" for v in t.G.weights + t.D.weights)
    assert all(layer.u.dtype == "float32" for layer in t.D.layers if isinstance(layer, SpectralNormalization))
    assert t.G.output.dtype == "float32" and t.D.output.dtype == "float32"
    assert not isinstance(t.g_opt, keras.optimizers.LossScaleOptimizer)  # bfloat16 needs no loss scaling
    assert keras.config.dtype_policy().name == "float32"  # the global policy was restored


@pytest.mark.slow
def test_mixed_float16_step_uses_loss_scaling(tmp_path):
    import keras

    t = Trainer(tiny_config(mixed_precision="float16", steps=2, log_every=1), tmp_path / "f16", verbose=False)
    assert isinstance(t.g_opt, keras.optimizers.LossScaleOptimizer)
    assert isinstance(t.d_opt, keras.optimizers.LossScaleOptimizer)
    assert t.D.get_layer("sn_down8_conv").layer.compute_dtype == "float16"
    history = t.fit()
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in history)
    assert "loss_scale_g" in history[-1] and history[-1]["loss_scale_g"] > 1


def test_jit_compile_flag_reaches_the_step(run, tmp_path):
    # tf.function keeps its jit_compile argument in `_jit_compile` (there is no public accessor).
    on = Trainer(tiny_config(jit_compile=True), tmp_path / "xla", verbose=False)
    assert on._replica_step._jit_compile is True
    assert run["trainer"]._replica_step._jit_compile is None


def test_auto_jit_compile_follows_the_measurement_for_this_device(tmp_path, monkeypatch):
    from sagan_tut import perf

    cache = tmp_path / "jit_choice.json"
    monkeypatch.setenv(perf.ENV_CACHE, str(cache))
    assert get_config("quick").jit_compile == "auto"  # the default
    plain = Trainer(tiny_config(jit_compile="auto"), tmp_path / "a", verbose=False)
    default, why = perf.measured_default(perf.device_kind())  # a CPU: by its machine class (vector width, oneDNN)
    assert plain.jit_compile is default and plain.jit_compile_reason == why
    assert plain._replica_step._jit_compile is (True if default else None)
    # a benchmark run on this device recorded the opposite: "auto" follows the measurement
    perf.record_jit_choice(perf.device_name(), not default, {"made up": [1.0, 2.0]}, path=cache)
    measured = Trainer(tiny_config(jit_compile="auto"), tmp_path / "b", verbose=False)
    assert measured.jit_compile is (not default) and "measured on this device" in measured.jit_compile_reason
    assert measured._replica_step._jit_compile is (True if not default else None)
    # an explicit value is never overridden
    assert Trainer(tiny_config(jit_compile=default), tmp_path / "c", verbose=False).jit_compile is default
    # a run with few steps to go keeps the plain graph (XLA's compile would not pay off)
    perf.record_jit_choice(perf.device_name(), True, {"made up": [2.0, 1.0]}, path=cache)
    short = Trainer(tiny_config(jit_compile="auto", steps=perf.XLA_MIN_STEPS - 1), tmp_path / "d", verbose=False)
    assert short.jit_compile is False and "too few" in short.jit_compile_reason


@pytest.mark.slow
def test_xla_compiled_step_trains(tmp_path):
    t = Trainer(tiny_config(jit_compile=True), tmp_path / "xla", verbose=False)
    before = _weights(t.G) + _weights(t.D)
    t.train_step()
    t.train_step()
    after = _weights(t.G) + _weights(t.D)
    assert t.trace_count == 1 and int(t.step.numpy()) == 2
    assert np.isfinite(t._metric_sums.numpy()).all()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after) if a.size > 1)


# ----------------------------------------------------------------------------------------------------------------
# Exact resume and kills (child processes)
# ----------------------------------------------------------------------------------------------------------------
RESUME_SCRIPT = textwrap.dedent("""
    import shutil, sys, numpy as np
    from sagan_tut.config import get_config
    from sagan_tut.train import Trainer
    out, jit = sys.argv[1], sys.argv[2] == "xla"
    cfg = get_config("quick", width=0.125, batch_size=8, n_dis=2, steps=6, log_every=2, sample_every=100,
                     ckpt_every=100, ema=True, ema_start=2, ema_decay=0.9, deterministic=True, jit_compile=jit)

    def state(t):
        opt_vars = [v for o in (t.g_opt, t.d_opt) for v in o.variables]
        return [np.array(v) for v in t.G.weights + t.D.weights + t.G_ema.weights + opt_vars] + [t.step.numpy()]

    straight = Trainer(cfg, out + "/straight", verbose=False)
    straight.fit(steps=3)  # saves a checkpoint at step 3 (the end of a fit) ...
    at_3 = state(straight)
    shutil.copytree(out + "/straight", out + "/stopped")  # ... which a stopped run would resume from
    straight.fit()  # the same Trainer carries on in memory: the uninterrupted run
    resumed = Trainer(cfg, out + "/stopped", verbose=False)
    assert resumed.initial_step == 3, resumed.initial_step
    resumed.fit()
    a, b = state(straight), state(resumed)
    assert len(a) == len(b)
    identical = all(np.array_equal(x, y) for x, y in zip(a, b))
    moved = any(not np.array_equal(x, y) for x, y in zip(a, at_3))
    print("RESULT", identical, moved, len(a))
""")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["graph", "xla"])
def test_resume_is_exact_under_op_determinism(tmp_path, path):
    """2N steps straight == N steps, stop, resume in a new Trainer, N steps: identical weights, optimizer
    moments, EMA, step (the data position and the noise must have been restored too for this to hold), with the
    step as a plain tf.function graph and compiled by XLA (the default on a CPU)."""
    proc = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(tmp_path), path], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and result, proc.stderr[-3000:]
    _, identical, moved, n = result[0].split()
    assert moved == "True"  # the second half did change the state ...
    assert identical == "True"  # ... exactly as in the uninterrupted run
    assert int(n) > 50


@pytest.mark.slow
def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    out = tmp_path / "killed"
    every = 4
    child = start_train(out, every)
    # Wait until two checkpoints exist and training is between saves, then kill without warning.
    kill_when(child, lambda: (latest_checkpoint_step(out) or 0) >= 2 * every
              and (logged_steps(out / "log.jsonl") or [1])[-1] % every == every // 2, poll=0.05)
    last_logged = max(logged_steps(out / "log.jsonl"))
    saved = TrainConfig.from_json(str(out / "config.json"))
    t = Trainer(saved.replace(steps=last_logged + 2), out, verbose=False)  # resumes automatically
    assert last_logged - every <= t.initial_step <= last_logged
    assert t.initial_step % every == 0
    t.fit()
    assert int(t.step.numpy()) == last_logged + 2


# ----------------------------------------------------------------------------------------------------------------
# Progress line
# ----------------------------------------------------------------------------------------------------------------
def test_progress_line_shows_rate_and_eta():
    times = iter([100.0, 110.0])  # created at t=100, updated at t=110 after 20 steps
    stream = io.StringIO()
    bar = Progress(total=120, start=0, stream=stream, clock=lambda: next(times))
    bar.update(20, "d_loss 1.0", force=True)
    text = stream.getvalue()
    assert text.startswith("\r") and "20/120" in text
    assert "2.00 steps/s" in text and "ETA 00:00:50" in text  # 100 steps left at 2 steps/s
    quiet = io.StringIO()
    Progress(total=10, start=0, enabled=False, stream=quiet).update(5, force=True)
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------------------------------------------------
# Config: presets, validation, parsing
# ----------------------------------------------------------------------------------------------------------------
def test_default_optimisation_settings_are_the_papers():
    c = TrainConfig()
    assert (c.loss, c.n_dis, c.lr_g, c.lr_d, c.beta1, c.beta2) == ("hinge", 1, 1e-4, 4e-4, 0.0, 0.9)


def test_presets():
    assert set(PRESETS) == {"quick", "celeba64", "celeba128", "paper128"}
    quick = get_config("quick")
    assert (quick.arch, quick.resolution, quick.width, quick.attention_res, quick.dataset, quick.batch_size) == \
        ("blog", 32, 0.25, 16, "faces", 64)
    assert quick.steps // quick.sample_every >= 3 and quick.steps // quick.ckpt_every >= 3
    c128 = get_config("celeba128")
    assert (c128.arch, c128.resolution, c128.width, c128.attention_res, c128.batch_size, c128.loss, c128.ema) == \
        ("blog", 128, 1.0, 32, 64, "hinge", True)
    assert (c128.lr_g, c128.lr_d, c128.beta1, c128.beta2) == (1e-4, 4e-4, 0.0, 0.9)
    paper = get_config("paper128")
    assert (paper.arch, paper.attention_variant, paper.resolution, paper.batch_size) == ("paper", "biggan", 128, 64)
    assert get_config("celeba64").resolution == 64
    assert get_config("celeba128", lr_d=2e-4, steps=10).lr_d == 2e-4  # any field can be overridden


@pytest.mark.parametrize("field, value, allowed", [
    ("loss", "l2", "'hinge', 'nonsaturating', 'minimax', 'wasserstein'"),
    ("arch", "resnet", "'blog', 'paper', 'dcgan'"),
    ("resolution", 48, "32, 64, 128"),
    ("mixed_precision", "fp16", "'none', 'float16', 'bfloat16'"),
    ("distribute", "horovod", "'none', 'mirrored', 'multiworker', 'tpu'"),
    ("attention_res", 32, "[4, 8, 16]"),  # D's largest feature map at 32x32 is 16x16
    ("lr_d", 0.0, "(0.0, 1.0]"),
    ("beta2", 1.0, "[0.0, 1.0)"),
    ("n_dis", 0, "[1, 100]"),
    ("batch_size", 0, ">= 1"),
    ("ema", "yes", "true or false"),
    ("jit_compile", 1, "False, True"),
    ("ema_decay", float("nan"), "[0.0, 1.0)"),
    ("data_source", "s3", "'auto', 'tfds', 'folder', 'zip', 'kaggle'"),
])
def test_invalid_values_name_the_field_and_the_allowed_values(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        get_config("quick", **{field: value})
    msg = str(info.value)
    assert msg.startswith(field + " ") and allowed in msg and repr(value) in msg


def test_data_sources_are_the_loaders():
    from sagan_tut import celeba
    from sagan_tut.config import DATA_SOURCES, DATASETS
    from sagan_tut.data import DATASETS as LOADABLE

    assert DATA_SOURCES == celeba.SOURCES and DATASETS == LOADABLE


def test_unknown_field_and_preset():
    with pytest.raises(ConfigError, match="unknown config field 'lrd'. Did you mean 'lr_d'"):
        get_config("quick", lrd=1e-4)
    with pytest.raises(ConfigError, match="preset must be one of quick, celeba64, celeba128, paper128"):
        get_config("celeba256")


def test_config_json_roundtrip(tmp_path):
    cfg = get_config("paper128", steps=7, attention_res=None, spectral_norm=False)
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert TrainConfig.from_json(str(path)) == cfg
    assert json.loads(path.read_text())["attention_res"] is None


def test_parse_overrides_converts_by_field_type():
    assert parse_overrides(["lr_d=2e-4", "ema=no", "attention_res=none", "steps=10", "data_root=/d"]) == \
        dict(lr_d=2e-4, ema=False, attention_res=None, steps=10, data_root="/d")
    assert parse_value("jit_compile", "true") is True
    assert parse_value("jit_compile", "Auto") == "auto"
    with pytest.raises(ConfigError, match="jit_compile must be true, false or auto; got 'xla'"):
        parse_value("jit_compile", "xla")
    with pytest.raises(ConfigError, match="steps must be an integer; got '1.5'"):
        parse_value("steps", "1.5")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr_d"])
