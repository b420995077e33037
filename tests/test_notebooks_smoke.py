"""Every chapter's `full` branch runs (issue #13 item 5): smoke mode, no outputs compared.

``SAGAN_TUT_PROFILE=full SAGAN_TUT_SMOKE=1`` keeps the full architectures, presets and data paths and caps loop
lengths and sample counts to seconds (``sagan_tut.profile.profile_config``'s ``smoke_caps``). Each chapter is
executed from a copy in a scratch folder (never in place; ``../book`` is linked so the committed artefacts are
found as in the book build), with this checkout first on the kernel's ``PYTHONPATH``. Chapter 5 reads a small
fake CelebA in the official folder format (``sagan_tut.celeba_fake``) from ``$SAGAN_TUT_CELEBA_DIR``.

A cell that takes longer than CELL_TIMEOUT_S in smoke mode has a loop that is not capped: it fails here instead
of running the real length. The executed copy is left in pytest's tmp folder for a look after a failure.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0[1-6]*.ipynb"))
CELEBA_ENV = "SAGAN_TUT_CELEBA_DIR"  # chapter 5 reads its CelebA location from here when it is set
CELL_TIMEOUT_S = 300  # generous for 2 shared cores; a capped cell takes seconds

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def fake_celeba(tmp_path_factory) -> Path:
    """A small CelebA in the official layout: img_align_celeba/000001.jpg ... + list_eval_partition.txt."""
    from sagan_tut.celeba_fake import write_fake_celeba

    root = tmp_path_factory.mktemp("celeba")
    write_fake_celeba(root, n=192, layout="folder", annotations=True)
    return root


def smoke_env(celeba_dir: Path) -> dict:
    env = {"SAGAN_TUT_PROFILE": "full", "SAGAN_TUT_SMOKE": "1", CELEBA_ENV: str(celeba_dir),
           "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def execute_copy(path: Path, workdir: Path, env: dict, timeout: int = CELL_TIMEOUT_S):
    """Execute a copy of notebook ``path`` in ``workdir/notebooks`` with ``env`` added to the kernel's
    environment; return (executed notebook, seconds). Raises nbclient's CellExecutionError / timeout."""
    from nbclient import NotebookClient

    nb_dir = workdir / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "book").exists():
        (workdir / "book").symlink_to(ROOT / "book", target_is_directory=True)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(nb_dir)}})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        seconds = time.perf_counter() - t0
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        nbformat.write(nb, nb_dir / path.name)  # the executed copy (with the error, if any)
    return nb, seconds


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_in_smoke_mode(path, tmp_path, fake_celeba):
    nb, seconds = execute_copy(path, tmp_path, smoke_env(fake_celeba))
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert not errors, f"{path.name}: cells {errors} raised in smoke mode"
    print(f"{path.name}: {seconds:.0f} s in smoke mode")  # information, never asserted (machines differ)



def test_fake_celeba_is_in_the_official_folder_format(fake_celeba):
    from sagan_tut.celeba_files import find_celeba

    images = sorted((fake_celeba / "img_align_celeba").glob("*.jpg"))
    assert len(images) == 192 and images[0].name == "000001.jpg"
    lines = (fake_celeba / "list_eval_partition.txt").read_text().split()
    assert lines[0] == "000001.jpg" and set(lines[1::2]) == {"0", "1", "2"}
    found = find_celeba(root=fake_celeba)  # what the chapter's loader finds there, without the network
    assert (found.kind, Path(found.path)) == ("folder", fake_celeba / "img_align_celeba")
    assert Path(found.partition) == fake_celeba / "list_eval_partition.txt"


def test_smoke_executor_reports_a_failing_cell(tmp_path):
    """The harness itself: a notebook whose second cell raises fails with nbclient's error, and the env reaches
    the kernel."""
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nassert os.environ['SAGAN_TUT_SMOKE'] == '1'\n"
                                          "assert os.environ['SAGAN_TUT_PROFILE'] == 'full'"),
                nbformat.v4.new_code_cell("raise RuntimeError('planted')")]
    path = tmp_path / "planted.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError, match="planted"):
        execute_copy(path, tmp_path / "run", smoke_env(tmp_path), timeout=120)
    nb.cells = nb.cells[:1]
    nbformat.write(nb, path)
    executed, _ = execute_copy(path, tmp_path / "run2", smoke_env(tmp_path), timeout=120)
    assert executed.cells[0].outputs == []
