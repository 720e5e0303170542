"""A heatmap with each cell's value written on it: the altair pattern the chapters' heatmaps share.

:func:`annotated_heatmap` layers a ``mark_rect`` (the colour) and a ``mark_text`` (the value) on the same
x and y encodings and returns the layer, for the caller to size, facet and title.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd


def annotated_heatmap(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    domain: Sequence[float],
    x_title: Any = alt.Undefined,
    y_title: Any = alt.Undefined,
    x_sort: Any = alt.Undefined,
    y_sort: Any = alt.Undefined,
    x_axis: Any = None,
    y_axis: Any = alt.Undefined,
    scheme: str = "blues",
    clamp: Any = alt.Undefined,
    color_title: Any = alt.Undefined,
    legend: Any = alt.Undefined,
    text: str = "value:N",
    text_format: Any = alt.Undefined,
    font_size: float = 9,
    light_text_above: float | None = None,
    opacity: Any = alt.Undefined,
    tooltip: Any = alt.Undefined,
) -> alt.LayerChart:
    """Cells of ``data`` at (``x``, ``y``) coloured by the quantitative field ``color`` on the colour
    ``scheme`` over ``domain``, each with its ``text`` written on it (white where the cell's ``color``
    value is above ``light_text_above``, by default the middle of ``domain``; black elsewhere).

    ``x``, ``y`` and ``text`` are altair shorthands (``"operand:N"``); ``color`` is a field name (typed
    ``:Q``). ``x_title``, ``x_sort``, ``x_axis`` (and the ``y_`` ones) go to the position channels: the
    default ``x_axis`` puts the column labels on top, unrotated; pass ``alt.Undefined`` for altair's
    default. ``clamp``, ``color_title`` and ``legend`` go to the colour channel, ``text_format`` (a d3
    format) to the text channel (leave it out when ``text`` is an already formatted string field).
    ``opacity`` applies to both layers (e.g. to fade cells), ``tooltip`` to the cells."""
    if x_axis is None:
        x_axis = alt.Axis(orient="top", labelAngle=0)
    if light_text_above is None:
        light_text_above = (domain[0] + domain[-1]) / 2
    x_enc = alt.X(x, sort=x_sort, title=x_title, axis=x_axis)
    y_enc = alt.Y(y, sort=y_sort, title=y_title, axis=y_axis)
    rect = (
        alt.Chart()
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            x=x_enc,
            y=y_enc,
            color=alt.Color(
                f"{color}:Q",
                scale=alt.Scale(scheme=scheme, domain=list(domain), clamp=clamp),
                title=color_title,
                legend=legend,
            ),
            opacity=opacity,
            tooltip=tooltip,
        )
    )
    light = getattr(alt.datum, color) > light_text_above
    labels = (
        alt.Chart()
        .mark_text(fontSize=font_size)
        .encode(
            x=x_enc,
            y=y_enc,
            text=alt.Text(text, format=text_format) if text_format is not alt.Undefined else text,
            color=alt.when(light).then(alt.value("white")).otherwise(alt.value("black")),
            opacity=opacity,
        )
    )
    return alt.layer(rect, labels, data=data)


__all__ = ["annotated_heatmap"]
