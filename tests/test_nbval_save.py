"""tests/nbval_save.py: the notebooks `make test` builds the book from carry exactly what nbval executed.

A tiny notebook (stdout and stderr interleaved, an image with glue-style metadata, a result, clear_output, a display
update) runs under ``pytest --nbval-lax -p tests.nbval_save`` in a subprocess, next to one whose cell raises; the
saved copy must hold every output the code produces, in order, and the failing one must not be saved. The stage
command is checked on a scratch book: it refuses missing or stale executed copies and turns execution off.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import nbval_save  # noqa: E402

# A 1x1 PNG, written out by hand so the kernel needs no matplotlib (keeps this test at a few seconds).
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a1d1e1ad0000000049454e44ae426082")).decode()
GLUE = {"scrapbook": {"name": "pixel", "mime_prefix": ""}}

CELLS = [
    'import sys\nprint("out one", flush=True)\nprint("err one", file=sys.stderr, flush=True)\n'
    'print("out two", flush=True)',
    f'from IPython.display import display\ndisplay({{"image/png": "{PNG}", "text/plain": "<pixel>"}}, raw=True, '
    f'metadata={GLUE!r})',
    "# NBVAL_CHECK_OUTPUT\n1 + 1",
    'from IPython.display import clear_output\nprint("gone", flush=True)\nclear_output()\nprint("kept")',
    'h = display("first", display_id=True)\nh.update("second")',
]

EXPECTED = [
    [{"output_type": "stream", "name": "stdout", "text": "out one\n"},
     {"output_type": "stream", "name": "stderr", "text": "err one\n"},
     {"output_type": "stream", "name": "stdout", "text": "out two\n"}],
    [{"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<pixel>"}, "metadata": GLUE}],
    [{"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {}, "execution_count": 3}],
    [{"output_type": "stream", "name": "stdout", "text": "kept\n"}],
    [{"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}}],
]


def write_notebook(path: Path, sources: list[str], outputs: list[list[dict]] | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        if outputs is not None:  # the committed reference, as nbval compares it (from an older, longer session)
            cell.outputs, cell.execution_count = [nbformat.from_dict(o) for o in outputs[i]], i + 7
        nb.cells.append(cell)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A tiny chapter"))
    nbformat.write(nb, str(path))


def plain(outputs) -> list[dict]:
    return json.loads(json.dumps(outputs))


# `make test` runs nbval under pytest-xdist, two notebooks at a time (one worker runs all of a notebook's cells).
MODES = {"serial": [], "xdist": ["-n", "2", "--dist", "loadfile"]}


@pytest.fixture(scope="module", params=list(MODES))
def nbval_run(request, tmp_path_factory):
    book = tmp_path_factory.mktemp("book")
    (book / "notebooks").mkdir()
    write_notebook(book / "notebooks" / "tiny.ipynb", CELLS, EXPECTED)
    write_notebook(book / "notebooks" / "broken.ipynb", ['print("fine")', 'raise ValueError("boom")', "2"])
    executed = book / "_build" / "executed"
    stale = executed / "notebooks" / "broken.ipynb"  # an earlier, passing run's copy
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    # (not PYTEST_XDIST_*: this test may itself run in an xdist worker)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST_XDIST")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.nbval_save", f"--nbval-save={executed}", "--nbval-lax",
         "-p", "no:randomly", "-p", "no:cacheprovider", f"--rootdir={book}", "-c", os.devnull, "-q",
         *MODES[request.param], str(book / "notebooks")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return book, executed, proc, request.param


def test_every_output_of_every_cell_is_saved_in_order(nbval_run):
    book, executed, proc, mode = nbval_run
    saved_path = executed / "notebooks" / "tiny.ipynb"
    assert saved_path.exists(), proc.stdout + proc.stderr
    saved = nbformat.read(str(saved_path), as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.source for c in code] == CELLS, "the saved notebook must be the source notebook"
    assert [plain(c.outputs) for c in code] == EXPECTED
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5]
    assert saved.cells[0].cell_type == "markdown"
    assert saved.metadata[nbval_save.META_KEY]["source_sha256"] == nbval_save.sha256(book / "notebooks/tiny.ipynb")
    assert saved.metadata[nbval_save.META_KEY]["parallel"] == (2 if mode == "xdist" else 1)
    assert f"nbval-save: wrote 1 executed notebook(s) to {executed}" in proc.stdout, proc.stdout


def test_a_notebook_with_a_failing_cell_fails_nbval_and_is_not_saved(nbval_run):
    _, executed, proc, mode = nbval_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout and "7 passed" in proc.stdout, proc.stdout
    assert not (executed / "notebooks" / "broken.ipynb").exists(), "the earlier run's copy must be deleted"
    assert "not written: notebooks/broken.ipynb (cell 1 failed)" in proc.stdout


# --------------------------------------------------------------------------------------------- stage

CONFIG = """title: t
exclude_patterns: [_build]
execute:
  # executed at build time
  execute_notebooks: force
  timeout: 1800
"""


@pytest.fixture
def scratch_book(tmp_path):
    root = tmp_path / "src"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "_config.yml").write_text(CONFIG)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/one\n")
    (root / ".venv2").mkdir()
    (root / ".venv2" / "pyvenv.cfg").write_text("home = /usr\n")
    write_notebook(root / "notebooks" / "one.ipynb", ["1"], [[]])
    executed = tmp_path / "executed"
    (executed / "notebooks").mkdir(parents=True)
    nb = nbformat.read(str(root / "notebooks" / "one.ipynb"), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)]
    nb.metadata[nbval_save.META_KEY] = {"source_sha256": nbval_save.sha256(root / "notebooks" / "one.ipynb")}
    nbformat.write(nb, str(executed / "notebooks" / "one.ipynb"))
    return root, executed


def test_stage_swaps_in_the_executed_notebooks_and_turns_execution_off(scratch_book):
    root, executed = scratch_book
    out = root / "_build" / "stage"
    assert nbval_save.stage(root, executed, out) == [Path("notebooks/one.ipynb")]
    import yaml
    assert yaml.safe_load((out / "_config.yml").read_text())["execute"] == {"execute_notebooks": "off",
                                                                             "timeout": 1800}
    assert (out / "notebooks" / "one.ipynb").read_bytes() == (executed / "notebooks" / "one.ipynb").read_bytes()
    assert (out / "book" / "intro.md").exists()
    assert not (out / ".venv2").exists() and not (out / "_build").exists()
    nbval_save.stage(root, executed, out)  # its own folder is replaced


def test_stage_refuses_a_missing_or_stale_executed_notebook(scratch_book):
    root, executed = scratch_book
    source = root / "notebooks" / "one.ipynb"
    source.write_text(source.read_text().replace('"1"', '"1 + 0"'))
    with pytest.raises(SystemExit, match="one.ipynb: changed since nbval executed it"):
        nbval_save.stage(root, executed, root / "_build" / "stage")
    (executed / "notebooks" / "one.ipynb").unlink()
    with pytest.raises(SystemExit, match="one.ipynb: no executed copy"):
        nbval_save.stage(root, executed, root / "_build" / "stage")
    assert not (root / "_build" / "stage").exists()


def test_stage_never_deletes_a_folder_it_did_not_make(scratch_book):
    root, executed = scratch_book
    (root / "mine").mkdir()
    (root / "mine" / "keep.txt").write_text("x")
    with pytest.raises(SystemExit, match="was not made by this command"):
        nbval_save.stage(root, executed, root / "mine")
    assert (root / "mine" / "keep.txt").exists()
