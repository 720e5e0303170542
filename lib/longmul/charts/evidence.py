"""Charts, tables and summary numbers of the chapter "Evidence of long-range structure"
(paper Figs. 2 and 3, FACTS §5.1–5.2).

The inputs are tidy ``pandas.DataFrame`` objects in the shape of the files written by
``scripts/precompute_ch_evidence.py`` (``attribution.csv``: model, output, operand, drop, sem;
``probes.csv``: model, control, site, k, mae, r2, …; ``probe_scatter.csv``: model, site, k, true,
predicted), so every builder works on live results (:func:`attribution_frame`, :func:`probe_frame`,
:func:`scatter_frame`) and on those files alike. The charts' interaction (site and position selectors,
hover) runs in the browser: it works on the book's static site without a kernel.

The paper's own numbers live here as named constants (:data:`PAPER_PROBE_MAE`,
:data:`PAPER_ICOT_DROPS`, :data:`PAPER_SFT_DEPENDING`), each with its source, so that a chapter shows
them only labelled as the paper's. The chapter's sentences are written in the chapter; the numbers
they rest on come from :func:`evidence_findings`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from longmul.analysis.attribution import Attribution
from longmul.analysis.probes import PAPER_SITE, ProbeResult
from longmul.charts.accuracy import series_color_scale
from longmul.charts.heatmap import annotated_heatmap

PAPER_SHORT = "Bai et al. 2025"

# The paper's linear-probe errors (its Fig. 3; FACTS §5.2): mean absolute error of a linear regressor
# for ĉ_2 … ĉ_6, read at layer 2 after attention (before its MLP) "at the token c_k", which the book
# reads as the position predicting c_k. The paper's released script did not fit each model's probe on
# that model's own activations; ours does.
PAPER_PROBE_MAE: dict[str, dict[int, float]] = {
    "ICoT": {2: 2.05, 3: 1.96, 4: 1.72, 5: 0.99, 6: 0.56},
    "SFT": {2: 96.6, 3: 111.6, 4: 72.2, 5: 77.7, 6: 28.7},
}

# The paper's logit-attribution findings (its Fig. 2; FACTS §5.1), read off its heatmaps (published only
# as a picture): its SFT model's c0, c1 depend on a0, a1, b0, b1 and its c6, c7 on a2, a3, b2, b3, and no
# other output digit on any operand digit; its ICoT model's every c_k depends on every operand digit
# that can affect it, with drops of about 12–22.
PAPER_SFT_DEPENDING = (0, 1, 6, 7)  # the output digits of the paper's SFT model that depend on any operand digit
PAPER_ICOT_DROPS = (12, 22)  # the range of the paper's ICoT drops, in logits

MIDDLE = (2, 3, 4, 5, 6)  # the positions whose running sums the paper reports (ĉ_2 … ĉ_6)
# "c_k depends on this operand digit" when replacing the digit drops the logit of c_k by at least this
# share of the largest drop in the same model's matrix. A model that computes a digit drops its logit by
# 20–40 when an input it uses changes (the paper's ICoT: 12–22); a fixed threshold such as 1 logit
# would count the SFT model's faint middle-digit drops (≈ 1.5, a guess that leans slightly on its
# inputs) as dependencies, which the heatmap shows they are not.
DEPENDS_SHARE = 0.25
READ_OUT_R2 = 0.9  # held-out R² from which we say "a linear probe reads ĉ_k"
# How far the probe's R² must also exceed the untrained twin's at the same position: random features of
# the teacher-forced prefix already give R² ≈ 0.5–0.7, and a readout must beat what comes for free.
READ_OUT_MARGIN = 0.1

CONTROL_LABELS = {
    "none": "probe",
    "shuffled": "control: shuffled target",
    "untrained": "control: untrained twin",
    "paper": "the paper's probe",
}
_DASHES = {"probe": [1, 0], "control: shuffled target": [6, 3], "control: untrained twin": [2, 2]}
_SITE = re.compile(r"^blocks\.(\d+)\.(attn\.)?(hook_\w+?)(?:\[(\d+)\])?$")
_SITE_WORDS = {
    "hook_resid_pre": "input",
    "hook_attn_out": "attention output",
    "hook_resid_mid": "after attention",
    "hook_resid_post": "output",
    "hook_z": "head output",
    "hook_result": "head output",
}


# --------------------------------------------------------------------------- running the analyses

@contextlib.contextmanager
def limited_threads(threads: int = 1) -> Iterator[None]:
    """Run torch and the BLAS libraries (scikit-learn's ridge fits) on ``threads`` threads inside the
    ``with`` block, and restore torch's thread count afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- sites and labels

def site_label(site: str) -> str:
    """A reader's name for a probe site, layers counted from 1 as in the paper:
    ``blocks.1.hook_resid_mid`` → "layer 2, after attention (resid_mid)"."""
    match = _SITE.match(site)
    if not match or match.group(3) not in _SITE_WORDS:
        return site
    layer, hook, head = int(match.group(1)) + 1, match.group(3), match.group(4)
    words = _SITE_WORDS[hook]
    if head is not None:
        return f"layer {layer}, head {head} output ({hook[5:]})"
    return f"layer {layer}, {words} ({hook[5:]})"


def _operand_index(operand: str) -> int:
    return int(operand[1:])


def can_affect(k: int, operand: str) -> bool:
    """Whether operand digit ``operand`` ("a2", "b0", …) can change output digit c_k at all: a digit of
    place value 10^i moves the product by a multiple of 10^i, so only digits with i ≤ k can."""
    return _operand_index(operand) <= k


def _with_positions(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``k`` (from the ``output`` label "c3") and ``possible`` (:func:`can_affect`)."""
    data = df.copy()
    data["k"] = data["output"].str[1:].astype(int)
    data["possible"] = [can_affect(k, op) for k, op in zip(data["k"], data["operand"])]
    return data


# --------------------------------------------------------------------------- logit attribution

def attribution_frame(attributions: Mapping[str, Attribution]) -> pd.DataFrame:
    """Each model's attribution matrix as rows: model, output, operand, drop, sem, and ``accuracy``
    (how often the model's teacher-forced prediction of that output digit was right)."""
    rows = []
    for model, attribution in attributions.items():
        accuracy = dict(zip(attribution.outputs, attribution.accuracy))
        rows += [{"model": model, **row, "accuracy": float(accuracy[row["output"]])} for row in attribution.to_records()]
    return pd.DataFrame(rows, columns=["model", "output", "operand", "drop", "sem", "accuracy"])


def drop_label(drop: float) -> str:
    """A logit drop to one decimal, without a "-0.0"."""
    text = f"{drop:.1f}"
    return "0.0" if text == "-0.0" else text


def attribution_heatmaps(
    df: pd.DataFrame, *, title: str = "Logit drop when one operand digit is replaced", step: int = 22
) -> alt.FacetChart:
    """One 8×8 heatmap per model, side by side, on a shared colour scale: rows c0 … c7, columns
    a0 … b3, each cell the mean drop of the logit of the model's own prediction of c_k when that operand
    digit is replaced. Cells of digits that cannot change c_k (:func:`can_affect`) are faded; hover a
    cell for its value, standard error and how often the model got that digit right.

    ``df`` columns: ``model``, ``output`` ("c0" …), ``operand`` ("a0" …), ``drop``, ``sem``; optional
    ``accuracy``."""
    data = _with_positions(df)
    data["value"] = data["drop"].map(drop_label)
    data["can change c_k"] = data["possible"].map({True: "yes", False: "no (its place value is too high)"})
    if "accuracy" not in data:
        data["accuracy"] = np.nan
    models = list(dict.fromkeys(data["model"]))
    outputs = sorted(dict.fromkeys(data["output"]), key=lambda s: int(s[1:]))
    operands = list(dict.fromkeys(data["operand"]))
    high = float(max(data["drop"].max(), 1e-6)) if len(data) else 1.0
    low = float(min(data["drop"].min(), 0.0)) if len(data) else 0.0
    layers = annotated_heatmap(
        data,
        x="operand:N",
        y="output:N",
        x_title="replaced operand digit",
        y_title="output digit",
        x_sort=operands,
        y_sort=outputs,
        color="drop",
        domain=[low, high],
        clamp=True,
        color_title="logit drop",
        legend=alt.Legend(orient="bottom", gradientLength=220),
        font_size=8,
        opacity=alt.when(alt.datum.possible).then(alt.value(1.0)).otherwise(alt.value(0.3)),
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("output:N", title="output"),
            alt.Tooltip("operand:N", title="replaced"),
            alt.Tooltip("drop:Q", title="mean logit drop", format=".2f"),
            alt.Tooltip("sem:Q", title="± standard error", format=".2f"),
            alt.Tooltip("can change c_k:N"),
            alt.Tooltip("accuracy:Q", title="model right on this digit", format=".0%"),
        ],
    )
    return (
        layers.properties(width=alt.Step(step), height=alt.Step(step))
        .facet(column=alt.Column("model:N", sort=models, title=None, header=alt.Header(labelFontSize=13)))
        .properties(title=alt.Title(title, subtitle="faded: operand digits whose place value is too high to change c_k"))
    )


def dependency_thresholds(df: pd.DataFrame, share: float = DEPENDS_SHARE) -> dict[str, float]:
    """Per model: the logit drop from which an output digit counts as depending on an operand digit,
    ``share`` of the largest mean drop in that model's matrix (:data:`DEPENDS_SHARE`)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    return {str(model): share * float(part["drop"].max()) for model, part in df.groupby("model", sort=False)}


def depends_frame(df: pd.DataFrame, share: float = DEPENDS_SHARE) -> pd.DataFrame:
    """``df`` with ``k``, ``possible`` (the operand digit's place value lets it change c_k) and
    ``depends`` (possible, and its drop ≥ the model's :func:`dependency_thresholds`)."""
    data = _with_positions(df)
    thresholds = data["model"].map(dependency_thresholds(df, share))
    return data.assign(depends=data["possible"] & (data["drop"] >= thresholds))


def depending_digits(df: pd.DataFrame, share: float = DEPENDS_SHARE) -> dict[str, list[int]]:
    """Per model: the output digits k that depend on at least one operand digit."""
    data = depends_frame(df, share)
    return {
        str(model): sorted(int(k) for k, cells in part.groupby("k") if cells["depends"].any())
        for model, part in data.groupby("model", sort=False)
    }


def dependency_counts(
    df: pd.DataFrame, share: float = DEPENDS_SHARE, outputs: Sequence[int] | None = None
) -> dict[str, dict[int, tuple[int, int]]]:
    """Per model and output digit k: (operand digits c_k depends on, operand digits that can affect
    c_k), by the rule of :func:`depends_frame`."""
    data = depends_frame(df, share)
    if outputs is not None:
        data = data[data["k"].isin(outputs)]
    counts = {}
    for model in dict.fromkeys(data["model"]):
        part = data[(data["model"] == model) & data["possible"]]
        counts[model] = {int(k): (int(cells["depends"].sum()), len(cells)) for k, cells in part.groupby("k")}
    return counts


def dependency_table(
    df: pd.DataFrame, share: float = DEPENDS_SHARE, outputs: Sequence[int] | None = None
) -> pd.DataFrame:
    """How many operand digits each output digit depends on, out of those that can affect it: one row
    per model, one column per c_k, cells "depends / can affect"."""
    table = {
        model: {f"c{k}": f"{depends} / {possible}" for k, (depends, possible) in by_k.items()}
        for model, by_k in dependency_counts(df, share, outputs).items()
    }
    return pd.DataFrame.from_dict(table, orient="index")


def attribution_summary(df: pd.DataFrame, share: float = DEPENDS_SHARE, outputs: Sequence[int] = MIDDLE) -> pd.DataFrame:
    """Per model, over the output digits ``outputs`` and the operand digits that can affect each:
    ``cells`` (such pairs), ``depends`` (pairs the rule of :func:`depends_frame` counts), ``share``,
    ``mean_drop``, ``threshold`` (the model's drop threshold); and ``max_impossible``, the largest
    |drop| on a digit that cannot change its output (a sanity check: it should be ≈0 for every model)."""
    data = depends_frame(df, share)
    thresholds = dependency_thresholds(df, share)
    rows = {}
    for model, part in data.groupby("model", sort=False):
        chosen = part[part["k"].isin(outputs) & part["possible"]]
        impossible = part.loc[~part["possible"], "drop"].abs()
        depends = int(chosen["depends"].sum())
        rows[model] = {
            "cells": len(chosen),
            "depends": depends,
            "share": depends / len(chosen) if len(chosen) else np.nan,
            "mean_drop": float(chosen["drop"].mean()) if len(chosen) else np.nan,
            "threshold": thresholds[str(model)],
            "max_impossible": float(impossible.max()) if len(impossible) else 0.0,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- probes

def probe_frame(results: Mapping[str, Mapping[str, ProbeResult]]) -> pd.DataFrame:
    """The probes' held-out scores of each model and control as rows: model, control, site, k, mae, r2,
    exact, alpha, n_train, n_test (``results``: model → the dict :func:`probe_with_controls` returns)."""
    rows = [
        {"model": model, **row}
        for model, by_control in results.items()
        for result in by_control.values()
        for row in result.rows
    ]
    columns = ["model", "control", "site", "k", "mae", "r2", "exact", "alpha", "n_train", "n_test"]
    return pd.DataFrame(rows, columns=columns)


def paper_probe_frame(site: str = PAPER_SITE) -> pd.DataFrame:
    """:data:`PAPER_PROBE_MAE` as probe rows (control "paper", at our name of the paper's site)."""
    rows = [
        {"model": model, "control": "paper", "site": site, "k": k, "mae": mae, "r2": np.nan}
        for model, by_k in PAPER_PROBE_MAE.items()
        for k, mae in by_k.items()
    ]
    return pd.DataFrame(rows, columns=["model", "control", "site", "k", "mae", "r2"])


def _per_model_and_control(
    data: pd.DataFrame, models: Sequence[str], n_c: int, cell, label=lambda control, control_label: control_label
) -> pd.DataFrame:
    """One row per model and control found in ``data`` (probe rows at one site), one column per ĉ_k;
    ``cell(row)`` formats one (model, control, k) row, "" where there is none."""
    index, rows = [], []
    for model in models:
        for control, control_label in CONTROL_LABELS.items():
            part = data[(data["model"] == model) & (data["control"] == control)].set_index("k")
            if part.empty:
                continue
            index.append((model, label(control, control_label)))
            rows.append([cell(part.loc[k]) if k in part.index else "" for k in range(n_c)])
    return pd.DataFrame(
        rows, index=pd.MultiIndex.from_tuples(index, names=["model", "readout"]), columns=[f"ĉ{k}" for k in range(n_c)]
    )


def _models_and_width(df: pd.DataFrame, models: Sequence[str] | None) -> tuple[list[str], int]:
    models = list(models) if models is not None else list(dict.fromkeys(df["model"]))
    return models, int(df["k"].max()) + 1 if len(df) else 8


def probe_table(
    df: pd.DataFrame, site: str = PAPER_SITE, paper: bool = True, models: Sequence[str] | None = None
) -> pd.DataFrame:
    """The probes at one site with their controls beside them: one row per model and control (plus the
    paper's row where it reports one), one column per ĉ_k, cells "MAE (R²)"."""
    data = df[df["site"] == site]
    if paper:
        data = pd.concat([data, paper_probe_frame(site)], ignore_index=True)

    def cell(row: pd.Series) -> str:
        mae, r2 = float(row["mae"]), float(row["r2"])
        return f"{mae:.2f}" if np.isnan(r2) else f"{mae:.2f} ({r2:.2f})"

    def label(control: str, control_label: str) -> str:
        return f"reported by {PAPER_SHORT}" if control == "paper" else control_label

    return _per_model_and_control(data, *_models_and_width(df, models), cell, label)


def probe_exact_table(df: pd.DataFrame, site: str = PAPER_SITE, models: Sequence[str] | None = None) -> pd.DataFrame:
    """At one site, the share of held-out problems whose probe reading rounds to ĉ_k exactly: one row
    per model and control (the paper reports no such number), one column per ĉ_k, cells "12.3%"."""
    return _per_model_and_control(
        df[df["site"] == site], *_models_and_width(df, models), lambda row: f"{float(row['exact']):.1%}"
    )


def probe_site_chart(
    df: pd.DataFrame,
    *,
    paper: pd.DataFrame | None = None,
    default_site: str = PAPER_SITE,
    title: str | alt.Title = "Linear probes for the running sum ĉ_k: held-out error by site",
) -> alt.HConcatChart:
    """Held-out MAE (log scale) and R² of the probes at every position, one colour per model, one dash
    per control (probe, shuffled target, untrained twin); a drop-down picks the site. ``paper``
    (e.g. :func:`paper_probe_frame`) adds the paper's MAEs as diamonds, shown at the paper's site only.

    ``df`` columns: ``model``, ``control`` ("none", "shuffled", "untrained"), ``site``, ``k``, ``mae``,
    ``r2``."""
    data = df[["model", "control", "site", "k", "mae", "r2"]].copy()
    data["readout"] = data["control"].map(CONTROL_LABELS).fillna(data["control"])
    data["position"] = "ĉ" + data["k"].astype(int).astype(str)
    sites = list(dict.fromkeys(data["site"]))
    if default_site not in sites:
        default_site = sites[0] if sites else default_site
    models = list(dict.fromkeys(data["model"]))
    n_c = int(data["k"].max()) + 1 if len(data) else 8
    order = [f"ĉ{k}" for k in range(n_c)]
    site = alt.param(
        name="site",
        value=default_site,
        bind=alt.binding_select(options=sites, labels=[site_label(s) for s in sites], name="probe site: "),
    )
    x = alt.X("position:N", sort=order, title="running sum at the position predicting c_k", axis=alt.Axis(labelAngle=0))
    color = alt.Color(
        "model:N", scale=series_color_scale(models), sort=models, title="model", legend=alt.Legend(orient="bottom")
    )
    readouts = [label for label in _DASHES if label in set(data["readout"])]
    dash = alt.StrokeDash(
        "readout:N",
        scale=alt.Scale(domain=readouts, range=[_DASHES[r] for r in readouts]),
        sort=readouts,
        title="readout",
        legend=alt.Legend(
            orient="bottom",
            symbolType="stroke",  # with the lines' point overlay, the dashes show only with these:
            symbolStrokeColor="gray",
            symbolStrokeWidth=2,
            symbolFillColor="transparent",
            symbolSize=400,
            labelLimit=240,
        ),
    )
    tooltip = [
        alt.Tooltip("model:N"),
        alt.Tooltip("readout:N"),
        alt.Tooltip("position:N"),
        alt.Tooltip("mae:Q", title="MAE", format=".2f"),
        alt.Tooltip("r2:Q", title="R²", format=".3f"),
    ]
    base = alt.Chart(data).transform_filter(alt.datum.site == site)
    mae = base.mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=x,
        y=alt.Y("mae:Q", scale=alt.Scale(type="log"), title="mean absolute error (log scale)"),
        color=color,
        strokeDash=dash,
        tooltip=tooltip,
    )
    r2 = base.mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=x,
        y=alt.Y("r2:Q", scale=alt.Scale(domain=[-0.2, 1], clamp=True), title="R² (held out)"),
        color=color,
        strokeDash=dash,
        tooltip=tooltip,
    )
    if paper is not None and len(paper):
        marks = paper[["model", "site", "k", "mae"]].copy()
        marks["position"] = "ĉ" + marks["k"].astype(int).astype(str)
        marks["readout"] = f"the paper's MAE (reported by {PAPER_SHORT})"
        diamonds = (
            alt.Chart(marks)
            .transform_filter(alt.datum.site == site)
            .mark_point(shape="diamond", filled=True, size=90, opacity=0.9)
            .encode(
                x=x,
                y="mae:Q",
                color=color,
                tooltip=[
                    alt.Tooltip("model:N"),
                    alt.Tooltip("readout:N"),
                    alt.Tooltip("position:N"),
                    alt.Tooltip("mae:Q", title="MAE"),
                ],
            )
        )
        mae = alt.layer(mae, diamonds)
        title = alt.Title(title, subtitle=f"diamonds: the MAEs reported by {PAPER_SHORT}, at their site only")
    size = {"width": 230, "height": 220}
    return (
        alt.hconcat(mae.properties(**size), r2.properties(**size))
        .add_params(site)
        .resolve_scale(color="shared", strokeDash="shared")
        .properties(title=title)
    )


def scatter_frame(
    results: Mapping[str, ProbeResult], site: str = PAPER_SITE, max_points: int | None = 150
) -> pd.DataFrame:
    """Held-out true ĉ_k and each model's probe reading of it at ``site``: model, site, k, true,
    predicted (the first ``max_points`` held-out problems of each model, to keep pages light)."""
    rows = []
    for model, result in results.items():
        if site not in result.predictions:
            raise ValueError(f"site {site!r} was not probed for {model}; probed: {list(result.predictions)}")
        truth, predicted = result.y_test[:max_points], result.predictions[site][:max_points]  # (n, n_c)
        for k in range(truth.shape[1]):
            rows += [
                {"model": model, "site": site, "k": k, "true": int(t), "predicted": round(float(p), 1)}
                for t, p in zip(truth[:, k], predicted[:, k])
            ]
    return pd.DataFrame(rows, columns=["model", "site", "k", "true", "predicted"])


def probe_scatter_chart(
    df: pd.DataFrame, *, default_k: int = 3, title: str | None = None, width: int = 190
) -> alt.FacetChart:
    """Predicted vs true ĉ_k of held-out problems, one panel per model; a drop-down picks k. The grey
    diagonal is a perfect readout. ``df`` columns: ``model``, ``k``, ``true``, ``predicted``
    (optionally ``site``, named in the default title)."""
    data = df[["model", "k", "true", "predicted"]].copy()
    models = list(dict.fromkeys(data["model"]))
    ks = sorted(int(k) for k in dict.fromkeys(data["k"])) or [default_k]
    if default_k not in ks:
        default_k = ks[len(ks) // 2]
    if title is None:
        sites = list(dict.fromkeys(df["site"])) if "site" in df else []
        where = f" at {site_label(sites[0])}" if len(sites) == 1 else ""
        title = f"Probe reading vs true running sum, held-out problems{where}"
    k = alt.param(
        name="k",
        value=default_k,
        bind=alt.binding_select(options=ks, labels=[f"ĉ{k}" for k in ks], name="running sum: "),
    )
    points = (
        alt.Chart()
        .mark_circle(size=14, opacity=0.45)
        .encode(
            x=alt.X("true:Q", title="true ĉ_k"),
            y=alt.Y("predicted:Q", title="probe's reading"),
            color=alt.Color("model:N", scale=series_color_scale(models), sort=models, legend=None),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("true:Q", title="true ĉ_k"),
                alt.Tooltip("predicted:Q", title="probe's reading", format=".1f"),
            ],
        )
    )
    diagonal = (
        alt.Chart()
        .transform_aggregate(low="min(true)", high="max(true)")
        .mark_rule(color="gray", strokeDash=[4, 3])
        .encode(x="low:Q", y="low:Q", x2="high:Q", y2="high:Q")
    )
    return (
        alt.layer(diagonal, points, data=data)
        .transform_filter(alt.datum.k == k)
        .properties(width=width, height=width)
        .facet(column=alt.Column("model:N", sort=models, title=None, header=alt.Header(labelFontSize=13)))
        .add_params(k)
        .properties(title=title)
    )


# --------------------------------------------------------------------------- what the measurements say

def upstream_sites(site: str, sites: Sequence[str]) -> list[str]:
    """The sites among ``sites`` that come before the layer of ``site``, less the previous layer's
    ``resid_post`` (the same activation as this layer's ``resid_pre``). A probe at
    ``blocks.1.hook_resid_mid`` reads ``resid_pre + attn_out`` of layer 2 linearly, so a loss that trains
    a probe there trains both terms directly; the sites returned lie before that sum. Sites whose
    layer cannot be parsed are left out."""
    match = _SITE.match(site)
    if not match:
        return []
    layer = int(match.group(1))
    its_input = f"blocks.{layer - 1}.hook_resid_post"
    return [s for s in sites if (m := _SITE.match(s)) and int(m.group(1)) < layer and s != its_input]


def _read_out_count(part: pd.DataFrame, site: str, read_out_r2: float, twin_margin: float) -> int:
    """Positions at ``site`` where the probe's R² is ≥ ``read_out_r2`` and exceeds the untrained twin's
    R² at that position by ≥ ``twin_margin`` (a position without a twin does not count)."""
    at_site = part[part["site"] == site]
    probe = at_site[at_site["control"] == "none"].set_index("k")["r2"]
    twin = at_site[at_site["control"] == "untrained"].set_index("k")["r2"].reindex(probe.index)
    return int(((probe >= read_out_r2) & (probe - twin >= twin_margin)).sum())


def evidence_findings(
    attribution_df: pd.DataFrame,
    probe_df: pd.DataFrame,
    *,
    site: str = PAPER_SITE,
    positions: Sequence[int] = MIDDLE,
    share: float = DEPENDS_SHARE,
    read_out_r2: float = READ_OUT_R2,
    twin_margin: float = READ_OUT_MARGIN,
) -> pd.DataFrame:
    """The numbers chapter 2's sentences rest on, one row per model (models in either frame):

    * ``depends``, ``cells``, ``share``, ``mean_drop``, ``threshold``: over c_k for k in ``positions``,
      the operand digits that can affect c_k and that c_k depends on (:func:`depends_frame`), and the
      mean drop over all those pairs (:func:`attribution_summary`);
    * ``depending``: the output digits that depend on some operand digit (:func:`depending_digits`), and
      ``paper_sft_pattern``: whether they are exactly :data:`PAPER_SFT_DEPENDING`, as in the paper's SFT;
    * ``probe_mae``, ``probe_r2``: mean held-out MAE and R² of the probes for ĉ_k, k in ``positions``,
      at ``site``; ``paper_mae``: the paper's mean MAE over the same positions, where it reports them all;
      ``read_out``: for how many of those k the R² is ≥ ``read_out_r2`` and ≥ ``twin_margin`` above the
      untrained twin's;
    * ``shuffled_mae``, ``untrained_mae``, ``untrained_r2``: the same means for the two controls;
    * ``best_upstream_site``, ``best_upstream_r2``: among :func:`upstream_sites` of ``site`` (in the
      order of the rows of ``probe_df``), the one with the highest mean R² of the probe."""
    summary = attribution_summary(attribution_df, share, positions) if len(attribution_df) else pd.DataFrame()
    depending = depending_digits(attribution_df, share) if len(attribution_df) else {}
    upstream = upstream_sites(site, list(dict.fromkeys(probe_df["site"])))
    models = list(dict.fromkeys(list(summary.index) + list(probe_df["model"])))
    rows = {}
    for model in models:
        row: dict = {}
        if model in summary.index:
            row.update(summary.loc[model, ["depends", "cells", "share", "mean_drop", "threshold"]].to_dict())
            row["depending"] = depending[model]
            row["paper_sft_pattern"] = set(depending[model]) == set(PAPER_SFT_DEPENDING)
        part = probe_df[(probe_df["model"] == model) & probe_df["k"].isin(positions)]
        for control, prefix in (("none", "probe"), ("shuffled", "shuffled"), ("untrained", "untrained")):
            here = part[(part["control"] == control) & (part["site"] == site)]
            if len(here):
                row[f"{prefix}_mae"] = float(here["mae"].mean())
                row[f"{prefix}_r2"] = float(here["r2"].mean())
                if control == "none":
                    row["read_out"] = _read_out_count(part, site, read_out_r2, twin_margin)
                    row["positions"] = len(here)
        paper = PAPER_PROBE_MAE.get(model, {})
        if all(k in paper for k in positions):
            row["paper_mae"] = float(np.mean([paper[k] for k in positions]))
        others = part[(part["control"] == "none") & part["site"].isin(upstream)].groupby("site", sort=False)["r2"].mean()
        if len(others):
            row["best_upstream_site"] = str(others.idxmax())
            row["best_upstream_r2"] = float(others.max())
        rows[model] = row
    return pd.DataFrame.from_dict(rows, orient="index")
