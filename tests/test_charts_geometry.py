"""Unit tests of longmul.charts.geometry (chapter "Geometry": PCA views with brushing, the additive-model
numbers, the pentagonal prism, Table 1, the frequency spectrum, the generated takeaway and the widget),
on synthetic inputs with known structure."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert

from longmul.analysis.fourier import basis_shares, centroid_pca, fourier_basis, fourier_table
from longmul.analysis.geometry import ActivationView, digit_pair_variance, pca
from longmul.charts.evidence import limited_threads
from longmul.charts.geometry import (
    OPERAND_DIGITS,
    PAPER_GEOMETRY,
    PAPER_PAIRS,
    basis_axis_titles,
    dominant_frequencies,
    geometry_findings,
    head_for_pair,
    ideal_prism,
    is_pentagonal_prism,
    pair_variance,
    paper_pairs,
    pca_brush_chart,
    pca_frame,
    png_bytes,
    prism_chart,
    prism_edges,
    prism_figure,
    prism_frame,
    side_by_side,
    spectrum_frame,
    spectrum_heatmap,
    table1,
    table1_chart,
    table1_frame,
    takeaway_markdown,
    variance_chart,
    variance_frame,
    variance_table,
    view_label,
)
from longmul.charts.geometry_explorer import geometry_explorer
from longmul.model import build_model, model_config_from_preset

BASIS, NAMES = fourier_basis()
ROW = {name: BASIS[i] * np.sqrt(10) for i, name in enumerate(NAMES)}  # unit-amplitude basis functions


def _compiles(chart) -> dict:
    """The chart's vega-lite spec, after checking that vega-lite compiles it."""
    spec = chart.to_dict()
    vl_convert.vegalite_to_vega(spec)
    return spec


# --------------------------------------------------------------------------- synthetic inputs


def _digits(rng, n: int) -> dict[str, np.ndarray]:
    return {name: rng.integers(0, 10, n) for name in OPERAND_DIGITS}


def _view(rng, digits, X, site="blocks.0.attn.hook_result", head=0, k=2) -> ActivationView:
    coords, ratio = pca(X, 3)
    return ActivationView(site, head, k, coords, ratio, digits, digit_pair_variance(X, digits))


@pytest.fixture(scope="module")
def views():
    """One model's views: at c0 an attention output additive in a0, b0; at c2 head 0 additive in a1, b1
    (a Minkowski sum), head 1 the pure interaction of a1 and b1, head 2 only b1."""
    rng = np.random.default_rng(0)
    n, d = 400, 5
    digits = _digits(rng, n)
    f, g = rng.normal(size=(10, d)), rng.normal(size=(10, d))
    cells = rng.normal(size=(10, 10, d))
    cells -= cells.mean(0, keepdims=True)
    cells -= cells.mean(1, keepdims=True)
    noise = lambda: 0.05 * rng.normal(size=(n, d))
    a0, b0, a1, b1 = (digits[x] for x in ("a0", "b0", "a1", "b1"))
    return [
        _view(rng, digits, f[a0] + g[b0] + noise(), site="blocks.0.hook_attn_out", head=None, k=0),
        _view(rng, digits, f[a1] + g[b1] + noise(), head=0),
        _view(rng, digits, cells[a1, b1] + noise(), head=1),
        _view(rng, digits, g[b1] + noise(), head=2),
    ]


def _prism(rng, scale=1.0) -> np.ndarray:
    """Two pentagons of radius 3 (k=2) offset along a parity axis, rotated into 12 dimensions."""
    shape = np.stack([3 * ROW["cos2"], 3 * ROW["sin2"], ROW["parity"]], axis=1)  # (10, 3)
    rotation, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    return scale * (shape @ rotation[:3]) + 0.01 * rng.normal(size=(10, 12))


def _objects(rng) -> dict[str, np.ndarray]:
    """Digit-indexed objects: the embedding built from k=1 and k=2, the final hidden state a prism."""
    mix = rng.normal(size=(4, 12))
    embedding = np.stack([ROW["cos1"], ROW["sin1"], ROW["cos2"], ROW["sin2"]], axis=1) @ mix
    return {"embedding": embedding, "unembedding": embedding.copy(), "final_hidden": _prism(rng)}


# --------------------------------------------------------------------------- views and the PCA chart


def test_view_labels_and_the_chosen_head(views):
    assert view_label(views[0]) == "layer 1 attention output at c0"
    assert view_label(views[1]) == "layer 1 head 0 at c2"
    assert pair_variance(views[1], ("a1", "b1"))["additive_share"] > 0.99
    with pytest.raises(ValueError, match="no variance row"):
        pair_variance(views[1], ("a1", "c1"))
    # Head 2 carries b1 only and head 1 only the interaction: head 0 carries both digits most.
    assert head_for_pair(views, 2, ("a1", "b1")) is views[1]
    with pytest.raises(ValueError, match="no per-head view"):
        head_for_pair(views, 5, ("a1", "b1"))


def test_pca_frame_draws_a_subset(views):
    df = pca_frame({"M · a": views[0], "M · b": views[1]}, max_points=50, seed=0)
    assert len(df) == 100 and list(dict.fromkeys(df["view"])) == ["M · a", "M · b"]
    assert set(OPERAND_DIGITS) <= set(df.columns) and {"pc1", "pc2", "pc3", "ev1", "ev2", "ev3"} <= set(df.columns)
    assert df["ev1"].iloc[0] == pytest.approx(views[0].explained_variance_ratio[0])
    assert pca_frame({}).empty


def test_pca_brush_chart_has_selectors_and_linked_brushing(views):
    df = pca_frame({"M · a": views[0], "M · b": views[1]}, max_points=40)
    spec = _compiles(pca_brush_chart(df, default_view="M · b", default_colour="a1"))
    params = {p["name"]: p for p in spec["params"]}
    assert params["view"]["value"] == 1 and params["view"]["bind"]["labels"] == ["M · a", "M · b"]
    assert params["colour_by"]["value"] == "a1" and params["colour_by"]["bind"]["options"] == OPERAND_DIGITS
    brush = params["brush"]
    assert brush["select"]["type"] == "interval" and brush["views"] == ["pc12", "pc13", "pc23"]
    scatter = spec["vconcat"][1]
    panels = scatter["hconcat"]
    assert [p["name"] for p in panels] == ["pc12", "pc13", "pc23"]
    assert all(p["encoding"]["color"]["condition"]["param"] == "brush" for p in panels)
    assert {"calculate": "toString(datum[colour_by])", "as": "digit"} in scatter["transform"]
    assert "PC1 " in spec["datasets"][spec["vconcat"][0]["data"]["name"]][0]["text"]
    values = spec["datasets"][scatter["data"]["name"]]
    assert len(values) == 80 and "view" not in values[0] and {v["v"] for v in values} == {0, 1}


def test_pca_brush_chart_without_views():
    _compiles(pca_brush_chart(pca_frame({})))


# --------------------------------------------------------------------------- the additive-model numbers


def test_variance_frame_table_and_chart(views):
    df = variance_frame({"M": views, "N": views[:2]})
    assert len(df) == (4 + 2) * 16
    paper = paper_pairs(df)
    assert set(zip(paper["k"], paper["pair"])) == {(0, "a0·b0"), (2, "a1·b1")} and len(paper) == 4 + 2
    table = variance_table(df, [("M", "layer 1 head 1 at c2"), ("M", "layer 1 head 0 at c2"), ("X", "nothing")])
    assert list(table.index) == [("M", "layer 1 head 1 at c2"), ("M", "layer 1 head 0 at c2")]
    minkowski, interaction = table.iloc[1], table.iloc[0]
    assert float(minkowski["additive / full"]) > 0.99 and float(interaction["additive / full"]) < 0.1
    assert interaction["every (a_i, b_j) cell"].endswith("%")
    spec = _compiles(variance_chart(df))
    pair = next(p for p in spec["params"] if p["name"] == "pair")
    assert pair["value"] == "paper" and len(pair["bind"]["options"]) == 17
    assert spec["facet"]["row"]["field"] == "model"
    values = spec["datasets"][spec["data"]["name"]]
    assert len(values) == len(df) + len(paper)  # wide rows, folded in the browser
    variance_chart(variance_frame({})).to_dict()


# --------------------------------------------------------------------------- the prism


def test_basis_shares_and_axis_titles():
    shares = basis_shares(2 * ROW["cos2"] + ROW["parity"])
    assert shares["cos2"] == pytest.approx(0.8) and shares["parity"] == pytest.approx(0.2)
    assert sum(shares.values()) == pytest.approx(1.0) and "const" not in shares
    with pytest.raises(ValueError, match="do not vary"):
        basis_shares(np.ones(10))
    result = centroid_pca(_prism(np.random.default_rng(1)))
    titles = basis_axis_titles(result)
    assert titles[0].startswith("PC1 (") and "parity" in titles[2]
    assert {"cos2", "sin2"} >= set(titles[0].split(": ")[1].split(" + "))
    assert sorted(dominant_frequencies(result)) == [2, 2, 5] and is_pentagonal_prism(result)
    assert not is_pentagonal_prism(centroid_pca(np.stack([ROW["cos1"], ROW["sin1"], ROW["cos3"]], axis=1)))
    ideal = ideal_prism()
    assert ideal.shape == (10, 3) and is_pentagonal_prism(centroid_pca(ideal))
    assert np.allclose(ideal[0, :2], ideal[5, :2]) and ideal[0, 2] == -ideal[5, 2]  # n and n+5: one rung


def test_prism_frame_edges_chart_and_figure():
    rng = np.random.default_rng(2)
    pcas = {"A": centroid_pca(_prism(rng)), "B": centroid_pca(rng.normal(size=(10, 8)))}
    points = prism_frame(pcas)
    assert len(points) == 20 and set(points["parity"]) == {"even", "odd"}
    edges = prism_edges(points)
    assert len(edges) == 2 * 15 * 2
    for _, edge in edges[edges["model"] == "A"].groupby("edge"):
        start, stop = edge["digit"].tolist()
        if edge["kind"].iloc[0] == "rung":
            assert stop == start + 5
        else:
            assert start % 2 == stop % 2 and edge["parity"].iloc[0] == ("even" if start % 2 == 0 else "odd")
    # In the prism, pentagon edges join digits two steps apart at k=2 ... all of equal length.
    a = edges[(edges["model"] == "A") & (edges["kind"] == "pentagon")]
    lengths = [np.linalg.norm(np.diff(e[["pc1", "pc2", "pc3"]].to_numpy(), axis=0)) for _, e in a.groupby("edge")]
    assert np.ptp(lengths) < 0.05 * np.mean(lengths)
    spec = _compiles(prism_chart(pcas))
    assert len(spec["vconcat"]) == 2 and len(spec["vconcat"][0]["hconcat"]) == 3
    first = spec["vconcat"][0]["hconcat"][0]["layer"][2]
    assert first["encoding"]["x"]["title"] == basis_axis_titles(pcas["A"])[0]
    _compiles(prism_chart({}))
    fig = prism_figure(pcas)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "A"
    small = prism_figure({"A": pcas["A"]}, size=1.0)
    assert png_bytes(small, dpi=30)[:8] == b"\x89PNG\r\n\x1a\n"
    html = side_by_side(alt.Chart(points).mark_point().encode(x="pc1:Q"), small)
    assert html.count("<img") == 1 and "longmul-chart" in html and "flex-wrap" in html


# --------------------------------------------------------------------------- Table 1 and the spectrum


def test_table1_with_chance_and_tied_rows():
    rng = np.random.default_rng(3)
    objects = _objects(rng)
    df = table1_frame({"A": fourier_table(objects), "B": fourier_table(objects)})
    assert list(dict.fromkeys(df["column"])) == ["k=0 (const)", "+ k=1", "+ k=2", "+ k=5 (parity)"]
    table = table1(df, tied=["A"])
    assert list(table.columns) == ["k=0 (const)", "+ k=1", "+ k=2", "+ k=5 (parity)"]
    assert table.loc[("chance level", "noise, no digit structure")].tolist() == ["0.00", "0.22", "0.44", "0.56"]
    assert ("A", "unembeddings W_U (tied: = W_E)") in table.index and ("B", "unembeddings W_U") in table.index
    assert table.loc[("A", "embeddings W_E"), "+ k=2"] == "1.00"  # built from k=1 and k=2 only
    assert table.loc[("A", "embeddings W_E"), "k=0 (const)"] == "0.00"
    spec = _compiles(table1_chart(df, tied=["A"]))
    assert spec["facet"]["column"]["sort"] == ["A", "B"]
    assert any(v["note"] for v in spec["datasets"][spec["data"]["name"]])
    assert table1(table1_frame({})).empty


def test_spectrum_frame_and_heatmap():
    rng = np.random.default_rng(4)
    df = spectrum_frame({"A": _objects(rng)})
    assert len(df) == 3 * 5
    for _, part in df.groupby("object"):
        assert part["share"].sum() == pytest.approx(1.0)
    hidden = df[df["object"] == "final_hidden"].set_index("k")["share"]
    assert hidden[2] + hidden[5] == pytest.approx(1.0, abs=1e-3)
    assert df.set_index(["object", "k"]).loc[("embedding", 5), "chance"] == pytest.approx(1 / 9)
    spec = _compiles(spectrum_heatmap(df))
    assert spec["spec"]["layer"][0]["encoding"]["x"]["sort"] == ["k=1", "k=2", "k=3", "k=4", "parity"]


# --------------------------------------------------------------------------- findings and the takeaway


def _findings(views, objects, prism_model="ICoT") -> pd.DataFrame:
    variance = variance_frame({"ICoT": views, "SFT": views})
    table = table1_frame({"ICoT": fourier_table(objects), "SFT": fourier_table(objects)})
    spectrum = spectrum_frame({"ICoT": objects, "SFT": objects})
    rng = np.random.default_rng(5)
    pcas = {m: centroid_pca(_prism(rng) if m == prism_model else rng.normal(size=(10, 6))) for m in ("ICoT", "SFT")}
    chosen = {"ICoT": view_label(views[1]), "SFT": view_label(views[2])}
    return geometry_findings(variance, table, spectrum, pcas, chosen)


def test_findings_numbers(views):
    findings = _findings(views, _objects(np.random.default_rng(6)))
    assert findings.loc["ICoT", "c0_additive_share"] > 0.99 and findings.loc["ICoT", "c2_additive_share"] > 0.99
    assert findings.loc["SFT", "c2_additive_share"] < 0.1 and findings.loc["SFT", "c2_view"] == "layer 1 head 1 at c2"
    assert findings.loc["ICoT", "prism"] and not findings.loc["SFT", "prism"]
    assert findings.loc["ICoT", "chance"] == pytest.approx(5 / 9)
    assert set(findings.loc["ICoT", "above_chance"]) <= {1, 2, 5} and findings.loc["ICoT", "top_k"] in (1, 2)


def test_takeaway_when_icot_uses_the_papers_geometry(views):
    text = takeaway_markdown(_findings(views, _objects(np.random.default_rng(6))), unfinished=["SFT"], tied=["SFT"])
    assert "Our ICoT model uses the paper's geometry" in text
    assert "a Minkowski sum" in text and "not a pure sum" in text  # ICoT's head 0 vs SFT's head 1
    assert "**form the paper's pentagonal prism**" in text and "do not form" in text
    assert "where noise scores 0.56" in text
    assert "snapshot of a run still in training" in text and "same matrix" in text


def test_takeaway_caveats_and_no_models(views):
    findings = _findings(views, _objects(np.random.default_rng(6)), prism_model="SFT")
    text = takeaway_markdown(findings, cot_tokens={"ICoT": 46}, missing=["`models/aux` (SFT + aux loss)"])
    assert "46 chain-of-thought tokens" in text and "cannot yet say" in text
    assert "Not measured yet: `models/aux` (SFT + aux loss)." in text
    partial = takeaway_markdown(findings)
    assert "only part of the paper's geometry" in partial and "no pentagonal prism" in partial
    only_sft = takeaway_markdown(findings.drop(index="ICoT"))
    assert "cannot be said yet" in only_sft
    assert "No model was available" in takeaway_markdown(pd.DataFrame(), missing=["x"])
    assert set(PAPER_GEOMETRY) == {"minkowski", "prism", "table1"} and PAPER_PAIRS[2] == ("a1", "b1")


# --------------------------------------------------------------------------- the widget


def test_geometry_explorer_redraws():
    model = build_model(model_config_from_preset("tiny"), seed=0)
    from longmul.task import random_problems

    with limited_threads(1):
        widget = geometry_explorer({"tiny": model}, random_problems(60, seed=1), head=1, k=2, colour="b1")
        (_, site_box), (k_box, colour_box) = widget.children[0].children, widget.children[1].children
        image, text = widget.children[3], widget.children[4]
        assert site_box.value == (0, 1) and image.value[:4] == b"\x89PNG"
        assert "b1 alone explains" in text.value and "Best-organising pair" in text.value
        first = image.value
        colour_box.value = "c2"
        assert image.value != first and "alone explains" not in text.value
        site_box.value = (1, -1)
        k_box.value = 5
        assert "Best-organising pair" in text.value
    model.config.longmul_cot_tokens = 46
    try:
        with limited_threads(1):
            noted = geometry_explorer({"tiny": model}, random_problems(30, seed=2))
        assert "46 chain-of-thought tokens" in noted.children[4].value
    finally:
        model.config.longmul_cot_tokens = 0
    assert "No model" in geometry_explorer({}, []).children[4].value
