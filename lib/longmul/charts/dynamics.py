"""Charts and a widget for the training-dynamics chapter (chapter 5) and the lab notebook.

The builders take the tidy rows of :mod:`longmul.dynamics` (a list of dicts or a ``pandas.DataFrame``)
and return altair charts whose interaction (run selector, digit legend, step slider, hover) runs in the
browser, so it works on the static site without a kernel. :func:`history_explorer` is the Jupyter-only
counterpart: an ipywidget that redraws a matplotlib figure of the chosen runs and digits.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence

import altair as alt
import pandas as pd

from longmul.charts.accuracy import digit_labels, readable, series_color_scale
from longmul.charts.frames import round_floats
from longmul.dynamics import LN10, ROUNDING_ERROR, RunHistory, digit_rows
from longmul.sweeps import MIDDLE_NAME, TARGET_KINDS

# One colour per output digit, the same in every chart of the chapter (and in the widget).
DIGIT_COLORS = ["#e45756", "#f58518", "#eeca3b", "#54a24b", "#4c78a8", "#b279a2", "#ff9da6", "#9d755d"]
LOSS_FLOOR = 1e-4  # losses are drawn on a log scale, clipped below at this value
GRAD_FLOOR = 1e-3


def _frame(rows) -> pd.DataFrame:
    return rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def _slim(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Only the columns a chart uses, floats to 4 significant digits: the spec is embedded in the page."""
    return round_floats(df[[c for c in columns if c in df.columns]])


def _runs_in(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["run"])) if len(df) else []


def digit_color_scale(n_c: int = 8) -> alt.Scale:
    return alt.Scale(domain=digit_labels(n_c), range=DIGIT_COLORS[:n_c])


def loss_curves_chart(
    rows,
    stages=None,
    *,
    title: str = "Loss of each output digit over training",
    width: int = 500,
    height: int = 300,
    log: bool = False,
) -> alt.LayerChart:
    """Per-digit loss over steps for one run at a time.

    ``rows``: :func:`longmul.dynamics.digit_rows` (``run``, ``step``, ``k``, ``loss``, …). A radio
    button picks the run; clicking a digit in the legend highlights it (shift-click: several). The loss
    is drawn on a linear scale from 0 to 3 nats as in the paper's figure, or with ``log=True`` on a log
    scale (clipped at 1e-4), with a dashed line at ln 10, a uniform guess. ``stages``:
    :func:`longmul.dynamics.stage_rows`, drawn as vertical rules (ICoT's removal stages).
    """
    df = _frame(rows)
    runs = _runs_in(df)
    if df.empty:
        df = pd.DataFrame(columns=["run", "step", "k", "digit", "loss", "grad_norm", "examples", "n_logs"])
    df["digit"] = "c" + df["k"].astype(int).astype(str)
    df["loss_shown"] = df["loss"].clip(lower=LOSS_FLOOR)
    n_c = int(df["k"].max()) + 1 if len(df) else 8
    df = _slim(df, ["run", "step", "examples", "digit", "loss", "loss_shown", "grad_norm"])
    run = alt.param(
        name="run_choice",
        value=runs[0] if runs else "",
        bind=alt.binding_radio(options=runs or [""], name="run: "),
    )
    pick = alt.selection_point(fields=["digit"], bind="legend")
    x = alt.X("step:Q", title="training step", axis=alt.Axis(format="~s"), scale=alt.Scale(nice=False))
    lines = (
        alt.Chart(df)
        .transform_filter(alt.datum.run == run)
        .mark_line(strokeWidth=1.5)
        .encode(
            x=x,
            y=(
                alt.Y("loss_shown:Q", scale=alt.Scale(type="log", domain=[LOSS_FLOOR, 4]), title="loss (nats, log scale)")
                if log
                else alt.Y("loss:Q", scale=alt.Scale(domain=[0, 3], clamp=True), title="loss (nats)")
            ),
            color=alt.Color(
                "digit:N",
                scale=digit_color_scale(n_c),
                sort=digit_labels(n_c),
                title="digit (click)",
            ),
            opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12)),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("step:Q", format=","),
                alt.Tooltip("examples:Q", format=","),
                alt.Tooltip("loss:Q", format=".4f"),
                alt.Tooltip("grad_norm:Q", format=".3f", title="gradient norm"),
            ],
        )
        .add_params(pick)
    )
    chance = (
        alt.Chart(pd.DataFrame({"loss": [LN10], "label": ["ln 10: a uniform guess among ten digits"]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="loss:Q", tooltip=["label:N"])
    )
    layers = [chance, lines]
    stage_df = _frame(stages) if stages is not None else pd.DataFrame()
    if len(stage_df):
        layers.append(
            alt.Chart(stage_df)
            .transform_filter(alt.datum.run == run)
            .mark_rule(color="gray", opacity=0.5)
            .encode(
                x="step:Q",
                tooltip=[alt.Tooltip("step:Q", format=","), alt.Tooltip("removed:Q", title="chain-of-thought tokens removed")],
            )
        )
    return readable(alt.layer(*layers).add_params(run).properties(title=title, width=width, height=height))


def aux_error_chart(
    error_rows,
    rows,
    *,
    title: str = "The probe's error on ĉ and the loss of each digit, over training",
    width: int = 500,
) -> alt.VConcatChart:
    """Two panels over the same steps, for the runs in ``error_rows``: the aux probe's RMS error in
    units of ĉ (:func:`longmul.dynamics.aux_error_rows`, log scale, with a rule at
    :data:`~longmul.dynamics.ROUNDING_ERROR`, below which a reading rounds to the right integer) and
    each digit's loss (:func:`longmul.dynamics.digit_rows`)."""
    errors = _frame(error_rows)
    if errors.empty:
        errors = pd.DataFrame(columns=["run", "step", "examples", "rms_error"])
    runs = _runs_in(errors)
    losses = _frame(rows)
    losses = losses[losses["run"].isin(runs)] if len(losses) else pd.DataFrame(columns=["run", "step", "k", "loss"])
    losses = losses.assign(digit="c" + losses["k"].astype(int).astype(str))
    n_c = int(losses["k"].max()) + 1 if len(losses) else 8
    x = alt.X("step:Q", title="training step", axis=alt.Axis(format="~s"), scale=alt.Scale(nice=False))
    error = alt.layer(
        alt.Chart(_slim(errors, ["run", "step", "examples", "rms_error"]))
        .mark_line(color="black")
        .encode(
            x=x,
            y=alt.Y("rms_error:Q", scale=alt.Scale(type="log"), title="probe RMS error (ĉ units, log)"),
            detail="run:N",
            tooltip=[alt.Tooltip("run:N"), alt.Tooltip("step:Q", format=","), alt.Tooltip("rms_error:Q", format=".3f", title="RMS error")],
        ),
        alt.Chart(pd.DataFrame({"rms_error": [ROUNDING_ERROR], "label": [f"{ROUNDING_ERROR}: a reading this close rounds to ĉ"]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="rms_error:Q", tooltip=["label:N"]),
    ).properties(width=width, height=140)
    loss = (
        alt.Chart(_slim(losses, ["run", "step", "digit", "loss"]))
        .mark_line(strokeWidth=1.5)
        .encode(
            x=x,
            y=alt.Y("loss:Q", scale=alt.Scale(domain=[0, 3], clamp=True), title="digit loss (nats)"),
            color=alt.Color("digit:N", scale=digit_color_scale(n_c), sort=digit_labels(n_c), title="digit"),
            detail="run:N",
            tooltip=[alt.Tooltip("run:N"), alt.Tooltip("digit:N"), alt.Tooltip("step:Q", format=","), alt.Tooltip("loss:Q", format=".3f")],
        )
        .properties(width=width, height=200)
    )
    return readable(alt.vconcat(error, loss).resolve_scale(x="shared").properties(title=title))


def loss_and_gradient_chart(
    rows,
    runs: Sequence[str],
    *,
    panel_width: int = 260,
    title: str = "Gradient norm (top) and loss (bottom) of each output digit over training",
) -> alt.VConcatChart:
    """Chapter 5's hero figure, laid out like the paper's training-dynamics figure: one column per run
    of ``runs``; on top the gradient norm of each digit's loss (a heatmap, digit × step, one log
    colour scale shared by the runs so that their norms compare), below each digit's loss over the
    same steps (linear, 0 to 3 nats, a dashed rule at ln 10). Clicking a digit in the legend singles
    it out in the loss panels. ``rows``: :func:`longmul.dynamics.digit_rows`, pooled (``max_points``).

    Two panels of the default ``panel_width`` plus their axes fit the book's text column (752 px at
    a 1280 px window)."""
    df = _frame(rows)
    present = _runs_in(df)
    missing = [name for name in runs if name not in present]
    if missing:
        raise ValueError(f"loss_and_gradient_chart: no rows for run(s) {missing}; the rows have {present}")
    df = df[df["run"].isin(runs) & df["grad_norm"].notna()].copy()
    df["digit"] = "c" + df["k"].astype(int).astype(str)
    df["grad_shown"] = df["grad_norm"].clip(lower=GRAD_FLOOR)
    n_c = int(df["k"].max()) + 1
    df = _slim(df, ["run", "step_from", "step", "digit", "loss", "grad_norm", "grad_shown"])
    tooltip = [
        alt.Tooltip("run:N"),
        alt.Tooltip("digit:N"),
        alt.Tooltip("step:Q", format=",", title="to step"),
        alt.Tooltip("loss:Q", format=".3f", title="loss (mean, nats)"),
        alt.Tooltip("grad_norm:Q", format=".3f", title="gradient norm (geometric mean)"),
    ]
    grad_color = alt.Color(
        "grad_shown:Q",
        scale=alt.Scale(type="log", scheme="viridis"),
        title="gradient norm (log scale)",
        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=200),
    )
    digit_color = alt.Color(
        "digit:N",
        scale=digit_color_scale(n_c),
        sort=digit_labels(n_c),
        title="digit (click)",
        legend=alt.Legend(orient="bottom", direction="horizontal", columns=n_c),
    )
    pick = alt.selection_point(fields=["digit"], bind="legend")
    base = alt.Chart(df)
    heats, losses = [], []
    for i, run in enumerate(runs):
        mine = base.transform_filter(alt.datum.run == run)
        heats.append(
            mine.mark_rect()
            .encode(
                x=alt.X("step_from:Q", title=None, axis=alt.Axis(format="~s"), scale=alt.Scale(nice=False)),
                x2="step:Q",
                y=alt.Y("digit:N", sort=digit_labels(n_c), title=None),
                color=grad_color,
                tooltip=tooltip,
            )
            .properties(width=panel_width, height=alt.Step(14), title=alt.TitleParams(run, fontSize=13, anchor="start"))
        )
        lines = mine.mark_line(strokeWidth=1.5).encode(
            x=alt.X("step:Q", title="training step", axis=alt.Axis(format="~s"), scale=alt.Scale(nice=False)),
            y=alt.Y("loss:Q", scale=alt.Scale(domain=[0, 3], clamp=True), title="loss (nats)" if i == 0 else None),
            color=digit_color,
            opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12)),
            tooltip=tooltip,
        )
        if i == 0:
            lines = lines.add_params(pick)
        chance = (
            alt.Chart(pd.DataFrame({"loss": [LN10], "label": ["ln 10: a uniform guess among ten digits"]}))
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y="loss:Q", tooltip=["label:N"])
        )
        losses.append(alt.layer(chance, lines).properties(width=panel_width, height=150))
    return readable(
        alt.vconcat(alt.hconcat(*heats, spacing=12), alt.hconcat(*losses, spacing=12), spacing=8)
        .resolve_scale(color="independent")
        .properties(title=alt.TitleParams(title, anchor="start"))
    )


def step_slider_chart(
    rows,
    *,
    title: str = "Every digit at one step of training: drag the slider",
    width: int = 240,
    height: int = 220,
) -> alt.HConcatChart:
    """Loss and gradient norm across the digits c_0 … c_7 at the step a slider picks, one line per run.

    ``rows``: :func:`longmul.dynamics.digit_rows` (pooled). Each run shows its last logged step at or
    before the slider's (a run that has not got that far shows its latest).
    """
    df = _frame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run", "step", "k", "loss", "grad_norm"])
    df["digit"] = "c" + df["k"].astype(int).astype(str)
    df["loss_shown"] = df["loss"].clip(lower=LOSS_FLOOR)
    df["grad_shown"] = df["grad_norm"].clip(lower=GRAD_FLOOR)
    n_c = int(df["k"].max()) + 1 if len(df) else 8
    runs = _runs_in(df)
    top = int(df["step"].max()) if len(df) else 1
    first = int(df["step"].min()) if len(df) else 0
    df = _slim(df, ["run", "step", "digit", "loss", "loss_shown", "grad_norm", "grad_shown"])
    at = alt.param(
        name="at_step",
        value=top,
        bind=alt.binding_range(min=first, max=top, step=max(1, (top - first) // 200), name="training step: "),
    )
    base = (
        alt.Chart(df)
        .transform_calculate(shown="datum.step <= at_step ? datum.step : -datum.step")
        # per run: the last step at or before the slider, else (run not that far yet) its first step
        .transform_joinaggregate(best="max(shown)", groupby=["run"])
        .transform_filter("datum.shown == datum.best")
    )
    x = alt.X("digit:N", sort=digit_labels(n_c), title="output digit (c0 = units)", axis=alt.Axis(labelAngle=0))
    color = alt.Color("run:N", scale=series_color_scale(runs), sort=runs, title=None, legend=alt.Legend(orient="bottom"))
    tooltip = [
        alt.Tooltip("run:N"),
        alt.Tooltip("digit:N"),
        alt.Tooltip("step:Q", format=",", title="step shown"),
        alt.Tooltip("loss:Q", format=".4f"),
        alt.Tooltip("grad_norm:Q", format=".3f", title="gradient norm"),
    ]
    loss = base.mark_line(point=True).encode(
        x=x,
        y=alt.Y("loss_shown:Q", scale=alt.Scale(type="log", domain=[LOSS_FLOOR, 4]), title="loss (nats, log scale)"),
        color=color,
        tooltip=tooltip,
    )
    chance = (
        alt.Chart(pd.DataFrame({"loss": [LN10]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="loss:Q")
    )
    grad = base.mark_line(point=True).encode(
        x=x,
        y=alt.Y("grad_shown:Q", scale=alt.Scale(type="log"), title="gradient norm (log scale)"),
        color=color,
        tooltip=tooltip,
    )
    return readable(
        alt.hconcat(
            alt.layer(chance, loss).properties(width=width, height=height, title="loss"),
            grad.properties(width=width, height=height, title="gradient norm"),
        )
        .add_params(at)
        .properties(title=title)
    )


def accuracy_curves_chart(
    rows,
    *,
    title: str = "Validation accuracy of each output digit over training",
    width: int = 500,
    height: int = 260,
) -> alt.LayerChart:
    """Per-digit validation accuracy over steps, one run at a time (radio button), digits selectable in
    the legend. ``rows``: :func:`longmul.dynamics.eval_rows`."""
    df = _frame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run", "step", "k", "accuracy", "exact_match"])
    df["digit"] = "c" + df["k"].astype(int).astype(str)
    n_c = int(df["k"].max()) + 1 if len(df) else 8
    runs = _runs_in(df)
    run = alt.param(name="run_choice", value=runs[0] if runs else "", bind=alt.binding_radio(options=runs or [""], name="run: "))
    pick = alt.selection_point(fields=["digit"], bind="legend")
    lines = (
        alt.Chart(df)
        .transform_filter(alt.datum.run == run)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("step:Q", title="training step", axis=alt.Axis(format="~s")),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="share right (validation)"),
            color=alt.Color("digit:N", scale=digit_color_scale(n_c), sort=digit_labels(n_c), title="digit (click)"),
            opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12)),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("step:Q", format=","),
                alt.Tooltip("accuracy:Q", format=".1%"),
                alt.Tooltip("exact_match:Q", format=".1%", title="exact match"),
            ],
        )
        .add_params(pick)
    )
    chance = (
        alt.Chart(pd.DataFrame({"accuracy": [0.1]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="accuracy:Q")
    )
    return readable(alt.layer(chance, lines).add_params(run).properties(title=title, width=width, height=height))


def sweep_comparison_chart(
    rows,
    *,
    title: str = "Validation accuracy of one digit, every configuration of the sweep",
    width: int = 500,
    height: int = 260,
) -> alt.LayerChart:
    """Every configuration's validation accuracy over steps on the digit a drop-down picks (default:
    the mean of the middle digits), a line per configuration, dashed by what its aux loss regresses;
    click a configuration in the legend to single it out (shift-click: several).
    ``rows``: :func:`longmul.sweeps.comparison_rows`."""
    df = _frame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run", "target", "step", "digit", "accuracy"])
    digits = list(dict.fromkeys(df["digit"]))
    default = MIDDLE_NAME if MIDDLE_NAME in digits else (digits[0] if digits else "")
    options = [default, *[d for d in digits if d != default]] if digits else [""]
    digit = alt.param(name="digit_choice", value=default, bind=alt.binding_select(options=options, name="digit: "))
    runs = _runs_in(df)
    pick = alt.selection_point(fields=["run"], bind="legend")
    dashes = alt.Scale(domain=list(TARGET_KINDS), range=[[1, 0], [1, 0], [5, 3]])
    lines = (
        alt.Chart(_slim(df, ["run", "target", "step", "digit", "accuracy"]))
        .transform_filter(alt.datum.digit == digit)
        .mark_line(point=alt.OverlayMarkDef(size=16))
        .encode(
            x=alt.X("step:Q", title="training step", axis=alt.Axis(format="~s")),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="share right (validation)"),
            color=alt.Color("run:N", scale=series_color_scale(runs), sort=runs, title="configuration (click)"),
            strokeDash=alt.StrokeDash("target:N", scale=dashes, title="aux loss regresses"),
            opacity=alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.12)),
            tooltip=[
                alt.Tooltip("run:N", title="configuration"),
                alt.Tooltip("target:N", title="aux loss regresses"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("step:Q", format=","),
                alt.Tooltip("accuracy:Q", format=".1%"),
            ],
        )
        .add_params(pick)
    )
    chance = (
        alt.Chart(pd.DataFrame({"accuracy": [0.1]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="accuracy:Q")
    )
    return readable(alt.layer(chance, lines).add_params(digit).properties(title=title, width=width, height=height))


# --------------------------------------------------------------------------- Jupyter widget

def exact_match_chart(
    rows,
    changes: Sequence[Mapping],
    *,
    title: str = "Validation exact match, and where a resume changed how the run trains",
    width: int = 500,
    height: int = 220,
) -> alt.LayerChart:
    """Validation exact match over steps, a line per run, with a dashed rule (labelled) at each change.
    ``rows``: :func:`longmul.dynamics.eval_rows` (one row per digit; the exact match is read from
    ``c0``'s); ``changes``: mappings with ``run``, ``step`` and ``label``."""
    df = _frame(rows)
    df = df[df["k"] == 0] if len(df) else pd.DataFrame(columns=["run", "step", "k", "exact_match"])
    df = _slim(df, ["run", "step", "exact_match"])
    runs = _runs_in(df)
    color = alt.Color("run:N", scale=series_color_scale(runs), sort=runs, title=None, legend=alt.Legend(orient="bottom"))
    x = alt.X("step:Q", title="training step", axis=alt.Axis(format="~s"))
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=x,
            y=alt.Y("exact_match:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="exact match (validation)"),
            color=color,
            tooltip=[alt.Tooltip("run:N"), alt.Tooltip("step:Q", format=","), alt.Tooltip("exact_match:Q", format=".1%")],
        )
    )
    marks = pd.DataFrame(list(changes), columns=["run", "step", "label"])
    rules = alt.Chart(marks).mark_rule(strokeDash=[4, 3]).encode(x=x, color=color, tooltip=["label:N"])
    labels = alt.Chart(marks).mark_text(align="left", dx=4, dy=4, baseline="top").encode(x=x, y=alt.value(0), text="label:N")
    return readable(alt.layer(lines, rules, labels).properties(title=title, width=width, height=height))


def history_figure(
    rows,
    runs: Sequence[str],
    digits: Iterable[int],
    metric: str = "loss",
    log_scale: bool = True,
):
    """A matplotlib figure: ``metric`` ("loss" or "grad_norm") of the chosen digits over steps, one
    panel per run (line colours as in the altair charts)."""
    from matplotlib.figure import Figure

    df = _frame(rows)
    digits = sorted(set(digits))
    runs = list(runs)
    fig = Figure(figsize=(4.2 * max(1, len(runs)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(runs)), squeeze=False)[0]
    label = {"loss": "loss (nats)", "grad_norm": "gradient norm"}[metric]
    for ax, run in zip(axes, runs or [None]):
        if run is None:
            ax.text(0.5, 0.5, "pick a run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        part = df[df["run"] == run] if len(df) else df
        for k in digits:
            series = part[part["k"] == k].sort_values("step") if len(part) else part
            if len(series):
                ax.plot(series["step"], series[metric], color=DIGIT_COLORS[k % len(DIGIT_COLORS)], label=f"c{k}", lw=1.2)
        if metric == "loss":
            ax.axhline(LN10, color="gray", ls="--", lw=0.8)
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(run)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        if digits and len(part):
            ax.legend(fontsize=7, ncol=2)
    return fig


def history_explorer(
    runs: Mapping[str, RunHistory],
    max_points: int = 120,
    digits: Iterable[int] = (0, 1, 2, 3, 4, 5, 6, 7),
):
    """An ipywidget (Jupyter only): pick runs, digits, loss or gradient norm and how many points per
    curve (logged steps are pooled into that many bins, see :func:`longmul.dynamics.digit_rows`); the
    figure redraws. On the static site the widget is drawn as it was when the chapter executed (no
    kernel there)."""
    import ipywidgets as widgets

    names = list(runs)
    run_box = widgets.SelectMultiple(
        options=names, value=tuple(names), description="runs", rows=min(4, max(1, len(names)))
    )
    digit_box = widgets.SelectMultiple(
        options=[(f"c{k}", k) for k in range(8)], value=tuple(d for d in digits if d < 8), description="digits", rows=8
    )
    metric = widgets.ToggleButtons(options=[("loss", "loss"), ("gradient norm", "grad_norm")], value="loss")
    log_box = widgets.Checkbox(value=True, description="log scale")
    points = widgets.BoundedIntText(value=max_points, min=5, max=5_000, description="points", layout=widgets.Layout(width="160px"))
    image = widgets.Image(format="png")

    def update(_change=None) -> None:
        rows = digit_rows([runs[name] for name in run_box.value], max_points=points.value)
        fig = history_figure(rows, run_box.value, digit_box.value, metric.value, log_box.value)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        image.value = buffer.getvalue()

    for control in (run_box, digit_box, metric, log_box, points):
        control.observe(update, "value")
    update()
    hint = widgets.HTML(
        "<small>Needs a running kernel (Jupyter): on the static page the controls do nothing. "
        "Ctrl/Cmd-click to pick several runs or digits; points: bins per curve.</small>"
    )
    return widgets.VBox(
        [widgets.HBox([run_box, digit_box, widgets.VBox([metric, log_box, points])]), hint, image]
    )


__all__ = [
    "DIGIT_COLORS",
    "accuracy_curves_chart",
    "digit_color_scale",
    "history_explorer",
    "history_figure",
    "loss_and_gradient_chart",
    "loss_curves_chart",
    "step_slider_chart",
]
