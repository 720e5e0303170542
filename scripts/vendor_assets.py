"""Regenerate the JavaScript the book serves itself, so the site works with no network.

Writes ``book/_vendor/`` (listed in ``_config.yml`` as ``html_static_path``, copied to
``_build/html/_static/``):

* ``vega/vega-bundle.js``: vega, vega-lite and vega-embed from ``vl-convert-python``
  (``vl_convert.javascript_bundle``) for the vega-lite version altair writes, wrapped in an
  immediately-invoked function so its top-level names (``const _`` …) do not clash with Sphinx's
  own globals; it sets ``window.vegaEmbed``, ``window.vega`` and ``window.vegaLite``.
  ``longmul.charts`` renders altair charts as HTML that calls ``window.vegaEmbed``.
* ``mathjax/``: MathJax 3 (npm ``mathjax``), the ``tex-mml-chtml.js`` component Sphinx loads by
  default plus the CHTML woff-v2 fonts it fetches relative to itself.
* ``widgets/``: ``@jupyter-widgets/html-manager`` (npm) ``dist/embed.js``, which draws the widget
  state myst-nb embeds in a page (standard widgets only, no RequireJS needed), plus the woff2 icon
  fonts it fetches relative to itself.

Run from the repository root with the project's virtual environment and npm on the PATH::

    .venv/bin/python scripts/vendor_assets.py

npm is used only as ``npm pack`` (downloads the published tarball of an exact version).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_vendor"

MATHJAX = "mathjax@3.2.2"
HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download and unpack one npm package; return its ``package/`` folder."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    filename = json.loads(out.stdout)[0]["filename"].replace("@", "").replace("/", "-")
    tarball = workdir / filename
    target = workdir / tarball.stem
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def vega_bundle(dest: Path) -> None:
    import altair as alt
    import vl_convert as vlc

    # altair's schema version, e.g. "v6.4.1" -> vl-convert's "6.4"
    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    bundle = vlc.javascript_bundle(vl_version=version)
    dest.mkdir(parents=True, exist_ok=True)
    header = (
        f"/* vega {vlc.get_vega_version()}, vega-lite {alt.SCHEMA_VERSION}, vega-embed: bundled by "
        f"vl-convert-python {vlc.__version__} (BSD-3-Clause, see LICENSE). "
        "Regenerate with scripts/vendor_assets.py. */\n"
    )
    (dest / "vega-bundle.js").write_text(header + "(function () {\n" + bundle + "\n})();\n")
    (dest / "LICENSE").write_text(
        "vega, vega-lite and vega-embed: BSD-3-Clause, Copyright (c) the University of Washington "
        "Interactive Data Lab.\nBundled by vl-convert-python (BSD-3-Clause, Vega project).\n"
    )


def mathjax(package: Path, dest: Path) -> None:
    es5 = package / "es5"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / "tex-mml-chtml.js", dest / "tex-mml-chtml.js")
    shutil.copytree(es5 / "output" / "chtml" / "fonts" / "woff-v2", dest / "output" / "chtml" / "fonts" / "woff-v2")
    shutil.copy2(package / "LICENSE", dest / "LICENSE")


def widgets(package: Path, dest: Path) -> None:
    dist = package / "dist"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dist / "embed.js", dest / "embed.js")
    shutil.copy2(dist / "embed.js.LICENSE.txt", dest / "embed.js.LICENSE.txt")
    # icon fonts: Chromium and every current browser take the woff2 entry of each @font-face
    for font in dist.glob("*.woff2"):
        shutil.copy2(font, dest / font.name)


def main() -> int:
    for sub in ("vega", "mathjax", "widgets"):
        shutil.rmtree(VENDOR / sub, ignore_errors=True)
    vega_bundle(VENDOR / "vega")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mathjax(npm_pack(MATHJAX, work), VENDOR / "mathjax")
        widgets(npm_pack(HTML_MANAGER, work), VENDOR / "widgets")
    total = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    print(f"wrote {VENDOR.relative_to(ROOT)} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
