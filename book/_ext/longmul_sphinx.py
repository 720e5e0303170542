"""Build settings and fixes for the book's HTML (a local Sphinx extension listed in _config.yml).

* Charts are written for the site: ``LONGMUL_CHARTS=site`` in the environment of the kernels the
  build starts makes ``longmul.charts.render`` write each chart as HTML that the site's own vega
  bundle draws (elsewhere it returns a vega-lite mimebundle for Jupyter's renderer).
* Drop duplicate ``<script>`` tags. sphinx-thebe registers an inline script (``const THEBE_JS_URL``)
  that Sphinx 7.4 emits twice (once registered with filename ``None``, once with ``''``, which its
  de-duplication treats as different); the second copy throws "Identifier 'THEBE_JS_URL' has already
  been declared" on every page.
"""

from __future__ import annotations

import os


def _script_key(script) -> tuple[str, str]:
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), repr(sorted(attributes.items()))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # set before any chapter executes: the kernels inherit this process's environment
    os.environ["LONGMUL_CHARTS"] = "site"
    # run after every other html-page-context handler has added its scripts
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
