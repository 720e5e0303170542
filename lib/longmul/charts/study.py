"""Charts of the small-n study (chapter "Beyond 4×4"): which output digits each recipe learns on n×n
problems, from the rows of :func:`longmul.study.study_rows`."""

from __future__ import annotations

import altair as alt
import pandas as pd

from longmul.charts.accuracy import COLUMN_WIDTH, readable
from longmul.charts.heatmap import annotated_heatmap
from longmul.dynamics import RunHistory, describe_cot_span
from longmul.task import chain_of_thought_roles

RECIPE_LABELS = {"sft": "SFT", "aux": "SFT + aux loss", "icot": "ICoT"}
EXACT = "exact"  # the column of exact match beside the digits


def cell_label(row: dict) -> str:
    """``"ICoT paced, w128"``, with the settings that differ from the study's defaults appended."""
    label = RECIPE_LABELS[row["recipe"]] + (f" {row['schedule']}" if row.get("schedule") else "")
    extras = [f"w{row['width']}"]
    if row.get("dropout"):
        extras.append(f"dropout {row['dropout']:g}")
    if row.get("lr") not in (None, 1e-3):
        extras.append(f"lr {row['lr']:g}")
    if row.get("seed"):
        extras.append(f"seed {row['seed']}")
    return f"{label}, {', '.join(extras)}"


def digits_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (cell, output digit), plus one per cell for exact match: ``n``, ``cell``, ``label``,
    ``column`` (``c0`` … or ``exact``), ``accuracy``, ``at_chance`` (the digit never left chance) and
    ``text`` (the accuracy in percent, with a dot for a digit that never left chance)."""
    out = []
    for row in rows:
        if row["status"] == "not run" or row.get("per_digit") is None:
            continue
        base = {"n": row["n"], "cell": row["cell"], "label": cell_label(row)}
        for k, accuracy in enumerate(row["per_digit"]):
            at_chance = k in row["never_left_chance"]
            text = f"{100 * accuracy:.0f}" + ("·" if at_chance else "")
            out.append({**base, "column": f"c{k}", "accuracy": accuracy, "at_chance": at_chance, "text": text})
        em = row["exact_match"]
        out.append({**base, "column": EXACT, "accuracy": em, "at_chance": False, "text": f"{100 * em:.0f}"})
    return pd.DataFrame(out, columns=["n", "cell", "label", "column", "accuracy", "at_chance", "text"])


# px the digit columns of one panel may take: the column less the cell labels and the colour legend
HEATMAP_WIDTH = COLUMN_WIDTH - 300


def digits_table_chart(frame: pd.DataFrame, *, column_width: int = 60, row_height: int = 24) -> alt.VConcatChart:
    """The study's hero figure: for each n, one line per cell and one column per output digit
    (units first) and for exact match, coloured and labelled by accuracy in percent; a dot marks a
    digit whose best validation accuracy never left chance. Columns narrow for large n so that every
    panel fits the book's text column."""
    panels = []
    for n, part in frame.groupby("n", sort=True):
        labels = list(dict.fromkeys(part["label"]))
        columns = [f"c{k}" for k in range(2 * int(n))] + [EXACT]
        width = min(column_width, HEATMAP_WIDTH // len(columns))
        panel = annotated_heatmap(
            part,
            x="column:N",
            y="label:N",
            color="accuracy",
            domain=[0, 1],
            x_sort=columns,
            y_sort=labels,
            x_title=None,
            y_title=None,
            text="text:N",
            font_size=11,
            color_title="accuracy",
            tooltip=[
                alt.Tooltip("label:N", title="cell"),
                alt.Tooltip("column:N", title="digit"),
                alt.Tooltip("accuracy:Q", format=".1%"),
            ],
        ).properties(
            title=f"{n}×{n}: accuracy per output digit (units first), %",
            width=width * len(columns),
            height=row_height * len(labels),
        )
        panels.append(panel)
    return readable(alt.vconcat(*panels).resolve_scale(color="shared"))


def icot_curves_frame(runs: dict[str, RunHistory], rows: list[dict]) -> pd.DataFrame:
    """Validation exact match of each ICoT cell of ``rows`` over training, one row per evaluation:
    ``n``, ``label``, ``examples``, ``val_exact_match``, ``removed`` (chain-of-thought tokens gone) and
    ``format`` (what the model still writes before its answer, by role)."""
    out = []
    for row in rows:
        run = runs.get(row["cell"])
        if row["recipe"] != "icot" or run is None:
            continue
        n, label = row["n"], cell_label(row)
        cot_len = len(chain_of_thought_roles(n, n))
        for e in run.evals:
            removed = e.get("removed", 0)
            left = describe_cot_span(removed, cot_len, n) if removed < cot_len else "no chain of thought"
            out.append(
                {
                    "n": n, "label": label, "examples": e["examples"], "val_exact_match": e["val_exact_match"],
                    "removed": removed, "format": left,
                }
            )  # fmt: skip
    return pd.DataFrame(out, columns=["n", "label", "examples", "val_exact_match", "removed", "format"])


def icot_curves_chart(frame: pd.DataFrame, *, width: int = 440, height: int = 150) -> alt.FacetChart:
    """ICoT cells over training, one panel per n, stacked so that they fit the text column: validation
    exact match (line) and the chain-of-thought tokens removed so far (dashed, right axis, out of the
    full length); the cells' legend under the panels."""
    base = alt.Chart(frame).encode(
        x=alt.X("examples:Q", title="training examples", axis=alt.Axis(format="~s")),
        color=alt.Color("label:N", title="cell", legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=[
            alt.Tooltip("label:N", title="cell"),
            alt.Tooltip("examples:Q", format=","),
            alt.Tooltip("val_exact_match:Q", title="exact match", format=".1%"),
            alt.Tooltip("removed:Q", title="CoT tokens removed"),
            alt.Tooltip("format:N", title="still written"),
        ],
    )
    accuracy = base.mark_line(point=True).encode(
        y=alt.Y(
            "val_exact_match:Q",
            title="validation exact match",
            axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1]),
        )
    )
    removed = base.mark_line(strokeDash=[4, 3], opacity=0.6).encode(
        y=alt.Y("removed:Q", title="CoT tokens removed (dashed)")
    )
    return readable(
        alt.layer(accuracy, removed)
        .resolve_scale(y="independent")
        .properties(width=width, height=height)
        .facet(
            row=alt.Row(
                "n:O", title=None, header=alt.Header(labelExpr="datum.value + '×' + datum.value", labelFontSize=12)
            )
        )
        .resolve_scale(x="independent", y="independent")
    )


__all__ = [
    "EXACT",
    "RECIPE_LABELS",
    "cell_label",
    "digits_frame",
    "digits_table_chart",
    "icot_curves_chart",
    "icot_curves_frame",
]
