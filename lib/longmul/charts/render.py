"""An altair renderer whose charts draw with no network on the book's static site.

Altair's default renderers either load vega from a CDN (blank on an offline site) or inline the
whole ~900 KB vega bundle into every chart. The book instead serves one copy of the bundle itself
(``book/_vendor/vega/vega-bundle.js``, made by ``scripts/vendor_assets.py``, which sets
``window.vegaEmbed``) and this renderer writes each chart as a ``<div>`` plus a few lines that call the
page's ``vegaEmbed``.

Outside the book (JupyterLab, classic Notebook, VS Code) there is no page-level ``vegaEmbed``: the same
output then loads vega, vega-lite and vega-embed from a CDN, as altair's own ``html`` renderer does,
through RequireJS where the page has it.

On the site, charts follow the theme's dark mode (vega's ``dark`` theme) and redraw when the reader
toggles it. A drawn chart's ``<div>`` gets ``data-longmul-chart="drawn"`` (``"error"`` when drawing
failed): the headless-browser check of the site reads it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import altair as alt

RENDERER_NAME = "longmul"

# vega-embed options: export buttons only (the "open in editor" action would go online)
EMBED_OPTIONS: dict[str, Any] = {
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_CDN = "https://cdn.jsdelivr.net/npm"

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
  // Not on the book's site (e.g. live Jupyter): load the libraries from a CDN.
  var paths = {{
    "vega": "{cdn}/vega@{vega}?noext",
    "vega-lite": "{cdn}/vega-lite@{vegalite}?noext",
    "vega-embed": "{cdn}/vega-embed@{vegaembed}?noext"
  }};
  if (typeof define === "function" && define.amd) {{
    requirejs.config({{paths: paths}});
    require(["vega-embed"], drawAndFollowTheme, fail);
    return;
  }}
  function load(name) {{
    return new Promise(function (resolve, reject) {{
      var s = document.createElement("script");
      s.src = paths[name];
      s.onload = resolve;
      s.onerror = function () {{ reject("cannot load " + paths[name]); }};
      document.head.appendChild(s);
    }});
  }}
  load("vega").then(function () {{ return load("vega-lite"); }})
    .then(function () {{ return load("vega-embed"); }})
    .then(function () {{ drawAndFollowTheme(window.vegaEmbed); }}, fail);
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
        cdn=_CDN,
        vega=alt.VEGA_VERSION,
        vegalite=alt.VEGALITE_VERSION,
        vegaembed=alt.VEGAEMBED_VERSION,
    )


def renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """Altair renderer: an HTML mimebundle (plus a plain-text stand-in for consoles)."""
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    plain = f"<altair chart: {title}>" if title else "<altair chart>"
    return {"text/html": chart_html(spec), "text/plain": plain}


def enable() -> None:
    """Register the renderer with altair and make it the active one (idempotent)."""
    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, renderer)
    alt.renderers.enable(RENDERER_NAME)
