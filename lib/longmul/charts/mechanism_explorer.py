"""The Jupyter widget of the chapter "The mechanism": pick a problem, a model, a head, the position it
attends from and a key, and see that problem's attention row and what knocking the edge out does to
every digit of the teacher-forced answer. It needs a live kernel; the chapter's altair charts
(:mod:`longmul.charts.mechanism`) are its static-site counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import ipywidgets as widgets
import numpy as np
from transformers import GPT2LMHeadModel

from longmul.analysis.attention import (
    answer_positions,
    key_kind,
    mean_attention,
    position_labels,
    teacher_forced_scores,
)
from longmul.charts.widget_hint import kernel_hint
from longmul.charts.mechanism import edge_name, edge_role, head_name, layer_name, query_name
from longmul.evaluate import cot_tokens_of
from longmul.hooks import Knockout
from longmul.model import model_config_of
from longmul.task import problem_from_strings

_CELL = "padding: 2px 6px; text-align: center; font-family: monospace;"
_RIGHT = "background: rgba(76, 159, 112, 0.25);"
_WRONG = "background: rgba(209, 73, 91, 0.30);"


def attention_row_html(labels: Sequence[str], row: np.ndarray, query: int, knocked: int | None = None) -> str:
    """One attention row: a box per key position up to ``query`` with its label and weight, shaded by the
    weight, the key ``knocked`` (if any) outlined. The boxes wrap, so a long row (a chain-of-thought
    model has 60 keys) stays as wide as the page."""
    boxes = []
    for key in range(query + 1):
        w = float(row[key])
        outline = "outline: 2px solid #d1495b;" if key == knocked else ""
        boxes.append(
            f'<div class="longmul-key" style="{_CELL}min-width: 3.2em; background: rgba(76, 120, 168, '
            f'{min(w, 1.0) * 0.85:.2f});{outline}">{escape(labels[key])}<br>{w:.2f}</div>'
        )
    return (
        '<div class="longmul-attention-row" style="display: flex; flex-wrap: wrap; gap: 2px; max-width: 100%;">'
        f"{''.join(boxes)}</div>"
    )


def knockout_table_html(true_digits: Sequence[int], clean, knocked) -> str:
    """Per digit c_k: the true digit, and the teacher-forced prediction and correct logit of the clean and
    the knocked-out model (``clean``, ``knocked``: :class:`TeacherForcedScores` of one problem)."""
    n_c = len(true_digits)
    head = "".join(f'<th style="{_CELL}">c<sub>{k}</sub></th>' for k in range(n_c))

    def pred_row(name: str, scores) -> str:
        tds = []
        for k in range(n_c):
            d, ok = int(scores.predicted[0, k]), bool(scores.correct[0, k])
            tds.append(f'<td style="{_CELL}{_RIGHT if ok else _WRONG}">{d if d >= 0 else "·"} {"✓" if ok else "✗"}</td>')
        return f'<tr><th style="text-align: left;">{name}</th>{"".join(tds)}</tr>'

    def logit_row(name: str, values) -> str:
        return f'<tr><th style="text-align: left;">{name}</th>' + "".join(f'<td style="{_CELL}">{v:+.2f}</td>' for v in values) + "</tr>"

    drop = clean.logit[0] - knocked.logit[0]
    truth = "".join(f'<td style="{_CELL}">{d}</td>' for d in true_digits)
    return (
        '<table class="longmul-knockout" style="border-collapse: collapse; margin-left: 0;">'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>"
        f'<tr><th style="text-align: left;">true digit</th>{truth}</tr>'
        + pred_row("clean model", clean)
        + pred_row("edge knocked out", knocked)
        + logit_row("correct logit, clean", clean.logit[0])
        + logit_row("correct-logit drop", drop)
        + "</tbody></table>"
    )


def mechanism_explorer(
    models: Mapping[str, GPT2LMHeadModel],
    a: str = "2365",
    b: str = "4347",
    *,
    start: tuple[str, Knockout] | None = None,
) -> widgets.VBox:
    """Pick a problem, a model, a layer, a head, a query position and a key: see that problem's attention
    row for the head at that position, and what knocking out the edge to the key (by default the key
    the head attends to most) does to every digit of the teacher-forced answer. ``start``: the model and
    the edge (an answer position as query) to open with, e.g. the costliest important edge. The operands
    have as many digits as the picked model's."""
    names = list(models)
    a_box = widgets.Text(value=a, description="a =", continuous_update=False, layout=widgets.Layout(width="160px"))
    b_box = widgets.Text(value=b, description="b =", continuous_update=False, layout=widgets.Layout(width="160px"))
    first = start[0] if start is not None and start[0] in models else (names[0] if names else None)
    model_box = widgets.Dropdown(options=names, value=first, description="model")
    layer_box = widgets.Dropdown(options=[], description="layer")
    head_box = widgets.Dropdown(options=[], description="head")
    query_box = widgets.Dropdown(options=[], description="position", style={"description_width": "initial"})
    key_box = widgets.Dropdown(options=[], description="knock out key", style={"description_width": "initial"})
    out = widgets.HTML()
    busy = {"on": False}
    pending = {"edge": start[1] if start is not None and start[0] == first else None}

    def set_options(model: GPT2LMHeadModel) -> None:
        labels = position_labels(model)
        answers = answer_positions(model)
        edge, pending["edge"] = pending["edge"], None
        if edge is not None and (
            edge.query not in answers or not 0 <= edge.key <= edge.query
            or edge.layer >= model.config.n_layer or edge.head >= model.config.n_head
        ):  # fmt: skip
            edge = None
        layer_box.options = [(layer_name(x), x) for x in range(model.config.n_layer)]
        layer_box.value = edge.layer if edge is not None else model.config.n_layer - 1
        head_box.options = [(f"head {h}", h) for h in range(model.config.n_head)]
        head_box.value = edge.head if edge is not None else 0
        query_box.options = [(query_name(labels[p], k), p) for k, p in enumerate(answers)]
        query_box.value = edge.query if edge is not None else answers[min(3, len(answers) - 1)]
        set_keys(labels, edge.key if edge is not None else -1)

    def set_keys(labels: Sequence[str], key: int = -1) -> None:
        key_box.options = [("strongest", -1)] + [(labels[p], p) for p in range(query_box.value + 1)]
        key_box.value = key

    def update(change=None) -> None:
        if busy["on"]:
            return
        if not names:
            out.value = "<p>No model is available yet.</p>"
            return
        busy["on"] = True
        try:
            model = models[model_box.value]
            owner = getattr(change, "owner", None) if change is not None else None
            if change is None or owner is model_box:
                set_options(model)
            elif owner is query_box:
                set_keys(position_labels(model))
        finally:
            busy["on"] = False
        try:
            problem = problem_from_strings(a_box.value, b_box.value, n_digits=model_config_of(model).layout.n_a)
        except ValueError as err:
            out.value = f'<p style="color: #d1495b;">{escape(str(err))}</p>'
            return
        labels = position_labels(model)
        layer, head, query = layer_box.value, head_box.value, query_box.value
        row = mean_attention(model, [problem]).mean[layer, head, query]
        key = int(np.argmax(row[: query + 1])) if key_box.value == -1 else key_box.value
        edge = Knockout(layer, head, query, key)
        clean = teacher_forced_scores(model, [problem])
        knocked = teacher_forced_scores(model, [problem], [edge])
        name = edge_name(layer, head, labels[query], labels[key])
        role = edge_role(layer, query, key, labels[key])
        notes = []
        if role == "sink":
            notes.append(
                f"The key {labels[key]} is an attention sink: knocking it out renormalises the rest of the row. "
                + (
                    "At layer 1 it is the same in every problem, so a change below does not mean that the key "
                    "carries information."
                    if layer == 0
                    else "At layer 2 it also holds what layer-1 heads wrote there, so a change below may be "
                    "either that renormalisation or information."
                )
            )
        if cot_tokens_of(model) > 0:
            cot_share = sum(float(row[p]) for p in range(query + 1) if key_kind(labels[p]) == "cot")
            notes.append(
                f"This model still writes {cot_tokens_of(model)} chain-of-thought tokens; on this problem this "
                f"head gives them {cot_share:.0%} of its attention at this position."
            )
        caption = f"{problem.a} × {problem.b} = {problem.product}: {head_name(layer, head)} at {query_name(labels[query], answer_positions(model).index(query))}"
        out.value = (
            f"<p><b>{escape(caption)}</b> (this problem's attention)</p>"
            + attention_row_html(labels, row, query, knocked=key)
            + f"<p>Knocking out <b>{escape(name)}</b> ({escape(role)}, attention {row[key]:.2f}):</p>"
            + knockout_table_html(problem.c_digits, clean, knocked)
            + "".join(f"<p><small>{escape(n)}</small></p>" for n in notes)
        )

    for box in (a_box, b_box, model_box, layer_box, head_box, query_box, key_box):
        box.observe(update, "value")
    update()
    hint = kernel_hint(
        "Type two 4-digit numbers and press Enter; pick a model, a head, the position it attends from "
        "and the key whose edge to knock out."
    )
    return widgets.VBox(
        [widgets.HBox([a_box, b_box, model_box]), widgets.HBox([layer_box, head_box]), widgets.HBox([query_box, key_box]), hint, out]
    )

