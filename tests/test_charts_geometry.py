"""Unit tests of longmul.charts.geometry (chapter "Geometry": the nested-cluster views, PCA views with
brushing, the additive-model numbers, the pentagonal prism, Table 1, the frequency spectrum, the numbers
the chapter's prose is checked against, and the widget), on synthetic inputs with known structure."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("pandas", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("vl_convert", reason="needs the 'book' extra: pip install -e '.[book]'")

import numpy as np
import pandas as pd
import vl_convert

from longmul.analysis.fourier import CentroidPCA, basis_shares, centroid_pca, fourier_basis, fourier_table
from longmul.analysis.geometry import ActivationView, digit_pair_variance, pca, variance_explained
from longmul.charts.accuracy import COLUMN_WIDTH
from longmul.charts.evidence import limited_threads
from longmul.charts.geometry import (
    DIGIT_VALUE_COLORS,
    MIN_FULL,
    OBJECT_LABELS,
    OPERAND_DIGITS,
    PRISM_SHARE,
    additive_verdict,
    basis_axis_titles,
    csv_data,
    digit_value_cmap,
    digit_value_scale,
    dominant_frequencies,
    geometry_findings,
    head_for_pair,
    ideal_prism,
    is_pentagonal_prism,
    minkowski_chart,
    minkowski_frame,
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
    spectrum_frame,
    spectrum_heatmap,
    table1,
    table1_chart,
    table1_frame,
    variance_chart,
    variance_frame,
    variance_table,
    view_label,
)
from longmul.charts.geometry_explorer import KERNEL_HINT, geometry_explorer
from longmul.model import build_model, model_config_from_preset

BASIS, NAMES = fourier_basis()
ROW = {name: BASIS[i] * np.sqrt(10) for i, name in enumerate(NAMES)}  # unit-amplitude basis functions


def _compiles(chart) -> dict:
    """The chart's vega-lite spec, after checking that vega-lite compiles it and that, drawn, it fits the
    book's text column with every axis, legend and header label at 11 px or more."""
    spec = chart.to_dict()
    vl_convert.vegalite_to_vega(spec)
    assert _drawn_width(spec) <= COLUMN_WIDTH
    config = spec.get("config", {})
    for part in ("axis", "legend"):
        assert config.get(part, {}).get("labelFontSize", 10) >= 11, f"{part} labels under 11 px"
    return spec


def _drawn_width(spec: dict) -> float:
    """The width in pixels of the chart as vega draws it, legends and titles included."""
    svg = vl_convert.vegalite_to_svg(spec)
    return float(svg.split('width="', 1)[1].split('"', 1)[0])


def _lit_by(panel: dict) -> str:
    """The selection parameter a panel's opacity condition follows."""
    condition = panel["encoding"]["opacity"]["condition"]
    return (condition[0] if isinstance(condition, list) else condition)["param"]


def _rows(spec: dict, data: dict) -> list[dict]:
    """The rows of an inline dataset, JSON or CSV."""
    values = spec["datasets"][data["name"]]
    if isinstance(values, str):
        return pd.read_csv(io.StringIO(values), dtype=str).to_dict("records")
    return values


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
    assert spec["usermeta"]["embedOptions"]["renderer"] == "canvas"
    params = {p["name"]: p for p in spec["params"]}
    assert params["view"]["value"] == 1 and params["view"]["bind"]["labels"] == ["M · a", "M · b"]
    assert params["colour_by"]["value"] == "a1" and params["colour_by"]["bind"]["options"] == OPERAND_DIGITS
    brush = params["brush"]
    assert brush["select"]["type"] == "interval" and brush["views"] == ["pc12", "pc13", "pc23"]
    scatter = spec["vconcat"][1]
    panels = scatter["hconcat"]
    assert [p["name"] for p in panels] == ["pc12", "pc13", "pc23"]
    assert all(_lit_by(p) == "brush" for p in panels)
    assert panels[0]["encoding"]["color"]["scale"]["range"] == DIGIT_VALUE_COLORS
    assert {"calculate": "toString(datum[colour_by])", "as": "digit"} in scatter["transform"]
    assert "PC1 " in spec["datasets"][spec["vconcat"][0]["data"]["name"]][0]["text"]
    values = _rows(spec, scatter["data"])
    assert len(values) == 80 and "view" not in values[0] and {v["v"] for v in values} == {"0", "1"}
    # Coordinates travel as integers, one scale per view: the largest |coordinate| of each view is 999.
    for v in ("0", "1"):
        coords = np.array([[int(r[c]) for c in ("pc1", "pc2", "pc3")] for r in values if r["v"] == v])
        assert np.abs(coords).max() == 999
    first = df[df["view"] == "M · a"]
    drawn = np.array([[int(r[c]) for c in ("pc1", "pc2", "pc3")] for r in values if r["v"] == "0"])
    np.testing.assert_allclose(
        drawn / 999, first[["pc1", "pc2", "pc3"]] / first[["pc1", "pc2", "pc3"]].abs().max().max(), atol=1e-3
    )


def test_pca_brush_chart_without_views():
    _compiles(pca_brush_chart(pca_frame({})))


def test_nesting_figure_colours_one_view_by_b_then_a(views):
    fig = nesting_figure({"M · head 0": views[1], "M · head 2": views[3]}, ("a1", "b1"), max_points=50, seed=0)
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == 4 and len(fig.axes) == 5  # two rows of two panels, one colour bar
    assert [ax.get_title() for ax in panels[:2]] == [
        "M · head 0\ncoloured by b1",
        "M · head 0\ncoloured by a1",
    ]
    assert panels[2].get_title() == "M · head 2\ncoloured by b1"
    ratio = views[1].explained_variance_ratio
    assert [panels[0].get_xlabel(), panels[0].get_ylabel(), panels[0].get_zlabel()] == [
        f"PC{i + 1} ({ratio[i]:.0%})" for i in range(3)
    ]
    keep = np.sort(np.random.default_rng(0).permutation(len(views[1].coords))[:50])
    for ax, digit in zip(panels[:2], ("b1", "a1")):
        (points,) = ax.collections
        np.testing.assert_array_equal(points.get_array(), views[1].digits[digit][keep])
        assert points.get_cmap().name == "longmul_digits"
    one = nesting_figure({"M": views[1]}, ("a1", "b1"))
    assert png_bytes(one)[:4] == b"\x89PNG" and one.get_size_inches()[0] * 100 <= 752  # the text column at 100 dpi
    assert png_bytes(nesting_figure({}, ("a1", "b1")), dpi=20)[:4] == b"\x89PNG"


def test_one_colour_per_digit_value_everywhere():
    """altair's scale and matplotlib's colormap give digit n the same colour, and no two digits share one."""
    assert len(set(DIGIT_VALUE_COLORS)) == 10
    scale = digit_value_scale().to_dict()
    assert scale["domain"] == [str(d) for d in range(10)] and scale["range"] == DIGIT_VALUE_COLORS
    cmap = digit_value_cmap()
    from matplotlib.colors import Normalize, to_hex

    norm = Normalize(vmin=-0.5, vmax=9.5)  # as every figure here draws digits
    assert [to_hex(cmap(norm(d))) for d in range(10)] == DIGIT_VALUE_COLORS


def test_csv_data_parses_only_the_numbers_asked_for():
    data = csv_data(pd.DataFrame({"v": [0, 1], "x": [-3, 4], "a": [7, 8]}), numbers=["v", "x"])
    assert data.values == "v,x,a\n0,-3,7\n1,4,8\n"
    assert data.format.to_dict() == {"type": "csv", "parse": {"v": "number", "x": "number"}}
    assert "parse" not in csv_data(pd.DataFrame({"a": [1]})).format.to_dict()


def test_minkowski_frame_and_chart(views):
    by_model = {"M": {0: views[0], 2: views[1]}, "N": {2: views[3]}}
    df = minkowski_frame(by_model, max_points=60, seed=0)
    assert len(df) == 3 * 60 and list(dict.fromkeys(df["model"])) == ["M", "N"]
    keep = np.sort(np.random.default_rng(0).permutation(400)[:60])
    c2 = df[(df["model"] == "M") & (df["k"] == 2)]
    np.testing.assert_array_equal(c2["a"], views[1].digits["a1"][keep])  # the pair of c2 is a1·b1
    np.testing.assert_array_equal(c2["b"], views[1].digits["b1"][keep])
    c0 = df[(df["model"] == "M") & (df["k"] == 0)]
    np.testing.assert_array_equal(c0["b"], views[0].digits["b0"][keep])  # and of c0, a0·b0
    assert c2["view"].iloc[0] == "layer 1 head 0 at c2" and c2["ev1"].iloc[0] == pytest.approx(
        views[1].explained_variance_ratio[0]
    )
    assert np.abs(c2[["x", "y", "z"]].to_numpy()).max() == 999
    assert minkowski_frame({}).empty

    spec = _compiles(minkowski_chart(df))
    assert spec["usermeta"] == {"embedOptions": {"renderer": "canvas"}}  # thousands of points: a canvas
    params = {p["name"]: p for p in spec["params"]}
    assert params["model"]["bind"]["labels"] == ["M", "N"] and params["position"]["value"] == 2
    assert params["position"]["bind"]["options"] == [2, 0]
    assert params["position"]["bind"]["labels"][0] == "predicting c2, coloured by b1 and a1"
    assert params["brush"]["views"] == ["pc12b", "pc13b", "pc23b", "pc12a", "pc13a", "pc23a"]
    assert all(_lit_by(p) == "brush" for row in spec["vconcat"] for p in row.get("hconcat", []))
    rows = [part for part in spec["vconcat"] if "hconcat" in part]
    assert len(rows) == 2
    for row, digit in zip(rows, ("b", "a")):  # top: the clusters (b digit), bottom: the sub-clusters (a digit)
        assert {p["encoding"]["color"]["field"] for p in row["hconcat"]} == {digit}
        assert all(p["encoding"]["color"]["scale"]["range"] == DIGIT_VALUE_COLORS for p in row["hconcat"])
        assert row["transform"] == [{"filter": "(datum.v === ((model * 10) + position))"}]
    points = _rows(spec, spec["data"])
    assert len(points) == len(df) and set(points[0]) == {"v", "x", "y", "z", "a", "b"}  # only what is drawn
    assert {p["v"] for p in points} == {"0", "2", "12"}  # 10 · model + k
    captions = [part for part in spec["vconcat"] if "mark" in part]
    texts = {r["top"] for r in spec["datasets"][captions[1]["data"]["name"]]}
    assert texts == {"coloured by b1", "coloured by b0"}
    _compiles(minkowski_chart(minkowski_frame({})))


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
    circles = spec["vconcat"][0]["hconcat"][0]["layer"][2]["encoding"]["color"]
    assert circles["field"] == "value" and circles["scale"]["range"] == DIGIT_VALUE_COLORS  # each digit its colour
    fig = prism_figure(pcas)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "A"
    assert fig.axes[0].get_xlabel() == basis_axis_titles(pcas["A"])[0]  # the component, its share and its basis
    four = prism_figure(pcas | {"C": pcas["A"], "D": pcas["B"]})
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in four.axes] == [(2, 2)] * 4  # two per row
    assert four.get_size_inches()[0] * 100 <= 752
    small = prism_figure({"A": pcas["A"]}, width=2.0)
    assert png_bytes(small, dpi=30)[:8] == b"\x89PNG\r\n\x1a\n"


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


# --------------------------------------------------------------------------- the numbers the chapter checks its prose against


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
        assert widget.children[2].value == KERNEL_HINT and "Needs a running kernel" in KERNEL_HINT
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
