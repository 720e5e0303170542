"""Chart builders for per-digit results: which output digits c_k a model (or a rule) gets right.

Every builder takes a tidy ``pandas.DataFrame`` and returns an altair chart whose interaction (legend
selection, hover) runs in the browser, so it works on the static site without a kernel. Digit
positions are columns ``k`` (0 … n_c-1) and are drawn as ``c0 … c7``.
"""

from __future__ import annotations

import re

import altair as alt
import pandas as pd

CHANCE = 0.1  # a uniform guess of a digit
COLUMN_WIDTH = 700  # px: the widest a chart may be, legends included (the text column is 752 px at 1280 px)
LABEL_SIZE = 11  # px: the smallest text a chart draws
# Vega expression: offsets (predicted − true, mod 10) drawn with their sign: +1, −1, ±5.
_SIGNED_LABEL = (
    "datum.value == 5 ? '±5' : (datum.value > 0 ? '+' + datum.value : datum.value == 0 ? '0' : '−' + abs(datum.value))"
)

# One colour per model or rule across every chart of the book; others get the fallback palette.
SERIES_COLORS = {
    "ICoT": "#4c78a8",
    "SFT": "#e45756",
    "SFT + aux loss": "#54a24b",
    "shortcut: last two digits": "#b279a2",
    "shortcut: first two digits": "#f58518",
}
# For other series, in order: none repeats a known colour, and they repeat only past the 15th series
# (a sweep chart draws one line per configuration).
_FALLBACK_COLORS = [
    "#72b7b2", "#eeca3b", "#ff9da6", "#9d755d", "#bab0ac",
    "#9ecae9", "#ffbf79", "#88d27a", "#b79a20", "#439894",
    "#79706e", "#d67195", "#fcbfd2", "#d6a5c9", "#f2cf5b",
]  # fmt: skip


# The suffix longmul.charts.puzzle.label_with_cot gives a model that still writes a chain of thought.
_COT_SUFFIX = re.compile(r" \(writes \d+ CoT tokens\)$")


def _known_color(series: str) -> str | None:
    """The fixed colour of a series, also under its label_with_cot ("ICoT (writes 12 CoT tokens)")."""
    return SERIES_COLORS.get(_COT_SUFFIX.sub("", series))


def series_color_scale(series: list[str]) -> alt.Scale:
    """A colour scale that gives each known series its fixed colour (see :data:`SERIES_COLORS`)."""
    fallback = iter(_FALLBACK_COLORS * (len(series) // len(_FALLBACK_COLORS) + 1))
    return alt.Scale(domain=series, range=[_known_color(str(s)) or next(fallback) for s in series])


def readable(chart):
    """``chart`` with no text under :data:`LABEL_SIZE` px (vega-lite draws axis and legend labels at 10
    px by default). A top-level setting: apply it to the chart a chapter displays, not to a layer."""
    return (
        chart.configure_axis(labelFontSize=LABEL_SIZE, titleFontSize=LABEL_SIZE + 1)
        .configure_legend(labelFontSize=LABEL_SIZE, titleFontSize=LABEL_SIZE + 1)
        .configure_header(labelFontSize=LABEL_SIZE + 1, titleFontSize=LABEL_SIZE + 1)
        .configure_title(fontSize=LABEL_SIZE + 3)
    )


def digit_labels(n_c: int = 8) -> list[str]:
    return [f"c{k}" for k in range(n_c)]


def _with_digit_label(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    df = df.copy()
    df["digit"] = "c" + df["k"].astype(int).astype(str)
    n_c = int(df["k"].max()) + 1 if len(df) else 8
    return df, digit_labels(n_c)


def per_digit_chart(
    df: pd.DataFrame,
    *,
    title: str | list[str] = "Per-digit accuracy",  # a list: one line each
    width: int = 420,
    legend_title: str | None = "click to highlight",
) -> alt.LayerChart:
    """Accuracy per output digit, one line per ``series`` (a model, or a rule).

    ``df`` columns: ``series`` (str), ``k`` (int), ``accuracy`` (0–1). Click a legend entry to
    highlight one series; hover a point for its value. A dashed rule marks chance (0.1).
    """
    data, order = _with_digit_label(df)
    data["kind"] = ["rule" if str(s).startswith("shortcut") else "model" for s in data["series"]]
    series = list(dict.fromkeys(data["series"]))
    pick = alt.selection_point(fields=["series"], bind="legend")
    x = alt.X("digit:N", sort=order, title="output digit (c0 = units)", axis=alt.Axis(labelAngle=0))
    y = alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="share right")
    lines = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "series:N",
                title=legend_title,
                scale=series_color_scale(series),
                sort=series,
                legend=alt.Legend(labelLimit=280),
            ),
            strokeDash=alt.StrokeDash(
                "kind:N",
                scale=alt.Scale(domain=["model", "rule"], range=[[1, 0], [5, 3]]),
                legend=None,
            ),
            opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.15)),
            tooltip=[
                alt.Tooltip("series:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("accuracy:Q", format=".1%"),
            ],
        )
        .add_params(pick)
    )
    chance = (
        alt.Chart(pd.DataFrame({"accuracy": [CHANCE], "label": ["chance (a random digit)"]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="accuracy:Q", tooltip=["label:N"])
    )
    return readable(alt.layer(chance, lines).properties(title=title, width=width, height=260))


# Neutral tones for the two kinds of dependency: model colours and digit colours mean something else.
_DEPENDENCY_COLORS = ["#4d5a6a", "#b8c2cc"]


def dependency_chart(
    df: pd.DataFrame, *, title: str = "How many digit pairs each output digit depends on"
) -> alt.Chart:
    """Stacked bars per output digit: pairs counted by ``kind``.

    ``df`` columns: ``k`` (int), ``kind`` (str, e.g. "in the column sum s_k" / "through the carry"),
    ``pairs`` (int).
    """
    data, order = _with_digit_label(df)
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("digit:N", sort=order, title="output digit (c0 = units)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(pairs):Q", title="digit pairs (a_i, b_j)"),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(range=_DEPENDENCY_COLORS),
                legend=alt.Legend(orient="bottom", labelLimit=300),
            ),
            order=alt.Order("kind:N", sort="descending"),
            tooltip=[alt.Tooltip("digit:N"), alt.Tooltip("kind:N"), alt.Tooltip("pairs:Q")],
        )
        .properties(title=title, width=420, height=220)
    )
    return readable(chart)


def problem_grid_chart(df: pd.DataFrame, *, title: str = "Each model's answers, digit by digit") -> alt.Chart:
    """A grid per model: one row per problem, one cell per output digit, right or wrong.

    ``df`` columns: ``model`` (str), ``problem`` (str label such as "2365 × 4347"), ``k`` (int),
    ``predicted`` (int, -1 for none), ``target`` (int), ``running_sum`` (int, ĉ_k), ``correct``
    (bool). Hover a cell to see the digits; the hovered problem is outlined in every panel.
    """
    data, order = _with_digit_label(df)
    data["result"] = data["correct"].map({True: "right", False: "wrong"})
    problems = list(dict.fromkeys(data["problem"]))
    hover = alt.selection_point(fields=["problem"], on="pointerover", clear="pointerout", empty=False)
    return readable(
        alt.Chart(data)
        .mark_rect(stroke="black")
        .encode(
            x=alt.X("digit:N", sort=order, title=None, axis=alt.Axis(orient="top", labelAngle=0)),
            y=alt.Y("problem:N", sort=problems, title=None),
            color=alt.Color(
                "result:N",
                scale=alt.Scale(domain=["right", "wrong"], range=["#4c9f70", "#d1495b"]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            strokeWidth=alt.when(hover).then(alt.value(1.5)).otherwise(alt.value(0)),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("problem:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("target:Q", title="true digit"),
                alt.Tooltip("predicted:Q", title="model's digit"),
                alt.Tooltip("running_sum:Q", title="running sum ĉ_k"),
            ],
        )
        .add_params(hover)
        .properties(width=150, height=alt.Step(14))
        .facet(column=alt.Column("model:N", title=None))
        .properties(title=title)
    )


def error_offset_chart(
    df: pd.DataFrame,
    *,
    min_wrong: int = 20,
    title: str | list[str] = "Where the wrong digits land",
) -> alt.HConcatChart:
    """One heatmap per model: rows c_k, columns the offset (predicted − true, mod 10, from −4 to +5),
    colour the share of that digit's wrong answers at that offset. Three panels fit the text column; the
    cells are too small for 11 px numbers, so the numbers are in the tooltips.

    ``df``: :func:`longmul.charts.puzzle.error_offset_frame`. Digits with fewer than ``min_wrong``
    wrong answers written are left blank (too few to show a pattern), and a model with no such digit
    gets no panel; hover a cell for the counts.
    """
    data, order = _with_digit_label(df)
    data = data[data["written_wrong"] >= min_wrong]
    offsets = sorted(int(o) for o in df["offset"].unique()) if len(df) else list(range(-4, 6))
    panels = []
    for model in dict.fromkeys(data["model"]):
        one = data[data["model"] == model]
        base = alt.Chart(one).encode(
            x=alt.X("offset:O", sort=offsets, title="offset", axis=alt.Axis(labelAngle=0, labelExpr=_SIGNED_LABEL)),
            y=alt.Y("digit:N", sort=order, title=None, scale=alt.Scale(domain=order)),
        )
        cells = base.mark_rect().encode(
            color=alt.Color(
                "share:Q",
                scale=alt.Scale(domain=[0, 1], scheme="blues"),
                title="share of its wrong answers",
                legend=alt.Legend(orient="bottom", format="%", gradientLength=240),
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("offset:O", title="predicted − true (mod 10)"),
                alt.Tooltip("count:Q", title="wrong answers at this offset"),
                alt.Tooltip("written_wrong:Q", title="wrong answers written at this digit"),
                alt.Tooltip("share:Q", format=".0%"),
            ],
        )
        panels.append(cells.properties(title=str(model), width=170, height=alt.Step(20)))
    return readable(alt.hconcat(*panels).properties(title=title).resolve_scale(color="shared"))


# Vega expression: a label broken before its parenthesis, as two lines (a label with none stays one).
_TWO_LINES = "indexof(datum.value, ' (') > 0 ? [substring(datum.value, 0, indexof(datum.value, ' (')), substring(datum.value, indexof(datum.value, ' (') + 1)] : datum.value"
_BOUNDARY_KINDS = {"one too small": "#4c78a8", "one too large": "#f58518", "other wrong": "#bab0ac"}


def carry_boundary_chart(
    df: pd.DataFrame,
    *,
    digits: tuple[int, ...] = (2, 3, 4, 5, 6),
    title: str | list[str] = "How often c_k is wrong, by the last digit of the running sum below it",
) -> alt.FacetChart:
    """A grid of small bar charts, one row per model and one column per digit c_k: for each last digit
    r = ĉ_{k−1} mod 10 (x), the share of problems whose c_k is one too small, one too large, or otherwise
    wrong (stacked). A model whose errors are misjudged carries has its bars at r = 0 (too small) and
    r = 9 (too large); a model that guesses has them level.

    ``df``: :func:`longmul.charts.puzzle.carry_boundary_frame`.
    """
    data, order = _with_digit_label(df[df["k"].isin(digits)])
    models = list(dict.fromkeys(data["model"]))
    return readable(
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("residue:O", title="ĉ(k−1) mod 10", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(rate):Q", title="share wrong", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(domain=list(_BOUNDARY_KINDS), range=list(_BOUNDARY_KINDS.values())),
                legend=alt.Legend(title="c_k is", orient="bottom"),
            ),
            order=alt.Order("kind:N", sort="descending"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("residue:O", title="ĉ(k−1) mod 10"),
                alt.Tooltip("kind:N", title="c_k is"),
                alt.Tooltip("count:Q", title="problems with this error"),
                alt.Tooltip("problems:Q", title="problems with this residue"),
                alt.Tooltip("rate:Q", format=".1%", title="share"),
            ],
        )
        .properties(width=78, height=80)
        .facet(
            row=alt.Row(
                "model:N",
                sort=models,
                title=None,
                # "ICoT (writes 14 CoT tokens)" on two lines, so the grid keeps the column's width
                header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=135, labelExpr=_TWO_LINES),
            ),
            column=alt.Column("digit:N", sort=[o for o in order if int(o[1:]) in digits], title=None),
        )
        .properties(title=title)
    )


def running_sum_size_chart(
    df: pd.DataFrame,
    *,
    digits: tuple[int, ...] = (2, 3, 4, 5),
    title: str | list[str] = "How often c_k is wrong, by the size of its running sum ĉ_k",
    panel_width: int = 120,  # four panels and their axes fit the text column
) -> alt.FacetChart:
    """One small chart per digit c_k: for each bin of ĉ_k (x), the share of problems whose c_k is wrong
    (y), one line per model; a point's area is the number of problems in its bin, so the rare large
    sums show as small points. Click a legend entry to highlight a model.

    ``df``: :func:`longmul.charts.puzzle.running_sum_size_frame`.
    """
    data, order = _with_digit_label(df[df["k"].isin(digits)])
    models = list(dict.fromkeys(data["model"]))
    pick = alt.selection_point(fields=["model"], bind="legend")
    base = alt.Chart().encode(
        x=alt.X("low:Q", title="ĉ_k (bin start)"),
        y=alt.Y("rate:Q", title="share wrong", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color(
            "model:N", scale=series_color_scale(models), legend=alt.Legend(title="click to highlight", orient="bottom")
        ),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
    )
    points = base.mark_circle().encode(
        size=alt.Size(
            "problems:Q",
            title="problems in the bin",
            scale=alt.Scale(type="sqrt", range=[8, 200]),
            legend=alt.Legend(orient="bottom"),
        ),
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("digit:N"),
            alt.Tooltip("bin:N", title="ĉ_k"),
            alt.Tooltip("problems:Q", title="problems in the bin"),
            alt.Tooltip("wrong:Q", title="of which c_k wrong"),
            alt.Tooltip("rate:Q", format=".1%", title="share wrong"),
        ],
    )
    return readable(
        alt.layer(base.mark_line(strokeWidth=1.5), points, data=data)
        .properties(width=panel_width, height=130)
        .facet(column=alt.Column("digit:N", sort=[o for o in order if int(o[1:]) in digits], title=None))
        .add_params(pick)
        .properties(title=title)
    )
