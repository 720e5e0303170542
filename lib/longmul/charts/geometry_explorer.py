"""The Jupyter widget of the chapter "Geometry": pick a model, an attention output (a layer's or one
head's), the position and the digit to colour by, and see the first three principal components of that
output over a set of problems, with the variance the operand digits explain. It needs a live kernel;
:func:`longmul.charts.geometry.pca_brush_chart` is its static-site counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

import numpy as np

from longmul.charts.geometry import OPERAND_DIGITS, digit_value_cmap, png_bytes

# What the widget says above its picture: on the book's static page its controls do nothing.
KERNEL_HINT = (
    "<small><b>Needs a running kernel</b>: open this chapter as a notebook in Jupyter to use these controls. "
    "On the static page they do nothing and the picture stays as the chapter was executed; the charts "
    "above (drop-downs, dragging) work on the page.</small>"
)


def _scatter_figure(coords: np.ndarray, colour: np.ndarray, colour_name: str, title: str, ratio: np.ndarray):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.4, 2.7), layout="constrained")  # 740 px at 100 dpi: the book's text column
    axes = fig.subplots(1, 3)
    cmap = digit_value_cmap()  # the book's digit colours
    for ax, (x, y) in zip(axes, ((0, 1), (0, 2), (1, 2))):
        points = ax.scatter(
            coords[:, x], coords[:, y], c=colour, cmap=cmap, vmin=-0.5, vmax=9.5, s=8, alpha=0.7, linewidths=0
        )
        ax.set_xlabel(f"PC{x + 1} ({ratio[x]:.0%})")
        ax.set_ylabel(f"PC{y + 1} ({ratio[y]:.0%})")
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(points, ax=axes, ticks=range(10), shrink=0.9)
    bar.set_label(colour_name)
    fig.suptitle(title, fontsize=10)
    return fig


def _summary_html(X: np.ndarray, digits: Mapping[str, np.ndarray], colour: str) -> str:
    from longmul.analysis.geometry import digit_pair_variance

    rows = digit_pair_variance(X, {n: digits[n] for n in OPERAND_DIGITS if n in digits})
    best = max(rows, key=lambda r: r["full"])
    text = (
        f"Best-organising pair: <b>{best['a_digit']}·{best['b_digit']}</b>: additive model "
        f"{best['additive']:.0%} of the variance, every cell {best['full']:.0%} (additive / full "
        f"{best['additive_share']:.2f}; {best['a_digit']} alone {best['a']:.0%}, {best['b_digit']} alone {best['b']:.0%}; "
        "every share adjusted for the parameters its model fits)."
    )
    if colour in OPERAND_DIGITS:
        column = "a" if colour[0] == "a" else "b"
        alone = next(r[column] for r in rows if r[f"{column}_digit"] == colour)
        text = f"{escape(colour)} alone explains {alone:.0%} of the variance. " + text
    return f"<p><small>{text}</small></p>"


def geometry_explorer(
    models: Mapping[str, object],
    problems,
    *,
    model: str | None = None,
    layer: int = 0,
    head: int | None = None,
    k: int = 2,
    colour: str = "b1",
):
    """An ipywidget (Jupyter only): pick a model, an attention output (a layer's whole attention output or
    one head's), the position (the one predicting c_k) and the digit to colour by; it recomputes the
    activations over ``problems`` and redraws their first three principal components, with the share of
    variance the colouring digit and the best-organising operand pair explain. On the static site it is
    drawn as it was when the chapter executed (no kernel runs its callbacks there)."""
    import ipywidgets as widgets

    from longmul.analysis.geometry import activations_at, digit_columns, pca
    from longmul.evaluate import cot_tokens_of

    names = list(models)
    model_box = widgets.Dropdown(
        options=names, value=model if model in names else (names[0] if names else None), description="model"
    )
    n_layers = max((m.config.n_layer for m in models.values()), default=1)
    n_heads = max((m.config.n_head for m in models.values()), default=1)
    sites = []
    for layer_ in range(n_layers):
        sites.append((f"layer {layer_ + 1} attention output", (layer_, -1)))
        sites += [(f"layer {layer_ + 1} head {h}", (layer_, h)) for h in range(n_heads)]
    site_box = widgets.Dropdown(
        options=sites,
        value=(layer, -1 if head is None else head),
        description="output of",
        style={"description_width": "initial"},
    )
    k_box = widgets.Dropdown(
        options=[(f"predicting c{i}", i) for i in range(8)],
        value=k,
        description="position",
        style={"description_width": "initial"},
    )
    colours = OPERAND_DIGITS + [f"c{i}" for i in range(8)]
    colour_box = widgets.Dropdown(
        options=colours,
        value=colour if colour in colours else "b0",
        description="colour by",
        style={"description_width": "initial"},
    )
    image = widgets.Image(format="png")
    text = widgets.HTML()
    cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    digit_cache: dict[str, dict[str, np.ndarray]] = {}

    def update(_change=None) -> None:
        if not names:
            text.value = "<p>No model is available yet.</p>"
            return
        name, (layer_, head_), k_ = model_box.value, site_box.value, k_box.value
        net = models[name]
        if layer_ >= net.config.n_layer or head_ >= net.config.n_head:
            text.value = "<p>This model has no such layer or head.</p>"
            return
        if (name, k_) not in cache:
            hooks = [
                f"blocks.{i}.{h}" for i in range(net.config.n_layer) for h in ("hook_attn_out", "attn.hook_result")
            ]
            cache[name, k_] = activations_at(net, problems, hooks, k_)
        if name not in digit_cache:
            digit_cache[name] = digit_columns(net, problems)
        acts = cache[name, k_]
        X = acts[f"blocks.{layer_}.hook_attn_out"] if head_ < 0 else acts[f"blocks.{layer_}.attn.hook_result"][:, head_]
        coords, ratio = pca(X, 3)
        what = "attention output" if head_ < 0 else f"head {head_}"
        title = f"{name}: layer {layer_ + 1} {what} at the position predicting c{k_}, {len(X):,} problems"
        image.value = png_bytes(
            _scatter_figure(coords, digit_cache[name][colour_box.value], colour_box.value, title, ratio), dpi=100
        )
        note = ""
        if cot_tokens_of(net) > 0:
            note = (
                f"<p><small>This model still writes {cot_tokens_of(net)} chain-of-thought tokens before the answer; "
                "at the answer positions it can read the partial products off them.</small></p>"
            )
        text.value = _summary_html(X, digit_cache[name], colour_box.value) + note

    for box in (model_box, site_box, k_box, colour_box):
        box.observe(update, "value")
    update()
    hint = widgets.HTML(KERNEL_HINT)
    return widgets.VBox([widgets.HBox([model_box, site_box]), widgets.HBox([k_box, colour_box]), hint, image, text])
