"""The ``sagan-tut`` command: help, argument errors, and train -> sample -> evaluate end to end on the quick preset."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sagan_tut import cli

ROOT = Path(__file__).resolve().parents[1]
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
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python -m sagan_tut train` on the quick preset (shrunk), in a child process as a user would run it."""
    out = tmp_path_factory.mktemp("cli") / "quick"
    cmd = [sys.executable, "-m", "sagan_tut", "train", "--preset", "quick", "--out", str(out), "--steps", "4",
           "--quiet", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return out, proc


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
