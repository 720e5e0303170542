"""Charts, tables and the generated takeaway of the chapter "Geometry: Minkowski sums in attention
heads, and digits in a Fourier basis" (paper Figs. 5 and 6 and Table 1, FACTS §5.4–5.5).

The inputs are the results of :mod:`longmul.analysis.geometry` (:class:`ActivationView` from
:func:`minkowski_views`) and :mod:`longmul.analysis.fourier` (the digit-indexed objects of
:func:`digit_vectors`, the rows of :func:`fourier_table`, :class:`CentroidPCA`). The frame builders turn
them into tidy ``pandas.DataFrame`` objects; the altair charts' interaction (view and colour selectors,
linked brushing across pairs of principal components, hover) runs in the browser, so it works on the
book's static site without a kernel. :func:`longmul.charts.geometry_explorer.geometry_explorer` is the
Jupyter-only counterpart: an ipywidget that recomputes the PCA for any layer, head, position and
colouring digit.

Layers are counted from 1 in every label, as in the paper (``blocks.0`` is "layer 1"); heads keep the
code's index from 0, as in :func:`longmul.charts.evidence.site_label`.
"""

from __future__ import annotations

import base64
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
from longmul.charts.frames import round_floats
from longmul.charts.heatmap import annotated_heatmap

# The operand-digit pair measured at each position. At c2 it is the paper's (FACTS §5.4: one layer-1 head's
# output coloured by b1, then a1). At c0 the paper colours by b0 only; pairing it with a0 (c0 = a0·b0 mod 10,
# so a0 is its partner) is the book's choice.
PAPER_PAIRS: dict[int, tuple[str, str]] = {0: ("a0", "b0"), 2: ("a1", "b1")}

# The paper's findings, in words: its figures are published as pictures and its Table 1's numbers are not
# in its code release (FACTS §5.4–5.5).
PAPER_GEOMETRY: dict[str, str] = {
    "minkowski": (
        "PCA(3) of its ICoT model's layer-1 attention output at the position predicting c0 shows clusters by "
        "b0, and one layer-1 head's output at the position predicting c2 shows clusters by b1 that contain "
        "sub-clusters by a1: a Minkowski sum of an a_i-set and a b_j-set (5,000 problems, a picture, no number)"
    ),
    "prism": (
        "the per-digit centroids of its ICoT model's final hidden state at the position predicting c2 form a "
        "pentagonal prism: two pentagons (cos/sin 2πn/5, k=2) joined along a parity axis ((−1)^n, k=5)"
    ),
    "table1": (
        "its Table 1 fits embeddings, unembeddings, layer-2 MLP output weights times digit embeddings and final "
        "hidden states times unembeddings with {1, cos/sin 2πn/10, cos/sin 2πn/5, (−1)^n} and reports the median "
        "R² and the cumulative R² as frequencies are added; its numbers are not known to us"
    ),
}

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
OBJECT_LABELS = {
    "embedding": "embeddings W_E",
    "unembedding": "unembeddings W_U",
    "mlp_out_embedding": "layer-2 MLP output weights · W_E",
    "final_hidden": "final hidden state (per-digit mean at c2)",
    "final_hidden_unembedding": "final hidden state · W_U",
}
PARITY_COLORS = {"even": "#4c78a8", "odd": "#e45756"}
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
    points["v"] = points.pop("view").map(codes)
    points = round_floats(points, 3)

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
        "digit:N",
        scale=alt.Scale(domain=[str(d) for d in range(10)], scheme="tableau10"),
        title="digit",
        legend=alt.Legend(orient="right"),
    )
    panels = []
    for (x, y), name in names.items():
        panels.append(
            alt.Chart(name=name)
            .mark_circle(size=12, opacity=0.7)
            .encode(
                x=alt.X(f"{x}:Q", title=x.upper(), axis=alt.Axis(labels=False, ticks=False)),
                y=alt.Y(f"{y}:Q", title=y.upper(), axis=alt.Axis(labels=False, ticks=False)),
                color=alt.when({"param": "brush"}).then(digit_colour).otherwise(alt.value("#d9d9d9")),
                tooltip=[alt.Tooltip("digit:N", title="colouring digit"), *[alt.Tooltip(f"{c}:Q") for c in colours]],
            )
            .properties(width=size, height=size)
        )
    scatter = (
        alt.hconcat(*panels, data=points)
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
            .properties(width=3 * size, height=16)
        )
        chart = alt.vconcat(caption, scatter)
    else:
        chart = alt.vconcat(scatter)
    chart = chart.add_params(view, colour).properties(
        title=alt.Title(
            title, subtitle="drag in any panel to highlight the same problems in all three; double-click to clear"
        )
    )
    chart.params = [*chart.params, brush]
    return chart


def nesting_figure(
    views: Mapping[str, ActivationView],
    pair: tuple[str, str],
    *,
    max_points: int = 600,
    seed: int = 0,
    size: float = 3.2,
):
    """A static matplotlib figure of the nesting the paper describes: one row per view (``views``: label →
    view), its points on their first three principal components twice, coloured by the b digit of ``pair``
    (the clusters) and by its a digit (the sub-clusters inside each). Axes give each component and its
    share of the view's variance. At most ``max_points`` problems per view (as :func:`pca_frame`)."""
    from matplotlib.figure import Figure

    a_digit, b_digit = pair
    labels = list(views)
    n = max(1, len(labels))
    fig = Figure(figsize=(2 * size + 0.6, size * n))
    fig.subplots_adjust(left=0.0, right=0.88, bottom=0.02, top=0.94, wspace=0.05, hspace=0.15)
    points = None
    for row, label in enumerate(labels or [None]):
        for column, digit in enumerate((b_digit, a_digit)):
            ax = fig.add_subplot(n, 2, 2 * row + column + 1, projection="3d")
            ax.set_box_aspect(None, zoom=0.85)
            if label is None:
                ax.text2D(0.5, 0.5, "no view", ha="center", transform=ax.transAxes)
                continue
            view = views[label]
            keep = np.sort(np.random.default_rng(seed).permutation(len(view.coords))[:max_points])
            xyz = view.coords[keep, :3]  # (points, 3)
            points = ax.scatter(
                *xyz.T, c=view.digits[digit][keep], cmap="tab10", vmin=-0.5, vmax=9.5, s=4, alpha=0.7, linewidths=0
            )
            for i, axis in enumerate((ax.xaxis, ax.yaxis, ax.zaxis)):
                axis.set_label_text(f"PC{i + 1} ({view.explained_variance_ratio[i]:.0%})", fontsize=7)
                axis.labelpad = -12
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            ax.set_title(f"{label}\ncoloured by {digit}", fontsize=8)
            ax.view_init(elev=20, azim=-60)
    if points is not None:
        bar = fig.colorbar(points, ax=fig.axes, ticks=range(10), shrink=0.5, fraction=0.04)
        bar.set_label("digit", fontsize=8)
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
    return (
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
    size: int = 125,
) -> alt.VConcatChart:
    """One row per model, three panels (PC1–PC2, PC1–PC3, PC2–PC3) of the ten digit centroids (labelled
    by digit, coloured by parity) with the edges of the pentagonal prism the paper describes drawn
    between them: each parity's pentagon (its colour) and the rungs joining n and n+5 (dashed). If the
    centroids form the prism, one panel shows the pentagons and the others show them side by side.
    Axes are named by the Fourier basis functions that carry each component (:func:`basis_axis_titles`)."""
    points = prism_frame(pcas)
    edges = prism_edges(points)
    parity_colour = alt.Color(
        "parity:N",
        scale=alt.Scale(domain=list(PARITY_COLORS), range=list(PARITY_COLORS.values())),
        legend=alt.Legend(title="digit", orient="bottom"),
    )
    rows = []
    for model, result in pcas.items():
        titles = basis_axis_titles(result)
        panels = []
        for x, y in ((0, 1), (0, 2), (1, 2)):
            fx, fy = f"pc{x + 1}", f"pc{y + 1}"
            ex = alt.X(f"{fx}:Q", title=titles[x], axis=alt.Axis(labels=False, ticks=False, titleFontSize=10))
            ey = alt.Y(f"{fy}:Q", title=titles[y], axis=alt.Axis(labels=False, ticks=False, titleFontSize=10))
            mine = round_floats(edges[edges["model"] == model])
            pentagons = (
                alt.Chart(mine[mine["kind"] == "pentagon"])
                .mark_line(strokeWidth=1.2, opacity=0.55)
                .encode(x=ex, y=ey, detail="edge:N", order="end:O", color=parity_colour)
            )
            rungs = (
                alt.Chart(mine[mine["kind"] == "rung"])
                .mark_line(strokeWidth=1, strokeDash=[3, 3], color="#999")
                .encode(x=ex, y=ey, detail="edge:N", order="end:O")
            )
            dots = alt.Chart(round_floats(points[points["model"] == model])).encode(x=ex, y=ey)
            circles = dots.mark_circle(size=60, opacity=0.9).encode(
                color=parity_colour,
                tooltip=[
                    alt.Tooltip("digit:O"),
                    alt.Tooltip("parity:N"),
                    alt.Tooltip(f"{fx}:Q", format=".2f"),
                    alt.Tooltip(f"{fy}:Q", format=".2f"),
                ],
            )
            labels = dots.mark_text(dx=7, dy=-7, fontSize=10).encode(text="digit:O")
            panels.append(alt.layer(pentagons, rungs, circles, labels).properties(width=size, height=size))
        rows.append(alt.hconcat(*panels).properties(title=alt.Title(model, anchor="start", fontSize=13)))
    if not rows:
        empty = alt.Chart(pd.DataFrame({"text": ["no model to show"]})).mark_text().encode(text="text:N")
        return alt.vconcat(empty).properties(title=title)
    subtitle = "lines: each parity's pentagon, digits in the order of their k=2 angle; dashed: the rungs n – n+5"
    return alt.vconcat(*rows).resolve_scale(color="shared").properties(title=alt.Title(title, subtitle=subtitle))


def prism_figure(pcas: Mapping[str, CentroidPCA], size: float = 2.9):
    """A static matplotlib 3-D view of each model's digit centroids on their first three principal
    components, with the prism's edges (each parity's pentagon in its colour, rungs dashed) and axes
    named by basis functions."""
    from matplotlib.figure import Figure

    models = list(pcas)
    n = max(1, len(models))
    fig = Figure(figsize=(size, 0.85 * size * n))
    fig.subplots_adjust(left=0.0, right=0.95, bottom=0.0, top=0.97, hspace=0.02)
    for i, model in enumerate(models or [None]):
        ax = fig.add_subplot(n, 1, i + 1, projection="3d")
        ax.set_box_aspect(None, zoom=0.88)
        if model is None:
            ax.text2D(0.5, 0.5, "no model", ha="center", transform=ax.transAxes)
            continue
        result = pcas[model]
        xyz = result.coords[:, :3]
        for parity, ring in PENTAGONS.items():
            loop = [*ring, ring[0]]
            ax.plot(*xyz[loop].T, "-", color=PARITY_COLORS[parity], lw=0.9, alpha=0.6)
        for n_, m in RUNGS:
            ax.plot(*xyz[[n_, m]].T, "--", color="#999", lw=0.8)
        colours = [PARITY_COLORS["even" if d % 2 == 0 else "odd"] for d in range(N_DIGITS)]
        ax.scatter(*xyz.T, c=colours, s=22, depthshade=False)
        for d in range(N_DIGITS):
            ax.text(*xyz[d], f" {d}", fontsize=8)
        titles = basis_axis_titles(result)
        for axis, text in zip((ax.xaxis, ax.yaxis, ax.zaxis), titles):
            axis.set_label_text(text, fontsize=6)
            axis.labelpad = -12
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.set_title(model, fontsize=9)
        ax.view_init(elev=20, azim=-60)
    return fig


def png_bytes(fig, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def side_by_side(*items) -> str:
    """HTML that puts altair charts and matplotlib figures next to each other (wrapping on a narrow
    page); display it with ``IPython.display.HTML``."""
    from longmul.charts.render import chart_html

    parts = []
    for item in items:
        if isinstance(item, alt.TopLevelMixin):
            parts.append(f"<div>{chart_html(item)}</div>")
        else:
            data = base64.b64encode(png_bytes(item)).decode("ascii")
            parts.append(
                f'<div><img src="data:image/png;base64,{data}" alt="static 3-D view" style="max-width: 100%;"></div>'
            )
    return (
        '<div class="longmul-side-by-side" style="display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start;">'
        + "".join(parts)
        + "</div>"
    )


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
    return (
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
    df: pd.DataFrame, *, title: str = "Share of each object's variance at each frequency", step: int = 38
) -> alt.FacetChart:
    """Rows objects, columns frequencies k = 1 … 5, one panel per model: the share of the object's variance
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
        font_size=9,
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("object:N"),
            alt.Tooltip("frequency:N"),
            alt.Tooltip("share:Q", format=".1%"),
            alt.Tooltip("chance:Q", title="noise would give", format=".1%"),
            alt.Tooltip("above_chance:Q", title="× chance", format=".1f"),
        ],
    )
    return (
        layers.properties(width=alt.Step(step), height=alt.Step(20))
        .facet(column=alt.Column("model:N", sort=models, title=None, header=alt.Header(labelFontSize=13)))
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
    """The numbers the takeaway is phrased from, one row per model:

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


def _freq(k: int) -> str:
    return "parity (k=5)" if 2 * k == N_DIGITS else f"k={k}"


def _freqs(ks: Iterable[int]) -> str:
    ks = list(ks)
    return ", ".join(_freq(k) for k in ks) if ks else "none"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _view_sentence(row: pd.Series, prefix: str, a: str, b: str, threshold: float, floor: float) -> str:
    share, full = row[f"{prefix}_additive_share"], row[f"{prefix}_full"]
    verdict = additive_verdict(share, full, threshold=threshold, floor=floor)
    if verdict is None:
        verdict_text = f"no verdict: every cell together explains less than {_pct(floor)}"
    elif verdict:
        verdict_text = "a Minkowski sum"
    else:
        verdict_text = f"not a pure sum: their interaction adds {_pct(full - row[f'{prefix}_additive'])}"
    return (
        f"in the {row[f'{prefix}_view']}, f({a}) + g({b}) explains {_pct(row[f'{prefix}_additive'])} of the variance "
        f"({a} alone {_pct(row[f'{prefix}_a'])}, {b} alone {_pct(row[f'{prefix}_b'])}, every ({a}, {b}) cell "
        f"{_pct(full)}, all adjusted for the parameters each fits; additive / full = {share:.2f}, {verdict_text})"
    )


def _frequency_set(ks: Iterable[int]) -> str:
    return "{" + ", ".join(str(k) for k in ks) + "}"


def takeaway_markdown(
    findings: pd.DataFrame,
    *,
    cot_tokens: Mapping[str, int] | None = None,
    unfinished: Sequence[str] = (),
    missing: Sequence[str] = (),
    tied: Sequence[str] = (),
    n_problems: int | None = None,
    icot: str = "ICoT",
    threshold: float = ADDITIVE_SHARE,
    floor: float = MIN_FULL,
    margin: float = MATTERS_RATIO,
) -> str:
    """The chapter's takeaway as MyST markdown (the chapter puts it in an admonition), phrased from
    :func:`geometry_findings` whatever the numbers are: one bullet per model, then whether our ICoT model
    uses the paper's geometry and which frequencies matter. ``cot_tokens``: model → chain-of-thought tokens
    it still writes; ``unfinished``: models measured from snapshots; ``missing``: models not available;
    ``tied``: models whose unembedding is their embedding; ``threshold``, ``floor``, ``margin``: the rules
    the verdicts use (:data:`ADDITIVE_SHARE`, :data:`MIN_FULL`, :data:`MATTERS_RATIO`; ``margin`` must be
    the one the findings were computed with)."""
    cot_tokens = dict(cot_tokens or {})
    if findings.empty:
        return "No model was available to measure, so this chapter shows no geometry yet." + (
            " Not available: " + ", ".join(missing) + "." if missing else ""
        )
    lines = [f"What our measurements show{f' ({n_problems:,} problems per model)' if n_problems else ''}:", ""]
    for model, row in findings.iterrows():
        parts = []
        if pd.notna(row.get("c0_full", np.nan)):
            parts.append(_view_sentence(row, "c0", "a0", "b0", threshold, floor))
        if pd.notna(row.get("c2_full", np.nan)):
            parts.append(_view_sentence(row, "c2", "a1", "b1", threshold, floor))
        if pd.notna(row.get("r2_min", np.nan)):
            parts.append(
                f"its digit-indexed objects fit the frequencies {_frequency_set(row['frequencies'])} with median R² "
                f"from {row['r2_min']:.2f} to {row['r2_max']:.2f}, where noise scores {row['chance']:.2f}"
            )
        if isinstance(row.get("matter"), list):
            parts.append(
                f"on average over those objects, {_freq(row['top_k'])} carries the most variance ({_pct(row['top_share'])}); "
                f"at least {margin:g}× their chance share: {_freqs(row['matter'])}"
            )
        if isinstance(row.get("prism_freqs"), list):
            carried = ", ".join(f"{_freq(k)} ({_pct(s)})" for k, s in zip(row["prism_freqs"], row["prism_shares"]))
            parts.append(
                "the centroids of its final hidden state "
                + (
                    "**form the paper's pentagonal prism**"
                    if row["prism"]
                    else "do not form the paper's pentagonal prism"
                )
                + f" (their first three components are carried most by {carried})"
            )
        notes = []
        if cot_tokens.get(model, 0) > 0:
            notes.append(
                f"it still writes {cot_tokens[model]} chain-of-thought tokens, which spell out the partial products "
                "and running sums, so at the answer positions it need not use this geometry at all"
            )
        if model in unfinished:
            notes.append("measured on a snapshot of a run still in training")
        if model in tied:
            notes.append(
                "its embeddings are tied, so its embedding and unembedding rows are the same matrix "
                "(counted once in the average over objects)"
            )
        sentence = f"- **{model}**: " + "; ".join(parts) + "."
        if notes:
            sentence += " Caveat: " + "; ".join(notes) + "."
        lines.append(sentence)
    lines += ["", _verdict(findings, cot_tokens, icot, threshold, floor, margin)]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(missing) + "."]
    return "\n".join(lines)


def _verdict(
    findings: pd.DataFrame, cot_tokens: Mapping[str, int], icot: str, threshold: float, floor: float, margin: float
) -> str:
    rule = (
        f"Here a view gets a verdict only when every (a_i, b_j) cell together explains at least {floor:.0%} of its "
        f"variance, and counts as a Minkowski sum when the additive model then explains at least {threshold:.0%} of "
        "what the cells explain (both shares adjusted for the parameters each model fits); the centroids count as "
        f"the paper's prism when two of their first three components have more than {PRISM_SHARE:.0%} of their "
        f"variance at k=2 and one more than {PRISM_SHARE:.0%} at parity; a frequency matters when its mean share "
        f"over the objects is at least {margin:g}× the share noise would give it."
    )
    if icot not in findings.index:
        return f"Whether our {icot} model uses the paper's geometry cannot be said yet: it is not available. {rule}"
    row = findings.loc[icot]
    measured = [p for p in ("c0", "c2") if pd.notna(row.get(f"{p}_full", np.nan))]
    verdicts = {
        p: additive_verdict(row[f"{p}_additive_share"], row[f"{p}_full"], threshold=threshold, floor=floor)
        for p in measured
    }
    judged = [p for p, v in verdicts.items() if v is not None]
    additive = [p for p, v in verdicts.items() if v]
    prism = bool(row.get("prism", False))
    if cot_tokens.get(icot, 0) > 0:
        opening = (
            f"So these measurements cannot yet say whether our {icot} model uses the paper's geometry: it has not "
            "internalised its chain of thought, and can read the answer's ingredients off it."
        )
    elif measured and len(additive) == len(measured) and prism:
        opening = f"Our {icot} model uses the paper's geometry: additive (Minkowski-sum) attention outputs and a pentagonal prism of digits."
    else:
        if not measured:
            views = "no attention view measured"
        else:
            views = f"additive attention outputs in {len(additive)} of the {len(judged)} views with enough structure to judge"
            if len(judged) < len(measured):
                views += f" ({len(measured) - len(judged)} of the {len(measured)} views measured had too little)"
        found = [views, "the pentagonal prism" if prism else "no pentagonal prism"]
        opening = f"Our {icot} model shows only part of the paper's geometry: {', '.join(found)}."
    if isinstance(row.get("matter"), list):
        opening += (
            f" The frequencies that matter for it: {_freqs(row['matter'])} (at least {margin:g}× their chance share)."
        )
    return f"{opening} {rule}"


__all__ = [
    "ADDITIVE_SHARE",
    "MATTERS_RATIO",
    "MEASURES",
    "MIN_FULL",
    "OBJECT_LABELS",
    "OPERAND_DIGITS",
    "PAPER_GEOMETRY",
    "PAPER_PAIRS",
    "PRISM_SHARE",
    "additive_verdict",
    "basis_axis_titles",
    "dominant_frequencies",
    "geometry_findings",
    "head_for_pair",
    "ideal_prism",
    "is_pentagonal_prism",
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
    "side_by_side",
    "spectrum_frame",
    "spectrum_heatmap",
    "table1",
    "table1_chart",
    "table1_frame",
    "takeaway_markdown",
    "variance_chart",
    "variance_frame",
    "variance_table",
    "view_label",
]
