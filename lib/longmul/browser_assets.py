"""The data a web page needs to run an exported model with ``longmul-models.js``, as a classic script.

A page opened from ``file://`` cannot ``fetch`` the ``.onnx`` file (Chromium treats it as a
cross-origin request), but it can load a ``<script>``: :func:`model_script` writes one that sets
``globalThis.LONGMUL_MODEL_DATA[name] = {format, onnxBase64, sources}``, which
``longmulModels.loadShipped(name)`` reads. The script is made from the checked export
(:func:`longmul.onnx_runtime.load_onnx` refuses a stale or tampered one).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .onnx_export import EXPORT_RECORD, ONNX_MODEL
from .onnx_runtime import load_onnx


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
