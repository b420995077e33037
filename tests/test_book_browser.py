"""The built book, as a reader's browser sees it.

Serves ``_build/html`` from a local HTTP server and opens every page of ``_toc.yml`` (and ``index.html``) in
headless Chromium via playwright, then checks what a static-file check cannot: no console errors, every image
decoded, every formula typeset by MathJax without a TeX error, every sidebar link served, and each chapter's
"Colab" launch link pointing at that very notebook in the repository.

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
import shutil
import subprocess
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
