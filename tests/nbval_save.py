"""Keep what nbval executed, so `make test` builds the book without executing every chapter a second time.

nbval (``pytest --nbval-lax``) runs each notebook's cells in a kernel and compares the cells marked
``# NBVAL_CHECK_OUTPUT`` with the committed outputs, then throws the run away; the strict book build used to execute
every chapter again. Loaded as a pytest plugin,

    python -m pytest -p tests.nbval_save --nbval-save=_build/executed --nbval-lax notebooks/

it also writes every notebook whose code cells all ran and passed to ``_build/executed/<its path>``: the committed
notebook with each code cell's outputs replaced by what the kernel just sent, message by message as nbclient (the
executor behind jupyter-book) stores them -- stdout, stderr, display_data with its metadata (glue), results, errors,
``clear_output`` and display updates applied -- and execution counts 1, 2, ... . nbval's own comparison is untouched.
Under pytest-xdist (``-n 2 --dist loadfile``: one worker runs all of a notebook's cells, in order, in one kernel)
each worker writes the notebooks it ran and reports them to the controller, which prints the summary; each copy
records how many notebooks ran at a time (``parallel``), and the run-time table says so.
A notebook with a failed, skipped or deselected cell is not written, and its copy from an earlier run is deleted at
collection, so stale outputs can never be staged. Each copy records the SHA-256 of the source it was executed from.

    python -m tests.nbval_save stage --executed _build/executed --out _build/stage

copies the book's sources to ``--out``, puts the executed copy in place of every notebook in ``_toc.yml`` (failing,
with the reason, when one is missing or was executed from another version of the source) and turns execution off
in the staged ``_config.yml``; ``jupyter-book build _build/stage --path-output .`` then builds it into _build/html.
It also writes the intro's run-time table (``book/run_times.md``, which the repository holds as a placeholder)
from the run time each executed chapter glued (``sagan_tut.glue.run_time``: ``chN_wall_s``, ``chN_cpu_s``,
``chN_machine``, ``chN_profile``, and an optional ``chN_full_estimate`` text), so the table always shows the
times of the very run the book is built from.
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

META_KEY = "sagan_tut_nbval"  # notebook metadata: {"source_sha256": ...} of the notebook nbval executed
STAGE_MARKER = ".nbval_stage"  # `stage` only ever deletes a folder it made itself
OUTPUT_MESSAGES = ("stream", "display_data", "execute_result", "error")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- the pytest plugin

def pytest_addoption(parser):
    parser.getgroup("nbval").addoption(
        "--nbval-save", metavar="DIR", default=None,
        help="write each notebook whose cells all passed, with the outputs nbval just produced, to DIR/<its path>")


def pytest_configure(config):
    if config.getoption("nbval_save"):
        config.pluginmanager.register(NotebookSaver(Path(config.getoption("nbval_save")), config.rootpath),
                                      "nbval_save_writer")


class NotebookRun:
    """One notebook in this session: the notebook nbval read, and what happened to each of its code cells."""

    def __init__(self, nb_file, root: Path, parallel: int = 1):
        self.nb = nb_file.nb
        self.parallel = parallel  # notebooks executed at a time in this session (pytest-xdist's worker count)
        self.path = Path(nb_file.path)
        try:
            self.rel = self.path.resolve().relative_to(root.resolve())
        except ValueError:
            self.rel = Path(self.path.name)
        self.source_sha256 = sha256(self.path)
        self.n_cells = sum(cell.cell_type == "code" for cell in self.nb.cells)
        self.messages: dict[int, list[dict]] = {}  # cell number -> the kernel's messages for its execution
        self.passed: set[int] = set()
        self.problems: dict[int, str] = {}  # cell number -> "failed" / "skipped" / ...

    def attempted(self) -> bool:
        """Whether this session ran any of its cells (under xdist, another worker ran the rest of the notebooks)."""
        return bool(self.passed or self.problems or self.messages)

    def why_not_saved(self) -> str | None:
        if self.problems:
            return ", ".join(f"cell {n} {what}" for n, what in sorted(self.problems.items()))
        missing = sorted(set(range(self.n_cells)) - self.passed)
        return f"cells {missing} did not run" if missing else None

    def executed_notebook(self):
        for n in self.passed:
            if n not in self.messages:  # a passed cell always ran; nbval's kernel API must have changed
                raise RuntimeError(f"nbval_save: recorded no kernel messages for {self.rel} cell {n}; "
                                   "nbval's RunningKernel no longer has execute_cell_input/get_message?")
        nb = copy.deepcopy(self.nb)
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        for count, (cell, outputs) in enumerate(zip(code_cells, cell_outputs(
                [self.messages[n] for n in range(self.n_cells)])), start=1):
            cell.outputs = outputs
            cell.execution_count = count
            for out in outputs:
                if out.output_type == "execute_result":
                    out.execution_count = count
        nb.metadata[META_KEY] = {"source_sha256": self.source_sha256, "parallel": self.parallel}
        return nb


def cell_outputs(messages_per_cell: list[list[dict]]) -> list[list]:
    """The outputs of each cell from the kernel's iopub messages, as nbclient builds them (display ids span cells)."""
    shown: dict[str, list] = {}  # display_id -> the outputs showing it
    cells = []
    for messages in messages_per_cell:
        outputs, clear_before_next = [], False
        for msg in messages:
            kind, content = msg["header"]["msg_type"], msg["content"]
            display_id = (content.get("transient") or {}).get("display_id")
            if kind == "clear_output":
                if content.get("wait"):
                    clear_before_next = True
                else:
                    outputs.clear()
                continue
            if display_id and kind in ("display_data", "execute_result", "update_display_data"):
                for out in shown.get(display_id, []):  # a display shown again or updated changes everywhere
                    out.data, out.metadata = content["data"], content["metadata"]
            if kind not in OUTPUT_MESSAGES:
                continue
            out = nbformat.v4.output_from_msg(msg)
            if clear_before_next:
                outputs.clear()
                clear_before_next = False
            if display_id:
                shown.setdefault(display_id, []).append(out)
            outputs.append(out)
        cells.append(outputs)
    return cells


class NotebookSaver:
    def __init__(self, out_dir: Path, root: Path):
        self.out_dir, self.root = out_dir, root
        self.runs: dict[object, NotebookRun] = {}  # nbval's IPyNbFile -> its run
        self.written: list[Path] = []
        self.not_written: list[str] = []  # "<notebook> (<why>)"; from the workers too under xdist

    @staticmethod
    def parallel(config) -> int:
        """pytest-xdist's worker count in a worker (each runs one notebook at a time), else 1."""
        return int(getattr(config, "workerinput", {}).get("workercount", 1))

    @staticmethod
    def _is_cell(item) -> bool:
        from nbval.plugin import IPyNbCell
        return isinstance(item, IPyNbCell)

    def pytest_collection_finish(self, session):
        for item in session.items:
            if self._is_cell(item) and item.parent not in self.runs:
                run = self.runs[item.parent] = NotebookRun(item.parent, self.root, self.parallel(session.config))
                (self.out_dir / run.rel).unlink(missing_ok=True)  # an earlier run's copy is stale from now on

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        run = self.runs.get(item.parent) if self._is_cell(item) else None
        if run is None:
            return (yield)
        # nbval reads the kernel's messages through these two methods; shadow them on the instance to see them all.
        kernel, seen = item.parent.kernel, {"msg_id": None, "messages": []}
        execute, get_message = kernel.execute_cell_input, kernel.get_message

        def execute_cell_input(*args, **kwargs):
            seen["msg_id"] = execute(*args, **kwargs)
            return seen["msg_id"]

        def get_message_recorded(*args, **kwargs):
            msg = get_message(*args, **kwargs)
            seen["messages"].append(msg)
            return msg

        kernel.execute_cell_input, kernel.get_message = execute_cell_input, get_message_recorded
        try:
            return (yield)
        finally:
            del kernel.execute_cell_input, kernel.get_message
            if seen["msg_id"] is not None:
                run.messages[item.cell_num] = [m for m in seen["messages"]
                                               if m.get("parent_header", {}).get("msg_id") == seen["msg_id"]]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        run = self.runs.get(item.parent) if self._is_cell(item) else None
        if run is not None:
            if not report.passed or hasattr(report, "wasxfail"):
                run.problems[item.cell_num] = ("xfailed" if hasattr(report, "wasxfail") else report.outcome) + (
                    "" if report.when == "call" else f" in {report.when}")
            elif report.when == "call":
                run.passed.add(item.cell_num)
        return report

    def pytest_sessionfinish(self, session):
        worker = hasattr(session.config, "workerinput")  # an xdist worker: it ran only its share of notebooks
        for run in self.runs.values():
            if worker and not run.attempted():
                continue
            why = run.why_not_saved()
            if why is not None:
                self.not_written.append(f"{run.rel} ({why})")
            else:
                target = self.out_dir / run.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                nbformat.write(run.executed_notebook(), str(partial))
                os.replace(partial, target)
                self.written.append(target)
        if worker:
            session.config.workeroutput["nbval_save"] = {"written": [str(p) for p in self.written],
                                                         "not_written": self.not_written}

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist's controller: collect what each worker wrote."""
        report = getattr(node, "workeroutput", {}).get("nbval_save", {})
        self.written += [Path(p) for p in report.get("written", [])]
        self.not_written += report.get("not_written", [])

    def pytest_terminal_summary(self, terminalreporter):
        lines = [f"nbval-save: wrote {len(self.written)} executed notebook(s) to {self.out_dir}"]
        lines += [f"  not written: {what}" for what in self.not_written]
        for line in lines:
            terminalreporter.write_line(line)


# ------------------------------------------------------------------------------------------- the stage command

def toc_documents(toc: dict) -> list[str]:
    """Every document a jupyter-book ``_toc.yml`` (parsed) names, root first, without its .md/.ipynb suffix.
    The book's tests use this too, so the book, its tests and the staging agree on what the book holds."""
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", f) for f in files]


def toc_notebooks(root: Path) -> list[Path]:
    """Every notebook the book executes: the .ipynb files named in _toc.yml, relative to root."""
    import yaml
    notebooks = []
    for stem in toc_documents(yaml.safe_load((root / "_toc.yml").read_text())):
        if (root / f"{stem}.ipynb").exists():
            notebooks.append(Path(f"{stem}.ipynb"))
        elif re.search(r"^(kernelspec|jupytext):", (root / f"{stem}.md").read_text(), re.M):
            raise SystemExit(f"stage: {stem}.md is a text notebook, which nbval does not execute; "
                             "build the book with `make book` instead")
    return notebooks


def _ignore(root: Path, out: Path):
    skip_top = {".git", "_build", "runs", "build", ".pytest_cache"}
    if root in out.parents:  # never copy the staging folder into itself
        skip_top.add(out.relative_to(root).parts[0])

    def ignore(directory, names):
        top = Path(directory).resolve() == root
        return {n for n in names
                if (top and n in skip_top) or n in ("__pycache__", ".ipynb_checkpoints") or n.endswith(".egg-info")
                or (Path(directory, n, "pyvenv.cfg").exists())}  # any virtual environment, whatever its name
    return ignore


def stage(root: Path, executed: Path, out: Path) -> list[Path]:
    root, out = root.resolve(), out.resolve()
    if out == root or out in root.parents:
        raise SystemExit(f"stage: --out {out} would contain the sources; use a new folder such as _build/stage")
    notebooks = toc_notebooks(root)
    problems = []
    for rel in notebooks:
        copy_path = executed / rel
        if not copy_path.exists():
            problems.append(f"{rel}: no executed copy in {executed} (nbval did not run it, or one of its cells "
                            "failed, was skipped or deselected; see nbval's 'not written' lines)")
        elif json.loads(copy_path.read_text()).get("metadata", {}).get(META_KEY, {}).get(
                "source_sha256") != sha256(root / rel):
            problems.append(f"{rel}: changed since nbval executed it; run `make nbval` again")
    if problems:
        raise SystemExit("stage: the book can't be built from nbval's run:\n  " + "\n  ".join(problems))
    if out.exists():
        if not (out / STAGE_MARKER).exists():
            raise SystemExit(f"stage: {out} exists and was not made by this command; remove it or pick another --out")
        shutil.rmtree(out)
    shutil.copytree(root, out, ignore=_ignore(root, out), symlinks=True)
    (out / STAGE_MARKER).touch()
    for rel in notebooks:
        shutil.copyfile(executed / rel, out / rel)
    config = out / "_config.yml"
    text, n = re.subn(r"^(\s*execute_notebooks:)\s*\S+.*$",
                      r'\1 "off"  # staged by tests/nbval_save.py: the notebooks carry the outputs nbval produced',
                      config.read_text(), flags=re.M)
    if n != 1:
        raise SystemExit(f"stage: expected one `execute_notebooks:` line in _config.yml, found {n}")
    config.write_text(text)
    write_run_time_table(out, notebooks)
    return notebooks


# ---------------------------------------------------------------------------------------- the run-time table

RUN_TIMES = Path("book/run_times.md")  # included by book/intro.md; the repository's copy is a placeholder
GLUE_PREFIX = "application/papermill.record/"  # myst-nb's glue(..., display=False) mime prefix


def glue_values(nb) -> dict:
    """Every value a notebook glued (myst-nb's display_data outputs with ``scrapbook`` metadata), as Python
    values read back from their text/plain form (a number, a string), the last one winning."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = (out.get("metadata") or {}).get("scrapbook")
            if out.get("output_type") != "display_data" or not meta:
                continue
            prefix = meta.get("mime_prefix", "")
            text = out.get("data", {}).get(prefix + "text/plain")
            if text is None:
                continue
            try:
                values[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[meta["name"]] = text
    return values


def chapter_key(rel: Path) -> str | None:
    """``notebooks/03_self_attention.ipynb`` -> ``ch3``: the prefix of the run-time keys it glues."""
    match = re.match(r"(\d+)_", rel.name)
    return f"ch{int(match.group(1))}" if match else None


def chapter_title(nb, rel: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return rel.stem


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")  # one table cell, whatever the text holds


def run_time_table(notebooks: dict) -> str:
    """The intro's run-time table (MyST markdown) from ``{relative path: executed notebook}``, in toc order.
    A chapter that glued no run time says so instead of showing a number."""
    lines = ["| Chapter | wall time | CPU time | machine | profile | full profile (estimate) |",
             "|---|---|---|---|---|---|"]
    for rel, nb in notebooks.items():
        key = chapter_key(Path(rel))
        if key is None:
            continue
        v = glue_values(nb)
        title = f"{int(key[2:])}. {chapter_title(nb, Path(rel))}"
        estimate = _cell(v.get(f"{key}_full_estimate", "see the chapter's run-time section"))
        if f"{key}_wall_s" not in v:
            lines.append(f"| {title} | not measured (the chapter glues no run time) | | | | {estimate} |")
            continue
        cpu = v.get(f"{key}_cpu_s")
        machine = _cell(v.get(f"{key}_machine", "unknown machine"))
        lines.append(f"| {title} | {float(v[f'{key}_wall_s']):.0f} s | "
                     f"{'' if cpu is None else f'{float(cpu):.0f} s'} | {machine} | "
                     f"{_cell(v.get(f'{key}_profile', ''))} | {estimate} |")
    note = ("Measured while this build executed each chapter (each chapter's last cell prints its own line); "
            "the machine may have been shared with other jobs, so wall times are upper bounds and CPU times "
            "steadier. The full-profile column is an estimate, not a measurement: each chapter says how it was made.")
    parallel = max((int((nb.metadata.get(META_KEY) or {}).get("parallel", 1)) for nb in notebooks.values()),
                   default=1)
    if parallel > 1:
        note += (f" This build executed {parallel} chapters at a time (`make test` runs nbval under pytest-xdist), "
                 "so each wall time includes waiting for the cores the other chapters were using; the CPU time is "
                 "the chapter's own.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def write_run_time_table(root: Path, notebooks: list[Path]) -> Path | None:
    """Replace ``root/book/run_times.md`` (when the book has that placeholder) by the table of the notebooks
    under ``root``; returns the path written, or None."""
    target = root / RUN_TIMES
    if not target.exists():
        return None
    table = run_time_table({rel: nbformat.read(str(root / rel), as_version=4) for rel in notebooks})
    target.write_text("<!-- Written by `python -m tests.nbval_save stage` from the executed chapters. -->\n" + table)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.nbval_save", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("stage", help="copy the book's sources with nbval's executed notebooks, execution off")
    cmd.add_argument("--root", type=Path, default=Path("."), help="the book's source root (default: .)")
    cmd.add_argument("--executed", type=Path, required=True, help="the --nbval-save folder")
    cmd.add_argument("--out", type=Path, required=True, help="the staging folder (replaced)")
    args = parser.parse_args(argv)
    notebooks = stage(args.root, args.executed, args.out)
    print(f"stage: {args.out} holds the book's sources with {len(notebooks)} notebook(s) executed by nbval")


if __name__ == "__main__":
    main()
