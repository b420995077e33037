"""The book's configuration, table of contents, notebooks and bibliography agree with each other.

Fast (no build, no kernel): reads _config.yml, _toc.yml, notebooks/*.ipynb, book/*.md and book/references.bib.
The browser test (test_book_browser.py) checks the built HTML; this one catches the same mistakes earlier.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from nbval_save import toc_documents  # tests/ is on the path (no __init__.py)
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPOSITORY_URL = "https://github.com/sagan-from-scratch/sagan-from-scratch"

# The course's structure, as the design brief lays it out.
EXPECTED_TOC = [
    "book/intro",
    "book/setup",
    "notebooks/01_gans_and_dcgan",
    "notebooks/02_spectral_normalization",
    "notebooks/03_self_attention",
    "notebooks/04_hinge_loss_and_ttur",
    "notebooks/05_sagan_celeba",
    "notebooks/06_evaluation",
    "book/errata",
    "book/performance",
    "book/references",
]

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = [nb for nb in NOTEBOOKS if not nb.name.startswith("_")]
BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))


def toc_files() -> list[str]:
    return toc_documents(TOC)


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def normalise_repo_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[: -len(".git")] if url.endswith(".git") else url


# ------------------------------------------------------------------------------------------------ toc

def test_toc_has_the_course_structure():
    assert TOC.get("format") == "jb-book", "_toc.yml must use format: jb-book"
    assert toc_files() == EXPECTED_TOC, (
        "_toc.yml must list intro (root), setup, the six chapters in order, then errata, performance and "
        f"references; got {toc_files()}")


@pytest.mark.parametrize("entry", toc_files())
def test_toc_entry_exists(entry):
    # Until the chapter notebooks land, the chapter entries fail here on purpose.
    candidates = [ROOT / f"{entry}.md", ROOT / f"{entry}.ipynb"]
    assert any(c.is_file() for c in candidates), (
        f"_toc.yml lists {entry!r} but neither {entry}.md nor {entry}.ipynb exists")


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(toc_files())
    unlisted = [nb.name for nb in CHAPTERS if f"notebooks/{nb.stem}" not in listed]
    assert not unlisted, (
        f"notebooks not in _toc.yml (only_build_toc_files: true would silently leave them out of the book): "
        f"{unlisted}. Add them to _toc.yml, or prefix the file name with '_' if it is not a chapter.")


def test_template_is_excluded_from_the_book_and_chapters_are_not():
    matching = pytest.importorskip("sphinx.util.matching")
    # jupyter-book always adds these defaults to the configured patterns.
    patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", *CONFIG.get("exclude_patterns", [])]
    excluded = matching.Matcher(patterns)
    assert excluded("notebooks/_template.ipynb"), "notebooks/_template.ipynb must match exclude_patterns"
    for entry in EXPECTED_TOC:
        for suffix in (".md", ".ipynb"):
            assert not excluded(entry + suffix), f"exclude_patterns would hide {entry}{suffix} from the book"


# ------------------------------------------------------------------------------------------------ config

def test_launch_buttons_point_at_the_repository():
    repo = CONFIG["repository"]
    assert normalise_repo_url(repo["url"]) == REPOSITORY_URL
    assert repo["branch"] == "main"
    assert (repo.get("path_to_book") or "") == "", "the book's root is the repository root"
    assert CONFIG["launch_buttons"]["colab_url"].rstrip("/") == "https://colab.research.google.com"
    assert CONFIG["html"]["use_repository_button"] is True


def test_notebooks_are_executed_at_build_time_without_stderr():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "force", "stale stored outputs must never reach the page"
    assert execute["stderr_output"] == "remove", "TensorFlow's stderr noise must not reach the page"
    assert execute.get("allow_errors", False) is False
    assert execute["timeout"] >= 600, "a quick-profile training cell can take minutes on a 2-core CPU"



def make_dry_run(target: str) -> list[str]:
    """The commands `make <target>` would run (make -n also lists the sub-makes' commands), one per line."""
    make = shutil.which("make") or pytest.skip("make is not installed")
    out = subprocess.run([make, "-n", "--no-print-directory", target, "VENV=/nonexistent-venv"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return out.replace("\\\n", " ").splitlines()


def test_make_test_executes_each_notebook_once_and_builds_the_book_strictly_from_that_run():
    commands = make_dry_run("test")
    index = {}
    for i, line in enumerate(commands):
        if re.search(r"pytest tests -m .not browser", line):
            index["unit"] = i
        if "--nbval-lax" in line and re.search(r"-p tests\.nbval_save --nbval-save=_build/executed\b", line):
            index["nbval"] = i
        if "-m tests.nbval_save stage --executed _build/executed --out _build/stage" in line:
            index["stage"] = i
        if re.search(r"jupyter-book build _build/stage --path-output \. .*-W -n --keep-going", line):
            index["build"] = i
        if re.search(r"SAGAN_TUT_REQUIRE_BOOK=1 .*pytest tests -m browser", line):
            index["browser"] = i
    assert list(index) == ["unit", "nbval", "stage", "build", "browser"], (
        "make test must run the unit tests, nbval saving its executed notebooks, the staged strict build from them, "
        f"then the browser tests, in that order; found {index} in:\n" + "\n".join(commands))
    assert not [c for c in commands if re.search(r"jupyter-book build \.( |$)", c)], (
        "make test must not execute the notebooks a second time in an executing book build")


def test_make_book_still_executes_every_chapter_strictly():
    assert "SAGAN_TUT_PROFILE=quick /nonexistent-venv/bin/jupyter-book build . -W -n --keep-going" in make_dry_run(
        "book")


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Two commands"):]
    assert re.search(r"^make test\b", section, re.M), "the README's Two commands section must show `make test`"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1].strip() == "make test", f".ci/run must end with exactly `make test`, not {ci[-1]!r}"

def test_math_exercises_and_bibliography_are_enabled():
    extensions = CONFIG["parse"]["myst_enable_extensions"]
    assert {"dollarmath", "amsmath"} <= set(extensions)
    assert "sphinx_exercise" in CONFIG["sphinx"]["extra_extensions"]
    bibfiles = CONFIG["bibtex_bibfiles"]
    assert bibfiles and all((ROOT / b).is_file() for b in bibfiles), f"missing bib file among {bibfiles}"


# ------------------------------------------------------------------------------------------------ notebooks

INSTALL_RE = re.compile(r"^(?P<indent>\s*)[%!]pip\s+install\b(?P<args>.*)$")
GUARD_RE = re.compile(r"""^(?P<indent>\s*)if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:""")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_from_the_repository_only_on_colab(path):
    code_cells = [c for c in load_notebook(path)["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{path.name} has no code cell"
    lines = cell_source(code_cells[0]).splitlines()
    guards = [(i, GUARD_RE.match(line)) for i, line in enumerate(lines) if GUARD_RE.match(line)]
    installs = [(i, INSTALL_RE.match(line)) for i, line in enumerate(lines) if INSTALL_RE.match(line)]
    assert guards, f'{path.name}: the first code cell must guard the install with `if "google.colab" in sys.modules:`'
    assert len(installs) == 1, f"{path.name}: the first code cell must contain exactly one %pip install line"
    (gi, guard), (ii, install) = guards[0], installs[0]
    assert ii > gi and len(install["indent"]) > len(guard["indent"]), (
        f"{path.name}: the %pip install line must be inside the Colab guard, so it never runs elsewhere")
    args = install["args"]
    assert not re.search(r"(^|\s)(-U|--upgrade|--force-reinstall|--upgrade-strategy)\b", args), (
        f"{path.name}: no -U/--upgrade: it would replace Colab's TensorFlow ({args.strip()})")
    assert "tensorflow" not in args.lower(), f"{path.name}: never install TensorFlow on Colab ({args.strip()})"
    urls = re.findall(r"git\+(https://[^\s\"'@#]+)", args)
    assert urls, f"{path.name}: the install must be `sagan-tut @ git+<repository url>` ({args.strip()})"
    assert [normalise_repo_url(u) for u in urls] == [normalise_repo_url(CONFIG["repository"]["url"])], (
        f"{path.name}: installs from {urls}, but _config.yml's repository.url is {CONFIG['repository']['url']}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_chapter_conventions(path):
    cells = load_notebook(path)["cells"]
    markdown = "\n".join(cell_source(c) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join(cell_source(c) for c in cells if c["cell_type"] == "code")
    assert re.search(r"^#\s+\S", markdown, re.M), f"{path.name}: needs a level-1 title"
    assert re.search(r"^##\s+Learning goals\s*$", markdown, re.M), f"{path.name}: needs a '## Learning goals' section"
    assert re.search(r"^##\s+Summary\s*$", markdown, re.M), f"{path.name}: needs a '## Summary' section"
    fence = r"^(?:`{3,}|:{3,})"  # ``` or ```` (when nesting code) or ::: (colon_fence)
    assert re.search(fence + r"\{exercise\}", markdown, re.M), f"{path.name}: needs at least one {{exercise}}"
    solution_dropdown = re.search(fence + r"\{solution(?:-start)?\}[^\n]*\n(:[^\n]*\n)*:class:\s*dropdown", markdown, re.M)
    assert solution_dropdown or "{dropdown}" in markdown, (
        f"{path.name}: solutions must be hidden in a dropdown ({{solution}} with ':class: dropdown')")
    assert re.search(r"\{cite(:[a-z]+)?\}`", markdown), f"{path.name}: cite its sources with {{cite}}"
    assert "get_profile()" in code, f"{path.name}: must choose its settings with sagan_tut.profile.get_profile()"


# ------------------------------------------------------------------------------------------------ bibliography

CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def cited_keys() -> dict[str, set[str]]:
    """key -> files citing it, from book/*.md and the markdown cells of notebooks/*.ipynb."""
    texts = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in BOOK_PAGES}
    for nb in NOTEBOOKS:
        texts[nb.relative_to(ROOT).as_posix()] = "\n".join(
            cell_source(c) for c in load_notebook(nb)["cells"] if c["cell_type"] == "markdown")
    keys: dict[str, set[str]] = {}
    for name, text in texts.items():
        for group in CITE_RE.findall(text):
            for key in group.split(","):
                keys.setdefault(key.strip(), set()).add(name)
    return keys


@pytest.fixture(scope="module")
def bib():
    database = pytest.importorskip("pybtex.database")
    # pybtex raises on duplicate keys, so parsing is itself a check.
    return database.parse_file(str(ROOT / CONFIG["bibtex_bibfiles"][0]), bib_format="bibtex")


def test_every_cited_key_is_in_the_bib(bib):
    keys = cited_keys()
    assert keys, "no {cite} found in book/ or notebooks/: the citation scan is broken"
    defined = {k.lower() for k in bib.entries}
    missing = {k: sorted(files) for k, files in keys.items() if k.lower() not in defined}
    assert not missing, f"cited but not in references.bib: {missing}"


def test_bib_entries_have_author_title_year_and_url(bib):
    incomplete = {key: [f for f in ("title", "year", "url") if not entry.fields.get(f)]
                  + ([] if entry.persons.get("author") else ["author"])
                  for key, entry in bib.entries.items()}
    incomplete = {k: v for k, v in incomplete.items() if v}
    assert not incomplete, f"bib entries missing fields: {incomplete}"


# The works the design brief requires, with the year and a title fragment each must carry.
REQUIRED_WORKS = {
    "goodfellow2014gan": ("2014", "Generative Adversarial Nets"),
    "radford2016dcgan": ("2016", "Deep Convolutional Generative Adversarial Networks"),
    "miyato2018spectral": ("2018", "Spectral Normalization"),
    "zhang2019sagan": ("2019", "Self-Attention Generative Adversarial Networks"),
    "heusel2017ttur": ("2017", "Two Time-Scale Update Rule"),
    "lim2017geometric": ("2017", "Geometric"),
    "brock2019biggan": ("2019", "Large Scale"),
    "binkowski2018kid": ("2018", "Demystifying"),
    "salimans2016improved": ("2016", "Improved Techniques for Training"),
    "kingma2015adam": ("2015", "Stochastic Optimization"),
    "arjovsky2017wgan": ("2017", "Wasserstein"),
    "wang2018nonlocal": ("2018", "Non-local Neural Networks"),
    "lee2020mimicry": ("2020", "Mimicry"),
    "kang2023studiogan": ("2023", "StudioGAN"),
    "silva2018advancedgans": ("2018", "Self-Attention and Spectral Norm"),
}


@pytest.mark.parametrize("key", sorted(REQUIRED_WORKS))
def test_required_work_is_in_the_bib(bib, key):
    year, fragment = REQUIRED_WORKS[key]
    assert key in bib.entries, f"references.bib lacks {key}"
    fields = bib.entries[key].fields
    assert fields["year"] == year
    title = re.sub(r"[{}]", "", fields["title"])
    assert fragment.lower() in title.lower(), f"{key}: title {title!r} lacks {fragment!r}"


# ------------------------------------------------------------------------------------------------ includes

INCLUDE_RE = re.compile(r"^```\{include\}\s+(\S+)", re.M)


@pytest.mark.parametrize("page", BOOK_PAGES, ids=lambda p: p.name)
def test_included_files_exist(page):
    for target in INCLUDE_RE.findall(page.read_text(encoding="utf-8")):
        path = (page.parent / urllib.parse.unquote(target)).resolve()
        assert path.is_file(), f"{page.name} includes {target}, which does not exist (run the benchmarks?)"


FIGURE_RE = re.compile(r"^```\{figure\}\s+(\S+)", re.M)


@pytest.mark.parametrize("page", BOOK_PAGES, ids=lambda p: p.name)
def test_figures_exist_and_no_placeholder_is_left(page):
    text = page.read_text(encoding="utf-8")
    for target in FIGURE_RE.findall(text):
        path = (page.parent / urllib.parse.unquote(target)).resolve()
        assert path.is_file(), f"{page.name} shows the figure {target}, which does not exist"
    # "% WIRE" comments marked text still to be filled in with real results while the book was being written
    assert not re.search(r"^%\s*WIRE", text, re.M), f"{page.name} still has a '% WIRE' placeholder"
