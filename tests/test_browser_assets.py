"""longmul.browser_assets: the classic script that carries an exported model to a web page."""

import base64
import json

import pytest

from longmul.browser_assets import model_script, write_model_script
from longmul.onnx_export import EXPORT_RECORD, ONNX_MODEL


def test_the_script_carries_the_export_whole(exported, tmp_path):
    out = write_model_script(exported, "sft", tmp_path / "models" / "sft.js")
    text = out.read_text()
    prefix = '(globalThis.LONGMUL_MODEL_DATA = globalThis.LONGMUL_MODEL_DATA || {})["sft"] = '
    assert prefix in text and text.endswith(";\n")
    data = json.loads(text.split(prefix, 1)[1][:-2])
    assert base64.b64decode(data["onnxBase64"]) == (exported / ONNX_MODEL).read_bytes()
    record = json.loads((exported / EXPORT_RECORD).read_text())
    assert data["format"] == record["format"] and data["sources"] == record["sources"]


def test_bad_names_and_unexported_models_are_refused(exported, tiny_sft_model):
    with pytest.raises(ValueError, match="must be a plain identifier"):
        model_script(exported, "a-b")
    with pytest.raises(ValueError, match="run `longmul export-onnx"):
        model_script(tiny_sft_model, "sft")
