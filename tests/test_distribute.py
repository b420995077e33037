"""tf.distribute: one MirroredStrategy step over two logical CPU devices at global batch B makes the same update as
one device at batch B.

Logical devices must be configured before TensorFlow initialises its devices, so the comparison runs in a child
process. The trainers there use plain SGD: its update is lr * (summed gradient), so a loss that was not divided by
the number of replicas would show up as a doubled update (Adam would hide it: it divides the scale away).
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np
    from sagan_tut.config import ConfigError, get_config
    from sagan_tut.train import Trainer

    class SGDTrainer(Trainer):
        def make_optimizer(self, learning_rate):
            return keras.optimizers.SGD(learning_rate)

    out = sys.argv[1]
    cfg = get_config("quick", width=0.125, batch_size=8, steps=2, ema=False, lr_g=0.05, lr_d=0.05, log_every=2,
                     sample_every=2, ckpt_every=2)
    single = SGDTrainer(cfg, out + "/single", verbose=False)
    mirrored = SGDTrainer(cfg, out + "/mirrored", verbose=False,
                          strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("REPLICAS", mirrored.num_replicas)

    def weights(t):
        return [np.array(v) for v in t.G.weights + t.D.weights]

    w0s, w0m = weights(single), weights(mirrored)
    print("SAME_INIT", all(np.array_equal(a, b) for a, b in zip(w0s, w0m)))
    single.train_step()
    mirrored.train_step()
    ds = [a - b for a, b in zip(weights(single), w0s)]
    dm = [a - b for a, b in zip(weights(mirrored), w0m)]
    scale = max(float(np.abs(d).max()) for d in ds)
    err = max(float(np.abs(a - b).max()) for a, b in zip(ds, dm))
    # The same comparison for each model's trainable weights alone, relative to that model's largest update.
    print("UPDATE", scale, err)
    ms, mm = single._metric_sums.numpy(), mirrored._metric_sums.numpy()
    print("METRICS", " ".join(f"{a:.8g},{b:.8g}" for a, b in zip(ms, mm)))

    # The whole loop (logging, sample grid, checkpoint) under the strategy, and reading the run back.
    from sagan_tut.train import load_generator
    mirrored.fit(steps=2)
    G = load_generator(out + "/mirrored", ema=False)
    print("LOOP", int(mirrored.step.numpy()), len(mirrored.history),
          all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(G.weights, mirrored.G.weights)))

    try:
        SGDTrainer(cfg.replace(batch_size=7), out + "/odd", verbose=False,
                   strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        print("ODD_BATCH accepted")
    except ConfigError as err:
        print("ODD_BATCH", str(err).replace(" ", "_"))
""")


@pytest.mark.slow
def test_mirrored_step_equals_single_device_step(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["REPLICAS"] == "2"
    assert lines["SAME_INIT"] == "True"  # both start from the same weights
    scale, err = map(float, lines["UPDATE"].split())
    assert scale > 1e-3  # the step did move the weights
    # Same update within float32 summation-order noise; an unscaled (doubled) update would give err ~ scale.
    assert err < 1e-3 * scale
    # The reported losses and mean logits are the global batch's: d_loss, g_loss, D(x), D(G(z)).
    for pair in lines["METRICS"].split():
        a, b = map(float, pair.split(","))
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a))
    assert lines["LOOP"] == "2 1 True"  # 2 steps, one log record, the checkpoint holds the mirrored weights
    assert "divisible_by_the_number_of_replicas" in lines["ODD_BATCH"]
