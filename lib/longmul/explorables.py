"""The book's in-browser explorables: the models run in the reader's browser, on the static site.

A chapter places one with ``display(explorable("multiply"))``. The output is a ``<div>`` that the
site's ``longmul-explorables.js`` (``book/_vendor/longmul/``) turns into a live widget: it loads
onnxruntime-web and the shipped models' ONNX exports (``longmul.browser_assets.write_site_models``,
run by the book's Sphinx extension) and runs them with ``longmul-models.js``, with no kernel and no
request leaving the site. In Jupyter that script is absent, so the ``<div>`` shows its fallback text,
which points to the chapter's ipywidgets instead.

Kinds:

* ``multiply``: type two 4-digit numbers; every shipped model answers digit by digit, each digit green
  or red against the true product, with the model's probability for it.
* ``knockout``: pick a model, a problem, an output digit and a head; see that head's attention row;
  click an edge to knock it out (``longmul.hooks.Knockout``: the edge's weight zeroed, the row
  renormalised) and see the new answer and the change of that digit's logit. ``presets`` are named
  lists of knockouts offered as one-click buttons (chapter 3 offers the tree's edges into a digit).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from transformers import GPT2LMHeadModel

from .evaluate import answer_digits
from .hooks import Knockout
from .model import model_config_of
from .onnx_runtime import decode_model, torch_logits_fn
from .task import Problem, problem_from_strings

KINDS = ("multiply", "knockout")
FALLBACK = (
    "On the book's website this box runs the models in your browser. In Jupyter it needs the site's "
    "scripts, so use the widget below instead."
)


@dataclass(frozen=True)
class Preset:
    """A one-click set of knockouts: shown as a button labelled ``label``; it selects ``model``, the
    problem ``a`` × ``b`` and the output digit ``digit``, and knocks out ``knockouts``."""

    label: str
    model: str
    a: str
    b: str
    digit: int
    knockouts: Sequence[Knockout] = field(default_factory=tuple)

    def as_json(self) -> dict:
        problem_from_strings(self.a, self.b)  # ValueError naming the operand if it is not 4-digit
        if not 0 <= self.digit < 8:
            raise ValueError(f"preset {self.label!r}: digit must be 0-7 (c0 … c7), got {self.digit}")
        if not self.knockouts:
            raise ValueError(f"preset {self.label!r} knocks out nothing")
        return {
            "label": self.label,
            "model": self.model,
            "a": self.a,
            "b": self.b,
            "digit": self.digit,
            "knockouts": [_knockout_json(k) for k in self.knockouts],
        }


def _positions(value) -> int | list[int]:
    return int(value) if isinstance(value, int | np.integer) else [int(x) for x in value]


def _knockout_json(k: Knockout) -> dict:
    return {"layer": int(k.layer), "head": int(k.head), "query": _positions(k.query), "key": _positions(k.key)}


@dataclass(frozen=True)
class Explorable:
    """The HTML of one explorable (displayed by Jupyter and myst-nb through ``_repr_html_``)."""

    kind: str
    settings: dict

    def _repr_html_(self) -> str:
        data = html.escape(json.dumps(self.settings, sort_keys=True), quote=True)
        return (
            f'<div class="longmul-explorable" data-kind="{self.kind}" data-settings="{data}">'
            f'<p class="longmul-explorable-fallback">{html.escape(FALLBACK)}</p></div>'
        )


def explorable(
    kind: str,
    *,
    a: str = "2365",
    b: str = "4347",
    model: str | None = None,
    digit: int = 3,
    presets: Sequence[Preset] = (),
) -> Explorable:
    """An explorable of ``kind`` (see the module docstring) opening on ``a`` × ``b``; a ``knockout``
    explorable also opens on ``model`` (a name from ``longmul.shipped.MODEL_LABELS``; default: the
    first the site has), output digit ``digit`` and offers ``presets``."""
    if kind not in KINDS:
        raise ValueError(f"unknown explorable kind {kind!r}; choose one of {', '.join(KINDS)}")
    problem_from_strings(a, b)
    settings: dict = {"a": a, "b": b}
    if kind == "knockout":
        if not 0 <= digit < 8:
            raise ValueError(f"digit must be 0-7 (c0 … c7), got {digit}")
        settings |= {"model": model, "digit": digit, "presets": [p.as_json() for p in presets]}
    elif presets or model is not None:
        raise ValueError("only a knockout explorable takes a model and presets")
    return Explorable(kind, settings)


def greedy_digits(
    model: GPT2LMHeadModel, problems: Sequence[Problem], knockouts: Sequence[Knockout] = ()
) -> np.ndarray:
    """(B, n_c) the digits the PyTorch ``model`` writes for ``problems`` under ``knockouts``, decoding
    greedily in its own format (-1 where it writes no digit): what the knockout explorable shows for
    the same knockouts in the browser."""
    layout = model_config_of(model).layout
    for p in problems:
        if (p.n_a, p.n_b) != (layout.n_a, layout.n_b):
            raise ValueError(
                f"model was trained on {layout.n_a}x{layout.n_b} problems, got {p.n_a}x{p.n_b} ({p.a} × {p.b})"
            )
    pairs = np.array([[p.a, p.b] for p in problems], dtype=np.int64)  # (B, 2)
    decoded = decode_model(model, torch_logits_fn(model, knockouts), pairs)
    return answer_digits(decoded.generated, layout.n_c)


def breaks_digit(
    model: GPT2LMHeadModel, problems: Sequence[Problem], knockouts: Sequence[Knockout], digit: int
) -> np.ndarray:
    """(B,) bool: the model writes ``c_digit`` right when intact and wrong under ``knockouts``."""
    truth = np.array([p.c_digits[digit] for p in problems])
    intact = greedy_digits(model, problems)[:, digit] == truth
    knocked = greedy_digits(model, problems, knockouts)[:, digit] == truth
    return intact & ~knocked
