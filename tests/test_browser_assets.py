"""longmul.browser_assets: the classic script that carries an exported model to a web page."""

import base64
import importlib.util
import json
import shutil
import types
from pathlib import Path

import pytest

from longmul.browser_assets import (
    SITE_MODELS,
    model_script,
    write_explorable_page,
    write_model_script,
    write_site_models,
)
from longmul.explorables import explorable
from longmul.onnx_export import EXPORT_RECORD, ONNX_MODEL
from longmul.shipped import MODEL_LABELS

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_site_index_lists_each_shipped_model_with_its_script(exported, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(exported, models / "sft")  # one book model shipped, the others not yet
    index = write_site_models(models, tmp_path / "site" / "models")
    assert [e["name"] for e in index] == ["sft"]
    (entry,) = index
    assert entry["label"] == MODEL_LABELS["sft"] and entry["cotTokens"] == 0 and entry["snapshot"] is False
    assert entry["bytes"] == (tmp_path / "site" / "models" / "sft.js").stat().st_size
    text = (tmp_path / "site" / "models" / "index.js").read_text()
    assert json.loads(text.split("globalThis.LONGMUL_MODEL_INDEX = ", 1)[1].rstrip(";\n")) == index


def test_a_shipped_model_without_its_export_stops_the_site(tiny_sft_model, tmp_path):
    shutil.copytree(tiny_sft_model, tmp_path / "models" / "aux")
    with pytest.raises(ValueError, match="run `longmul export-onnx"):
        write_site_models(tmp_path / "models", tmp_path / "site")


def test_the_explorable_page_carries_its_assets(exported, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(exported, models / "sft")
    page = write_explorable_page(models, ROOT / "book" / "_vendor", tmp_path / "site", [explorable("multiply")])
    text = page.read_text()
    assert 'data-kind="multiply"' in text and '<script src="_static/longmul/longmul-explorables.js">' in text
    for path in (
        "onnxruntime/ort.wasm.min.js",
        "longmul/longmul-models.js",
        "longmul.css",
        f"{SITE_MODELS}/index.js",
        f"{SITE_MODELS}/sft.js",
    ):
        assert (tmp_path / "site" / "_static" / path).is_file(), path
    with pytest.raises(FileNotFoundError, match="vendor_assets.py"):
        write_explorable_page(models, tmp_path / "no-vendor", tmp_path / "other", [])
    with pytest.raises(ValueError, match="no shipped model"):
        write_explorable_page(tmp_path / "empty", ROOT / "book" / "_vendor", tmp_path / "third", [])


def test_the_books_sphinx_extension_serves_the_shipped_models(exported, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("longmul_sphinx", ROOT / "book" / "_ext" / "longmul_sphinx.py")
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    shutil.copytree(exported, tmp_path / "models" / "sft")
    monkeypatch.setenv("LONGMUL_MODELS", "models")  # relative: to the book's source folder
    app = types.SimpleNamespace(srcdir=str(tmp_path), outdir=str(tmp_path / "_build" / "html"))
    config = types.SimpleNamespace(html_static_path=["book/_vendor"])
    (tmp_path / "_build" / "longmul_models" / SITE_MODELS).mkdir(parents=True)
    (tmp_path / "_build" / "longmul_models" / SITE_MODELS / "old.js").write_text("left from an earlier build")
    extension.write_browser_models(app, config)
    static = tmp_path / "_build" / "longmul_models"
    assert config.html_static_path == ["book/_vendor", str(static)]
    assert sorted(p.name for p in (static / SITE_MODELS).iterdir()) == ["index.js", "sft.js"]
    monkeypatch.setenv("LONGMUL_MODELS", str(tmp_path / "nothing"))
    with pytest.raises(RuntimeError, match="no shipped model"):
        extension.write_browser_models(app, config)
