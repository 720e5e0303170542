"""Charts never reach for a CDN: HTML for the book's site, vega-lite mimebundles for live Jupyter
(longmul.charts.render), and the book's Sphinx extension switches the build to the site's HTML."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")

import altair as alt
import pandas as pd

from longmul import charts
from longmul.charts.render import (
    MODE_VARIABLE,
    OFFLINE_MESSAGE,
    RENDERER_NAME,
    SITE_MODE,
    VEGALITE_MIME,
    chart_html,
    renderer,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"title": "Accuracy", "mark": "point", "data": {"values": [{"x": 1}]}}


def test_live_jupyter_gets_a_vegalite_bundle_that_jupyter_draws_offline(monkeypatch):
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    bundle = renderer(SPEC)
    assert set(bundle) == {VEGALITE_MIME, "text/plain"}
    assert bundle[VEGALITE_MIME] == SPEC
    assert bundle["text/plain"] == "<altair chart: Accuracy>"


def test_the_book_build_gets_html_drawn_by_the_sites_own_vega(monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, SITE_MODE)
    bundle = renderer(SPEC)
    assert set(bundle) == {"text/html", "text/plain"}
    assert 'class="longmul-chart"' in bundle["text/html"]


def test_chart_html_never_loads_anything_from_the_network():
    spec = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_point().encode(x="x").to_dict()
    html = chart_html(spec)
    # the spec names its schema by URL (never fetched to draw); nothing else may name one
    assert not re.search(r"https?://", html.replace(spec["$schema"], ""))
    assert "requirejs" not in html and 'createElement("script")' not in html
    assert 'setAttribute("data-longmul-chart", "offline")' in html


def test_the_offline_message_is_a_safe_javascript_string():
    html = chart_html({"mark": "point"})
    assert "el.textContent = " + '"' + OFFLINE_MESSAGE.replace('"', '\\"') + '"' in html


def test_enable_switches_altair_to_the_renderer(monkeypatch):
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    previous = alt.renderers.active
    try:
        charts.enable()
        charts.enable()  # idempotent
        assert alt.renderers.active == RENDERER_NAME
        bundle = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x")._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert VEGALITE_MIME in bundle and "text/html" not in bundle
    finally:
        alt.renderers.enable(previous)


def test_the_books_sphinx_extension_puts_the_build_in_site_mode(monkeypatch):
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    spec = importlib.util.spec_from_file_location("longmul_sphinx", ROOT / "book" / "_ext" / "longmul_sphinx.py")
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)

    class App:
        def __init__(self):
            self.scripts = []

        def connect(self, *args, **kwargs):
            pass

        def add_js_file(self, name, **kwargs):
            self.scripts.append(name)

    app = App()
    extension.setup(app)
    assert os.environ[MODE_VARIABLE] == SITE_MODE
    assert app.scripts == ["longmul/longmul-explorables.js"]  # every page may hold an explorable
    monkeypatch.delenv(MODE_VARIABLE)


@pytest.mark.parametrize("mode", ["", "html", "SITE"])
def test_only_the_exact_site_mode_writes_html(monkeypatch, mode):
    monkeypatch.setenv(MODE_VARIABLE, mode)
    assert VEGALITE_MIME in renderer(SPEC)
