"""Charts, tables and the numbers behind the chapter "Geometry" (Minkowski sums in layer-1 attention
heads, digits in a Fourier basis: the paper's Figs. 5 and 6 and Table 1, FACTS §5.4–5.5).

The inputs are the results of :mod:`longmul.analysis.geometry` (:class:`ActivationView` from
:func:`minkowski_views`) and :mod:`longmul.analysis.fourier` (the digit-indexed objects of
:func:`digit_vectors`, the rows of :func:`fourier_table`, :class:`CentroidPCA`). The frame builders turn
them into tidy ``pandas.DataFrame`` objects; the altair charts' interaction (view and colour selectors,
linked brushing across pairs of principal components, hover) runs in the browser, so it works on the
book's static site without a kernel. :func:`longmul.charts.geometry_explorer.geometry_explorer` is the
Jupyter-only counterpart: an ipywidget that recomputes the PCA for any layer, head, position and
colouring digit. :func:`geometry_findings` gathers the numbers the chapter's prose and its checks use;
the prose itself is written in the chapter.

Every chart colours a digit's *value* (0–9) with :data:`DIGIT_VALUE_COLORS`, in altair and matplotlib
alike, fits the book's text column (:data:`longmul.charts.accuracy.COLUMN_WIDTH`, legends included)
and draws no text under 11 px (:func:`longmul.charts.accuracy.readable`).

Layers are counted from 1 in every label, as in the paper (``blocks.0`` is "layer 1"); heads keep the
code's index from 0, as in :func:`longmul.charts.evidence.site_label`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from longmul.analysis.fourier import (
    DEFAULT_FREQUENCIES,
    N_DIGITS,
    CentroidPCA,
    basis_shares,
    chance_r2,
    pooled_r2,
)
from longmul.analysis.geometry import ActivationView
from longmul.charts.accuracy import readable
from longmul.charts.frames import round_floats
from longmul.charts.heatmap import annotated_heatmap

# The operand-digit pair measured at each position. At c2 it is the paper's (FACTS §5.4: one layer-1 head's
# output coloured by b1, then a1). At c0 the paper colours by b0 only; pairing it with a0 (c0 = a0·b0 mod 10,
# so a0 is its partner) is the book's choice.
PAPER_PAIRS: dict[int, tuple[str, str]] = {0: ("a0", "b0"), 2: ("a1", "b1")}

OPERAND_DIGITS = [f"a{i}" for i in range(4)] + [f"b{j}" for j in range(4)]
# additive / full (adjusted shares) from which we call a view's (a_i, b_j) structure a Minkowski sum
ADDITIVE_SHARE = 0.9
# The adjusted share every (a_i, b_j) cell together must explain before a view gets any verdict: below it the
# pair organises too little of the view for additive / full to mean anything (noise scores about 0).
MIN_FULL = 0.05
# A frequency "matters" when its mean share over the digit-indexed objects is at least this many times the
# share noise would give it: the shares add up to 1, so noise alone puts about half the frequencies above 1×.
MATTERS_RATIO = 2.0
# A centroid component is "carried mostly" by a frequency when that frequency has more than this share of it.
PRISM_SHARE = 0.5
MEASURES = {
    "a": "a_i alone",
    "b": "b_j alone",
    "additive": "additive f(a_i) + g(b_j)",
    "full": "every (a_i, b_j) cell",
}
MEASURE_COLORS = ["#9ecae9", "#f58518", "#4c78a8", "#bab0ac"]
OBJECT_LABELS = {  # short enough for a heatmap's row labels within the text column
    "embedding": "embeddings W_E",
    "unembedding": "unembeddings W_U",
    "mlp_out_embedding": "layer-2 MLP out · W_E",
    "final_hidden": "final hidden (mean at c2)",
    "final_hidden_unembedding": "final hidden · W_U",
}
# One colour per digit value 0–9 (vega's "tableau10" written out, so that the altair charts and the
# matplotlib figures draw digit n in the same colour). Output *positions* c0 … c7 have their own colours
# (longmul.charts.dynamics.DIGIT_COLORS): a value and a position are different things.
DIGIT_VALUE_COLORS = [
    "#4c78a8",
    "#f58518",
    "#e45756",
    "#72b7b2",
    "#54a24b",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
]
# The prism's two pentagons are drawn in greys, so that colour stays with the digits' values.
PARITY_COLORS = {"even": "#404040", "odd": "#a0a0a0"}
# Digits in the order of their angle at frequency k=2 (2πn/5): the pentagon of the even and of the odd
# digits; digits n and n+5 share that angle and differ in parity: the prism's rungs.
PENTAGONS = {"even": [0, 6, 2, 8, 4], "odd": [5, 1, 7, 3, 9]}
RUNGS = [(n, n + 5) for n in range(5)]


def _models_in(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["model"])) if len(df) else []


# --------------------------------------------------------------------------- views and labels


def view_label(view: ActivationView) -> str:
    """A reader's name for a PCA view, layers counted from 1: "layer 1 attention output at c0",
    "layer 1 head 2 at c2" (at the position predicting c_k)."""
    layer = int(view.site.split(".")[1]) + 1
    what = "attention output" if view.head is None else f"head {view.head}"
    return f"layer {layer} {what} at c{view.k}"


def pair_variance(view: ActivationView, pair: tuple[str, str]) -> dict:
    """The :func:`~longmul.analysis.geometry.digit_pair_variance` row of ``view`` for ``pair`` (a_i, b_j)."""
    for row in view.variance:
        if (row["a_digit"], row["b_digit"]) == tuple(pair):
            return row
    raise ValueError(f"{view_label(view)} has no variance row for {pair}")


def head_for_pair(views: Sequence[ActivationView], k: int, pair: tuple[str, str]) -> ActivationView:
    """Among the per-head views at position ``k``, the head that carries *both* digits of ``pair`` most:
    the largest ``min(a alone, b alone)``. The paper shows one head without saying how it was chosen. The
    separate shares are the two digits' main effects, the additive part of the structure, so this choice
    favours heads with main effects of both digits: a head that carries only their interaction (separate
    shares about 0) is never chosen."""
    heads = [v for v in views if v.k == k and v.head is not None]
    if not heads:
        raise ValueError(f"no per-head view at position {k}")
    return max(heads, key=lambda v: min(pair_variance(v, pair)["a"], pair_variance(v, pair)["b"]))


# vega-embed options a chart carries in its own spec (``usermeta.embedOptions``, which vega-embed merges
# into the page's): charts of thousands of points draw on a canvas, not as thousands of SVG nodes, so the
# page loads and brushing stays quick.
MANY_POINTS = {"embedOptions": {"renderer": "canvas"}}


def digit_value_scale() -> alt.Scale:
    """The altair colour scale of digit values "0" … "9" (:data:`DIGIT_VALUE_COLORS`); the values are
    strings, as a nominal field parsed from CSV is."""
    return alt.Scale(domain=[str(d) for d in range(N_DIGITS)], range=DIGIT_VALUE_COLORS)


def digit_value_cmap():
    """The matplotlib colormap of the same colours: draw with ``vmin=-0.5, vmax=9.5`` so that value n
    falls in the n-th colour."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(DIGIT_VALUE_COLORS, name="longmul_digits")


def _scaled(coords: np.ndarray, top: int = 999) -> np.ndarray:
    """PCA coordinates (N, 3) as integers in ``-top … top``, one factor for all three components (their
    relative spread is kept): the chart only needs their shape, and integers keep the page light."""
    peak = float(np.abs(coords).max()) if coords.size else 0.0
    return np.rint(coords * (top / peak if peak > 0 else 0.0)).astype(int)


def csv_data(df: pd.DataFrame, numbers: Sequence[str] = ()) -> alt.InlineData:
    """``df`` as inline CSV for a chart: a third of the bytes of altair's JSON rows, for charts of many
    points. Columns in ``numbers`` are parsed as numbers in the browser, the others stay strings."""
    return alt.InlineData(
        values=df.to_csv(index=False, lineterminator="\n"),
        format=alt.CsvDataFormat(type="csv", parse={c: "number" for c in numbers} or alt.Undefined),
    )


# --------------------------------------------------------------------------- the hero: nested clusters


def minkowski_frame(
    views: Mapping[str, Mapping[int, ActivationView]],
    pairs: Mapping[int, tuple[str, str]] = PAPER_PAIRS,
    *,
    max_points: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """The points of each model's view at each position (``views``: model → {k: view}), coloured by that
    position's pair (:data:`PAPER_PAIRS`: a0·b0 at c0, a1·b1 at c2): one row per drawn problem with
    ``model, k, x, y, z`` (the view's first three principal components, as :func:`_scaled` integers),
    ``a, b`` (the pair's two digits), and the view's label and share of variance per component ``view,
    ev1 … ev3``. At most ``max_points`` problems per view, the same random subset for every view."""
    frames = []
    for model, by_k in views.items():
        for k, view in by_k.items():
            a_digit, b_digit = pairs[k]
            n = len(view.coords)
            keep = np.sort(np.random.default_rng(seed).permutation(n)[: min(max_points, n)])
            xyz = _scaled(view.coords[keep, :3])  # (points, 3)
            part = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
            part["a"], part["b"] = view.digits[a_digit][keep].astype(int), view.digits[b_digit][keep].astype(int)
            part.insert(0, "k", int(k))
            part.insert(0, "model", model)
            part["view"] = view_label(view)
            for i, r in enumerate(view.explained_variance_ratio[:3]):
                part[f"ev{i + 1}"] = float(r)
            frames.append(part)
    columns = ["model", "k", "x", "y", "z", "a", "b", "view", "ev1", "ev2", "ev3"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def minkowski_chart(
    df: pd.DataFrame,
    pairs: Mapping[int, tuple[str, str]] = PAPER_PAIRS,
    *,
    default_k: int = 2,
    size: int = 180,
    point_size: float = 14,
) -> alt.VConcatChart:
    """The nesting the paper's Fig. 5 shows, as three projections of one view: PC1–PC2, PC1–PC3 and
    PC2–PC3, the top row coloured by the b digit of the position's pair (the clusters), the bottom row
    the same points coloured by its a digit (the sub-clusters inside each). Drop-downs pick the model and
    the position; dragging a rectangle in any panel keeps the same problems lit in all six (double-click
    clears). One line above the panels names the view and its components' shares of variance.

    ``df``: :func:`minkowski_frame`. The points travel as CSV (:func:`csv_data`): thousands of them per view
    stay light on the page."""
    models = list(dict.fromkeys(df["model"])) if len(df) else []
    ks = sorted({int(k) for k in df["k"]}, key=lambda k: (k != default_k, k)) if len(df) else [default_k]
    codes = {m: i for i, m in enumerate(models)}
    points = df[["model", "k", "x", "y", "z", "a", "b"]].copy()
    points["v"] = points.pop("model").map(codes) * 10 + points.pop("k")  # one column names the view: 10·model + k
    points = points[["v", "x", "y", "z", "a", "b"]]

    model = alt.param(
        name="model",
        value=0,
        bind=alt.binding_select(
            options=list(range(len(models))) or [0], labels=models or ["(no model)"], name="model: "
        ),
    )
    position = alt.param(
        name="position",
        value=ks[0],
        bind=alt.binding_select(
            options=ks,
            labels=[f"predicting c{k}, coloured by {' and '.join(reversed(pairs[k]))}" for k in ks],
            name="position: ",
        ),
    )
    chosen = alt.datum.v == model * 10 + position
    panels_of = {("x", "y"): "pc12", ("x", "z"): "pc13", ("y", "z"): "pc23"}
    titles = {"x": "PC1", "y": "PC2", "z": "PC3"}
    names = [f"{name}{digit}" for digit in ("b", "a") for name in panels_of.values()]
    brush = alt.TopLevelSelectionParameter(
        name="brush", select=alt.IntervalSelectionConfig(type="interval", resolve="global"), views=names
    )
    lit = alt.when({"param": "brush"}).then(alt.value(0.7)).otherwise(alt.value(0.04))

    def row(digit: str) -> alt.HConcatChart:
        panels = []
        for (x, y), name in panels_of.items():
            panels.append(
                alt.Chart(name=f"{name}{digit}")
                .mark_circle(size=point_size)
                .encode(
                    x=alt.X(f"{x}:Q", title=titles[x], axis=alt.Axis(labels=False, ticks=False, titleFontSize=11)),
                    y=alt.Y(f"{y}:Q", title=titles[y], axis=alt.Axis(labels=False, ticks=False, titleFontSize=11)),
                    color=alt.Color(
                        f"{digit}:N",
                        scale=digit_value_scale(),
                        title="digit",
                        legend=alt.Legend(orient="right", labelFontSize=11, titleFontSize=11),
                    ),
                    opacity=lit,
                    tooltip=[alt.Tooltip("a:N", title="a digit"), alt.Tooltip("b:N", title="b digit")],
                )
                .properties(width=size, height=size)
            )
        return alt.hconcat(*panels, spacing=8).transform_filter(chosen)

    summary = (
        df.groupby(["model", "k"], sort=False)[["view", "ev1", "ev2", "ev3"]].first().reset_index()
        if len(df)
        else pd.DataFrame(columns=["model", "k", "view", "ev1", "ev2", "ev3"])
    )
    summary["v"] = summary["model"].map(codes) * 10 + summary["k"]
    summary["caption"] = [
        f"{r.model}, {r.view}: PC1 {r.ev1:.0%}, PC2 {r.ev2:.0%}, PC3 {r.ev3:.0%} of its variance"
        for r in summary.itertuples()
    ]
    summary["top"] = [f"coloured by {pairs[int(k)][1]}" for k in summary["k"]]
    summary["bottom"] = [f"the same points, coloured by {pairs[int(k)][0]}" for k in summary["k"]]
    summary = summary[["v", "caption", "top", "bottom"]]

    def heading(field: str, weight: str) -> alt.Chart:
        return (
            alt.Chart(summary)
            .mark_text(align="left", baseline="middle", fontSize=12, fontWeight=weight)
            .encode(x=alt.value(0), y=alt.value(8), text=f"{field}:N")
            .transform_filter(chosen)
            .properties(width=3 * size + 16, height=16, view=alt.ViewBackground(stroke=None))
        )

    chart = alt.vconcat(
        heading("caption", "normal"),
        heading("top", "bold"),
        row("b"),
        heading("bottom", "bold"),
        row("a"),
        spacing=4,
        data=csv_data(points, numbers=["v", "x", "y", "z"]),
    )
    chart = chart.add_params(model, position).resolve_scale(color="shared")
    chart.params = [*chart.params, brush]
    return readable(
        chart.properties(
            usermeta=MANY_POINTS,
            title=alt.Title(
                "Layer-1 attention outputs on their first three principal components",
                subtitle="drag in any panel to light the same problems in all six; double-click to clear",
                anchor="start",
            ),
        )
    )


# --------------------------------------------------------------------------- PCA scatter with brushing


def pca_frame(views: Mapping[str, ActivationView], max_points: int = 600, seed: int = 0) -> pd.DataFrame:
    """The points of several PCA views as rows (``views``: label → view): ``view``, ``pc1 … pc3``, the
    operand digits ``a0 … b3`` and each view's share of variance per component ``ev1 … ev3``. At most
    ``max_points`` problems per view (the same random subset for every view over the same problems): the
    page draws them, the numbers elsewhere use them all."""
    frames = []
    for label, view in views.items():
        n = len(view.coords)
        keep = np.sort(np.random.default_rng(seed).permutation(n)[: min(max_points, n)])
        part = {"view": label}
        part |= {f"pc{i + 1}": view.coords[keep, i] for i in range(min(3, view.coords.shape[1]))}
        part |= {name: view.digits[name][keep].astype(int) for name in OPERAND_DIGITS if name in view.digits}
        part |= {f"ev{i + 1}": float(r) for i, r in enumerate(view.explained_variance_ratio[:3])}
        frames.append(pd.DataFrame(part))
    columns = ["view", "pc1", "pc2", "pc3", *OPERAND_DIGITS, "ev1", "ev2", "ev3"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def pca_brush_chart(
    df: pd.DataFrame,
    *,
    default_view: str | None = None,
    default_colour: str = "b0",
    colours: Sequence[str] = OPERAND_DIGITS,
    title: str = "Attention outputs on their first three principal components",
    size: int = 170,
) -> alt.VConcatChart:
    """Three scatter panels of one PCA view (PC1–PC2, PC1–PC3, PC2–PC3), the points coloured by one
    operand digit. Drop-downs pick the view and the colouring digit; drag a rectangle in any panel to
    select points, and the same problems are highlighted in the other two (linked brushing; double-click
    to clear). A line above the panels gives each component's share of the view's variance.

    ``df``: :func:`pca_frame` (``view``, ``pc1 … pc3``, digit columns, optionally ``ev1 … ev3``)."""
    views = list(dict.fromkeys(df["view"])) if len(df) else []
    codes = {label: i for i, label in enumerate(views)}
    colours = [c for c in colours if c in df.columns] or list(colours)
    if default_colour not in colours:
        default_colour = colours[0]
    default = codes.get(default_view, 0)
    points = df[["view", "pc1", "pc2", "pc3", *[c for c in colours if c in df.columns]]].copy()
    xyz = points[["pc1", "pc2", "pc3"]].to_numpy(float)  # (rows, 3)
    scaled = np.zeros(xyz.shape, dtype=int)
    for rows in points.groupby("view", sort=False).indices.values():  # integers per view, as the hero chart's
        scaled[rows] = _scaled(xyz[rows])
    points[["pc1", "pc2", "pc3"]] = scaled
    points.insert(0, "v", points.pop("view").map(codes))

    view = alt.param(
        name="view",
        value=default,
        bind=alt.binding_select(options=list(range(len(views))) or [0], labels=views or ["(no view)"], name="view: "),
    )
    colour = alt.param(
        name="colour_by",
        value=default_colour,
        bind=alt.binding_select(options=list(colours), name="colour by digit: "),
    )
    names = {("pc1", "pc2"): "pc12", ("pc1", "pc3"): "pc13", ("pc2", "pc3"): "pc23"}
    brush = alt.TopLevelSelectionParameter(
        name="brush",
        select=alt.IntervalSelectionConfig(type="interval", resolve="global"),
        views=list(names.values()),
    )
    digit_colour = alt.Color(
        "digit:N", scale=digit_value_scale(), title="digit", legend=alt.Legend(orient="right", labelFontSize=11)
    )
    panels = []
    for (x, y), name in names.items():
        panels.append(
            alt.Chart(name=name)
            .mark_circle(size=14)
            .encode(
                x=alt.X(f"{x}:Q", title=x.upper(), axis=alt.Axis(labels=False, ticks=False, titleFontSize=11)),
                y=alt.Y(f"{y}:Q", title=y.upper(), axis=alt.Axis(labels=False, ticks=False, titleFontSize=11)),
                color=digit_colour,
                opacity=alt.when({"param": "brush"}).then(alt.value(0.75)).otherwise(alt.value(0.05)),
                tooltip=[alt.Tooltip("digit:N", title="colouring digit"), *[alt.Tooltip(f"{c}:N") for c in colours]],
            )
            .properties(width=size, height=size)
        )
    scatter = (
        alt.hconcat(*panels, data=csv_data(points, numbers=["v", "pc1", "pc2", "pc3"]))
        .transform_filter(alt.datum.v == view)
        .transform_calculate(digit=f"toString(datum[{colour.name}])")
    )
    if {"ev1", "ev2", "ev3"} <= set(df.columns) and len(df):
        summary = df.groupby("view", sort=False)[["ev1", "ev2", "ev3"]].first().reset_index()
        summary["v"] = summary["view"].map(codes)
        summary["text"] = [
            f"share of this view's variance: PC1 {r.ev1:.0%}, PC2 {r.ev2:.0%}, PC3 {r.ev3:.0%} "
            f"(together {r.ev1 + r.ev2 + r.ev3:.0%})"
            for r in summary.itertuples()
        ]
        caption = (
            alt.Chart(summary[["v", "text"]])
            .mark_text(align="left", baseline="middle", fontSize=11)
            .encode(x=alt.value(0), y=alt.value(8), text="text:N")
            .transform_filter(alt.datum.v == view)
            .properties(width=3 * size, height=16, view=alt.ViewBackground(stroke=None))
        )
        chart = alt.vconcat(caption, scatter)
    else:
        chart = alt.vconcat(scatter)
    chart = chart.add_params(view, colour).properties(
        usermeta=MANY_POINTS,
        title=alt.Title(
            title, subtitle="drag in any panel to highlight the same problems in all three; double-click to clear"
        ),
    )
    chart.params = [*chart.params, brush]
    return readable(chart)


def nesting_figure(
    views: Mapping[str, ActivationView],
    pair: tuple[str, str],
    *,
    max_points: int = 5000,
    seed: int = 0,
    width: float = 7.4,
    point_size: float = 9,
):
    """A static matplotlib figure of the nesting the paper's Fig. 5 shows: one row per view (``views``:
    label → view), its points on their first three principal components twice, coloured by the b digit of
    ``pair`` (the clusters) and by its a digit (the sub-clusters inside each), in the book's digit colours
    (:data:`DIGIT_VALUE_COLORS`). ``width`` in inches: 7.4 draws 740 px at 100 dpi, the text column. Axes
    give each component and its share of the view's variance. At most ``max_points`` problems per view
    (the same subset as :func:`pca_frame` and :func:`minkowski_frame` draw)."""
    from matplotlib.figure import Figure

    a_digit, b_digit = pair
    labels = list(views)
    n = max(1, len(labels))
    fig = Figure(figsize=(width, 0.5 * width * n))
    fig.subplots_adjust(left=0.0, right=0.88, bottom=0.0, top=1 - 0.1 / n, wspace=0.05, hspace=0.1)
    cmap = digit_value_cmap()
    points = None
    for row, label in enumerate(labels or [None]):
        for column, digit in enumerate((b_digit, a_digit)):
            ax = fig.add_subplot(n, 2, 2 * row + column + 1, projection="3d")
            ax.set_box_aspect(None, zoom=0.95)
            if label is None:
                ax.text2D(0.5, 0.5, "no view", ha="center", transform=ax.transAxes)
                continue
            view = views[label]
            keep = np.sort(np.random.default_rng(seed).permutation(len(view.coords))[:max_points])
            xyz = view.coords[keep, :3]  # (points, 3)
            points = ax.scatter(
                *xyz.T,
                c=view.digits[digit][keep],
                cmap=cmap,
                vmin=-0.5,
                vmax=9.5,
                s=point_size,
                alpha=0.75,
                linewidths=0,
                depthshade=False,
            )
            for i, axis in enumerate((ax.xaxis, ax.yaxis, ax.zaxis)):
                axis.set_label_text(f"PC{i + 1} ({view.explained_variance_ratio[i]:.0%})", fontsize=10)
                axis.labelpad = -10
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            ax.set_title(f"{label}\ncoloured by {digit}", fontsize=11, pad=0)
            ax.view_init(elev=20, azim=-60)
    if points is not None:
        bar = fig.colorbar(points, ax=fig.axes, ticks=range(10), shrink=0.7, fraction=0.035, pad=0.05)
        bar.set_label("digit", fontsize=11)
        bar.ax.tick_params(labelsize=10)
    return fig


# --------------------------------------------------------------------------- the additive-model numbers


def variance_frame(views_by_model: Mapping[str, Sequence[ActivationView]]) -> pd.DataFrame:
    """Every view's variance decomposition for every operand pair, one row per (model, view, pair):
    ``model, view, site, head, k, pair, a_digit, b_digit, a, b, additive, full, interaction,
    additive_share`` (see :func:`longmul.analysis.geometry.variance_explained`)."""
    rows = []
    for model, views in views_by_model.items():
        for view in views:
            for row in view.variance:
                rows.append(
                    {
                        "model": model,
                        "view": view_label(view),
                        "site": view.site,
                        "head": -1 if view.head is None else int(view.head),
                        "k": int(view.k),
                        "pair": f"{row['a_digit']}·{row['b_digit']}",
                        **row,
                    }
                )
    columns = [
        "model",
        "view",
        "site",
        "head",
        "k",
        "pair",
        "a_digit",
        "b_digit",
        *MEASURES,
        "interaction",
        "additive_share",
    ]
    return pd.DataFrame(rows, columns=columns)


def paper_pairs(df: pd.DataFrame, pairs: Mapping[int, tuple[str, str]] = PAPER_PAIRS) -> pd.DataFrame:
    """The rows of :func:`variance_frame` for the pair measured at each position (:data:`PAPER_PAIRS`:
    a0·b0 at c0, a1·b1 at c2)."""
    keep = [pairs.get(int(k)) == (a, b) for k, a, b in zip(df["k"], df["a_digit"], df["b_digit"])]
    return df[np.asarray(keep, dtype=bool)].reset_index(drop=True)


def variance_table(df: pd.DataFrame, views: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The additive-model numbers for the paper's pairs as a table: one row per (model, view), columns
    the pair and the shares of variance (as percentages) explained by a_i alone, b_j alone, the additive
    model, every cell, and additive / full. ``views``: the (model, view) rows to keep, in order."""
    data = paper_pairs(df).set_index(["model", "view"])
    if views is not None:
        data = data.loc[[v for v in views if v in data.index]]
    table = pd.DataFrame(index=data.index)
    table["pair"] = data["pair"]
    for measure, label in MEASURES.items():
        table[label] = data[measure].map("{:.1%}".format)
    table["additive / full"] = data["additive_share"].map("{:.2f}".format)
    return table


def variance_chart(
    df: pd.DataFrame,
    *,
    title: str = "Share of each view's variance explained by two operand digits",
    width: int = 260,
) -> alt.FacetChart:
    """Grouped bars, one group per view and one panel per model: the share of the view's variance that
    a_i alone, b_j alone, the additive model f(a_i) + g(b_j) and the full model (every (a_i, b_j) cell its
    own mean) explain, each adjusted for the parameters it fits. A drop-down picks the pair, by default
    :data:`PAPER_PAIRS`.
    A Minkowski sum has the additive bar as long as the full one.

    ``df``: :func:`variance_frame`."""
    columns = ["model", "view", "pair", *MEASURES]
    paper = paper_pairs(df)[columns].copy()
    paper["pair"] = "paper"
    data = round_floats(pd.concat([paper, df[columns]], ignore_index=True), 3)
    data = data.rename(columns=MEASURES)
    pairs = ["paper"] + [f"{a}·{b}" for a in OPERAND_DIGITS[:4] for b in OPERAND_DIGITS[4:]]
    views = list(dict.fromkeys(df["view"])) if len(df) else []
    models = _models_in(df)
    pick = alt.param(
        name="pair",
        value=pairs[0],
        bind=alt.binding_select(
            options=pairs, labels=["default (a0·b0 at c0, a1·b1 at c2)", *pairs[1:]], name="digit pair: "
        ),
    )
    labels = list(MEASURES.values())
    return readable(
        alt.Chart(data)
        .transform_filter(alt.datum.pair == pick)
        .transform_fold(labels, as_=["measure", "share"])
        .mark_bar()
        .encode(
            y=alt.Y("view:N", sort=views, title=None),
            yOffset=alt.YOffset("measure:N", sort=labels),
            x=alt.X(
                "share:Q",
                title="share of variance (adjusted for each model's parameters)",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color(
                "measure:N",
                sort=labels,
                scale=alt.Scale(domain=labels, range=MEASURE_COLORS),
                title="explained by",
                legend=alt.Legend(orient="bottom", columns=2, labelLimit=300),
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("view:N"),
                alt.Tooltip("pair:N"),
                alt.Tooltip("measure:N", title="explained by"),
                alt.Tooltip("share:Q", title="share (adjusted)", format=".1%"),
            ],
        )
        .properties(width=width, height=alt.Step(4))
        .facet(
            row=alt.Row(
                "model:N", sort=models, title=None, header=alt.Header(labelFontSize=13, labelAngle=0, labelAlign="left")
            )
        )
        .add_params(pick)
        .properties(
            title=alt.Title(
                title,
                subtitle="additive as long as every-cell: a Minkowski sum; the gap: what only the pair's interaction explains",
            )
        )
    )


# --------------------------------------------------------------------------- the pentagonal prism


def basis_axis_titles(result: CentroidPCA, min_share: float = 0.2) -> list[str]:
    """Axis titles for the centroid PCA named by Fourier basis functions (their shares:
    :func:`~longmul.analysis.fourier.basis_shares`): "PC1 (45%): cos2 + sin2", the
    basis functions that carry at least ``min_share`` of the component (at least the largest one), and the
    component's share of the centroids' variance."""
    titles = []
    for i in range(result.coords.shape[1]):
        shares = basis_shares(result.coords[:, i])
        ranked = sorted(shares, key=shares.get, reverse=True)
        named = [n for n in ranked if shares[n] >= min_share] or ranked[:1]
        titles.append(f"PC{i + 1} ({result.explained_variance_ratio[i]:.0%}): {' + '.join(named)}")
    return titles


def ideal_prism(radius: float = 3.0, height: float = 1.0) -> np.ndarray:
    """The shape the paper describes, as ten digit centroids (10, 3): digit n at (cos, sin) of its angle
    at k=2 on a pentagon of ``radius``, and at ±``height`` along the parity axis. A reference to draw
    beside the models' centroids (it is what :func:`is_pentagonal_prism` accepts)."""
    n = np.arange(N_DIGITS)
    angle = 2 * np.pi * 2 * n / N_DIGITS
    return np.stack([radius * np.cos(angle), radius * np.sin(angle), height * (-1.0) ** n], axis=1)


def prism_frame(pcas: Mapping[str, CentroidPCA]) -> pd.DataFrame:
    """The digit centroids of each model on their principal components: ``model, digit, parity, pc1 …``."""
    rows = []
    for model, result in pcas.items():
        for record in result.records():
            rows.append({"model": model, **record, "parity": "even" if record["digit"] % 2 == 0 else "odd"})
    return pd.DataFrame(rows, columns=["model", "digit", "pc1", "pc2", "pc3", "parity"])


def prism_edges(points: pd.DataFrame) -> pd.DataFrame:
    """The edges of a pentagonal prism between the points of :func:`prism_frame`: each parity's pentagon
    (digits in the order of their angle at k=2, closed) and the five rungs joining n and n+5. One row per
    end of an edge: ``model, edge, kind`` ("pentagon" or "rung"), ``parity`` (of a pentagon), ``end, digit,
    pc1 …``; draw with one line per ``edge``."""
    rows = []
    for model, part in points.groupby("model", sort=False):
        at = part.set_index("digit")
        edges = []
        for parity, ring in PENTAGONS.items():
            edges += [("pentagon", parity, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]
        edges += [("rung", "", n, m) for n, m in RUNGS]
        for e, (kind, parity, start, stop) in enumerate(edges):
            for end, digit in enumerate((start, stop)):
                coords = at.loc[digit, ["pc1", "pc2", "pc3"]].to_dict()
                rows.append(
                    {"model": model, "edge": e, "kind": kind, "parity": parity, "end": end, "digit": digit, **coords}
                )
    return pd.DataFrame(rows, columns=["model", "edge", "kind", "parity", "end", "digit", "pc1", "pc2", "pc3"])


def prism_chart(
    pcas: Mapping[str, CentroidPCA],
    *,
    title: str = "Digit centroids of the final hidden state at c2, on their principal components",
    size: int = 150,
) -> alt.VConcatChart:
    """One row per model, three panels (PC1–PC2, PC1–PC3, PC2–PC3) of the ten digit centroids (each in
    its digit's colour, :data:`DIGIT_VALUE_COLORS`, and labelled) with the edges of the pentagonal prism
    the paper describes drawn between them: each parity's pentagon (dark: even, light: odd) and the rungs
    joining n and n+5 (dashed). If the centroids form the prism, one panel shows the pentagons and the
    others show them side by side. Axes are named by the Fourier basis functions that carry each
    component (:func:`basis_axis_titles`)."""
    points = prism_frame(pcas)
    points["value"] = points["digit"].astype(str)
    edges = prism_edges(points)
    pentagon_stroke = alt.Stroke(
        "parity:N",
        scale=alt.Scale(domain=list(PARITY_COLORS), range=list(PARITY_COLORS.values())),
        legend=alt.Legend(title="pentagon", orient="bottom", labelFontSize=11, titleFontSize=11),
    )
    rows = []
    for model, result in pcas.items():
        titles = basis_axis_titles(result)
        panels = []
        for x, y in ((0, 1), (0, 2), (1, 2)):
            fx, fy = f"pc{x + 1}", f"pc{y + 1}"
            axis = {"labels": False, "ticks": False, "titleFontSize": 11, "titleFontWeight": "normal"}
            ex = alt.X(f"{fx}:Q", title=titles[x], axis=alt.Axis(**axis))
            ey = alt.Y(f"{fy}:Q", title=titles[y], axis=alt.Axis(**axis))
            mine = round_floats(edges[edges["model"] == model])
            pentagons = (
                alt.Chart(mine[mine["kind"] == "pentagon"])
                .mark_line(strokeWidth=1.4)
                .encode(x=ex, y=ey, detail="edge:N", order="end:O", stroke=pentagon_stroke)
            )
            rungs = (
                alt.Chart(mine[mine["kind"] == "rung"])
                .mark_line(strokeWidth=1, strokeDash=[3, 3], color="#999")
                .encode(x=ex, y=ey, detail="edge:N", order="end:O")
            )
            dots = alt.Chart(round_floats(points[points["model"] == model])).encode(x=ex, y=ey)
            circles = dots.mark_circle(size=70, opacity=1).encode(
                color=alt.Color("value:N", scale=digit_value_scale(), legend=None),
                tooltip=[
                    alt.Tooltip("digit:O"),
                    alt.Tooltip("parity:N"),
                    alt.Tooltip(f"{fx}:Q", format=".2f"),
                    alt.Tooltip(f"{fy}:Q", format=".2f"),
                ],
            )
            labels = dots.mark_text(dx=8, dy=-8, fontSize=11).encode(text="digit:O")
            panels.append(alt.layer(pentagons, rungs, circles, labels).properties(width=size, height=size))
        rows.append(alt.hconcat(*panels).properties(title=alt.Title(model, anchor="start", fontSize=13)))
    if not rows:
        empty = alt.Chart(pd.DataFrame({"text": ["no model to show"]})).mark_text().encode(text="text:N")
        return readable(alt.vconcat(empty).properties(title=title))
    subtitle = "lines: each parity's pentagon, digits in the order of their k=2 angle; dashed: the rungs n – n+5"
    return readable(alt.vconcat(*rows).properties(title=alt.Title(title, subtitle=subtitle, anchor="start")))


def prism_figure(pcas: Mapping[str, CentroidPCA], *, width: float = 7.4, columns: int = 2):
    """A static matplotlib 3-D view of each model's digit centroids on their first three principal
    components, ``columns`` panels per row (``width`` in inches: 7.4 draws 740 px at 100 dpi, the text
    column), with the prism's edges (each parity's pentagon, dark for even and light for odd; the rungs
    dashed), each centroid in its digit's colour and labelled, and axes named by basis functions."""
    from matplotlib.figure import Figure

    models = list(pcas)
    n = max(1, len(models))
    columns = min(columns, n)
    rows = -(-n // columns)
    panel = width / columns
    fig = Figure(figsize=(width, 0.9 * panel * rows))
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=1 - 0.06 / rows, wspace=0.05, hspace=0.1)
    for i, model in enumerate(models or [None]):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        ax.set_box_aspect(None, zoom=0.85)
        if model is None:
            ax.text2D(0.5, 0.5, "no model", ha="center", transform=ax.transAxes)
            continue
        result = pcas[model]
        xyz = result.coords[:, :3]
        for parity, ring in PENTAGONS.items():
            loop = [*ring, ring[0]]
            ax.plot(*xyz[loop].T, "-", color=PARITY_COLORS[parity], lw=1.3)
        for n_, m in RUNGS:
            ax.plot(*xyz[[n_, m]].T, "--", color="#999", lw=1)
        ax.scatter(*xyz.T, c=DIGIT_VALUE_COLORS, s=60, depthshade=False, edgecolors="white", linewidths=0.5)
        for d in range(N_DIGITS):
            ax.text(*xyz[d], f"  {d}", fontsize=11)
        titles = basis_axis_titles(result)
        for axis, text in zip((ax.xaxis, ax.yaxis, ax.zaxis), titles):
            axis.set_label_text(text, fontsize=9)
            axis.labelpad = -10
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.set_title(model, fontsize=12, pad=0)
        ax.view_init(elev=20, azim=-60)
    return fig


def png_bytes(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes, in at most 256 colours: these figures use a handful of colours
    (and their blends), and a palette image is a third of the size of a full-colour one on the page."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    image = PILImage.open(buffer).convert("RGB").quantize(colors=256, method=PILImage.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --------------------------------------------------------------------------- Table 1


def _step_label(row) -> str:
    return "k=0 (const)" if row["step"] == 1 else f"+ {row['added']}" + (" (parity)" if row["added"] == "k=5" else "")


def table1_frame(tables: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """Each model's :func:`~longmul.analysis.fourier.fourier_table` rows, with ``model`` and a ``column``
    label for the step ("k=0 (const)", "+ k=1", …)."""
    rows = [{"model": model, **row} for model, table in tables.items() for row in table]
    df = pd.DataFrame(
        rows, columns=["model", "object", "step", "added", "basis", "median_r2", "pooled_r2", "chance_r2"]
    )
    df["column"] = [_step_label(r) for _, r in df.iterrows()] if len(df) else pd.Series(dtype=str)
    return df


def table1(df: pd.DataFrame, *, tied: Iterable[str] = (), value: str = "median_r2") -> pd.DataFrame:
    """The paper's Table 1 for our models: rows (model, object), columns the cumulative frequency sets,
    cells the median R² over the object's dimensions (``value="pooled_r2"``: over all dimensions at once),
    and a last row with the chance level of each column (:func:`~longmul.analysis.fourier.chance_r2`).
    ``tied``: models whose unembedding is their embedding (labelled so)."""
    tied = set(tied)
    if not len(df):
        return pd.DataFrame()
    columns = list(dict.fromkeys(df.sort_values("step")["column"]))
    labels = []
    for model, obj in zip(df["model"], df["object"]):
        label = OBJECT_LABELS.get(obj, obj)
        if obj == "unembedding" and model in tied:
            label += " (tied: = W_E)"
        labels.append(label)
    data = df.assign(label=labels)
    table = data.pivot_table(index=["model", "label"], columns="column", values=value, sort=False)[columns]
    table = table.map("{:.2f}".format)
    chance = data.groupby("column")["chance_r2"].first()[columns].map("{:.2f}".format)
    table.loc[("chance level", "noise, no digit structure"), :] = chance.values
    return table.rename_axis(index=["model", "object"], columns=None)


def table1_chart(
    df: pd.DataFrame,
    *,
    tied: Iterable[str] = (),
    title: str = "Table 1: R² of the Fourier fit as frequencies are added",
    width: int = 170,
) -> alt.FacetChart:
    """Median R² of each object against the cumulative frequency set, one panel per model, with the
    chance level (dashed): what a fit of noise with as many basis functions scores. Hover for the
    pooled R² too. ``df``: :func:`table1_frame`; ``tied``: models whose unembedding is their embedding
    (its line hides under the embedding's; the tooltip says so)."""
    tied = set(tied)
    data = df[["model", "object", "step", "column", "median_r2", "pooled_r2", "chance_r2"]].copy()
    data["note"] = [
        "tied: the same matrix as the embeddings" if o == "unembedding" and m in tied else ""
        for m, o in zip(data["model"], data["object"])
    ]
    data["object"] = data["object"].map(lambda o: OBJECT_LABELS.get(o, o))
    columns = list(dict.fromkeys(data.sort_values("step")["column"])) if len(data) else []
    objects = [OBJECT_LABELS[o] for o in OBJECT_LABELS if OBJECT_LABELS[o] in set(data["object"])]
    models = _models_in(df)
    x = alt.X("column:N", sort=columns, title="frequencies in the fit", axis=alt.Axis(labelAngle=-30))
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("median_r2:Q", title="median R²", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "object:N", sort=objects, title="object", legend=alt.Legend(orient="bottom", columns=2, labelLimit=300)
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("object:N"),
                alt.Tooltip("note:N"),
                alt.Tooltip("column:N", title="frequencies"),
                alt.Tooltip("median_r2:Q", title="median R²", format=".3f"),
                alt.Tooltip("pooled_r2:Q", title="pooled R²", format=".3f"),
                alt.Tooltip("chance_r2:Q", title="chance level", format=".3f"),
            ],
        )
    )
    chance = (
        alt.Chart()
        .mark_line(strokeDash=[4, 3], color="gray")
        .encode(x=x, y="chance_r2:Q", detail="model:N")
        .transform_filter(alt.datum.object == (objects[0] if objects else ""))
    )
    return readable(
        alt.layer(chance, lines, data=round_floats(data))
        .properties(width=width, height=170)
        .facet(column=alt.Column("model:N", sort=models, title=None, header=alt.Header(labelFontSize=13)))
        .properties(title=alt.Title(title, subtitle="dashed: the chance level, R² of the same fit to noise"))
    )


def spectrum_frame(
    vectors_by_model: Mapping[str, Mapping[str, np.ndarray]], ks: Sequence[int] = (1, 2, 3, 4, 5)
) -> pd.DataFrame:
    """Which frequencies carry each object: the share of its variance across digits (pooled over its
    dimensions) at each frequency ``k`` (:func:`~longmul.analysis.fourier.pooled_r2` of ``{k}`` alone; the
    basis is orthogonal, so the shares of k = 1 … 5 add up to 1), beside the share noise would give
    (``chance``: 2/9 for k = 1 … 4, 1/9 for parity). Rows ``model, object, k, frequency, share, chance``."""
    rows = []
    for model, objects in vectors_by_model.items():
        for obj, vectors in objects.items():
            for k in ks:
                rows.append(
                    {
                        "model": model,
                        "object": obj,
                        "k": int(k),
                        "frequency": "parity" if 2 * k == N_DIGITS else f"k={k}",
                        "share": pooled_r2(vectors, [k]),
                        "chance": chance_r2([k]),
                    }
                )
    return pd.DataFrame(rows, columns=["model", "object", "k", "frequency", "share", "chance"])


def spectrum_heatmap(
    df: pd.DataFrame, *, title: str = "Share of each object's variance at each frequency", step: int = 52
) -> alt.FacetChart:
    """Rows objects, columns frequencies k = 1 … 5, one panel per model (stacked, so that the chart fits
    the text column): the share of the object's variance
    across digits at that frequency (:func:`spectrum_frame`); hover for the chance share beside it."""
    data = df.copy()
    data["object"] = data["object"].map(lambda o: OBJECT_LABELS.get(o, o))
    data["above_chance"] = data["share"] / data["chance"]
    data["value"] = data["share"].map(lambda v: f"{v:.0%}")
    objects = [OBJECT_LABELS[o] for o in OBJECT_LABELS if OBJECT_LABELS[o] in set(data["object"])]
    frequencies = list(dict.fromkeys(data.sort_values("k")["frequency"])) if len(data) else []
    models = _models_in(df)
    layers = annotated_heatmap(
        round_floats(data),
        x="frequency:N",
        y="object:N",
        x_title=None,
        y_title=None,
        x_sort=frequencies,
        y_sort=objects,
        color="share",
        domain=[0, 1],
        color_title="share of variance",
        legend=alt.Legend(orient="bottom", format="%"),
        font_size=11,
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("object:N"),
            alt.Tooltip("frequency:N"),
            alt.Tooltip("share:Q", format=".1%"),
            alt.Tooltip("chance:Q", title="noise would give", format=".1%"),
            alt.Tooltip("above_chance:Q", title="× chance", format=".1f"),
        ],
    )
    return readable(
        layers.properties(width=alt.Step(step), height=alt.Step(22))
        .facet(
            row=alt.Row(
                "model:N",
                sort=models,
                title=None,
                header=alt.Header(labelFontSize=13, labelAngle=0, labelAlign="right"),
            ),
            spacing=8,
        )
        .properties(
            title=alt.Title(
                title,
                subtitle=f"noise puts {chance_r2([1]):.0%} at each of k = 1…4 and {chance_r2([N_DIGITS // 2]):.0%} at parity",
            )
        )
    )


# --------------------------------------------------------------------------- what the measurements say


def dominant_frequencies(result: CentroidPCA) -> list[int]:
    """The frequency that carries most of each principal component of the centroids (5 = parity)."""
    return [max(spectrum, key=spectrum.get) for spectrum in result.spectra]


def is_pentagonal_prism(result: CentroidPCA, min_share: float = PRISM_SHARE) -> bool:
    """The paper's shape: two of the first three components carried mostly by k=2, one by parity, where
    "mostly" means more than ``min_share`` of the component's variance (not only the largest share)."""
    dominant = dominant_frequencies(result)[:3]
    carried = all(spectrum[k] > min_share for spectrum, k in zip(result.spectra[:3], dominant))
    return sorted(dominant) == [2, 2, N_DIGITS // 2] and carried


def additive_verdict(
    additive_share: float, full: float, *, threshold: float = ADDITIVE_SHARE, floor: float = MIN_FULL
) -> bool | None:
    """Whether a view's (a_i, b_j) structure is a Minkowski sum, from adjusted shares: True when the
    additive model explains at least ``threshold`` of what every cell explains, False when less, and None
    (no verdict) when every cell together explains less than ``floor`` of the variance: then the pair
    organises too little of the view for the ratio to mean anything."""
    if not (np.isfinite(full) and full >= floor and np.isfinite(additive_share)):
        return None
    return bool(additive_share >= threshold)


def geometry_findings(
    variance: pd.DataFrame,
    table: pd.DataFrame,
    spectrum: pd.DataFrame,
    pcas: Mapping[str, CentroidPCA],
    chosen_heads: Mapping[str, str],
    *,
    frequencies: Sequence[int] = DEFAULT_FREQUENCIES,
    tied: Iterable[str] = (),
    margin: float = MATTERS_RATIO,
) -> pd.DataFrame:
    """The numbers the chapter's prose is checked against, one row per model:

    * ``c0_*`` (``a, b, additive, full, additive_share``): the layer-1 attention output at c0, pair a0·b0;
    * ``c2_*``: the chosen head (``chosen_heads``: model → view label) at c2, pair a1·b1, ``c2_view``;
    * ``frequencies``: the fitted frequency set; ``r2_min``, ``r2_max``: the range of the objects' median R²
      on it; ``chance``;
    * ``prism``: whether the centroids are a pentagonal prism, ``prism_freqs`` their components' main
      frequencies and ``prism_shares`` the share each carries;
    * ``top_k``, ``top_share``: the frequency with the largest mean share over the objects, ``matter``: the
      frequencies whose mean share is at least ``margin`` × their chance share. For the models in ``tied``
      (unembedding = embedding) the unembedding is left out of the mean, so the matrix counts once."""
    tied = set(tied)
    rows = {}
    models = list(dict.fromkeys([*_models_in(variance), *_models_in(table), *pcas]))
    full_step = len(frequencies)
    pairs = paper_pairs(variance) if len(variance) else variance
    for model in models:
        row: dict = {}
        mine = pairs[pairs["model"] == model] if len(pairs) else pairs
        c0 = mine[(mine["k"] == 0) & (mine["head"] == -1)] if len(mine) else mine
        c2 = mine[mine["view"] == chosen_heads.get(model)] if len(mine) else mine
        for prefix, part in (("c0", c0), ("c2", c2)):
            if len(part):
                first = part.iloc[0]
                row |= {f"{prefix}_{m}": float(first[m]) for m in (*MEASURES, "additive_share")}
                row[f"{prefix}_view"] = str(first["view"])
        last = table[(table["model"] == model) & (table["step"] == full_step)] if len(table) else table
        if len(last):
            row["frequencies"] = [int(k) for k in frequencies]
            row["r2_min"], row["r2_max"] = float(last["median_r2"].min()), float(last["median_r2"].max())
            row["chance"] = float(last["chance_r2"].iloc[0])
        if model in pcas:
            result = pcas[model]
            row["prism"] = is_pentagonal_prism(result)
            row["prism_freqs"] = dominant_frequencies(result)
            row["prism_shares"] = [float(s[k]) for s, k in zip(result.spectra, row["prism_freqs"])]
        spec = spectrum[spectrum["model"] == model] if len(spectrum) else spectrum
        if model in tied and len(spec):
            spec = spec[spec["object"] != "unembedding"]
        if len(spec):
            mean = spec.groupby("k")[["share", "chance"]].mean()
            row["top_k"] = int(mean["share"].idxmax())
            row["top_share"] = float(mean["share"].max())
            row["matter"] = [int(k) for k in mean.index if mean.loc[k, "share"] >= margin * mean.loc[k, "chance"]]
        rows[model] = row
    return pd.DataFrame.from_dict(rows, orient="index")


__all__ = [
    "ADDITIVE_SHARE",
    "DIGIT_VALUE_COLORS",
    "MATTERS_RATIO",
    "MEASURES",
    "MIN_FULL",
    "OBJECT_LABELS",
    "OPERAND_DIGITS",
    "PAPER_PAIRS",
    "PRISM_SHARE",
    "additive_verdict",
    "basis_axis_titles",
    "csv_data",
    "digit_value_cmap",
    "digit_value_scale",
    "dominant_frequencies",
    "geometry_findings",
    "head_for_pair",
    "ideal_prism",
    "is_pentagonal_prism",
    "minkowski_chart",
    "minkowski_frame",
    "nesting_figure",
    "pair_variance",
    "paper_pairs",
    "pca_brush_chart",
    "pca_frame",
    "png_bytes",
    "prism_chart",
    "prism_edges",
    "prism_figure",
    "prism_frame",
    "spectrum_frame",
    "spectrum_heatmap",
    "table1",
    "table1_chart",
    "table1_frame",
    "variance_chart",
    "variance_frame",
    "variance_table",
    "view_label",
]
