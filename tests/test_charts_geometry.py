"""Unit tests of longmul.charts.geometry (chapter "Geometry": PCA views with brushing, the additive-model
numbers, the pentagonal prism, Table 1, the frequency spectrum, the generated takeaway and the widget),
on synthetic inputs with known structure."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert

from longmul.analysis.fourier import CentroidPCA, basis_shares, centroid_pca, fourier_basis, fourier_table
from longmul.analysis.geometry import ActivationView, digit_pair_variance, pca, variance_explained
from longmul.charts.evidence import limited_threads
from longmul.charts.geometry import (
    MATTERS_RATIO,
    MIN_FULL,
    OBJECT_LABELS,
    OPERAND_DIGITS,
    PAPER_GEOMETRY,
    PAPER_PAIRS,
    PRISM_SHARE,
    additive_verdict,
    basis_axis_titles,
    dominant_frequencies,
    geometry_findings,
    head_for_pair,
    ideal_prism,
    is_pentagonal_prism,
    nesting_figure,
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
    # Head 2 carries b1 only and head 1 only the interaction (no main effects): head 0 carries both digits most.
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


def test_nesting_figure_colours_one_view_by_b_then_a(views):
    fig = nesting_figure({"M · head 0": views[1], "M · head 2": views[3]}, ("a1", "b1"), max_points=50, seed=0)
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == 4 and len(fig.axes) == 5  # two rows of two panels, one colour bar
    assert [ax.get_title() for ax in panels[:2]] == ["M · head 0\ncoloured by b1", "M · head 0\ncoloured by a1"]
    assert panels[2].get_title() == "M · head 2\ncoloured by b1"
    ratio = views[1].explained_variance_ratio
    assert [panels[0].get_xlabel(), panels[0].get_ylabel(), panels[0].get_zlabel()] == [
        f"PC{i + 1} ({ratio[i]:.0%})" for i in range(3)
    ]
    keep = np.sort(np.random.default_rng(0).permutation(len(views[1].coords))[:50])
    for ax, digit in zip(panels[:2], ("b1", "a1")):
        (points,) = ax.collections
        np.testing.assert_array_equal(points.get_array(), views[1].digits[digit][keep])
    assert png_bytes(nesting_figure({}, ("a1", "b1")), dpi=20)[:4] == b"\x89PNG"


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


def _with_spectra(*main: tuple[int, float]) -> CentroidPCA:
    """Centroid components whose main frequency k carries ``share``, the rest spread over the other four."""
    spectra = [{j: share if j == k else (1 - share) / 4 for j in range(1, 6)} for k, share in main]
    return CentroidPCA(np.zeros((10, len(main))), np.full(len(main), 1 / len(main)), spectra)


def test_the_prism_needs_more_than_half_of_each_component():
    assert is_pentagonal_prism(_with_spectra((2, 0.9), (5, 0.8), (2, PRISM_SHARE + 0.01)))
    weak = _with_spectra((2, 0.9), (5, 0.8), (2, 0.3))  # k=2 still the largest share of the third, but not most
    assert dominant_frequencies(weak) == [2, 5, 2] and not is_pentagonal_prism(weak)
    assert not is_pentagonal_prism(_with_spectra((2, 0.9), (5, PRISM_SHARE), (2, 0.9)))  # exactly half is not most

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
    assert fig.axes[0].get_xlabel() == basis_axis_titles(pcas["A"])[0]  # the component, its share and its basis
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
    assert spec["title"]["subtitle"] == "noise puts 22% at each of k = 1…4 and 11% at parity"


# --------------------------------------------------------------------------- findings and the takeaway


def _findings(views, objects, prism_model="ICoT", **options) -> pd.DataFrame:
    variance = variance_frame({"ICoT": views, "SFT": views})
    table = table1_frame({"ICoT": fourier_table(objects), "SFT": fourier_table(objects)})
    spectrum = spectrum_frame({"ICoT": objects, "SFT": objects})
    rng = np.random.default_rng(5)
    pcas = {m: centroid_pca(_prism(rng) if m == prism_model else rng.normal(size=(10, 6))) for m in ("ICoT", "SFT")}
    chosen = {"ICoT": view_label(views[1]), "SFT": view_label(views[2])}
    return geometry_findings(variance, table, spectrum, pcas, chosen, **options)


def test_findings_numbers(views):
    objects = _objects(np.random.default_rng(6))
    findings = _findings(views, objects)
    assert findings.loc["ICoT", "c0_additive_share"] > 0.99 and findings.loc["ICoT", "c2_additive_share"] > 0.99
    assert findings.loc["SFT", "c2_additive_share"] < 0.1 and findings.loc["SFT", "c2_view"] == "layer 1 head 1 at c2"
    assert findings.loc["ICoT", "prism"] and not findings.loc["SFT", "prism"]
    assert findings.loc["ICoT", "prism_shares"][0] > 0.9
    assert findings.loc["ICoT", "chance"] == pytest.approx(5 / 9)
    assert findings.loc["ICoT", "frequencies"] == [0, 1, 2, 5]
    # Mean shares over the three objects: k=2 (0.41 + 0.41 + 0.95) / 3 clears 2 × 2/9; k=1 (0.59 + 0.59 + 0) / 3 does not.
    shares = spectrum_frame({"ICoT": objects}).pivot(index="object", columns="k", values="share")
    assert findings.loc["ICoT", "matter"] == [2] and findings.loc["ICoT", "top_k"] == 2
    assert findings.loc["ICoT", "top_share"] == pytest.approx(shares[2].mean())
    tied = _findings(views, objects, tied=["ICoT"])  # the unembedding is the embedding: counted once
    assert tied.loc["ICoT", "top_share"] == pytest.approx(shares[2].drop("unembedding").mean())
    assert tied.loc["SFT", "top_share"] == pytest.approx(shares[2].mean())


def test_noise_has_no_frequencies_that_matter():
    rng = np.random.default_rng(7)
    noise = {obj: rng.normal(size=(10, 12)) for obj in OBJECT_LABELS}
    spectrum = spectrum_frame({"N": noise})
    findings = geometry_findings(variance_frame({}), table1_frame({"N": fourier_table(noise)}), spectrum, {}, {})
    assert findings.loc["N", "matter"] == []
    mean = spectrum.groupby("k")[["share", "chance"]].mean()
    assert (mean["share"] > mean["chance"]).any()  # "above chance" alone would have called some of them matter


def test_additive_verdict_needs_structure_and_adjusts_for_parameters():
    """A weak Minkowski sum in noise is additive; pure noise gets no verdict; a pure interaction is not a sum."""
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 10, 1000), rng.integers(0, 10, 1000)
    f, g = rng.normal(size=(10, 6)), rng.normal(size=(10, 6))
    weak = variance_explained(f[a] + g[b] + rng.normal(size=(1000, 6)) * np.sqrt(3 * (f.var(0) + g.var(0))), a, b)
    assert 0.15 < weak.full < 0.35 and additive_verdict(weak.additive_share, weak.full) is True
    noise = variance_explained(rng.normal(size=(1000, 6)), a, b)
    assert noise.full < MIN_FULL and additive_verdict(noise.additive_share, noise.full) is None
    cells = rng.normal(size=(10, 10, 6))
    cells -= cells.mean(0, keepdims=True) + cells.mean(1, keepdims=True) - cells.mean((0, 1), keepdims=True)
    product = variance_explained(cells[a, b] + 0.1 * rng.normal(size=(1000, 6)), a, b)
    assert additive_verdict(product.additive_share, product.full) is False
    assert additive_verdict(float("nan"), 0.5) is None


def test_takeaway_when_icot_uses_the_papers_geometry(views):
    text = takeaway_markdown(_findings(views, _objects(np.random.default_rng(6))), unfinished=["SFT"], tied=["SFT"])
    assert "Our ICoT model uses the paper's geometry" in text
    assert "a Minkowski sum" in text and "not a pure sum" in text  # ICoT's head 0 vs SFT's head 1
    assert "**form the paper's pentagonal prism**" in text and "do not form" in text
    assert "where noise scores 0.56" in text and "fit the frequencies {0, 1, 2, 5}" in text
    assert "no verdict" not in text  # every view here has structure to judge
    assert "snapshot of a run still in training" in text and "same matrix" in text
    assert "The frequencies that matter for it: k=2" in text
    # The rules are stated from the constants the verdicts use.
    assert f"at least {MIN_FULL:.0%} of its variance" in text and f"more than {PRISM_SHARE:.0%}" in text
    assert f"at least {MATTERS_RATIO:g}× the share noise would give it" in text
    fewer = takeaway_markdown(_findings(views, _objects(np.random.default_rng(6)), frequencies=(0, 1, 2)))
    assert "fit the frequencies {0, 1, 2} with" in fewer and "where noise scores 0.44" in fewer


def test_takeaway_gives_no_verdict_without_structure(views):
    rng = np.random.default_rng(9)
    digits = _digits(rng, 400)
    noise = _view(rng, digits, rng.normal(size=(400, 5)), head=3)
    variance = variance_frame({"ICoT": [*views, noise]})
    findings = geometry_findings(variance, table1_frame({}), spectrum_frame({}), {}, {"ICoT": view_label(noise)})
    text = takeaway_markdown(findings)
    assert f"no verdict: every cell together explains less than {MIN_FULL:.0%}" in text
    assert "additive attention outputs in 1 of the 1 views with enough structure to judge" in text
    assert "(1 of the 2 views measured had too little)" in text


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
