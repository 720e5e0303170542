"""Unit tests of longmul.charts.heatmap: the heatmap with each cell's value written on it."""

from __future__ import annotations

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import altair as alt
import pandas as pd
import vl_convert

from longmul.charts.heatmap import annotated_heatmap


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": ["r1", "r1", "r2", "r2"],
            "col": ["a", "b", "a", "b"],
            "v": [0.1, 0.9, 0.4, 2.0],
            "label": ["0.1", "0.9", "0.4", "2.0"],
            "keep": [True, True, False, True],
        }
    )


def test_annotated_heatmap_layers_cells_and_their_values_on_the_same_encodings():
    chart = annotated_heatmap(
        _frame(),
        x="col:N",
        y="row:N",
        x_title="column",
        y_title=None,
        x_sort=["b", "a"],
        y_sort=["r2", "r1"],
        color="v",
        domain=[0, 1],
        clamp=True,
        color_title="value",
        text="label:N",
        font_size=8,
        opacity=alt.when(alt.datum.keep).then(alt.value(1.0)).otherwise(alt.value(0.3)),
        tooltip=[alt.Tooltip("v:Q", format=".2f")],
    )
    assert isinstance(chart, alt.LayerChart)
    spec = chart.properties(width=alt.Step(20), height=alt.Step(20)).to_dict()
    vl_convert.vegalite_to_vega(spec)  # vega-lite compiles it
    rect, text = spec["layer"]
    assert rect["mark"]["type"] == "rect" and text["mark"] == {"type": "text", "fontSize": 8}
    assert rect["mark"]["stroke"] == "white"
    for layer in (rect, text):  # one grid: both layers on the same x and y
        enc = layer["encoding"]
        assert enc["x"] == {
            "field": "col",
            "type": "nominal",
            "sort": ["b", "a"],
            "title": "column",
            "axis": {"orient": "top", "labelAngle": 0},
        }
        assert enc["y"] == {"field": "row", "type": "nominal", "sort": ["r2", "r1"], "title": None}
        assert enc["opacity"] == {"condition": [{"test": "datum.keep", "value": 1.0}], "value": 0.3}
    color = rect["encoding"]["color"]
    assert color["field"] == "v" and color["type"] == "quantitative" and color["title"] == "value"
    assert color["scale"] == {"scheme": "blues", "domain": [0, 1], "clamp": True}
    assert rect["encoding"]["tooltip"] == [{"field": "v", "type": "quantitative", "format": ".2f"}]
    assert "tooltip" not in text["encoding"]
    assert text["encoding"]["text"] == {"field": "label", "type": "nominal"}
    # light text on dark cells: above the middle of the colour domain
    assert text["encoding"]["color"] == {"condition": [{"test": "(datum.v > 0.5)", "value": "white"}], "value": "black"}
    assert len(spec["datasets"][spec["data"]["name"]]) == 4


def test_annotated_heatmap_defaults_and_text_format():
    spec = annotated_heatmap(
        _frame(), x="col:N", y="row:N", color="v", domain=[0, 4], text="v:Q", text_format=".1f", light_text_above=3
    ).to_dict()
    rect, text = spec["layer"]
    assert rect["encoding"]["color"]["scale"] == {"scheme": "blues", "domain": [0, 4]}
    assert "opacity" not in rect["encoding"] and "tooltip" not in rect["encoding"]
    assert text["encoding"]["text"] == {"field": "v", "type": "quantitative", "format": ".1f"}
    assert text["encoding"]["color"]["condition"] == [{"test": "(datum.v > 3)", "value": "white"}]
    assert "title" not in text["encoding"]["x"] and "axis" not in text["encoding"]["y"]
