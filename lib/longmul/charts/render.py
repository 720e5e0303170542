"""An altair renderer whose charts draw with no network on the book's static site.

Altair's default renderers either load vega from a CDN (blank on an offline site) or inline the
whole ~900 KB vega bundle into every chart. The book instead serves one copy of the bundle itself
(``book/_vendor/vega/vega-bundle.js``, made by ``scripts/vendor_assets.py``, which sets
``window.vegaEmbed``) and this renderer writes each chart as a ``<div>`` plus a few lines that call the
page's ``vegaEmbed``.

Nothing is ever loaded from a CDN. The renderer writes that HTML only while the book is being built
(``LONGMUL_CHARTS=site``, which the book's Sphinx extension ``book/_ext/longmul_sphinx.py`` sets for the
kernels the build starts). Anywhere else (JupyterLab, Notebook 7, VS Code) it returns the chart as a
vega-lite mimebundle (``application/vnd.vegalite.v5+json``), which those front ends draw with the vega
they ship. A chart's HTML opened where the page has no ``vegaEmbed`` (a downloaded ``.ipynb`` opened
in Jupyter before its cells are run again) says so in place of the chart instead of going online.

On the site, charts follow the theme's dark mode (vega's ``dark`` theme) and redraw when the reader
toggles it. A drawn chart's ``<div>`` gets ``data-longmul-chart="drawn"`` (``"error"`` when drawing
failed): the headless-browser check of the site reads it.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import altair as alt

RENDERER_NAME = "longmul"

# vega-embed options: export buttons only (the "open in editor" action would go online)
EMBED_OPTIONS: dict[str, Any] = {
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

# what a chart's HTML says where the page has no vegaEmbed (it never loads vega from the network)
OFFLINE_MESSAGE = (
    "This chart draws on the book's web page. In Jupyter, run this cell again: the chart is then drawn "
    "by Jupyter's own vega renderer."
)
# the environment variable, and its value, under which charts are written as HTML for the book's site
MODE_VARIABLE, SITE_MODE = "LONGMUL_CHARTS", "site"
VEGALITE_MIME = "application/vnd.vegalite.v5+json"

_TEMPLATE = """\
<div id="{div_id}" class="longmul-chart"></div>
<script type="text/javascript">
(function (spec, embedOpt) {{
  var el = document.getElementById("{div_id}");
  var view = null;
  function isDark() {{ return document.documentElement.dataset.theme === "dark"; }}
  function fail(err) {{
    el.setAttribute("data-longmul-chart", "error");
    el.textContent = "This chart could not be drawn: " + err;
    console.error("longmul chart {div_id}:", err);
  }}
  function draw(vegaEmbed) {{
    var opt = Object.assign({{}}, embedOpt);
    if (isDark()) {{ opt.theme = "dark"; }}
    if (view) {{ view.finalize(); view = null; }}
    return vegaEmbed(el, spec, opt).then(function (result) {{
      view = result;
      el.setAttribute("data-longmul-chart", "drawn");
    }}).catch(fail);
  }}
  function drawAndFollowTheme(vegaEmbed) {{
    draw(vegaEmbed);
    new MutationObserver(function () {{ draw(vegaEmbed); }})
      .observe(document.documentElement, {{attributes: true, attributeFilter: ["data-theme"]}});
  }}
  if (typeof window.vegaEmbed === "function") {{
    drawAndFollowTheme(window.vegaEmbed);
    return;
  }}
  // Not on the book's site: say so rather than fetch vega from the network.
  el.setAttribute("data-longmul-chart", "offline");
  el.textContent = {offline};
}})({spec}, {options});
</script>
"""


def _script_json(value: Any) -> str:
    """JSON safe to put inside a ``<script>`` element."""
    text = json.dumps(value, sort_keys=True)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def chart_html(spec: dict[str, Any] | alt.TopLevelMixin, *, div_id: str | None = None) -> str:
    """HTML that draws a vega-lite ``spec`` (or an altair chart) with the page's ``vegaEmbed``."""
    if not isinstance(spec, dict):
        spec = spec.to_dict()
    if div_id is None:
        div_id = "longmul-chart-" + uuid.uuid4().hex[:12]
    return _TEMPLATE.format(
        div_id=div_id,
        spec=_script_json(spec),
        options=_script_json(EMBED_OPTIONS),
        offline=_script_json(OFFLINE_MESSAGE),
    )


def renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """Altair renderer: for the book's build (``LONGMUL_CHARTS=site``) an HTML mimebundle, elsewhere a
    vega-lite one that Jupyter draws offline; either with a plain-text stand-in for consoles."""
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    plain = f"<altair chart: {title}>" if title else "<altair chart>"
    if os.environ.get(MODE_VARIABLE) == SITE_MODE:
        return {"text/html": chart_html(spec), "text/plain": plain}
    return {VEGALITE_MIME: spec, "text/plain": plain}


def enable() -> None:
    """Register the renderer with altair and make it the active one (idempotent)."""
    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, renderer)
    alt.renderers.enable(RENDERER_NAME)
