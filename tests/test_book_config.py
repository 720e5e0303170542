"""The book links to a repository only when a build names ours (scripts/book_config.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("book_config", ROOT / "scripts" / "book_config.py")
book_config = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(book_config)


def test_the_default_config_names_no_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert "repository" not in config
    assert config["html"]["use_repository_button"] is False
    assert config["launch_buttons"]["binderhub_url"] == ""


def test_a_repository_url_adds_buttons_and_keeps_the_rest(tmp_path):
    out = tmp_path / "deep" / "config.yml"
    assert book_config.main(["https://github.com/someone/longmul", str(out), "--branch", "dev"]) == 0
    merged = yaml.safe_load(out.read_text(encoding="utf-8"))
    original = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert merged["repository"] == {"url": "https://github.com/someone/longmul", "branch": "dev"}
    assert merged["html"]["use_repository_button"] is True
    assert merged["launch_buttons"]["binderhub_url"] == book_config.BINDERHUB
    assert merged["launch_buttons"]["notebook_interface"] == original["launch_buttons"]["notebook_interface"]
    for name, path in merged["sphinx"]["local_extensions"].items():
        assert Path(path).is_absolute() and (Path(path) / f"{name}.py").is_file()
    assert merged["sphinx"]["config"] == original["sphinx"]["config"]
    assert merged["title"] == original["title"]


@pytest.mark.parametrize(
    "url", ["http://github.com/a/b", "github.com/a/b", "https://github.com/onlyowner", "https://github.com/a/b/c", ""]
)
def test_a_url_that_is_not_a_repository_is_refused(tmp_path, url, capsys):
    out = tmp_path / "config.yml"
    assert book_config.main([url, str(out)]) == 2
    assert "is not of the form https://host/owner/name" in capsys.readouterr().err
    assert not out.exists()
