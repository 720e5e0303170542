"""Build settings and fixes for the book's HTML (a local Sphinx extension listed in _config.yml).

* Charts are written for the site: ``LONGMUL_CHARTS=site`` in the environment of the kernels the
  build starts makes ``longmul.charts.render`` write each chart as HTML that the site's own vega
  bundle draws (elsewhere it returns a vega-lite mimebundle for Jupyter's renderer).
* The models run in the reader's browser: at the start of the build the shipped models' ONNX exports are
  written as scripts into ``_build/longmul_models/longmul-models/`` (``longmul.browser_assets.write_site_models``,
  from ``$LONGMUL_MODELS`` or ``models/``), which the site serves as ``_static/longmul-models/``; every page
  lists ``longmul/longmul-explorables.js``, which loads them only on a page with an explorable.
* Drop duplicate ``<script>`` tags. sphinx-thebe registers an inline script (``const THEBE_JS_URL``)
  that Sphinx 7.4 emits twice (once registered with filename ``None``, once with ``''``, which its
  de-duplication treats as different); the second copy throws "Identifier 'THEBE_JS_URL' has already
  been declared" on every page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from longmul.browser_assets import SITE_MODELS, write_site_models


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


def write_browser_models(app, config) -> None:
    root = Path(app.srcdir)
    models_dir = Path(os.environ.get("LONGMUL_MODELS") or root / "models")
    if not models_dir.is_absolute():
        models_dir = root / models_dir
    static = Path(app.outdir).parent / "longmul_models"
    shutil.rmtree(static, ignore_errors=True)  # no model left over from an earlier build
    index = write_site_models(models_dir, static / SITE_MODELS)
    if not index:
        raise RuntimeError(f"no shipped model with an ONNX export in {models_dir}: the explorables need them")
    config.html_static_path.append(str(static))


def setup(app):
    # set before any chapter executes: the kernels inherit this process's environment
    os.environ["LONGMUL_CHARTS"] = "site"
    app.connect("config-inited", write_browser_models)
    app.add_js_file("longmul/longmul-explorables.js")
    # run after every other html-page-context handler has added its scripts
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
