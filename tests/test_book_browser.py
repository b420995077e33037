"""The built book, as a reader's browser sees it.

Serves ``_build/html`` from a local HTTP server and opens every page of ``_toc.yml`` (and ``index.html``) in
headless Chromium via playwright, then checks what a static-file check cannot: no console errors, every image
decoded, every formula typeset by MathJax without a TeX error and without artefacts of a lost backslash (no
control character in its source, no command name left as text, no italic remnant like "xt" of \\text), every
sidebar link served, and each chapter's "Colab" launch link pointing at that very notebook in the repository.

Run ``make book`` first. Environment:
  SAGAN_TUT_REQUIRE_BOOK=1   fail (instead of skip) when the book or playwright is missing (CI sets it).
  SAGAN_TUT_BOOK_ROOT=DIR    check DIR/_build/html against DIR/_toc.yml and DIR/_config.yml instead of the
                             repository's own (useful for a scratch copy of the book).
  SAGAN_TUT_CHROMIUM=PATH    the Chromium executable (default: /usr/bin/chromium or `chromium` on PATH).

Offline machines: MathJax normally comes from the jsDelivr CDN. When the PyPI package ``django-static-mathjax``
(MathJax 3.2.2, no Django needed) is installed, the CDN requests are answered from its files instead, so the
typesetting check does not depend on the network. Other requests are left alone.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from nbval_save import toc_documents  # tests/ is on the path (no __init__.py)
import yaml

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_ROOT = Path(os.environ.get("SAGAN_TUT_BOOK_ROOT", REPO_ROOT)).resolve()
HTML_DIR = BOOK_ROOT / "_build" / "html"
REQUIRE_BOOK = os.environ.get("SAGAN_TUT_REQUIRE_BOOK", "") == "1"

# Debian's chromium, not playwright's own browser download (which needs network access we may not have).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MATHJAX_CDN_PREFIX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
PAGE_TIMEOUT_MS = 60_000


def _toc_files(toc_path: Path) -> list[str]:
    """Every document named in the toc, root first, without suffix (e.g. ``notebooks/01_gans_and_dcgan``)."""
    if not toc_path.exists():
        return []
    return toc_documents(yaml.safe_load(toc_path.read_text()))


def _source_suffix(doc: str) -> str:
    for suffix in (".ipynb", ".md"):
        if (BOOK_ROOT / f"{doc}{suffix}").exists():
            return suffix
    return ".ipynb" if doc.startswith("notebooks/") else ".md"


TOC_DOCS = _toc_files(BOOK_ROOT / "_toc.yml")
PAGES = ["index"] + TOC_DOCS
NOTEBOOK_DOCS = [d for d in TOC_DOCS if _source_suffix(d) == ".ipynb"]


def _missing(reason: str):
    """Fail when the caller demands a built book (CI), skip otherwise."""
    if REQUIRE_BOOK:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _expected_colab_url(doc: str) -> str:
    config = yaml.safe_load((BOOK_ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/")
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    org_repo = urllib.parse.urlparse(repo).path.strip("/")
    branch = config["repository"]["branch"]
    prefix = (config["repository"].get("path_to_book") or "").strip("/")
    path = f"{prefix}/{doc}.ipynb" if prefix else f"{doc}.ipynb"
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org_repo}/blob/{branch}/{path}"


def _find_chromium() -> str:
    candidates = [os.environ.get("SAGAN_TUT_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    install = "apt-get update && apt-get install -y chromium"
    if getattr(os, "geteuid", lambda: -1)() == 0:
        # As root (CI, containers) install Debian's chromium here, as the Makefile would.
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True,
                           timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
            pytest.fail(f"Chromium is missing and `{install}` failed ({exc}). Install it, or set "
                        f"SAGAN_TUT_CHROMIUM to a Chromium executable.", pytrace=False)
        if Path("/usr/bin/chromium").is_file():
            return "/usr/bin/chromium"
    pytest.fail(f"Chromium not found. Install it with: sudo {install} "
                f"(or set SAGAN_TUT_CHROMIUM to a Chromium executable).", pytrace=False)


def _local_mathjax_es5() -> Path | None:
    spec = importlib.util.find_spec("mathjax")
    for location in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output readable
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A page closed mid-transfer (we close each page after checking it) is not an error of the book.
        pass


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if not (HTML_DIR / "index.html").is_file():
        _missing(f"The book is not built: {HTML_DIR / 'index.html'} does not exist. Run `make book` first.")
    return HTML_DIR


@pytest.fixture(scope="module")
def base_url(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = _QuietServer(("127.0.0.1", 0), handler)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    chromium = _find_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _new_context(browser):
    """A fresh context per page: every page is checked as a reader's first visit (empty localStorage)."""
    context = browser.new_context()
    es5 = _local_mathjax_es5()
    if es5 is not None:
        def serve_mathjax(route):
            rel = urllib.parse.urlparse(route.request.url).path.split("/es5/", 1)[1]
            local = (es5 / rel).resolve()
            if es5 in local.parents and local.is_file():
                route.fulfill(path=str(local))
            else:
                route.fulfill(status=404, body=f"not in the local MathJax copy: {rel}")
        context.route(MATHJAX_CDN_PREFIX + "**", serve_mathjax)
    return context


# Runs in the page after load: make lazy images load, wait for them, list those that did not decode.
_BROKEN_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  const settle = i => (i.complete ? Promise.resolve() : new Promise(r => {
      i.addEventListener("load", r, {once: true});
      i.addEventListener("error", r, {once: true});
      setTimeout(r, 15000);
  }));
  await Promise.all(imgs.map(settle));
  return {count: imgs.length, broken: imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.currentSrc || i.src)};
}
"""

# Waits for MathJax's first typesetting pass (if MathJax is on the page) and reports what it produced.
_MATH_JS = """
async () => {
  const math = Array.from(document.querySelectorAll(".math"));
  let loaded = false;
  if (math.length) {
    for (let t = 0; t < 300 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); t++) {
      await new Promise(r => setTimeout(r, 100));
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
      loaded = true;
    }
  }
  return {
    elements: math.length,
    loaded: loaded,
    untypeset: math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 80)),
    errors: Array.from(document.querySelectorAll("mjx-merror")).map(e => e.getAttribute("data-mjx-error")
                                                                        || e.textContent.slice(0, 80)),
  };
}
"""

# After typesetting: every math item's TeX source and the MathML MathJax made of it, and any TeX delimiters left
# in the page's text outside math (a formula the parser never handed to MathJax).
_MATH_SOURCE_JS = r"""
() => {
  const items = (window.MathJax && MathJax.startup && MathJax.startup.document)
      ? Array.from(MathJax.startup.document.math) : [];
  const typeset = items.map(item => {
    let mml = null;
    try { mml = MathJax.startup.toMML(item.root); } catch (e) { mml = "<error>" + e + "</error>"; }
    return {tex: item.math, display: item.display, mml: mml};
  });
  const skip = "SCRIPT,STYLE,PRE,CODE,TEXTAREA,MJX-CONTAINER,MJX-ASSISTIVE-MML";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let el = n.parentElement, skipped = false;
    for (; el; el = el.parentElement) {
      if (skip.split(",").includes(el.tagName) || (el.classList && el.classList.contains("math"))) {
        skipped = true; break;
      }
    }
    if (!skipped) texts.push(n.textContent);
  }
  const body = texts.join(" ");
  const raw = [];
  const patterns = [/\$\$[\s\S]{1,300}?\$\$/g, /\$[^$\n]{1,200}\$/g, /\\\([\s\S]{1,200}?\\\)/g,
                    /\\\[[\s\S]{1,300}?\\\]/g];
  for (const re of patterns) {
    for (const m of body.matchAll(re)) {
      if (/\\[A-Za-z]|[_^{}]/.test(m[0])) raw.push(m[0].slice(0, 120));
    }
  }
  return {items: typeset, raw: raw};
}
"""

_SIDEBAR_JS = """
() => Array.from(document.querySelectorAll("nav.bd-docs-nav a.reference.internal")).map(a => a.href)
"""

_COLAB_JS = """
() => Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href)
"""


@pytest.fixture(scope="module")
def visit(browser, base_url):
    """visit(doc) -> what the browser saw on that page (cached: each page is opened once per module)."""
    cache: dict[str, dict] = {}

    def _visit(doc: str) -> dict:
        if doc in cache:
            return cache[doc]
        context = _new_context(browser)
        page = context.new_page()
        console_errors: list[str] = []
        failed_requests: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", lambda req: failed_requests.append(f"{req.url} ({req.failure})"))
        response = page.goto(base_url + doc + ".html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        if doc == "index" and TOC_DOCS:
            # index.html is a meta-refresh redirect to the root page: follow it before looking at the page.
            try:
                page.wait_for_url(f"**/{TOC_DOCS[0]}.html", timeout=PAGE_TIMEOUT_MS)
                page.wait_for_load_state("load")
            except Exception:  # reported by test_index_redirects_to_root_page
                pass
        report = {
            "status": response.status if response else None,
            "url": page.url,
            "images": page.evaluate(_BROKEN_IMAGES_JS),
            "math": page.evaluate(_MATH_JS),
            "math_source": page.evaluate(_MATH_SOURCE_JS),
            "sidebar": page.evaluate(_SIDEBAR_JS),
            "colab": page.evaluate(_COLAB_JS),
        }
        page.wait_for_timeout(200)  # let late console messages (e.g. from deferred scripts) arrive
        report["console_errors"] = console_errors
        report["failed_requests"] = failed_requests
        context.close()
        cache[doc] = report
        return report

    return _visit


def test_toc_lists_pages():
    assert TOC_DOCS, f"no pages found in {BOOK_ROOT / '_toc.yml'}"


def test_index_redirects_to_root_page(visit, base_url):
    assert visit("index")["url"] == f"{base_url}{TOC_DOCS[0]}.html", (
        f"index.html should lead to the toc's root page {TOC_DOCS[0]}.html, ended at {visit('index')['url']}")


@pytest.mark.parametrize("doc", PAGES)
def test_page_loads_without_console_errors(visit, doc):
    report = visit(doc)
    assert report["status"] == 200, f"{doc}.html answered HTTP {report['status']}"
    assert not report["console_errors"], (
        f"{doc}.html logged console errors: {report['console_errors']}; failed requests: "
        f"{report['failed_requests']}. If MathJax failed to load on an offline machine, "
        f"pip install django-static-mathjax (served locally by this test).")


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_loads(visit, doc):
    images = visit(doc)["images"]
    assert images["count"] > 0, f"{doc}.html shows no image at all (not even the logo): is the theme intact?"
    assert not images["broken"], f"{doc}.html has images that did not load: {images['broken']}"


@pytest.mark.parametrize("doc", PAGES)
def test_math_is_typeset(visit, doc):
    math = visit(doc)["math"]
    if math["elements"] == 0:
        pytest.skip(f"{doc}.html has no math")
    assert math["loaded"], (f"{doc}.html has {math['elements']} math elements but MathJax never started "
                            f"(offline? pip install django-static-mathjax)")
    assert not math["untypeset"], f"{doc}.html: math left as raw TeX: {math['untypeset'][:5]}"
    assert not math["errors"], f"{doc}.html: MathJax reported TeX errors: {math['errors'][:5]}"


@pytest.mark.parametrize("doc", PAGES)
def test_sidebar_links_resolve(visit, doc, html_dir, base_url):
    links = visit(doc)["sidebar"]
    assert links, f"{doc}.html has no sidebar navigation links"
    linked_pages = set()
    for href in links:
        url = href.split("#", 1)[0]
        assert url.startswith(base_url), f"{doc}.html: sidebar link {href} leaves the book"
        rel = urllib.parse.unquote(url[len(base_url):]) or "index.html"
        assert (html_dir / rel).is_file(), f"{doc}.html: sidebar link {href} -> missing file {rel}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 200, f"{doc}.html: sidebar link {href} answered HTTP {status}"
        linked_pages.add(rel)
    # index.html only redirects to the root page, so its sidebar is the root page's.
    missing = {f"{d}.html" for d in TOC_DOCS} - linked_pages
    assert not missing, f"{doc}.html: the sidebar does not link these toc pages: {sorted(missing)}"


@pytest.mark.parametrize("doc", PAGES)
def test_colab_launch_link_opens_this_notebook(visit, doc):
    links = sorted(set(visit(doc)["colab"]))
    if doc in NOTEBOOK_DOCS:
        assert links == [_expected_colab_url(doc)], (
            f"{doc}.html: Colab launch links {links}, expected exactly [{_expected_colab_url(doc)}]")
    else:
        assert not links, f"{doc}.html is not a notebook but has Colab links {links}"


# --- What MathJax made of each formula (issue #13 item 4) --------------------------------------------------------
# A Python string that wrote LaTeX without being raw turns "\\text" into TAB + "ext" (and \\frac into a form feed
# + "rac", \\beta into a backspace + "eta", ...). TeX then skips the control character as white space and sets
# the rest as italic letters: ch5 c51 at a318b64 rendered "H_e xtout W_e xtout". The typeset output must hold no
# text TeX would not produce from a correct source: no control characters, no command name left as text, no
# run of italic letters spelling what a Python escape leaves of a command, and no raw TeX outside math.
_PY_ESCAPES = {"\t": "t", "\b": "b", "\f": "f", "\r": "r", "\a": "a", "\v": "v", "\x0b": "v"}
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_LOST_BACKSLASH = re.compile(r"([\x07\x08\x09\x0b\x0c\x0d])([A-Za-z]+)")
# What a lost backslash leaves of the commands the course uses, as italic letters (3 letters or more, so that
# products like $xt$ are not taken for one).
_REMNANTS = ("ext", "imes", "heta", "ilde", "frac", "rac", "eta", "oldsymbol", "inom", "ight", "lpha", "pprox",
             "arepsilon", "arphi", "ec", "op")
_REMNANTS = tuple(r for r in _REMNANTS if len(r) >= 3)


def _mml_tokens(mml: str):
    """The MathML tree (xml.etree) of MathJax's serialisation, or None if it does not parse."""
    import xml.etree.ElementTree as ET

    try:
        return ET.fromstring(re.sub(r"\sxmlns(:\w+)?=\"[^\"]*\"", "", mml))
    except ET.ParseError:
        return None


def _italic_runs(root):
    """Yield the strings spelled by runs of adjacent single-letter <mi> siblings, each also with the single-letter
    sub/superscript just before the run (H_\\text{out} without its backslash sets H_e, then x, t)."""
    for parent in root.iter():
        children = list(parent)
        i = 0
        while i < len(children):
            j = i
            while j < len(children) and children[j].tag == "mi" and len((children[j].text or "").strip()) == 1 \
                    and children[j].get("mathvariant") in (None, "italic"):
                j += 1
            if j - i >= 2:
                run = "".join(c.text.strip() for c in children[i:j])
                yield run
                before = children[i - 1] if i else None
                if before is not None and before.tag in ("msub", "msup", "msubsup") and len(before):
                    last = before[-1]
                    if last.tag == "mi" and len((last.text or "").strip()) == 1:
                        yield last.text.strip() + run
            i = max(j, i + 1)


def math_artifacts(source: dict) -> list[str]:
    """Problems in typeset math, from what _MATH_SOURCE_JS returned for a page."""
    problems = []
    for item in source["items"]:
        tex, mml = item["tex"], item["mml"] or ""
        short = tex.strip()[:70]
        for ctrl, letters in _LOST_BACKSLASH.findall(tex):
            problems.append(f"lost backslash: {ctrl!r} + {letters!r} in the TeX source (was it "
                            f"\\{_PY_ESCAPES.get(ctrl, '?')}{letters}? write LaTeX in raw strings): {short!r}")
        for ctrl in set(_CONTROL.findall(tex)) - {c for c, _ in _LOST_BACKSLASH.findall(tex)}:
            problems.append(f"control character {ctrl!r} in the TeX source: {short!r}")
        root = _mml_tokens(mml)
        if root is None:
            problems.append(f"MathJax's MathML does not parse: {mml[:120]!r}")
            continue
        for el in root.iter():
            text = el.text or ""
            if el.tag in ("mi", "mo", "mn", "mtext", "ms") and re.search(r"\\[A-Za-z]+", text):
                problems.append(f"TeX command left as text {text.strip()!r} in <{el.tag}> of {short!r}")
            if _CONTROL.search(text):
                problems.append(f"control character {_CONTROL.search(text).group()!r} in the typeset text of "
                                f"{short!r}")
        for run in _italic_runs(root):
            hit = next((r for r in _REMNANTS if r in run), None)
            if hit:
                problems.append(f"italic letters {run!r} look like a TeX command that lost its backslash "
                                f"(...{hit}) in {short!r}")
    problems += [f"TeX left untypeset in the page text: {raw!r}" for raw in source["raw"]]
    return list(dict.fromkeys(problems))  # one line per distinct problem


@pytest.mark.parametrize("doc", PAGES)
def test_typeset_math_has_no_artifacts(visit, doc):
    source = visit(doc)["math_source"]
    if not source["items"] and not source["raw"]:
        pytest.skip(f"{doc}.html has no math")
    problems = math_artifacts(source)
    assert not problems, f"{doc}.html: " + "\n".join(problems[:20])


def _render_markdown_page(markdown: str, out_dir: Path) -> Path:
    """One page through the book's own path (Sphinx + MyST dollarmath/amsmath + sphinx.ext.mathjax): seconds."""
    src = out_dir / "src"
    src.mkdir(parents=True)
    (src / "conf.py").write_text('extensions = ["myst_parser"]\n'
                                 'myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]\n'
                                 'suppress_warnings = ["myst.role_unknown", "myst.xref_missing"]\n')
    (src / "index.md").write_text("# page\n\n" + markdown, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(out_dir / "html")],
                   check=True, capture_output=True, text=True, timeout=300)
    return out_dir / "html" / "index.html"


def _math_source_of(browser, page_file: Path) -> dict:
    context = _new_context(browser)
    try:
        page = context.new_page()
        page.goto(page_file.as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        math = page.evaluate(_MATH_JS)
        assert math["loaded"] or not math["elements"], ("MathJax did not start (offline? pip install "
                                                        "django-static-mathjax)")
        return page.evaluate(_MATH_SOURCE_JS)
    finally:
        context.close()


def _chapter5_c51_at_a318b64() -> str:
    try:
        raw = subprocess.run(["git", "show", "a318b64:notebooks/05_sagan_celeba.ipynb"], cwd=REPO_ROOT,
                             check=True, capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("not a git checkout with commit a318b64")
    import nbformat

    return nbformat.reads(raw, as_version=4).cells[51].source


def test_math_artifact_check_catches_chapter5_c51_at_a318b64(browser, tmp_path):
    broken = _chapter5_c51_at_a318b64()
    assert "\text" in broken  # the cell the issue names: \text{out} became TAB + "ext{out}"
    problems = math_artifacts(_math_source_of(browser, _render_markdown_page(broken, tmp_path / "broken")))
    assert any("lost backslash" in p and "\\text" in p for p in problems), problems
    assert any("italic letters" in p and "xt" in p for p in problems), problems  # what the reader saw
    fixed = broken.replace("\text", "\\text")  # the same cell with its backslashes back
    assert math_artifacts(_math_source_of(browser, _render_markdown_page(fixed, tmp_path / "fixed"))) == []


@pytest.mark.parametrize("markdown, expected", [
    ("$a \\foo{b}$", "TeX command left as text"),  # an unknown command: MathJax prints it in red
    ("$x = \\beta$, $\\text{in}$ and $$\\frac{1}{2} \\times \\mathrm{JSD}$$", None),  # control: correct math
    ("<div>\n$x_1 + \\alpha$\n</div>", "TeX left untypeset"),  # raw HTML: never handed to MathJax
    ("$$\n\x0crac12\n$$", "lost backslash"),  # \frac from a non-raw "\frac"
])
def test_math_artifact_check_on_planted_formulas(browser, tmp_path, markdown, expected):
    problems = math_artifacts(_math_source_of(browser, _render_markdown_page(markdown, tmp_path)))
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems
