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
* ``onnxruntime/``: ``onnxruntime-web`` (npm), its WebAssembly backend only, run single-threaded by
  ``longmul/longmul-models.js``: ``ort.wasm.min.js`` (a classic script that sets ``window.ort``) as
  published, and two classic scripts made from the package's ``ort-wasm-simd-threaded.mjs`` (the
  Emscripten loader, as a string) and ``ort-wasm-simd-threaded.wasm`` (gzip, then base64). Pages
  opened from ``file://`` can neither ``fetch`` a file nor ``import()`` a module in Chromium (both are
  cross-origin requests from an opaque origin), but classic ``<script>`` tags load: the module hands
  the bytes to onnxruntime as ``env.wasm.wasmBinary`` and the loader as a ``blob:`` URL
  (``env.wasm.wasmPaths.mjs``), so nothing is fetched from file or network, and the same path serves
  HTTP. gzip takes the 15 MB binary to about 4 MB; browsers inflate it with ``DecompressionStream``.

Run from the repository root with the project's virtual environment and npm on the PATH::

    .venv/bin/python scripts/vendor_assets.py

npm is used only as ``npm pack`` (downloads the published tarball of an exact version).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
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
ONNXRUNTIME_WEB = "onnxruntime-web@1.31.1"
ORT_LICENSE = """onnxruntime-web (https://github.com/microsoft/onnxruntime), MIT License as its package.json
declares (the npm package carries no licence file); the licence of the onnxruntime repository:

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


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


def onnxruntime(package: Path, dest: Path) -> None:
    dist = package / "dist"
    version = json.loads((package / "package.json").read_text())["version"]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dist / "ort.wasm.min.js", dest / "ort.wasm.min.js")
    header = f"/* onnxruntime-web {version} (MIT, see LICENSE): made by scripts/vendor_assets.py from dist/"
    loader = (dist / "ort-wasm-simd-threaded.mjs").read_text()
    (dest / "ort-wasm-loader.js").write_text(
        f"{header}ort-wasm-simd-threaded.mjs, as a string. */\n"
        f"(globalThis.LONGMUL_ORT = globalThis.LONGMUL_ORT || {{}}).loader = {json.dumps(loader)};\n"
    )
    wasm = (dist / "ort-wasm-simd-threaded.wasm").read_bytes()
    packed = base64.b64encode(gzip.compress(wasm, compresslevel=9, mtime=0)).decode("ascii")
    (dest / "ort-wasm-binary.js").write_text(
        f"{header}ort-wasm-simd-threaded.wasm ({len(wasm):,} bytes, sha256 {hashlib.sha256(wasm).hexdigest()}), "
        f'gzip, base64. */\n(globalThis.LONGMUL_ORT = globalThis.LONGMUL_ORT || {{}}).wasmGzipBase64 = "{packed}";\n'
    )
    (dest / "LICENSE").write_text(ORT_LICENSE)


PARTS = ("vega", "mathjax", "widgets", "onnxruntime")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, action="append", help="regenerate only these (default: all)")
    parts = parser.parse_args(argv).only or PARTS
    for sub in parts:
        shutil.rmtree(VENDOR / sub, ignore_errors=True)
    if "vega" in parts:
        vega_bundle(VENDOR / "vega")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "mathjax" in parts:
            mathjax(npm_pack(MATHJAX, work), VENDOR / "mathjax")
        if "widgets" in parts:
            widgets(npm_pack(HTML_MANAGER, work), VENDOR / "widgets")
        if "onnxruntime" in parts:
            onnxruntime(npm_pack(ONNXRUNTIME_WEB, work), VENDOR / "onnxruntime")
    total = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    print(f"wrote {VENDOR.relative_to(ROOT)} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
