"""Numbers in the chapters' prose are glued, set in code, structural or cited (tests/prose_numbers.py)."""
from pathlib import Path

import nbformat
import pytest

import prose_numbers as pn  # tests/ is on sys.path (rootdir conftest), as for cli_kill

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0[1-6]*.ipynb"))

CODE = """\
import time
T_START, CPU_START = time.perf_counter(), time.process_time()
CFG = dict(lr_g=1e-4, lr_d=4e-4, resolution=128, steps=300, beta2=0.9)
fid = 0.041  # stands for a computed value
run_time("ch1", T_START, CPU_START)
"""


def notebook(*markdown, code=CODE):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)] + [nbformat.v4.new_markdown_cell(m) for m in markdown]
    return nb


def flagged(*markdown, code=CODE, allow=None):
    return [f.number for f in pn.check_notebook(notebook(*markdown, code=code), "ch", allow=allow or {})]


@pytest.mark.parametrize("typed, glued, number", [
    ("**Time.** Quick profile: about 95 s of CPU time on a 2-core CPU.",
     "**Time.** Quick profile: {glue:text}`ch1_cpu_s:.0f` s of CPU time on a 2-core CPU.", "95"),
    ("The EMA generator reaches FID 0.041 at n = 1000.",
     "The EMA generator reaches FID {glue:text}`fid_ema:.3f` at n = {glue:text}`n_fid`.", "0.041"),
    ("Glorot kernels have $\\sigma \\approx 1.93$ here.", "Glorot kernels have $\\sigma \\approx$ {glue:text}`s:.2f`.",
     "1.93"),
    ("The page ran in 2.3 minutes of wall time.", "The page ran in {glue:text}`ch6_wall_s:.0f` s of wall time.",
     "2.3"),
    ("Pooling makes it faster by ×16.3 on this CPU.", "Pooling makes it faster by ×{glue:text}`speedup:.1f`.",
     "16.3"),
    ("The time grows 16× from row to row.", "The time grows {glue:text}`growth:.0f`× from row to row.", "16"),
    ("about 40 % of its attention", "about {glue:text}`share:.0%` of its attention", "40"),
    ("A 256×256 map has $N = 65{,}536$ positions.", "A map has $N =$ {glue:text}`n_pos:,` positions.", "65,536"),
    ("$$\\mathrm{FID} = 12.5 \\quad\\text{after 1,200 steps}$$", "$$\\mathrm{FID} = \\text{{glue:text}`f`}$$", "12.5"),
])
def test_planted_number_is_flagged_and_glued_version_passes(typed, glued, number):
    assert number in flagged(typed)
    assert flagged(glued) == []


def test_planted_number_in_exercise_solution_is_flagged():
    wrong = "````{solution} ex-ch04-optimal-d\n:class: dropdown\n\nThe code prints 0.617.\n````"
    assert flagged(wrong) == ["0.617"]


def test_settings_structure_names_and_citations_are_excused():
    text = """\
## 3. Two learning rates (section 4.2, Table 3, item 7, chapter 5)

(two-rates)=
TTUR sets $\\mathrm{lr}_D = 4\\cdot 10^{-4}$ (`lr_d=4e-4`) and 1e-4 for G, $\\beta_2 = 0.9$, 300 steps at
$128\\times 128$ ($4 \\times 4$ kernels, 64x64 images, 1,024 channels), as {cite:t}`heusel2017ttur` in 2017.
See {ref}`ex-ch01-64`, {doc}`02_spectral_normalization`, ex-ch01-64, `02_spectral`, float32, the T4, x_1,
[the code](https://github.com/x/y/blob/v1.2.3/a.py#L123), Keras 3.15 and Python 3.10–3.12, the 2nd try.

```python
print(123.456)  # a fence in markdown is code, not prose
```

```{figure} ../book/fig_17.png
:width: 612px
```
"""
    assert flagged(text) == []


def test_code_literal_excuses_by_value_but_not_a_run_time_or_metric():
    assert flagged("a learning rate of 0.0004") == []  # 4e-4 in the code
    assert flagged("it took 300 s") == ["300"]  # steps=300 does not excuse a time
    assert flagged("FID 0.041") == ["0.041"]  # nor a metric
    assert flagged("about 2.3 minutes", code="plt.figure(figsize=(6, 2.3))") == ["2.3"]  # nor plot cosmetics


def test_allowlist_excuses_a_cited_fact_in_its_own_notebook_only():
    text = "mimicry's SNGAN reaches FID 12.93 {cite:p}`lee2020mimicry`."
    assert flagged(text) == ["12.93"]
    assert flagged(text, allow={"ch": {"12.93": "lee2020mimicry"}}) == []
    assert flagged(text, allow={"other": {"12.93": "lee2020mimicry"}}) == ["12.93"]


def test_allowlist_entries_name_their_source():
    allow = pn.load_allowlist()
    stems = {p.stem for p in CHAPTERS}
    for name, entries in allow.items():
        if name.startswith("_"):
            continue
        assert name in stems, f"{pn.ALLOW_FILE.name}: {name!r} is not a chapter ({sorted(stems)})"
        for number, reason in entries.items():
            assert pn.value_of(number) is not None, f"{name}: {number!r} is not a number"
            assert len(reason) > 10, f"{name}: {number} needs its source (citation key or data sheet)"


def test_command_line_exit_status(tmp_path, capsys):
    bad, good = tmp_path / "bad.ipynb", tmp_path / "good.ipynb"
    nbformat.write(notebook("Quick profile: about 95 s of CPU."), bad)
    nbformat.write(notebook("Quick profile: {glue:text}`ch1_cpu_s:.0f` s of CPU."), good)
    assert pn.main([str(good)]) == 0
    assert pn.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "c1: '95'" in out and "about 95 s of CPU" in out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prose_numbers_are_glued(path):
    findings = pn.check_path(path)
    assert not findings, f"{path.name}: numbers typed in prose:\n" + "\n".join(map(str, findings))

