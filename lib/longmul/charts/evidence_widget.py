"""An ipywidget for the chapter "Evidence of long-range structure": pick a problem, a model and a probe
site, see that problem's attribution matrix (:func:`longmul.analysis.attribution.problem_attribution`)
and what the model's fitted probes read off it (:func:`longmul.analysis.probes.predict_running_sums`).

In Jupyter the widget recomputes on every change (a few forward passes). On the book's static site it
is drawn with the state it had when the chapter was executed (no kernel runs its callbacks there).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

import ipywidgets as widgets
import numpy as np
from transformers import GPT2LMHeadModel

from longmul.analysis.attribution import Attribution, problem_attribution
from longmul.analysis.probes import PAPER_SITE, ProbeResult, predict_running_sums
from longmul.charts.evidence import can_affect, drop_label, site_label
from longmul.charts.widget_hint import kernel_hint
from longmul.evaluate import cot_tokens_of
from longmul.task import Problem, problem_from_strings

_CELL = "padding: 2px 6px; text-align: right; font-family: monospace;"
_HEAD = "padding: 2px 6px; text-align: center;"
_RIGHT = "background: rgba(76, 159, 112, 0.25);"
_WRONG = "background: rgba(209, 73, 91, 0.30);"


def _shade(drop: float, scale: float) -> str:
    """Blue for a logit drop, red for a rise, in proportion to ``scale``."""
    alpha = min(abs(drop) / scale, 1.0) * 0.8 if scale > 0 else 0.0
    rgb = "76, 120, 168" if drop >= 0 else "209, 73, 91"
    return f"background: rgba({rgb}, {alpha:.2f});"


def attribution_table_html(attribution: Attribution, problem: Problem) -> str:
    """One problem's attribution matrix as an HTML table: rows c0 … c7 (with the true digit and whether
    the model's teacher-forced prediction is right), columns a0 … b3 with the operand's digits, cells
    the logit drop shaded by size. Digits that cannot change c_k are greyed."""
    digits = list(problem.a_digits) + list(problem.b_digits)
    scale = float(np.abs(attribution.matrix).max()) if attribution.matrix.size else 0.0
    head = "".join(
        f'<th style="{_HEAD}">{escape(op)}<br><small>= {d}</small></th>' for op, d in zip(attribution.operands, digits)
    )
    rows = []
    for r, output in enumerate(attribution.outputs):
        right = attribution.accuracy[r] >= 0.5
        verdict = f'<td style="{_HEAD}{_RIGHT if right else _WRONG}">{"✓" if right else "✗"}</td>'
        cells = []
        for c, operand in enumerate(attribution.operands):
            drop = float(attribution.matrix[r, c])
            grey = "" if can_affect(r, operand) else "color: #999;"
            cells.append(f'<td style="{_CELL}{_shade(drop, scale)}{grey}">{drop_label(drop)}</td>')
        rows.append(
            f'<tr><th style="{_HEAD}">{escape(output)} = {problem.c_digits[r]}</th>{verdict}{"".join(cells)}</tr>'
        )
    caption = f"{problem.a} × {problem.b} = {problem.product}: logit drop when one operand digit is replaced"
    return (
        '<table class="longmul-attribution" style="border-collapse: collapse;">'
        f'<caption style="caption-side: top; text-align: left;">{escape(caption)}</caption>'
        f'<thead><tr><th></th><th style="{_HEAD}">model right?</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def readout_table_html(problem: Problem, readings: np.ndarray, site: str) -> str:
    """True running sums ĉ_k of ``problem`` next to a probe's readings (n_c,) and their errors."""
    head = "".join(f'<th style="{_HEAD}">ĉ<sub>{k}</sub></th>' for k in range(len(readings)))
    true = "".join(f'<td style="{_CELL}">{s}</td>' for s in problem.running_sums)
    read = "".join(f'<td style="{_CELL}">{r:.1f}</td>' for r in readings)
    error = "".join(f'<td style="{_CELL}">{r - s:+.1f}</td>' for r, s in zip(readings, problem.running_sums))
    caption = f"What the probes at {site_label(site)} read off this problem"
    return (
        '<table class="longmul-readout" style="border-collapse: collapse;">'
        f'<caption style="caption-side: top; text-align: left;">{escape(caption)}</caption>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>"
        f'<tr><th style="text-align: left;">true ĉ<sub>k</sub></th>{true}</tr>'
        f'<tr><th style="text-align: left;">probe reading</th>{read}</tr>'
        f'<tr><th style="text-align: left;">error</th>{error}</tr>'
        "</tbody></table>"
    )


def _note(model: GPT2LMHeadModel) -> str:
    cot = cot_tokens_of(model)
    if cot == 0:
        return ""
    return (
        f"<p><small>This model still writes {cot} chain-of-thought tokens before the answer; the "
        "teacher-forced run keeps them unchanged, and the model may copy answer digits from them, so "
        "small drops here need not mean that it ignores the operands.</small></p>"
    )


def evidence_explorer(
    models: Mapping[str, GPT2LMHeadModel],
    probes: Mapping[str, ProbeResult],
    a: str = "2365",
    b: str = "4347",
    site: str = PAPER_SITE,
) -> widgets.VBox:
    """Text boxes for the operands, drop-downs for the model and the probe site, and the chosen model's
    attribution matrix and probe readings of that problem. ``probes``: model name → its fitted probes
    (the ``"none"`` result of :func:`longmul.analysis.probes.probe_with_controls`)."""
    a_box = widgets.Text(value=a, description="a =", continuous_update=False, layout=widgets.Layout(width="160px"))
    b_box = widgets.Text(value=b, description="b =", continuous_update=False, layout=widgets.Layout(width="160px"))
    names = list(models)
    model_box = widgets.Dropdown(options=names, value=names[0] if names else None, description="model")
    sites = list(next(iter(probes.values())).predictions) if probes else []
    site_box = widgets.Dropdown(
        options=[(site_label(s), s) for s in sites],
        value=site if site in sites else (sites[0] if sites else None),
        description="probe site",
        style={"description_width": "initial"},
        layout=widgets.Layout(width="360px"),
    )
    out = widgets.HTML()

    def update(_change=None) -> None:
        if not names:
            out.value = "<p>No model is available yet.</p>"
            return
        try:
            problem = problem_from_strings(a_box.value, b_box.value)
        except ValueError as err:
            out.value = f'<p style="color: #d1495b;">{escape(str(err))}</p>'
            return
        model = models[model_box.value]
        parts = [attribution_table_html(problem_attribution(model, problem), problem), _note(model)]
        result = probes.get(model_box.value)
        if result is not None and site_box.value in result.predictions:
            readings = predict_running_sums(model, result, [problem], site=site_box.value)[0]
            parts.append(readout_table_html(problem, readings, site_box.value))
        out.value = "".join(parts)

    for box in (a_box, b_box, model_box, site_box):
        box.observe(update, "value")
    update()
    hint = kernel_hint("Type two 4-digit numbers and press Enter; pick a model and a probe site.")
    return widgets.VBox([widgets.HBox([a_box, b_box]), widgets.HBox([model_box, site_box]), hint, out])
