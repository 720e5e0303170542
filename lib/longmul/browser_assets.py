"""The data a web page needs to run an exported model with ``longmul-models.js``, as a classic script.

A page opened from ``file://`` cannot ``fetch`` the ``.onnx`` file (Chromium treats it as a
cross-origin request), but it can load a ``<script>``: :func:`model_script` writes one that sets
``globalThis.LONGMUL_MODEL_DATA[name] = {format, onnxBase64, sources}``, which
``longmulModels.loadShipped(name)`` reads. The script is made from the checked export
(:func:`longmul.onnx_runtime.load_onnx` refuses a stale or tampered one).

:func:`write_site_models` writes the book's shipped models this way, with an index script
(``LONGMUL_MODEL_INDEX``) that the book's explorables (``longmul-explorables.js``) read to know which
models the site has, what to call them and how large they are before loading any.
:func:`write_explorable_page` writes a standalone page with the book's two explorables (for the browser
tests and ``benchmarks/browser.py``, and to try them without building the book).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .files import read_json_object
from .onnx_export import EXPORT_RECORD, ONNX_MODEL
from .onnx_runtime import load_onnx
from .shipped import MODEL_LABELS, shipped_dir

INDEX_SCRIPT = "index.js"
# Where a site keeps the model scripts, under _static/ (not "models": the book excludes that name).
SITE_MODELS = "longmul-models"


def model_script(model_dir: str | Path, name: str) -> str:
    """The classic script carrying the export of ``model_dir`` under ``name``."""
    if not name.isidentifier():
        raise ValueError(f"model name {name!r} must be a plain identifier (letters, digits, _)")
    directory = Path(model_dir)
    onnx = load_onnx(directory)
    record = json.loads((directory / EXPORT_RECORD).read_text())
    data = {
        "format": onnx.format,
        "sources": record["sources"],
        "onnxBase64": base64.b64encode((directory / ONNX_MODEL).read_bytes()).decode("ascii"),
    }
    return (
        f"/* {name}: {directory.name}/{ONNX_MODEL}, written by longmul.browser_assets. */\n"
        f"(globalThis.LONGMUL_MODEL_DATA = globalThis.LONGMUL_MODEL_DATA || {{}})[{json.dumps(name)}] = "
        f"{json.dumps(data)};\n"
    )


def write_model_script(model_dir: str | Path, name: str, out: str | Path) -> Path:
    """Write :func:`model_script` to ``out`` (its folder created); returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model_script(model_dir, name))
    return out


def write_site_models(models_dir: str | Path, out: str | Path) -> list[dict]:
    """Write each shipped book model (:data:`longmul.shipped.MODEL_LABELS`, the finished run else its
    snapshot) as ``out/<name>.js`` and the index ``out/index.js``; returns the index's entries: name,
    display label, script file and its size in bytes, training steps, whether it is a snapshot of an
    unfinished run, and the chain-of-thought tokens it writes. A model not shipped is left out; a
    shipped one without a current ONNX export is an error (run ``longmul export-onnx``)."""
    out = Path(out)
    index = []
    for name, label in MODEL_LABELS.items():
        directory = shipped_dir(models_dir, name)
        if directory is None:
            continue
        script = write_model_script(directory, name, out / f"{name}.js")
        training = read_json_object(directory / "training.json")
        record = read_json_object(directory / EXPORT_RECORD)
        index.append(
            {
                "name": name,
                "label": label,
                "file": script.name,
                "bytes": script.stat().st_size,
                "steps": int(training.get("steps", 0)),
                "snapshot": bool(training.get("snapshot_of_unfinished_run", False)),
                "cotTokens": int(record["format"]["cot_tokens"]),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_SCRIPT).write_text(
        "/* The book's models in this site, written by longmul.browser_assets.write_site_models. */\n"
        f"globalThis.LONGMUL_MODEL_INDEX = {json.dumps(index)};\n"
    )
    return index


# What an explorable page needs from the site's vendored assets (book/_vendor, scripts/vendor_assets.py).
EXPLORABLE_ASSETS = ("onnxruntime", "longmul", "longmul.css")


def write_explorable_page(
    models_dir: str | Path,
    vendor_dir: str | Path,
    out: str | Path,
    explorables: Sequence[object],
    title: str = "longmul explorables",
) -> Path:
    """A standalone site in ``out``: ``index.html`` showing ``explorables`` (``longmul.explorables``
    objects, or anything with ``_repr_html_``) as a chapter of the book does, with ``_static/`` holding
    the vendored runtime from ``vendor_dir`` and the shipped models of ``models_dir``. It opens from
    ``file://`` or any static server. Returns the page's path."""
    out = Path(out)
    static = out / "_static"
    vendor_dir = Path(vendor_dir)
    for name in EXPLORABLE_ASSETS:
        source = vendor_dir / name
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: run scripts/vendor_assets.py")
        target = static / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            static.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    if not write_site_models(models_dir, static / SITE_MODELS):
        raise ValueError(f"{models_dir} has no shipped model to put on the page")
    body = "\n".join(e._repr_html_() for e in explorables)
    page = out / "index.html"
    page.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="stylesheet" href="_static/longmul.css">\n'
        '<script src="_static/longmul/longmul-explorables.js"></script>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return page
