"""Small Sphinx fixes for this book (loaded through `sphinx.local_extensions` in _config.yml).

dedupe_scripts: sphinx-thebe (pulled in by jupyter-book 1.x even with thebe off) registers an inline
`const THEBE_JS_URL = ...` script after the HTML builder has started. Sphinx then lists it twice (once as
filename None, once as ''), and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared"
in every reader's console. Dropping exact duplicates before the page is rendered removes the error and
changes nothing else. tests/test_book_browser.py fails on any console error, so it guards this fix.
"""
from __future__ import annotations


def dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: Sphinx restores the list from its own copy after each page.
    scripts[:] = unique


def setup(app):
    # Late priority: run after every extension that adds scripts in html-page-context.
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
