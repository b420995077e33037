"""The ``sagan-tut`` command: help, argument errors, checks before TensorFlow starts, warnings, and train -> sample ->
evaluate end to end on the quick preset."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sagan_tut import cli
from sagan_tut.config import get_config

ROOT = Path(__file__).resolve().parents[1]
# A line of TensorFlow's C++ log, as absl writes it ("I0000 00:00:1796145269.749244    7168 port.cc:153] ...") or as
# TensorFlow < 2.16 did ("2024-01-01 12:00:00.000000: I tensorflow/core/...cc:42] ...").
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \S+\s+\d+ |\d{4}-\d\d-\d\d \S+: [IWEF] )\S+:\d+\]")
# The quick preset, shrunk so the end-to-end run takes seconds: 4 steps, a grid and a checkpoint every 2, the EMA
# averaging from step 1.
TINY = ["--set", "width=0.125", "--set", "batch_size=8", "--set", "log_every=2", "--set", "sample_every=2",
        "--set", "ckpt_every=2", "--set", "ema_start=1"]


def _subparsers(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_help_documents_every_option():
    parser = cli._parser()
    subs = _subparsers(parser)
    assert set(subs) == {"train", "sample", "evaluate"}
    for name, sub in subs.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help and len(action.help) > 10, (name, action.dest)
            assert all(opt in text for opt in action.option_strings), (name, action.option_strings)
    for option in ("--preset", "--data", "--data-root", "--out", "--steps", "--set", "--resume", "--no-resume"):
        assert option in subs["train"].format_help()


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    assert "celeba128" in capsys.readouterr().out


@pytest.mark.parametrize("argv, reason", [
    (["train", "--preset", "celeba256"], "invalid choice: 'celeba256'"),
    (["train", "--steps", "ten"], "invalid int value: 'ten'"),
    (["sample"], "the following arguments are required: --run"),
    (["sample", "--run", "x", "--n", "0"], "--n must be a positive integer"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_arguments_exit_2_with_a_reason(argv, reason, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err


@pytest.mark.parametrize("setting, reason", [
    ("lr_d=-1", "error: lr_d must be a number in (0.0, 1.0]; got -1.0."),
    ("loss=l2", "error: loss must be one of 'hinge', 'nonsaturating', 'minimax', 'wasserstein'; got 'l2'."),
    ("lrd=1e-4", "error: unknown config field 'lrd'. Did you mean 'lr_d'?"),
    ("ema=maybe", "error: ema must be true or false; got 'maybe'."),
])
def test_invalid_config_exits_1_with_one_line(setting, reason, tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--set", setting]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(reason) and "\n" not in err
    assert not (tmp_path / "r").exists()  # rejected before anything was written


# ----------------------------------------------------------------------------------------------------------------
def _env(**changes):
    """The environment of a child process: this one's, without TF_CPP_MIN_LOG_LEVEL (as a user's shell would
    usually be), this checkout first on the path, and ``changes``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python -m sagan_tut train` on the quick preset (shrunk), in a child process as a user would run it."""
    out = tmp_path_factory.mktemp("cli") / "quick"
    cmd = [sys.executable, "-m", "sagan_tut", "train", "--preset", "quick", "--out", str(out), "--steps", "4",
           "--quiet", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env())
    return out, proc


def test_train_prints_no_tensorflow_log_lines(trained):
    # Start-up ("oneDNN custom operations", "Could not find cuda drivers"), CUDA ("failed call to cuInit") and
    # grappler ("remapper failed") lines are TensorFlow's C++ log; the CLI keeps them out of the terminal.
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = [line for line in proc.stderr.splitlines()
             if TF_LOG_LINE.match(line) or "absl::InitializeLog" in line]
    assert not noise, noise


def test_train_writes_checkpoints_grids_and_tensorboard_events(trained):
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"trained {out} to step 4" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 4 and config["width"] == 0.125 and config["arch"] == "blog"
    assert (out / "ckpt" / "checkpoint").exists()
    assert sorted(p.name for p in (out / "ckpt").glob("*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert sorted(p.name for p in (out / "samples").glob("step_*.png")) == \
        ["step_000000.png", "step_000002.png", "step_000004.png"]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert (out / "generator.keras").exists()


def test_train_again_resumes_and_no_resume_refuses(trained, capsys):
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Without --preset the saved config.json is used; the run is complete, so resuming trains no further.
    assert cli.main(["train", "--out", str(out), "--quiet"]) == 0
    assert f"resumed {out} at step 4" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "ckpt").glob("*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert cli.main(["train", "--out", str(out), "--no-resume", "--quiet"]) == 1
    assert "already holds checkpoints" in capsys.readouterr().err
    # A preset that differs from the saved run is refused, naming the fields.
    assert cli.main(["train", "--preset", "celeba64", "--out", str(out), "--quiet"]) == 1
    assert "cannot resume" in capsys.readouterr().err


def test_sample_writes_a_grid(trained, tmp_path):
    from PIL import Image

    from sagan_tut.viz import image_grid

    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = {}
    for name, extra in (("ema", []), ("ema_again", []), ("raw", ["--no-ema"]), ("seed1", ["--seed", "1"])):
        paths[name] = tmp_path / f"{name}.png"
        assert cli.main(["sample", "--run", str(out), "--n", "9", "--out", str(paths[name]), *extra]) == 0
    grids = {k: np.asarray(Image.open(p)).astype(int) for k, p in paths.items()}
    assert grids["ema"].shape == image_grid(np.zeros((9, 32, 32, 3))).shape  # 3 x 3 tiles of 32 x 32
    assert np.array_equal(grids["ema"], grids["ema_again"])  # same seed, same images
    assert not np.array_equal(grids["ema"], grids["raw"])  # the quick preset keeps an EMA generator
    assert not np.array_equal(grids["ema"], grids["seed1"])


def test_sample_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert cli.main(["sample", "--run", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "config.json" in err and "\n" not in err


def test_evaluate_writes_fid_json(trained, tmp_path, capsys):
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    result_path = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--run", str(out), "--n", "64", "--batch-size", "32", "--out",
                     str(result_path)]) == 0
    assert "FID" in capsys.readouterr().out
    result = json.loads(result_path.read_text())
    assert result["n"] == 64 and np.isfinite(result["fid"]) and result["fid"] > 0


def test_a_trainers_generator_keras_loads_in_a_fresh_process(trained):
    # The trainer's own file, "loadable without this package's trainer": after `import sagan_tut` (which imports
    # no model code itself), Keras finds the package's layers, and the outputs are the checkpoint's EMA generator's.
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    code = f"""import sagan_tut, keras, numpy as np
z = np.random.default_rng(0).standard_normal((2, 128)).astype("float32")
a = keras.models.load_model(r"{out / 'generator.keras'}")(z, training=False)
from sagan_tut.train import load_generator  # only now: it imports the layer modules itself
b = load_generator(r"{out}")(z, training=False)
print(bool(np.array_equal(np.asarray(a), np.asarray(b))))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[-1] == "True"


# -- before TensorFlow: --help, missing data, refused resumes ----------------------------------------------------
@pytest.mark.parametrize("command", [["-m", "sagan_tut", "--help"], ["-m", "sagan_tut", "train", "--help"],
                                     "sagan-tut"])
def test_help_starts_no_tensorflow(command):
    # -X importtime (PYTHONPROFILEIMPORTTIME for the console script) lists every module the process imported.
    if command == "sagan-tut":
        script = Path(sys.executable).with_name("sagan-tut")
        if not script.exists():
            pytest.skip("the sagan-tut script is not installed next to this Python")
        cmd = [str(script), "--help"]
    else:
        cmd = [sys.executable, *command]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_env(PYTHONPROFILEIMPORTTIME="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: sagan-tut" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "sagan_tut.cli" in imported  # the listing works (and this is this checkout's package)
    assert not {"tensorflow", "keras"} & imported


def test_missing_celeba_is_reported_before_tensorflow_in_cli_terms(tmp_path):
    home, out = tmp_path / "home", tmp_path / "runs" / "c"
    home.mkdir()
    code = f"""import sys
from sagan_tut import cli
code = cli.main(["train", "--data", "celeba", "--out", r"{out}"])
print(code, "tensorflow" in sys.modules)
"""
    # An empty HOME and working folder: none of the default places holds CelebA.
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=_env(HOME=str(home), KAGGLEHUB_CACHE=str(home / "kh"), TFDS_DATA_DIR=str(home / "t")))
    status, tf_started = proc.stdout.split()[-2:]
    assert status == "2"
    err = proc.stderr
    assert "error: --data celeba: CelebA was not found in the default places (no --data-root given)" in err
    assert "Pass --data-root DIR" in err and "--data faces" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "runs").exists()  # no config.json, no folder left behind
    if importlib.util.find_spec("sagan_tut.celeba_files") is not None:  # the TensorFlow-free finder
        assert tf_started == "False"


def test_missing_data_root_exits_2_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "celeba", "--data-root", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data-root {tmp_path / 'nope'} does not exist.") and "Traceback" not in err
    assert not out.exists()


def _saved_run(folder, **overrides):
    """A run folder as the trainer leaves it, as far as the CLI looks before TensorFlow: config.json and a
    checkpoint index."""
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\n')
    get_config("quick", **overrides).to_json(folder / "config.json")
    return folder


def test_a_resume_with_new_learning_rates_names_allow_change(tmp_path, capsys):
    run = _saved_run(tmp_path / "run")
    assert cli.main(["train", "--out", str(run), "--set", "lr_g=5e-5", "--set", "lr_d=2e-4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {run} with a different config (lr_g: 0.0004 -> 5e-05, lr_d: "
                          "0.0004 -> 0.0002). To continue this run from its last checkpoint with the new values, "
                          "add --allow-change lr_g,lr_d.")
    # A field no flag may change: no --allow-change advice.
    assert cli.main(["train", "--out", str(run), "--set", "arch=dcgan", "--set", "attention_res=none"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume" in err and "--allow-change" not in err


def test_bad_allow_change_name_is_one_line(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--allow-change", "lr_g,lrd"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --allow-change: unknown config field 'lrd'. Did you mean 'lr_d'?")
    assert "\n" not in err and not (tmp_path / "r").exists()


# -- with a stand-in trainer: what the CLI passes and prints -----------------------------------------------------
class _Report:
    def __init__(self, text):
        self.text = text

    def summary(self, max_paths: int = 5) -> str:
        return self.text


SKIPS = "CelebA (folder x): skipped 2 file(s): 2 truncated JPEG.\n  000007.jpg (truncated JPEG)\n  000009.jpg (...)"


def _stand_in_trainer(monkeypatch, calls, report=None, allow_changes=True):
    import sagan_tut.train

    class Trainer:
        def __init__(self, config, out_dir, *, resume=True, verbose=True, **kwargs):
            calls.update(config=config, kwargs=kwargs)
            self.initial_step, self.jit_compile, self.jit_compile_reason = 4, False, "stand-in"
            self.dataset = SimpleNamespace(skip_report=report)
            self.step = SimpleNamespace(numpy=lambda: 6)

        def fit(self):
            calls["fit"] = True

    if allow_changes:
        def init(self, config, out_dir, *, resume=True, verbose=True, allow_changes=()):
            Trainer._init(self, config, out_dir, resume=resume, verbose=verbose, allow_changes=allow_changes)
        Trainer._init, Trainer.__init__ = Trainer.__init__, init
    monkeypatch.setattr(sagan_tut.train, "Trainer", Trainer)


def test_allow_change_reaches_the_trainer(tmp_path, monkeypatch, capsys):
    run, calls = _saved_run(tmp_path / "run"), {}
    _stand_in_trainer(monkeypatch, calls)
    argv = ["train", "--out", str(run), "--set", "lr_g=5e-5", "--set", "lr_d=2e-4", "--allow-change", "lr_g",
            "--allow-change", "lr_d", "--quiet"]
    assert cli.main(argv) == 0
    assert calls["fit"] and calls["kwargs"] == {"allow_changes": ("lr_g", "lr_d")}
    assert (calls["config"].lr_g, calls["config"].lr_d) == (5e-5, 2e-4)
    assert f"resumed {run} at step 4" in capsys.readouterr().out


def test_without_allow_change_an_older_trainer_still_works(tmp_path, monkeypatch, capsys):
    run, calls = _saved_run(tmp_path / "run"), {}
    _stand_in_trainer(monkeypatch, calls, allow_changes=False)
    assert cli.main(["train", "--out", str(run), "--steps", "6", "--quiet"]) == 0
    assert calls["kwargs"] == {} and calls["config"].steps == 6
    # ... and asking it for --allow-change is one clear line, not a TypeError.
    assert cli.main(["train", "--out", str(run), "--set", "lr_g=5e-5", "--allow-change", "lr_g"]) == 1
    assert "needs a sagan_tut whose Trainer takes allow_changes=" in capsys.readouterr().err


@pytest.mark.parametrize("report, shown", [(_Report(SKIPS), True), (_Report(""), False), (None, False),
                                           (object(), False)])
def test_train_ends_with_the_skipped_files_summary(report, shown, tmp_path, monkeypatch, capsys):
    _stand_in_trainer(monkeypatch, {}, report=report)
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (SKIPS in capsys.readouterr().err) == shown


def test_evaluate_ends_with_the_skipped_files_summary(monkeypatch, capsys):
    import sagan_tut.metrics

    result = dict(fid=12.5, kid_mean=None, n=64, extractor="offline", json="x.json", skip_report=_Report(SKIPS))
    monkeypatch.setattr(sagan_tut.metrics, "evaluate_run", lambda run, **kw: dict(result))
    assert cli.main(["evaluate", "--run", "somewhere", "--n", "64"]) == 0
    captured = capsys.readouterr()
    assert "FID 12.500" in captured.out and SKIPS in captured.err


def test_options_that_do_not_apply_are_named(tmp_path, capsys):
    # A refused resume stops the command before any TensorFlow work; the warnings come first.
    run = _saved_run(tmp_path / "run", ema=False)
    argv = ["train", "--out", str(run), "--data-root", "/data/celeba", "--set", "data_source=zip",
            "--set", "ema_decay=0.9", "--set", "lr_g=5e-5"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [
        "warning: --data-root is ignored: the faces dataset is drawn procedurally; --data-root is for --data celeba.",
        "warning: --set data_source=... is ignored: the faces dataset is drawn procedurally; --data-source is for "
        "--data celeba.",
        "warning: --set ema_decay=... is ignored: the run keeps no EMA generator (ema=false).",
    ]
    assert err[3].startswith("error: cannot resume")


def test_unused_options():
    faces = get_config("quick")
    assert cli._unused_options(faces, {}) == []
    assert cli._unused_options(faces.replace(dataset="celeba"), {"data_root": "--data-root"}) == []
    dcgan = get_config("quick", arch="dcgan", attention_res="auto")
    assert cli._unused_options(dcgan, {"attention_variant": "--set attention_variant=..."}) == [
        "--set attention_variant=... is ignored: the model has no self-attention (attention_res='auto' with "
        "arch='dcgan')."]
    assert cli._unused_options(faces, {"attention_variant": "--set attention_variant=..."}) == []
    assert "--allow-change is ignored: there is no run to resume" in cli._unused_options(faces, {}, True)[0]


# -- TensorFlow's C++ log -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user_level, expected", [(None, "3"), ("0", "0")])
def test_tensorflow_log_level_defaults_to_quiet_and_the_users_value_wins(user_level, expected, tmp_path):
    code = """import os, sys
from sagan_tut import cli
code = cli.main(["sample", "--run", "no-such-run"])
print(code, os.environ["TF_CPP_MIN_LOG_LEVEL"], "tensorflow" in sys.modules)
"""
    env = _env() if user_level is None else _env(TF_CPP_MIN_LOG_LEVEL=user_level)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.stdout.split()[-3:] == ["1", expected, "True"]  # TensorFlow started, then the run was missing
    log_lines = [line for line in proc.stderr.splitlines() if TF_LOG_LINE.match(line)]
    assert "error:" in proc.stderr and "config.json" in proc.stderr
    if user_level is None:
        assert not log_lines and "absl::InitializeLog" not in proc.stderr, proc.stderr
    else:  # TensorFlow 2.21 logs a few INFO lines at start-up; at level 0 they pass through untouched
        assert log_lines, proc.stderr
