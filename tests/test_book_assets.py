"""The assets the book serves itself (book/_vendor, made by scripts/vendor_assets.py) are all there
and match the libraries that produce the pages."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")

import altair as alt
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SPHINX = CONFIG["sphinx"]["config"]
STATIC = [ROOT / p for p in SPHINX["html_static_path"]]


def _static_file(name: str) -> Path | None:
    return next((d / name for d in STATIC if (d / name).is_file()), None)


def _names(entries) -> list[str]:
    return [e if isinstance(e, str) else e[0] for e in entries]


def test_every_asset_the_config_names_exists():
    names = _names(SPHINX["html_js_files"]) + _names(SPHINX["html_css_files"])
    names += [SPHINX["mathjax_path"], *SPHINX["nb_ipywidgets_js"]]
    missing = [n for n in names if _static_file(n) is None]
    assert not missing, f"missing from {SPHINX['html_static_path']}: {missing} (run scripts/vendor_assets.py)"


def test_no_asset_is_loaded_from_the_network():
    names = _names(SPHINX["html_js_files"]) + [SPHINX["mathjax_path"], *SPHINX["nb_ipywidgets_js"]]
    assert not [n for n in names if "://" in n]


def test_vega_bundle_matches_altair():
    header = _static_file("vega/vega-bundle.js").read_text()[:400]
    assert f"vega-lite {alt.SCHEMA_VERSION}" in header, (
        "book/_vendor/vega/vega-bundle.js was made for another vega-lite than altair writes: "
        "rerun scripts/vendor_assets.py"
    )
    assert "(function () {" in header  # wrapped: its top-level names must not clash with Sphinx's


def test_mathjax_fonts_are_served():
    fonts = _static_file("mathjax/tex-mml-chtml.js").parent / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10


def test_no_root_static_folder():
    # Jupyter Book injects every .js/.css under a root _static/ into every page
    assert not (ROOT / "_static").exists()
