"""Tables, charts and the generated takeaway of the chapter "The mechanism" (paper §5.3,
FACTS §5.3): where each attention head looks, which attention edges the answer depends on (attention
knockout), and the graph those edges form.

The measurements come from :mod:`longmul.analysis.attention`; this module only arranges them. Its
frames are tidy ``pandas.DataFrame`` objects with a ``model`` column:

* :func:`pattern_frame`: mean attention of every head at every answer position (the heatmaps);
* :func:`edge_frame`: one row per knocked-out edge with its role, attention weight and cost;
* :func:`knockout_frame`: one row per (edge, output digit c_k): the knockout heatmap;
* :func:`graph_frame`: the arcs and nodes of the drawn graph of the important edges;
* :func:`cache_pairs`, :func:`tree_paths`, :func:`broad_heads` (with :func:`operand_reads`,
  :func:`widest_reads`, :func:`broad_knockouts` and :func:`broad_knockout_frame`), :func:`cot_attention`,
  :func:`mechanism_findings`: what the takeaway (:func:`takeaway_markdown`) is phrased from;
  :func:`pairs_table`, :func:`paths_table`, :func:`edge_table`: those for display.

Layers are named from 1 as in the paper ("layer 1" is ``blocks.0``, ``Knockout(layer=0, …)``), heads
from 0 as in the code: ``L2H3`` is head 3 of ``blocks.1``. The charts' interaction (selectors, hover,
legend highlight) runs in the browser, so it works on the book's static site; the widget
(:func:`longmul.charts.mechanism_explorer.mechanism_explorer`) needs a live kernel.

One reading is built in. An edge whose key is ``||`` or ``*`` is a *sink* edge: heads may park attention
there when they have nothing to read, and knocking such an edge out renormalises the rest of the row. At
layer 1 those positions hold the same token and position in every problem, so a layer-1 sink edge's
cost is that renormalisation, not information from the key; at layer 2 they also hold what layer-1 heads
wrote there, so a layer-2 sink edge may carry information. How much a model that still writes its chain
of thought attends to it at the answer positions is measured (:func:`cot_attention`), not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from longmul.analysis.attention import (
    AttentionPatterns,
    EdgeEffect,
    effects_table,
    head_summary,
    key_kind,
    pattern_records,
)
from longmul.charts.evidence import MIDDLE
from longmul.hooks import Knockout

SINK_LABELS = frozenset({"||", "*"})  # keys where heads park attention (an attention sink)
IMPORTANT_ACCURACY_DROP = 0.02  # an edge matters if knocking it out costs some digit ≥ 2 points of accuracy …
IMPORTANT_LOGIT_DROP = 0.5  # … or lowers some digit's correct logit by ≥ 0.5 on average
PAIR_WEIGHT = 0.1  # a layer-1 head "reads" an operand digit when its mean attention there is ≥ this
BROAD_ABOVE_UNIFORM = 1.5  # a broad head gives each digit it reads 1.5× what uniform attention would …
BROAD_COVERAGE = 0.75  # … to at least this share of the operand digits c_k needs …
BROAD_OPERAND_WEIGHT = 0.5  # … and at least this much attention to operand digits in all …
BROAD_MIN_K = 2  # … at the position predicting c_k, k ≥ this (c0 and c1 need only a few digits)
TREE_SHARE = 0.5  # the tree verdict: cache→retrieve paths into at least this share of the middle digits
CHART_MIN_WEIGHT = 0.01  # the attention chart leaves out cells with less mean attention than this

# Positions are told apart by greys (and by their place on an axis); colour is kept for heads (HEAD_COLORS),
# models and digits, so that no colour means two things on one page.
_KIND_COLORS = {"a": "#252525", "b": "#737373", "answer": "#a6a6a6", "cot": "#c9b79c", "symbol": "#d9d9d9"}
# One colour per head, L1H0 … L1H3 then L2H0 … L2H3: ColorBrewer "Dark2", none of which is a model's or a
# digit's colour elsewhere in the book (longmul.charts.accuracy.SERIES_COLORS, charts.dynamics.DIGIT_COLORS).
HEAD_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#a6761d", "#e6ab02", "#666666", "#66a61e"]
TREE_ROLES = ("cache", "retrieve", "operand (layer 2)")  # the edges the tree drawing lays out by layer
TREE_TOP = 4  # edges drawn per output digit in the tree
HEATMAP_TOP = 12  # edges per model the knockout heatmap shows before the reader asks for more
_KIND_NAMES = {"a": "operand a", "b": "operand b", "answer": "answer position", "cot": "chain of thought", "symbol": "|| or *"}


# --------------------------------------------------------------------------- names


def layer_name(layer: int) -> str:
    """The paper's name of a code layer: ``0`` → "layer 1"."""
    return f"layer {layer + 1}"


def head_name(layer: int, head: int) -> str:
    """``(1, 3)`` → "L2H3": layer counted from 1 (the paper's), head from 0 (the code's)."""
    return f"L{layer + 1}H{head}"


def query_name(label: str, k: int | None) -> str:
    """A position and what it predicts: ``("c2", 3)`` → "c2 (→c3)"."""
    return label if k is None else f"{label} (→c{k})"


def edge_role(layer: int, query: int, key: int, key_label: str) -> str:
    """What an attention edge does (see :data:`ROLES`), from its layer and its key. Sinks and the chain
    of thought come first: whatever the layer, those keys do not carry operand information the way the
    paper's tree does."""
    kind = key_kind(key_label)
    if key_label in SINK_LABELS:
        return "sink"
    if kind == "cot":
        return "chain of thought"
    if key == query:
        return "own position"
    if kind in ("a", "b"):
        return "cache" if layer == 0 else "operand (layer 2)"
    if kind == "answer":
        return "answer token" if layer == 0 else "retrieve"
    return "other"


def edge_name(layer: int, head: int, query_label: str, key_label: str) -> str:
    """``"L2H3 c4←c2"``: head, query position ← key position (information flows from the key)."""
    return f"{head_name(layer, head)} {query_label}←{key_label}"


def _predicts(patterns: AttentionPatterns) -> dict[int, int]:
    return {p: k for k, p in enumerate(patterns.answer_positions)}


# --------------------------------------------------------------------------- choosing edges


def pick_edges(candidates: Sequence[Knockout], labels: Sequence[str], limit: int) -> list[Knockout]:
    """At most ``limit`` of ``candidates`` (strongest first, as :func:`candidate_edges` gives them), shared
    fairly between layer-1 edges, layer-2 edges and sink edges (of either layer): round robin over those
    groups, strongest first within each, so that sink edges (often the strongest of all) do not use up
    the budget."""
    if limit < 0:
        raise ValueError(f"limit must be ≥ 0, got {limit}")
    groups: dict[int | str, list[Knockout]] = {}
    for edge in candidates:
        groups.setdefault("sink" if labels[edge.key] in SINK_LABELS else edge.layer, []).append(edge)
    queues = [groups[g] for g in sorted(groups, key=lambda g: (g == "sink", 0 if g == "sink" else g))]
    picked: list[Knockout] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(picked) < limit:
                picked.append(queue[depth])
        depth += 1
    return picked


# --------------------------------------------------------------------------- frames


def pattern_frame(patterns: Mapping[str, AttentionPatterns]) -> pd.DataFrame:
    """Every model's mean attention at its answer positions as rows (:func:`pattern_records` plus
    ``model``, ``head_name``, ``query_name``): the data of :func:`attention_chart`."""
    columns = ["model", "layer", "head", "head_name", "k", "query", "query_name", "key", "key_label", "key_kind", "weight"]
    rows = []
    for model, p in patterns.items():
        for r in pattern_records(p):
            rows.append(
                {
                    **r,
                    "model": model,
                    "head_name": head_name(r["layer"], r["head"]),
                    "query_name": query_name(r["query_label"], r["k"]),
                    "weight": round(r["weight"], 4),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def reads_table(patterns: AttentionPatterns, layer: int, top: int = 2) -> pd.DataFrame:
    """What each head of ``layer`` reads at each answer position: rows are the positions ("c2 (→c3)"),
    columns the heads ("L1H0" …), cells the head's ``top`` keys with their mean attention."""
    table: dict[str, dict[str, str]] = {}
    for r in head_summary(patterns, top=top):
        if r["layer"] != layer:
            continue
        row = table.setdefault(query_name(r["query_label"], r["k"]), {})
        row[head_name(r["layer"], r["head"])] = r["top_keys"]
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("position (predicts)")


def cache_pairs(patterns: Mapping[str, AttentionPatterns], min_weight: float = PAIR_WEIGHT) -> pd.DataFrame:
    """The operand pairs layer-1 heads read together at each answer position: rows where a head's
    strongest ``a`` digit and strongest ``b`` digit both get mean attention ≥ ``min_weight``. Columns:
    model, head_name, position, predicts (k), pair "(a1, b2)", a and b (its digits "a1", "b2"), column
    ("s3": the column sum :math:`s_{i+j}` that the pair's product goes into), a_weight, b_weight,
    operand_weight."""
    columns = [
        "model", "head_name", "position", "predicts", "pair", "a", "b", "column", "a_weight", "b_weight", "operand_weight",
    ]  # fmt: skip
    rows = []
    for model, p in patterns.items():
        for r in head_summary(p):
            if r["layer"] != 0 or min(r["top_a_weight"], r["top_b_weight"]) < min_weight:
                continue
            i, j = int(r["top_a"][1:]), int(r["top_b"][1:])
            rows.append(
                {
                    "model": model,
                    "head_name": head_name(0, r["head"]),
                    "position": r["query_label"],
                    "predicts": r["k"],
                    "pair": f"({r['top_a']}, {r['top_b']})",
                    "a": r["top_a"],
                    "b": r["top_b"],
                    "column": f"s{i + j}",
                    "a_weight": r["top_a_weight"],
                    "b_weight": r["top_b_weight"],
                    "operand_weight": r["operand_weight"],
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _knockout_status(edges: pd.DataFrame) -> dict[tuple[str, str, str, str], str]:
    """(model, head_name, query_label, key_label) → "important" or "not important", for every knocked-out
    edge of an :func:`edge_frame`; an edge missing here was not tested."""
    return {
        (m, h, q, k): "important" if imp else "not important"
        for m, h, q, k, imp in zip(edges["model"], edges["head_name"], edges["query_label"], edges["key_label"], edges["important"])
    }


def pair_knockouts(pairs: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """:func:`cache_pairs` plus what knocking out the head's edges to the two digits showed (from an
    :func:`edge_frame`): ``a_edge`` and ``b_edge`` ("important", "not important" or "not tested") and
    ``both_important``."""
    status = _knockout_status(edges)
    out = pairs.copy()
    for digit in ("a", "b"):
        out[f"{digit}_edge"] = [
            status.get((m, h, q, key), "not tested")
            for m, h, q, key in zip(pairs["model"], pairs["head_name"], pairs["position"], pairs[digit])
        ]
    out["both_important"] = (out["a_edge"] == "important") & (out["b_edge"] == "important")
    return out


def pairs_table(pairs: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """The operand pairs layer-1 heads read (:func:`cache_pairs`) for display, indexed by model and head:
    the position (and the digit it predicts), the pair, its column sum, the attention on each digit and on
    all operand digits, and what knocking out the head's edges to the two digits showed."""
    p = pair_knockouts(pairs, edges)
    return pd.DataFrame(
        {
            "at": [query_name(q, k) for q, k in zip(p["position"], p["predicts"])],
            "pair": p["pair"].to_numpy(),
            "column sum": p["column"].to_numpy(),
            "attention a / b": [f"{a:.2f} / {b:.2f}" for a, b in zip(p["a_weight"], p["b_weight"])],
            "on all operand digits": p["operand_weight"].map("{:.2f}".format).to_numpy(),
            "knockout of the a / b edge": [f"{a} / {b}" for a, b in zip(p["a_edge"], p["b_edge"])],
            "both edges important": np.where(p["both_important"], "yes", "no"),
        },
        index=pd.MultiIndex.from_arrays([p["model"], p["head_name"]], names=["model", "head_name"]),
    )


def cot_attention(attention: pd.DataFrame) -> pd.DataFrame:
    """How much each model's heads attend to chain-of-thought tokens at the answer positions, one row per
    (model, layer) of a :func:`pattern_frame`: ``share``, the mean attention on all ``cot`` keys together,
    averaged over the layer's heads and the answer positions, and ``uniform``, the same for uniform
    attention over the keys up to each query (the share those keys get by their number alone). 0 for a
    model without a chain of thought."""
    data = attention.assign(cot=attention["key_kind"] == "cot")
    data["cot_weight"] = data["weight"].where(data["cot"], 0.0)
    per_row = data.groupby(["model", "layer", "head", "k"], sort=False).agg(
        share=("cot_weight", "sum"), uniform=("cot", "mean")
    )
    return per_row.groupby(["model", "layer"], sort=False).mean().reindex(columns=["share", "uniform"])


def _is_important(e: EdgeEffect, accuracy: float, logit: float) -> bool:
    return e.max_accuracy_drop >= accuracy or e.max_logit_drop >= logit


def important_effects(
    effects: Sequence[EdgeEffect],
    *,
    min_accuracy_drop: float = IMPORTANT_ACCURACY_DROP,
    min_logit_drop: float = IMPORTANT_LOGIT_DROP,
) -> list[EdgeEffect]:
    """The knocked-out edges that matter (the test of :func:`edge_frame`'s ``important``), in the order
    given: the input of :func:`longmul.analysis.attention.attention_graph`."""
    return [e for e in effects if _is_important(e, min_accuracy_drop, min_logit_drop)]


def edge_frame(
    effects: Mapping[str, Sequence[EdgeEffect]],
    patterns: Mapping[str, AttentionPatterns],
    clean_accuracy: Mapping[str, np.ndarray] | None = None,
    *,
    min_accuracy_drop: float = IMPORTANT_ACCURACY_DROP,
    min_logit_drop: float = IMPORTANT_LOGIT_DROP,
) -> pd.DataFrame:
    """One row per knocked-out edge of every model, the costliest first:

    ``model, edge`` ("L2H3 c4←c2"), ``layer, head, head_name, query, query_label, predicts`` (k of the
    query position), ``key, key_label, role`` (:func:`edge_role`), ``sink``, ``weight`` (its mean
    attention), ``worst`` (the digit c_k its knockout hurts most), ``clean_accuracy`` (of that digit,
    when ``clean_accuracy`` gives each model's per-digit accuracy), ``accuracy_drop`` and ``logit_drop``
    (the largest per-digit drops), ``accuracy_drops`` and ``logit_drops`` (every digit's, tuples) and
    ``important`` (some digit loses ≥ ``min_accuracy_drop`` accuracy or ≥ ``min_logit_drop`` of its
    correct logit)."""
    columns = [
        "model", "edge", "layer", "head", "head_name", "query", "query_label", "predicts", "key", "key_label",
        "role", "sink", "weight", "worst", "clean_accuracy", "accuracy_drop", "logit_drop", "accuracy_drops",
        "logit_drops", "important",
    ]  # fmt: skip
    rows = []
    for model, model_effects in effects.items():
        p = patterns[model]
        predicts = _predicts(p)
        clean = None if clean_accuracy is None else clean_accuracy.get(model)
        part = []
        for e in model_effects:
            ed = e.edge
            q_label, k_label = p.labels[ed.query], p.labels[ed.key]
            worst = int(np.argmax(e.accuracy_drop)) if e.max_accuracy_drop > 0 else int(np.argmax(e.logit_drop))
            part.append(
                {
                    "model": model,
                    "edge": edge_name(ed.layer, ed.head, q_label, k_label),
                    "layer": ed.layer,
                    "head": ed.head,
                    "head_name": head_name(ed.layer, ed.head),
                    "query": ed.query,
                    "query_label": q_label,
                    "predicts": predicts.get(ed.query),
                    "key": ed.key,
                    "key_label": k_label,
                    "role": edge_role(ed.layer, ed.query, ed.key, k_label),
                    "sink": k_label in SINK_LABELS,
                    "weight": float(p.mean[ed.layer, ed.head, ed.query, ed.key]),
                    "worst": worst,
                    "clean_accuracy": float(clean[worst]) if clean is not None else np.nan,
                    "accuracy_drop": e.max_accuracy_drop,
                    "logit_drop": e.max_logit_drop,
                    "accuracy_drops": tuple(float(x) for x in e.accuracy_drop),
                    "logit_drops": tuple(float(x) for x in e.logit_drop),
                    "important": _is_important(e, min_accuracy_drop, min_logit_drop),
                }
            )
        rows += sorted(part, key=lambda r: (-r["accuracy_drop"], -r["logit_drop"]))
    return pd.DataFrame(rows, columns=columns)


def edge_table(edges: pd.DataFrame, model: str, top: int | None = None, n_problems: int | None = None) -> pd.DataFrame:
    """A model's important edges for display, indexed by edge: its role, mean attention, the digit its
    knockout hurts most with that digit's accuracy clean → knocked out, the accuracy and logit costs
    (the ``top`` costliest, or all), and, given the ``n_problems`` the knockouts ran on, how many more
    problems get that digit wrong with the edge knocked out (the net count: the sampling noise shows)."""
    part = edges[(edges["model"] == model) & edges["important"].astype(bool)]
    if top is not None:
        part = part.head(top)
    drop_at_worst = np.array([drops[w] for drops, w in zip(part["accuracy_drops"], part["worst"])], dtype=float)
    accuracy = [f"{c:.0%} → {c - d:.0%}" if not np.isnan(c) else "" for c, d in zip(part["clean_accuracy"], drop_at_worst)]
    columns = {
        "role": part["role"].to_numpy(),
        "attention": part["weight"].map("{:.2f}".format).to_numpy(),
        "hurts most": ("c" + part["worst"].astype(str)).to_numpy(),
        "its accuracy": accuracy,
        "accuracy cost (points)": (100 * part["accuracy_drop"]).map("{:.1f}".format).to_numpy(),
        "logit drop": part["logit_drop"].map("{:.2f}".format).to_numpy(),
    }
    if n_problems is not None:
        columns[f"problems lost (net, of {n_problems:,})"] = np.rint(drop_at_worst * n_problems).astype(int)
    return pd.DataFrame(columns, index=pd.Index(part["edge"].to_numpy(), name="edge (head query←key)"))


def knockout_frame(effects: Mapping[str, Sequence[EdgeEffect]], patterns: Mapping[str, AttentionPatterns]) -> pd.DataFrame:
    """One row per (model, knocked-out edge, output digit): :func:`effects_table` plus ``model``,
    ``edge``, ``role``, ``rank`` (the edge's place in its model's costliest-first order), ``weight`` and
    ``important``: the data of :func:`knockout_heatmap`."""
    columns = [
        "model", "edge", "role", "rank", "weight", "important", "layer", "head", "query_label", "key_label", "k",
        "accuracy_drop", "logit_drop",
    ]  # fmt: skip
    order = edge_frame(effects, patterns)
    rank = {(m, e): i for m, group in order.groupby("model", sort=False) for i, e in enumerate(group["edge"])}
    info = order.set_index(["model", "edge"])
    rows = []
    for model, model_effects in effects.items():
        p = patterns[model]
        for r in effects_table(model_effects, p.labels):
            name = edge_name(r["layer"], r["head"], r["query_label"], r["key_label"])
            rows.append(
                {
                    **r,
                    "model": model,
                    "edge": name,
                    "role": info.loc[(model, name), "role"],
                    "rank": rank[(model, name)],
                    "weight": round(float(info.loc[(model, name), "weight"]), 3),
                    "important": bool(info.loc[(model, name), "important"]),
                }
            )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- what the edges add up to


def _costs_digit(edge: pd.Series, k: int, min_accuracy_drop: float, min_logit_drop: float) -> bool:
    """Does knocking out ``edge`` (an :func:`edge_frame` row) cost the digit c_k itself, by the importance test?"""
    return edge["accuracy_drops"][k] >= min_accuracy_drop or edge["logit_drops"][k] >= min_logit_drop


def tree_paths(
    edges: pd.DataFrame,
    *,
    min_accuracy_drop: float = IMPORTANT_ACCURACY_DROP,
    min_logit_drop: float = IMPORTANT_LOGIT_DROP,
) -> pd.DataFrame:
    """Two-hop paths of important edges, the paper's cache-then-retrieve shape: a layer-1 edge from an
    operand digit to a position ``p`` (role "cache") and a layer-2 edge from ``p`` to the answer position
    predicting c_k (role "retrieve"), where knocking out each of the two edges costs c_k itself at least
    ``min_accuracy_drop`` accuracy or ``min_logit_drop`` of its correct logit (an edge that is important
    for another digit only does not make a path into c_k). Columns: model, operand, cache_head, via (p's
    label), retrieve_head, target (label), predicts (k), cache_drop and cache_logit_drop (the cache
    edge's accuracy and logit drops at c_k), retrieve_drop and retrieve_logit_drop (the retrieve edge's),
    cache_edge and retrieve_edge (each edge as the :class:`~longmul.hooks.Knockout` that removes it)."""
    columns = [
        "model", "operand", "cache_head", "via", "retrieve_head", "target", "predicts", "cache_drop", "cache_logit_drop",
        "retrieve_drop", "retrieve_logit_drop", "cache_edge", "retrieve_edge",
    ]  # fmt: skip
    important = edges[edges["important"].astype(bool)]
    rows = []
    for model, part in important.groupby("model", sort=False):
        cache = part[part["role"] == "cache"]
        retrieve = part[part["role"] == "retrieve"]
        for _, r in retrieve.iterrows():
            k = r["predicts"]
            if pd.isna(k) or not _costs_digit(r, int(k), min_accuracy_drop, min_logit_drop):
                continue
            k = int(k)
            for _, c in cache[cache["query"] == r["key"]].iterrows():
                if not _costs_digit(c, k, min_accuracy_drop, min_logit_drop):
                    continue
                rows.append(
                    {
                        "model": model,
                        "operand": c["key_label"],
                        "cache_head": c["head_name"],
                        "via": c["query_label"],
                        "retrieve_head": r["head_name"],
                        "target": r["query_label"],
                        "predicts": k,
                        "cache_drop": c["accuracy_drops"][k],
                        "cache_logit_drop": c["logit_drops"][k],
                        "retrieve_drop": r["accuracy_drops"][k],
                        "retrieve_logit_drop": r["logit_drops"][k],
                        "cache_edge": _edge_knockout(c),
                        "retrieve_edge": _edge_knockout(r),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def _edge_knockout(edge: pd.Series) -> Knockout:
    return Knockout(int(edge["layer"]), int(edge["head"]), int(edge["query"]), int(edge["key"]))


def path_knockouts(paths: pd.DataFrame, model: str, digit: int) -> list[Knockout]:
    """Every edge of ``model``'s :func:`tree_paths` into ``c_digit`` (cache and retrieve edges, each once):
    what chapter 3's "remove the tree's edges" button knocks out."""
    part = paths[(paths["model"] == model) & (paths["predicts"] == digit)]
    edges = [*part["cache_edge"], *part["retrieve_edge"]]
    return list(dict.fromkeys(edges))  # Knockout is a frozen dataclass: dedupe, keep order


def paths_table(paths: pd.DataFrame) -> pd.DataFrame:
    """:func:`tree_paths` for display, indexed by model: the path (operand → via → target, with its heads),
    the digit it ends at, and what knocking out each of its two edges costs that digit."""
    return pd.DataFrame(
        {
            "operand": paths["operand"].to_numpy(),
            "cache head": paths["cache_head"].to_numpy(),
            "via": paths["via"].to_numpy(),
            "retrieve head": paths["retrieve_head"].to_numpy(),
            "target": paths["target"].to_numpy(),
            "predicts": ("c" + paths["predicts"].astype(str)).to_numpy(),
            "cache edge: accuracy cost (points) / logit drop": [
                f"{100 * a:.1f} / {g:.2f}" for a, g in zip(paths["cache_drop"], paths["cache_logit_drop"])
            ],
            "retrieve edge: accuracy cost (points) / logit drop": [
                f"{100 * a:.1f} / {g:.2f}" for a, g in zip(paths["retrieve_drop"], paths["retrieve_logit_drop"])
            ],
        },
        index=pd.Index(paths["model"].to_numpy(), name="model"),
    )


def operand_reads(
    patterns: pd.DataFrame, *, above_uniform: float = BROAD_ABOVE_UNIFORM, min_k: int = BROAD_MIN_K
) -> pd.DataFrame:
    """How many of the operand digits c_k needs each head reads at the position predicting c_k
    (k ≥ ``min_k``), one row per (model, head, position). The digits a_i, b_j with i, j ≤ k can change
    c_k; the head "reads" one when it gives it ``above_uniform`` times what uniform attention over the
    keys would (so a head that spreads its attention evenly does not count). ``patterns``: a
    :func:`pattern_frame`. Columns: model, layer, head, head_name, query, position, predicts,
    digits_read, digits_needed, share_read, operand_weight (its attention to operand digits in all),
    max_weight (the most it gives any one needed digit: an edge knocked out on its own needs this much)."""
    columns = [
        "model", "layer", "head", "head_name", "query", "position", "predicts", "digits_read", "digits_needed",
        "share_read", "operand_weight", "max_weight",
    ]  # fmt: skip
    data = patterns[patterns["key_kind"].isin(["a", "b"]) & (patterns["k"] >= min_k)].copy()
    data["index"] = data["key_label"].str[1:].astype(int)
    data["needed"] = data["index"] <= data["k"]
    data["read"] = data["weight"] >= above_uniform / (data["query"] + 1)
    rows = []
    for (model, layer, head, k), g in data.groupby(["model", "layer", "head", "k"], sort=False):
        needed = g[g["needed"]]
        if not len(needed):
            continue
        rows.append(
            {
                "model": model,
                "layer": layer,
                "head": head,
                "head_name": head_name(layer, head),
                "query": int(g["query"].iloc[0]),
                "position": g["query_name"].iloc[0],
                "predicts": k,
                "digits_read": int(needed["read"].sum()),
                "digits_needed": len(needed),
                "share_read": float(needed["read"].mean()),
                "operand_weight": float(g["weight"].sum()),
                "max_weight": float(needed["weight"].max()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def broad_heads(
    patterns: pd.DataFrame,
    *,
    above_uniform: float = BROAD_ABOVE_UNIFORM,
    coverage: float = BROAD_COVERAGE,
    min_operand_weight: float = BROAD_OPERAND_WEIGHT,
    min_k: int = BROAD_MIN_K,
) -> pd.DataFrame:
    """Heads that read (nearly) every operand digit c_k needs at once: the rows of :func:`operand_reads`
    that read at least a ``coverage`` share of them and give ≥ ``min_operand_weight`` to operand digits
    in all (its columns but ``share_read``)."""
    reads = operand_reads(patterns, above_uniform=above_uniform, min_k=min_k)
    broad = reads[(reads["share_read"] >= coverage) & (reads["operand_weight"] >= min_operand_weight)]
    return broad.drop(columns="share_read").reset_index(drop=True)


def widest_reads(patterns: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Per model, the (head, position) of :func:`operand_reads` that reads the largest share of the
    digits it needs (ties: more attention on operand digits): how near a model comes to a broad head."""
    reads = operand_reads(patterns, **kwargs)
    best = reads.sort_values(["share_read", "operand_weight"], ascending=False, kind="stable")
    return best.groupby("model", sort=False).head(1).set_index("model")


def broad_knockouts(broad: pd.DataFrame, labels: Mapping[str, Sequence[str]]) -> dict[str, list[Knockout]]:
    """For each row of ``broad`` (:func:`broad_heads`), the knockout of that head's attention from the
    position predicting c_k to *all* the operand digits c_k needs at once (a_i, b_j with i, j ≤ k), per
    model, in the rows' order. A head that spreads its reading over many keys gives each too little for a
    single-edge knockout to test it; removing them together does. ``labels``: each model's position
    labels (:attr:`AttentionPatterns.labels`)."""
    knockouts: dict[str, list[Knockout]] = {}
    for r in broad.itertuples():
        needed = [
            p
            for p, label in enumerate(labels[r.model])
            if key_kind(label) in ("a", "b") and int(label[1:]) <= r.predicts
        ]
        knockouts.setdefault(r.model, []).append(Knockout(int(r.layer), int(r.head), int(r.query), needed))
    return knockouts


def broad_knockout_frame(
    broad: pd.DataFrame,
    effects: Mapping[str, Sequence[EdgeEffect]],
    *,
    min_accuracy_drop: float = IMPORTANT_ACCURACY_DROP,
    min_logit_drop: float = IMPORTANT_LOGIT_DROP,
) -> pd.DataFrame:
    """``broad`` with what knocking out each row's :func:`broad_knockouts` cost its own digit c_k:
    ``keys_removed``, ``accuracy_drop``, ``logit_drop`` and ``used`` (the cost passes the test an edge
    must pass to be important, at c_k). ``effects``: per model, ``knockout_sweep`` of those knockouts."""
    found = {
        (model, e.edge.layer, e.edge.head, e.edge.query): e for model, model_effects in effects.items() for e in model_effects
    }
    out = broad.copy()
    cost = []
    for r in broad.itertuples():
        e = found.get((r.model, r.layer, r.head, r.query))
        if e is None:
            raise ValueError(f"no group knockout was measured for {r.model} {r.head_name} at {r.position}")
        acc, logit = float(e.accuracy_drop[r.predicts]), float(e.logit_drop[r.predicts])
        cost.append((len(e.edge.key), acc, logit, acc >= min_accuracy_drop or logit >= min_logit_drop))
    columns = ["keys_removed", "accuracy_drop", "logit_drop", "used"]
    costs = pd.DataFrame(cost, index=out.index, columns=columns).astype(
        {"keys_removed": int, "accuracy_drop": float, "logit_drop": float, "used": bool}
    )
    return pd.concat([out, costs], axis=1)


def tree_digits_needed(n_positions: int = len(MIDDLE)) -> int:
    """How many of the ``n_positions`` middle digits cache→retrieve paths must reach for the tree verdict."""
    return math.ceil(TREE_SHARE * n_positions)


# --------------------------------------------------------------------------- charts


def attention_chart(
    df: pd.DataFrame,
    *,
    default_model: str | None = None,
    default_layer: int = 1,
    default_head: int = 0,
    default_k: int = 3,
    min_weight: float = CHART_MIN_WEIGHT,
    title: str = "Mean attention at the answer positions",
) -> alt.VConcatChart:
    """One head's mean attention at every answer position (rows: the position predicting c_k; columns:
    the key positions), with selectors for the model, layer, head and position; below, the selected
    position's row as bars coloured by what the key is. Cells under ``min_weight`` are left out (blank),
    and so is a key that no position of the selected head attends to that much. Data: a
    :func:`pattern_frame`.

    To keep the page light the chart carries one short row per cell (model index ``m``, ``layer``,
    ``head``, ``k``, ``key``, weight ``w``) and two small tables it looks names up in: the key labels and
    kinds of each model, and the position names."""
    models = list(dict.fromkeys(df["model"])) or [""]
    index = {m: i for i, m in enumerate(models)}
    layers = sorted(int(x) for x in dict.fromkeys(df["layer"])) or [0]
    heads = sorted(int(x) for x in dict.fromkeys(df["head"])) or [0]
    ks = sorted(int(x) for x in dict.fromkeys(df["k"])) or [0]
    names = dict(zip(df["k"], df["query_name"]))
    kept = df[df["weight"] >= min_weight]
    cells = [
        {"m": index[m], "layer": int(la), "head": int(h), "k": int(k), "key": int(key), "w": round(float(w), 3)}
        for m, la, h, k, key, w in zip(kept["model"], kept["layer"], kept["head"], kept["k"], kept["key"], kept["weight"])
    ]
    keys = df.drop_duplicates(["model", "key"])
    key_table = [
        {"mk": index[m] * 1000 + int(key), "key_label": label, "kind": _KIND_NAMES[kind]}
        for m, key, label, kind in zip(keys["model"], keys["key"], keys["key_label"], keys["key_kind"])
    ]
    query_table = [{"k": int(k), "query_name": name} for k, name in names.items()]
    model = alt.param(
        name="model_pick",
        value=index.get(default_model, 0),
        bind=alt.binding_select(options=list(range(len(models))), labels=models, name="model: "),
    )
    layer = alt.param(
        name="layer_pick",
        value=default_layer if default_layer in layers else layers[-1],
        bind=alt.binding_radio(options=layers, labels=[layer_name(x) for x in layers], name="layer: "),
    )
    head = alt.param(
        name="head_pick",
        value=default_head if default_head in heads else heads[0],
        bind=alt.binding_radio(options=heads, labels=[f"head {h}" for h in heads], name="head: "),
    )
    k = alt.param(
        name="k_pick",
        value=default_k if default_k in ks else ks[0],
        bind=alt.binding_select(options=ks, labels=[names.get(x, f"c{x}") for x in ks], name="position: "),
    )
    base = (
        alt.Chart(alt.Data(values=cells))  # inline values: a chain-of-thought model has many cells
        .transform_filter((alt.datum.m == model) & (alt.datum.layer == layer) & (alt.datum.head == head))
        .transform_calculate(mk="datum.m * 1000 + datum.key")
        .transform_lookup(lookup="mk", from_=alt.LookupData(alt.Data(values=key_table), "mk", ["key_label", "kind"]))
        .transform_lookup(lookup="k", from_=alt.LookupData(alt.Data(values=query_table), "k", ["query_name"]))
    )
    x = alt.X(
        "key_label:N",
        sort=alt.EncodingSortField(field="key", op="min"),
        title="key position (what the head reads)",
        axis=alt.Axis(labelAngle=-90, labelFontSize=11),
    )
    tooltip = [
        alt.Tooltip("query_name:N", title="query position"),
        alt.Tooltip("key_label:N", title="key position"),
        alt.Tooltip("kind:N", title="key is"),
        alt.Tooltip("w:Q", title="mean attention", format=".3f"),
    ]
    heat = base.mark_rect().encode(
        x=x,
        y=alt.Y("query_name:N", sort=alt.EncodingSortField(field="k", op="min"), title="query position (→ predicts)"),
        color=alt.Color("w:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="mean attention"),
        stroke=alt.when(alt.datum.k == k).then(alt.value("#d1495b")).otherwise(alt.value(None)),
        strokeWidth=alt.when(alt.datum.k == k).then(alt.value(1.5)).otherwise(alt.value(0)),
        tooltip=tooltip,
    ).properties(width=alt.Step(12), height=alt.Step(16))
    kinds = list(_KIND_NAMES.values())
    bars = (
        base.transform_filter(alt.datum.k == k)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("w:Q", scale=alt.Scale(domain=[0, 1]), title="attention"),
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(domain=kinds, range=[_KIND_COLORS[c] for c in _KIND_NAMES]),
                title="key is",
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=tooltip,
        )
        .properties(width=alt.Step(12), height=120, title="the selected position's row (outlined above)")
    )
    return (
        alt.vconcat(heat, bars)
        .add_params(model, layer, head, k)
        .resolve_scale(color="independent")
        .properties(title=alt.Title(title, subtitle="pick a model, layer, head and position under the chart; hover a cell"))
    )


def _nothing(text: str) -> alt.Chart:
    """A chart that only says ``text``: what a builder returns for no rows."""
    return alt.Chart(pd.DataFrame({"text": [text]})).mark_text(fontSize=12).encode(text="text:N")


def knockout_heatmap(
    df: pd.DataFrame,
    *,
    default_model: str | None = None,
    top: int = HEATMAP_TOP,
    title: str = "What knocking out one attention edge costs, digit by digit",
) -> alt.Chart:
    """One model's knocked-out edges (rows, costliest first) against the output digits c0 … c7
    (columns), coloured by the drop in teacher-forced accuracy (points) or in the correct logit, diverging
    at 0 so that a knockout that helps a digit (a negative drop) shows in its own colour. Under the chart:
    the model, how many edges to show (the ``top`` costliest at first, a slider up to all of them) and
    the measure. Edges that do not pass the importance test are faded; sink edges are marked "[sink]".
    Data: a :func:`knockout_frame`."""
    data = df.copy()
    data["digit"] = "c" + data["k"].astype(int).astype(str)
    data["accuracy"] = (100 * data["accuracy_drop"]).round(2)
    data["logit"] = data["logit_drop"].round(3)
    data["label"] = data["edge"] + np.where(data["role"] == "sink", " [sink]", "")
    data = data[["model", "label", "role", "rank", "weight", "important", "digit", "k", "accuracy", "logit"]]
    if data.empty:
        return _nothing("no knocked-out edge to show")
    models = list(dict.fromkeys(data["model"]))
    n_rows = int(data.groupby("model")["rank"].max().max()) + 1
    n_c = int(data["k"].max()) + 1
    model = alt.param(
        name="heatmap_model",
        value=default_model if default_model in models else models[0],
        bind=alt.binding_select(options=models, name="model: "),
    )
    shown = alt.param(
        name="heatmap_top",
        value=min(top, n_rows),
        bind=alt.binding_range(min=1, max=n_rows, step=1, name="edges shown (costliest first): "),
    )
    measure = alt.param(
        name="measure",
        value="accuracy",
        bind=alt.binding_radio(
            options=["accuracy", "logit"], labels=["accuracy drop (points)", "correct-logit drop"], name="colour: "
        ),
    )
    return (
        alt.Chart(data)
        .transform_filter((alt.datum.model == model) & (alt.datum["rank"] < shown))
        .transform_fold(["accuracy", "logit"], as_=["measure_name", "value"])
        .transform_filter(alt.datum.measure_name == measure)
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("digit:N", sort=[f"c{k}" for k in range(n_c)], title="output digit", axis=alt.Axis(orient="top", labelAngle=0)),
            y=alt.Y("label:N", sort=alt.EncodingSortField(field="rank", op="min"), title=None, axis=alt.Axis(labelLimit=220)),
            color=alt.Color(
                "value:Q",
                scale=alt.Scale(range=["#f1a340", "#f7f7f7", "#08519c"], domainMid=0),
                title=["drop", "(< 0: the", "knockout helps)"],
            ),
            opacity=alt.when(alt.datum.important).then(alt.value(1.0)).otherwise(alt.value(0.35)),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("label:N", title="edge"),
                alt.Tooltip("role:N"),
                alt.Tooltip("weight:Q", title="mean attention", format=".2f"),
                alt.Tooltip("digit:N"),
                alt.Tooltip("accuracy:Q", title="accuracy drop (points)", format=".1f"),
                alt.Tooltip("logit:Q", title="correct-logit drop", format=".2f"),
                alt.Tooltip("important:N"),
            ],
        )
        .add_params(model, shown, measure)
        .properties(
            width=alt.Step(36),
            height=alt.Step(18),
            title=alt.Title(title, subtitle="faded: below the importance threshold; [sink]: the key is || or *; orange: the knockout helps"),
        )
    )


# --------------------------------------------------------------------------- the tree, laid out by layer


def tree_frame(
    edges: pd.DataFrame,
    patterns: AttentionPatterns,
    model: str,
    *,
    top: int = TREE_TOP,
    min_accuracy_drop: float = IMPORTANT_ACCURACY_DROP,
    min_logit_drop: float = IMPORTANT_LOGIT_DROP,
) -> pd.DataFrame:
    """The edges of ``model`` that make its cache→retrieve tree, laid out by layer for :func:`tree_chart`:
    three columns, the operand digits (``x`` 0), the answer positions where layer 1 writes (``x`` 1) and
    the same positions at layer 2 (``x`` 2), each answer position at ``y`` = the k of the digit it
    predicts, the operand digits spread over the same height.

    For each output digit c_k, the ``top`` important edges of the roles in :data:`TREE_ROLES` whose
    knockout costs c_k itself (the importance test at c_k), costliest for c_k first; an edge that costs
    several digits appears once per digit. ``part`` "edge" rows: digit ("c3"), k, edge, head_name, role,
    x, y, x2, y2, accuracy (the drop at c_k in points), logit (at c_k). ``part`` "node" rows: x, y, text and
    digit (the digit a layer-2 node predicts, "" elsewhere). ``edges``: an :func:`edge_frame`."""
    columns = ["model", "part", "digit", "k", "edge", "head_name", "role", "x", "y", "x2", "y2", "accuracy", "logit", "text"]
    labels, answers = patterns.labels, list(patterns.answer_positions)
    row_of = {p: float(k) for k, p in enumerate(answers)}
    operands = [p for p, label in enumerate(labels) if key_kind(label) in ("a", "b")]
    spread = (len(answers) - 1) / max(len(operands) - 1, 1)
    row_of_operand = {p: i * spread for i, p in enumerate(operands)}
    rows = [
        {"model": model, "part": "node", "x": 0.0, "y": row_of_operand[p], "text": labels[p], "digit": ""} for p in operands
    ]
    for k, p in enumerate(answers):
        rows.append({"model": model, "part": "node", "x": 1.0, "y": float(k), "text": labels[p], "digit": ""})
        rows.append({"model": model, "part": "node", "x": 2.0, "y": float(k), "text": f"→ c{k}", "digit": f"c{k}"})
    part = edges[(edges["model"] == model) & edges["important"].astype(bool) & edges["role"].isin(TREE_ROLES)]
    for k in range(len(answers)):
        costs = [
            (e["accuracy_drops"][k], e["logit_drops"][k], e)
            for _, e in part.iterrows()
            if _costs_digit(e, k, min_accuracy_drop, min_logit_drop)
        ]
        costs.sort(key=lambda c: (-c[0], -c[1]))
        for accuracy, logit, e in costs[:top]:
            if e["role"] == "cache":
                start, end = (0.0, row_of_operand[e["key"]]), (1.0, row_of[e["query"]])
            elif e["role"] == "retrieve":
                start, end = (1.0, row_of[e["key"]]), (2.0, row_of[e["query"]])
            else:  # layer 2 reading an operand digit directly
                start, end = (0.0, row_of_operand[e["key"]]), (2.0, row_of[e["query"]])
            rows.append(
                {
                    "model": model,
                    "part": "edge",
                    "digit": f"c{k}",
                    "k": k,
                    "edge": e["edge"],
                    "head_name": e["head_name"],
                    "role": e["role"],
                    "x": start[0],
                    "y": start[1],
                    "x2": end[0],
                    "y2": end[1],
                    "accuracy": round(100 * float(accuracy), 1),
                    "logit": round(float(logit), 2),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def tree_chart(
    df: pd.DataFrame,
    *,
    default_digit: str | None = "c4",
    n_heads: int = 4,
    width: int = 480,
    title: str = "The cache→retrieve tree, digit by digit",
) -> alt.LayerChart:
    """A :func:`tree_frame` drawn as a layered graph: operand digits on the left, layer-1 positions in the
    middle, layer-2 positions on the right (a faint line joins a position to itself across the layers: the
    residual stream). Edges are coloured by head (:data:`HEAD_COLORS`), wider for a larger accuracy cost.
    Click a digit on the right to keep only its edges in view (double-click to show every digit's);
    ``default_digit`` is the one in view at first (``None``: all). Works on a static page."""
    heads = [head_name(layer, h) for layer in (0, 1) for h in range(n_heads)]
    nodes = df[df["part"] == "node"]
    lines = df[df["part"] == "edge"]
    digits = list(dict.fromkeys(nodes.loc[nodes["digit"] != "", "digit"]))
    if nodes.empty:
        return _nothing("no model to draw")
    n_rows = int(nodes["y"].max()) + 1
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[-0.25, 2.25]))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-1.2, n_rows - 0.5], reverse=True))
    start = {"value": [{"digit": default_digit}]} if default_digit in digits else {}
    pick = alt.selection_point(name="digit_pick", fields=["digit"], on="click", clear="dblclick", empty=True, **start)
    residual = (
        alt.Chart(pd.DataFrame({"x": 1.08, "x2": 1.92, "y": [float(r) for r in range(n_rows)]}))
        .mark_rule(color="#d9d9d9", strokeDash=[3, 3])
        .encode(x=x, x2="x2:Q", y=y)
    )
    drawn = (
        alt.Chart(lines)
        .transform_calculate(x0="datum.x + 0.09", x1="datum.x2 - 0.09")  # stop short of the labels
        .mark_rule(strokeCap="round")
        .encode(
            x=alt.X("x0:Q", axis=None, scale=alt.Scale(domain=[-0.25, 2.25])),
            y=y,
            x2="x1:Q",
            y2="y2:Q",
            color=alt.Color(
                "head_name:N", scale=alt.Scale(domain=heads, range=HEAD_COLORS[: len(heads)]), title="head"
            ),
            strokeWidth=alt.StrokeWidth(
                "accuracy:Q", scale=alt.Scale(domain=[0, 100], range=[1, 7]), title=["accuracy cost", "at the digit (points)"]
            ),
            opacity=alt.when(pick).then(alt.value(0.9)).otherwise(alt.value(0.04)),
            tooltip=[
                alt.Tooltip("digit:N", title="costs digit"),
                alt.Tooltip("edge:N", title="edge (head query←key)"),
                alt.Tooltip("role:N"),
                alt.Tooltip("accuracy:Q", title="accuracy cost at the digit (points)", format=".1f"),
                alt.Tooltip("logit:Q", title="correct-logit drop at the digit", format=".2f"),
            ],
        )
    )
    labels = (
        alt.Chart(nodes[nodes["digit"] == ""])
        .mark_text(fontSize=12, color="#525252")
        .encode(x=x, y=y, text="text:N")
    )
    targets = (
        alt.Chart(nodes[nodes["digit"] != ""])
        .mark_text(fontSize=13, fontWeight="bold", align="left", dx=-6, cursor="pointer")
        .encode(
            x=x,
            y=y,
            text="text:N",
            color=alt.when(pick).then(alt.value("#000000")).otherwise(alt.value("#a6a6a6")),
            tooltip=[alt.Tooltip("digit:N", title="click to show the edges of")],
        )
        .add_params(pick)
    )
    headers = (
        alt.Chart(
            pd.DataFrame(
                {"x": [0.0, 1.0, 2.0], "y": -1.0, "text": ["operand digits", "layer 1 writes at", "layer 2 reads into"]}
            )
        )
        .mark_text(fontSize=12, fontStyle="italic", color="#525252")
        .encode(x=x, y=y, text="text:N")
    )
    return alt.layer(residual, drawn, labels, targets, headers).properties(
        width=width,
        height=28 * (n_rows + 1),
        title=alt.Title(title, subtitle="click a digit on the right (double-click: every digit); hover an edge for its cost"),
    )
