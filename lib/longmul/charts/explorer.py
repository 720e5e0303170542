"""An ipywidget to probe the models by hand: type two numbers, see each model's answer digit by digit.

In Jupyter the widget runs the models on every change. On the book's static site the widget is drawn
with the state it had when the chapter was executed (no kernel runs its callbacks there).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

import ipywidgets as widgets
from transformers import GPT2LMHeadModel

from longmul.evaluate import Prediction, predict
from longmul.task import Problem, problem_from_strings

# On the book's static page the boxes do nothing: the hint says so wherever the widget is drawn.
KERNEL_HINT = (
    "Needs a running kernel (open this chapter in Jupyter): type two 4-digit numbers and press Enter. "
    "On a static page the table stays at the problem it was executed with."
)
_RIGHT = "background: rgba(76, 159, 112, 0.25);"
_WRONG = "background: rgba(209, 73, 91, 0.30);"
_CELL = "padding: 2px 8px; text-align: center; font-family: monospace;"


def _row(label_html: str, cells: list[str], styles: list[str] | None = None) -> str:
    styles = styles or [""] * len(cells)
    tds = "".join(f'<td style="{_CELL}{s}">{escape(c)}</td>' for c, s in zip(cells, styles))
    return f'<tr><th style="text-align: left; padding-right: 12px;">{label_html}</th>{tds}</tr>'


def answer_table_html(problem: Problem, predictions: Mapping[str, Prediction]) -> str:
    """An HTML table: the true digits c_k, the running sums ĉ_k, and each model's digits.

    Columns run c0 (units) … c7, the order the models write them in. A model's digit is marked ✓ on a
    green background when right and ✗ on a red one when wrong; "·" stands for a digit it did not write.
    """
    n_c = problem.n_c
    head = "".join(f'<th style="{_CELL}">c<sub>{k}</sub></th>' for k in range(n_c))
    rows = [
        _row("true digit", [str(d) for d in problem.c_digits]),
        _row("running sum ĉ<sub>k</sub>", [str(s) for s in problem.running_sums]),
    ]
    for name, pred in predictions.items():
        cells, styles = [], []
        for digit, ok in zip(pred.digits, pred.correct):
            cells.append(f"{digit if digit >= 0 else '·'} {'✓' if ok else '✗'}")
            styles.append(_RIGHT if ok else _WRONG)
        verdict = "all right" if pred.exact else f"{sum(not ok for ok in pred.correct)} wrong"
        rows.append(_row(escape(f"{name} ({verdict})"), cells, styles))
    caption = f"{problem.a} × {problem.b} = {problem.product}"
    return (
        '<table class="longmul-answers" style="border-collapse: collapse;">'
        f'<caption style="caption-side: top; text-align: left;">{escape(caption)}</caption>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def answer_explorer(models: Mapping[str, GPT2LMHeadModel], a: str = "2365", b: str = "4347") -> widgets.VBox:
    """Two text boxes for the operands and a table of every model's answer (see :func:`answer_table_html`)."""
    a_box = widgets.Text(value=a, description="a =", continuous_update=False, layout=widgets.Layout(width="160px"))
    b_box = widgets.Text(value=b, description="b =", continuous_update=False, layout=widgets.Layout(width="160px"))
    table = widgets.HTML()

    def update(_change=None) -> None:
        try:
            problem = problem_from_strings(a_box.value, b_box.value)
        except ValueError as err:
            table.value = f'<p style="color: #d1495b;">{escape(str(err))}</p>'
            return
        predictions = {name: predict(model, problem) for name, model in models.items()}
        table.value = answer_table_html(problem, predictions)

    a_box.observe(update, "value")
    b_box.observe(update, "value")
    update()
    hint = widgets.HTML(f"<small>{KERNEL_HINT}</small>")
    return widgets.VBox([widgets.HBox([a_box, b_box]), hint, table])
