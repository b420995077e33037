"""Exercise solutions that compute something are executed, and their numbers come from the execution (issue #13).

The chapters write exercises with sphinx-exercise. A solution is either one markdown directive
(````{solution} ex-label ... ````), which nothing executes, or a gated solution ({solution-start} ex-label ...
{solution-end}) spanning cells, whose code cells nbval executes with the chapter. So:

- a solution that computes holds its code in code cells of a gated solution, not in a ```python block of a
  markdown directive (shown, never run: ex-ch04-optimal-d printed 1.234 while its prose said 0.617);
- those code cells are executed in the committed notebook (they have outputs) and not skipped;
- a number in a solution's prose is a result, so it is glued ({glue:text}`key`), unless it is 0-10, given in
  the exercise's own statement, or a cited fact in tests/prose_numbers_allow.json. Settings in the chapter's
  code do not excuse it here (ex-ch01-64 said "32 channels" where `channels(32, 1.0)` is 64).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

import prose_numbers as pn  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0[1-6]*.ipynb"))

_BLOCK = r"^(?P<fence>`{3,}|:{3,})\{%s\}[ \t]*(?P<arg>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$"
SOLUTION = re.compile(_BLOCK % "solution", re.S | re.M)
EXERCISE = re.compile(_BLOCK % "exercise", re.S | re.M)
SOLUTION_START = re.compile(r"^(`{3,}|:{3,})\{solution-start\}[ \t]*(\S+)", re.M)
SOLUTION_END = re.compile(r"^(`{3,}|:{3,})\{solution-end\}", re.M)
CODE_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*(?:\{code-cell\}[ \t]*)?(python|ipython3?|py)\b", re.M)
SKIP_TAGS = {"skip-execution", "remove-cell", "raises-exception"}


@dataclass
class Solution:
    label: str
    prose: list = field(default_factory=list)  # (cell index, markdown text)
    code_cells: list = field(default_factory=list)  # cell indices (gated solutions)


def exercise_statements(nb) -> dict[str, str]:
    """{label: markdown of the exercise statement} for ``:label:``-ed exercises."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in EXERCISE.finditer(cell.source):
                label = re.search(r"^:label:[ \t]*(\S+)", m.group("body"), re.M)
                if label:
                    out[label.group(1)] = m.group("body")
    return out


def solutions(nb) -> list[Solution]:
    """Every solution of the notebook: complete {solution} blocks, and gated ones from {solution-start} to
    {solution-end} with the code cells between them. A cell may hold several of each, and text after a
    {solution-end} is scanned too."""
    found, gated = [], None
    for i, cell in enumerate(nb.cells):
        if gated is not None and cell.cell_type == "code":
            gated.code_cells.append(i)
            continue
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        while text:
            if gated is not None:
                end = SOLUTION_END.search(text)
                gated.prose.append((i, text[:end.start()] if end else text))
                if not end:
                    break
                gated, text = None, text[end.end():]
                continue
            block, start = SOLUTION.search(text), SOLUTION_START.search(text)
            if block and (not start or block.start() < start.start()):
                found.append(Solution(block.group("arg").split()[0] if block.group("arg").split() else "?",
                                      prose=[(i, block.group("body"))]))
                text = text[block.end():]
            elif start:
                gated = Solution(start.group(2))
                found.append(gated)
                text = text[start.end():]
            else:
                break
    return found


def solution_problems(nb, name: str, allow: dict | None = None) -> list[str]:
    allowed = pn.allowed_values(name, allow)
    statements = exercise_statements(nb)
    problems = []
    for sol in solutions(nb):
        given = {pn.value_of(n) for _, _, n in pn.numbers_in(pn.masked_prose(statements.get(sol.label, "")))}
        # "or the cell asserts the claim": a number in an assert of the solution's own code cells is checked there.
        asserted = {pn.value_of(n) for j in sol.code_cells for line in nb.cells[j].source.splitlines()
                    if line.lstrip().startswith("assert") or "assert_allclose" in line
                    for _, _, n in pn.numbers_in(line)}
        for i, text in sol.prose:
            if CODE_FENCE.search(text):
                problems.append(f"{name} cell {i}, solution {sol.label}: computes in a markdown code block that "
                                f"nothing executes; write it as a gated solution ({{solution-start}} {sol.label} "
                                f"... code cells ... {{solution-end}}) so nbval runs it")
            for f in pn.check_text(text, i, set(), allowed | given | asserted, strict=True):
                problems.append(f"{name} cell {i}, solution {sol.label}: the number {f.number!r} is typed "
                                f"(...{f.context}...); glue it from the cell that computes it")
        for i in sol.code_cells:
            cell = nb.cells[i]
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & SKIP_TAGS or cell.source.lstrip().startswith("# NBVAL_SKIP"):
                problems.append(f"{name} cell {i}, solution {sol.label}: its code is not executed "
                                f"({sorted(tags & SKIP_TAGS) or 'NBVAL_SKIP'})")
            elif cell.source.strip() and not cell.get("outputs"):
                problems.append(f"{name} cell {i}, solution {sol.label}: the code cell has no outputs in the "
                                f"committed notebook; execute the chapter and commit it")
    return problems


# ----------------------------------------------------------------------------------------------- planted errors
CODE = "def channels(size, width):\n    return max(8, round(512 * 4 / size * width))\nCFG = dict(resolution=32)"
EXERCISE_MD = ("```{exercise} Channels\n:label: ex-x\n\n"
               "How many channels has the first layer at width 1.0 and 64x64?\n```\n\n")


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CODE)]
    for c in cells:
        nb.cells.append(c if isinstance(c, nbformat.NotebookNode) else nbformat.v4.new_markdown_cell(c))
    return nb


def _executed(source, text):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return cell


def test_planted_wrong_number_in_prose_solution_is_caught():
    wrong = EXERCISE_MD + "````{solution} ex-x\n:class: dropdown\n\nThe code prints 0.617.\n````"
    problems = solution_problems(_nb(wrong), "ch", allow={})
    assert len(problems) == 1 and "'0.617'" in problems[0] and "solution ex-x" in problems[0]
    glued = EXERCISE_MD + "````{solution} ex-x\n:class: dropdown\n\nThe code prints {glue:text}`tv:.3f`.\n````"
    assert solution_problems(_nb(glued), "ch", allow={}) == []


def test_a_number_the_solution_asserts_is_excused_and_a_wrong_one_is_not():
    start = EXERCISE_MD + "```{solution-start} ex-x\n:class: dropdown\n```\n\nThe first layer has %s channels.\n"
    end = "```{solution-end}\n```\n"
    cell = _executed("assert channels(64, 1.0) == 64\nprint(channels(64, 1.0))", "64\n")
    assert solution_problems(_nb(start % "64", cell, end), "ch", allow={}) == []
    problems = solution_problems(_nb(start % "32", cell, end), "ch", allow={})
    assert len(problems) == 1 and "'32'" in problems[0]


def test_two_solutions_in_one_cell_are_both_checked():
    """Text after a {solution-end} in the same cell is scanned: a later solution there is not invisible."""
    end_then_more = ("```{solution-end}\n```\n\n" + EXERCISE_MD.replace("ex-x", "ex-y")
                     + "````{solution} ex-y\n:class: dropdown\n\nIt prints 0.617.\n````")
    start = EXERCISE_MD + "```{solution-start} ex-x\n:class: dropdown\n```\n"
    problems = solution_problems(_nb(start, _executed("print(1)", "1\n"), end_then_more), "ch", allow={})
    assert len(problems) == 1 and "solution ex-y" in problems[0] and "'0.617'" in problems[0]


def test_a_setting_in_code_does_not_excuse_a_typed_result():
    """ex-ch01-64's "32 channels": 32 is a setting elsewhere in the chapter, but here it is a (wrong) result."""
    wrong = EXERCISE_MD + "````{solution} ex-x\n:class: dropdown\n\nThe first layer has 32 channels.\n````"
    assert ["'32'" in p for p in solution_problems(_nb(wrong), "ch", allow={})] == [True]
    # 64 is given in the statement (64x64) and 1.0 is small: neither is a result
    given = EXERCISE_MD + "````{solution} ex-x\n:class: dropdown\n\nAt 64x64 and width 1.0: see below.\n````"
    assert solution_problems(_nb(given), "ch", allow={}) == []


def test_markdown_code_in_a_solution_is_caught():
    fenced = EXERCISE_MD + ("````{solution} ex-x\n:class: dropdown\n\n```python\nprint(channels(4, 1.0))\n```\n"
                            "````")
    problems = solution_problems(_nb(fenced), "ch", allow={})
    assert len(problems) == 1 and "nothing executes" in problems[0]


def test_gated_solution_needs_executed_code_cells():
    start = EXERCISE_MD + "```{solution-start} ex-x\n:class: dropdown\n```\nThe first layer:"
    end = "It has {glue:text}`ch_first:d` channels.\n\n```{solution-end}\n```"
    unexecuted = _nb(start, nbformat.v4.new_code_cell("print(channels(4, 1.0))"), end)
    problems = solution_problems(unexecuted, "ch", allow={})
    assert len(problems) == 1 and "no outputs" in problems[0] and "cell 2" in problems[0]
    executed = _nb(start, _executed("print(channels(4, 1.0))", "512\n"), end)
    assert [s.code_cells for s in solutions(executed)] == [[2]]
    assert solution_problems(executed, "ch", allow={}) == []
    typed = _nb(start, _executed("print(channels(4, 1.0))", "512\n"), end.replace("{glue:text}`ch_first:d`", "512"))
    assert any("'512'" in p for p in solution_problems(typed, "ch", allow={}))
    skipped = _nb(start, _executed("# NBVAL_SKIP\nprint(channels(4, 1.0))", "512\n"), end)
    assert any("not executed" in p for p in solution_problems(skipped, "ch", allow={}))


def test_the_chapters_have_solutions_this_test_can_see():
    for path in CHAPTERS:
        assert solutions(nbformat.read(path, as_version=4)), f"{path.name}: no exercise solution found"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_solutions_are_executed(path):
    problems = solution_problems(nbformat.read(path, as_version=4), path.stem)
    assert not problems, "\n".join(problems)

