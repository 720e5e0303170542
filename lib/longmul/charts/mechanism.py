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
    AttentionGraph,
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

# The paper's account (FACTS §5.3), in words: it released no script, and which heads it means is unknown.
PAPER_MECHANISM: dict[str, str] = {
    "ICoT": (
        "layer-1 heads at earlier positions attend to pairs of operand digits (a_i, b_j) and cache their "
        "products there; layer-2 heads at the position that predicts c_k attend back to those positions to "
        "retrieve them: a sparse, binary-tree-like directed acyclic graph, its edges tested by attention "
        "knockout"
    ),
    "SFT + aux loss": "the same tree, plus one head that attends to all the digit pairs it needs at once",
}

# What an edge does, from its layer and the kinds of its query and key (see edge_role).
ROLES: dict[str, str] = {
    "cache": (
        "layer 1 reads an operand digit into the query position (the paper's cache step; a cache proper when a "
        "later position retrieves it)"
    ),
    "retrieve": "layer 2 reads an earlier answer position (retrieves what layer 1 put there)",
    "operand (layer 2)": "layer 2 reads an operand digit directly",
    "answer token": "layer 1 reads an earlier answer token",
    "own position": "the head reads its own position",
    "sink": (
        "the key is || or *, where heads may park attention: at layer 1 the same in every problem, so a knockout "
        "only renormalises the row; at layer 2 it also holds what layer-1 heads wrote there"
    ),
    "chain of thought": "the key is a chain-of-thought token the model still writes",
    "other": "any other edge",
}
_KIND_COLORS = {"a": "#4c78a8", "b": "#f58518", "answer": "#54a24b", "cot": "#e45756", "symbol": "#bab0ac"}
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


def cot_share_text(cot: pd.DataFrame | None, model: str) -> str:
    """``"its layer-1 heads give the chain-of-thought tokens 20% of their attention and its layer-2 heads 80%, on average …"``:
    a model's :func:`cot_attention` in words, or "" when ``cot`` does not have the model."""
    if cot is None or model not in cot.index.get_level_values(0):
        return ""
    part = cot.loc[model]  # indexed by layer
    (first, first_share), *rest = part["share"].items()
    return (
        f"its layer-{int(first) + 1} heads give the chain-of-thought tokens {first_share:.0%} of their attention"
        + "".join(f" and its layer-{int(layer) + 1} heads {share:.0%}" for layer, share in rest)
        + f", on average over heads and answer positions (uniform attention would give them {part['uniform'].mean():.0%})"
    )


def cot_markdown(cot_tokens: Mapping[str, int], cot: pd.DataFrame) -> str:
    """A paragraph on each model that still writes a chain of thought, with how much its heads attend to
    it at the answer positions (``cot``: a :func:`cot_attention`)."""
    parts = []
    for label, n in cot_tokens.items():
        if n <= 0:
            continue
        text = f"**{label} still writes a chain of thought** ({n} tokens between `||` and `####`)."
        measured = cot_share_text(cot, label)
        if measured:
            text += f" At the answer positions {measured}."
        text += (
            " The paper's tree is a claim about the model after its chain of thought is gone, so this model "
            "cannot confirm or refute it yet."
        )
        parts.append(text)
    return " ".join(parts) or "No loaded model writes a chain of thought: each answers from the operands alone."


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
    edge's accuracy and logit drops at c_k), retrieve_drop and retrieve_logit_drop (the retrieve edge's)."""
    columns = [
        "model", "operand", "cache_head", "via", "retrieve_head", "target", "predicts", "cache_drop", "cache_logit_drop",
        "retrieve_drop", "retrieve_logit_drop",
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
                    }
                )
    return pd.DataFrame(rows, columns=columns)


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


def mechanism_findings(
    edges: pd.DataFrame,
    pairs: pd.DataFrame,
    broad: pd.DataFrame,
    models: Sequence[str],
    *,
    candidates: Mapping[str, int] | None = None,
    positions: Sequence[int] = MIDDLE,
    top: int = 3,
) -> pd.DataFrame:
    """The numbers the takeaway is phrased from, one row per model: ``candidates`` (edges with enough
    attention to be knocked out, when given), ``tested`` and ``important`` edges, how many of the
    important ones are ``cache``, ``retrieve``, ``sink`` and ``cot`` (chain-of-thought) edges,
    ``top_edges`` (the ``top`` costliest non-sink ones, named with their costs; ``n_top`` of them),
    ``top_sink`` (the costliest sink edge) and ``top_sink_layer``, ``pairs`` (operand pairs layer-1 heads
    read together, :func:`cache_pairs`), ``pairs_confirmed`` (how many of those (head, position) rows had
    both edges knocked out and found important), ``tree_digits`` (the c_k, k in ``positions``, reached by
    a cache→retrieve path, :func:`tree_paths`), ``broad`` (broad heads, :func:`broad_heads`), and, when
    ``broad`` went through :func:`broad_knockout_frame` (``broad_tested``), ``n_broad_used`` (how many of
    them the answer uses) and ``broad_costs`` (the ``top`` costliest of those)."""
    paths = tree_paths(edges)
    checked = pair_knockouts(pairs, edges)
    rows = {}
    for model in models:
        part = edges[edges["model"] == model]
        imp = part[part["important"].astype(bool)]
        roles = imp["role"].value_counts()
        plain = imp[~imp["sink"].astype(bool)].head(top)
        sink = imp[imp["sink"].astype(bool)]
        here = paths[paths["model"] == model]
        reached = sorted({int(k) for k in here["predicts"].dropna() if int(k) in positions})
        model_pairs = pairs[pairs["model"] == model].sort_values("predicts", kind="stable")
        model_broad = broad[broad["model"] == model]
        rows[model] = {
            "candidates": candidates.get(model, np.nan) if candidates is not None else np.nan,
            "tested": len(part),
            "important": len(imp),
            "cache": int(roles.get("cache", 0)),
            "retrieve": int(roles.get("retrieve", 0)),
            "sink": int(roles.get("sink", 0)),
            "cot": int(roles.get("chain of thought", 0)),
            "top_edges": "; ".join(_edge_cost(r) for _, r in plain.iterrows()),
            "n_top": len(plain),
            "top_sink": _edge_cost(sink.iloc[0]) if len(sink) else "",
            "top_sink_layer": int(sink["layer"].iloc[0]) if len(sink) else -1,
            "pairs": "; ".join(
                f"{pair} at {_join(dict.fromkeys(g['position']))}" for pair, g in model_pairs.groupby("pair", sort=False)
            ),
            "n_pairs": len(model_pairs),
            "pairs_confirmed": int(checked[checked["model"] == model]["both_important"].sum()),
            "tree_digits": reached,
            "positions": len(positions),
            "paths": len(here),
            "broad": "; ".join(
                f"{head} for {_join('c' + g['predicts'].astype(str))}" for head, g in model_broad.groupby("head_name", sort=False)
            ),
            "n_broad": len(model_broad),
            "broad_tested": "used" in broad.columns,
            "n_broad_used": int(model_broad["used"].sum()) if "used" in broad.columns else 0,
            "broad_costs": "; ".join(
                f"{r['head_name']} at {r['position']}: c{int(r['predicts'])} accuracy −{100 * r['accuracy_drop']:.1f} "
                f"points, logit −{r['logit_drop']:.2f}"
                for _, r in model_broad[model_broad["used"]].sort_values("accuracy_drop", ascending=False).head(top).iterrows()
            )
            if "used" in broad.columns
            else "",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _join(items) -> str:
    return ", ".join(str(x) for x in items)


def _edge_cost(r: pd.Series) -> str:
    return (
        f"{r['edge']} ({r['role']}): c{int(r['worst'])} accuracy −{100 * r['accuracy_drop']:.1f} points, "
        f"logit −{r['logit_drop']:.2f}"
    )


def tree_digits_needed(n_positions: int = len(MIDDLE)) -> int:
    """How many of the ``n_positions`` middle digits cache→retrieve paths must reach for the tree verdict."""
    return math.ceil(TREE_SHARE * n_positions)


def _has_tree(row: pd.Series, cot_tokens: int) -> bool:
    return cot_tokens == 0 and len(row["tree_digits"]) >= tree_digits_needed(int(row["positions"]))


def _sink_note(layer: int) -> str:
    if layer == 0:
        return "at layer 1 || and * are the same in every problem, so this is a renormalisation effect, not information flow"
    return "a renormalisation effect, or information layer-1 heads wrote at that position"


def takeaway_markdown(
    findings: pd.DataFrame,
    *,
    cot_tokens: Mapping[str, int] | None = None,
    cot: pd.DataFrame | None = None,
    unfinished: Sequence[str] = (),
    missing: Sequence[str] = (),
    n_problems: int | None = None,
    icot: str = "ICoT",
    aux: str = "SFT + aux loss",
    sft: str = "SFT",
    positions: Sequence[int] = MIDDLE,
) -> str:
    """The chapter's takeaway, phrased from :func:`mechanism_findings` whatever the numbers are (MyST
    markdown, for a ``glue:md`` inside the chapter's admonition). ``cot``: how much each model attends to
    its chain-of-thought tokens at the answer positions (:func:`cot_attention`)."""
    cot_tokens = dict(cot_tokens or {})
    if findings.empty:
        return "No model was available to measure, so this chapter shows no evidence either way yet." + (
            " Not measured yet: " + ", ".join(missing) + "." if missing else ""
        )
    span = f"c{positions[0]}–c{positions[-1]}"
    rule = (
        f"An edge counts as important when knocking it out costs some digit ≥ {100 * IMPORTANT_ACCURACY_DROP:g} "
        f"points of teacher-forced accuracy or ≥ {IMPORTANT_LOGIT_DROP:g} of its correct logit"
        + (f" over {n_problems:,} problems" if n_problems else "")
        + "; only the candidates with the most attention are knocked out, so an untested edge may matter too. "
        f"A cache→retrieve path into c_k needs both of its edges to cost c_k itself by that test, and the tree "
        f"needs such paths into at least {tree_digits_needed(len(positions))} of the {len(positions)} middle digits "
        f"{span}."
    )
    bullets = []
    for model, row in findings.iterrows():
        of_candidates = f" (of {int(row['candidates'])} candidates)" if pd.notna(row.get("candidates", np.nan)) else ""
        text = f"**{model}**: {int(row['important'])} of {int(row['tested'])} tested edges{of_candidates} matter"
        if row["important"]:
            text += (
                f" ({int(row['cache'])} cache, {int(row['retrieve'])} retrieve, {int(row['sink'])} sink"
                + (f", {int(row['cot'])} chain-of-thought" if row["cot"] else "")
                + " edges)"
            )
        text += "."
        if row["top_edges"]:
            text += f" The costliest {int(row['n_top'])} non-sink: {row['top_edges']}."
        if row["top_sink"]:
            text += f" Costliest sink edge ({_sink_note(int(row['top_sink_layer']))}): {row['top_sink']}."
        if row["n_pairs"]:
            text += (
                f" Layer-1 heads read operand pairs together: {row['pairs']}; for {int(row['pairs_confirmed'])} of "
                f"these {int(row['n_pairs'])} (head, position) cases both edges were knocked out and found important."
            )
        reached = list(row["tree_digits"])
        text += (
            f" Cache→retrieve paths reach {len(reached)} of the middle digits {span} "
            f"({', '.join(f'c{k}' for k in reached)}; {int(row['paths'])} paths in all)."
            if reached
            else f" No cache→retrieve path reaches the middle digits {span}"
            + (f" ({int(row['paths'])} reach other digits)." if row["paths"] else ".")
        )
        if row["n_broad"]:
            text += f" Heads that read most of the operand digits a digit c_k needs at once: {row['broad']}."
            if row["broad_tested"]:
                text += (
                    f" Knocking out each one's attention to all those digits at once matters in "
                    f"{int(row['n_broad_used'])} of these {int(row['n_broad'])} (head, position) cases"
                    + (f" (costliest: {row['broad_costs']})." if row["n_broad_used"] else ".")
                )
        notes = []
        if cot_tokens.get(model, 0) > 0:
            measured = cot_share_text(cot, model)
            notes.append(f"it still writes {cot_tokens[model]} chain-of-thought tokens" + (f", and {measured}" if measured else ""))
        if model in unfinished:
            notes.append("measured on a snapshot of a run still in training")
        if notes:
            text += " Caveat: " + "; ".join(notes) + "."
        bullets.append(f"- {text}")
    verdict = verdict_markdown(findings, cot_tokens=cot_tokens, cot=cot, icot=icot, aux=aux, sft=sft)
    lines = ["What our knockouts show:", "", *bullets, "", verdict, "", rule]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(missing) + "."]
    return "\n".join(lines)


def verdict_markdown(
    findings: pd.DataFrame,
    *,
    cot_tokens: Mapping[str, int] | None = None,
    cot: pd.DataFrame | None = None,
    icot: str = "ICoT",
    aux: str = "SFT + aux loss",
    sft: str = "SFT",
) -> str:
    """The takeaway's verdict in a few sentences: is the paper's tree in each model (by the rule of
    :func:`takeaway_markdown`), and does the aux model have a head that reads every pair at once?"""
    cot_tokens = dict(cot_tokens or {})
    tree = {model: _has_tree(row, cot_tokens.get(model, 0)) for model, row in findings.iterrows()}
    parts = []
    if icot in findings.index:
        if cot_tokens.get(icot, 0) > 0:
            measured = cot_share_text(cot, icot)
            share = f" ({measured})" if measured else ""
            parts.append(
                f"The paper's tree cannot be looked for in our {icot} model yet: it has not internalised its chain "
                f"of thought{share}."
            )
        elif tree[icot]:
            parts.append(f"Our {icot} model has a tree-like graph of cache→retrieve edges, as the paper reports.")
        else:
            parts.append(f"We do not find the paper's tree in our {icot} model by this test.")
    else:
        parts.append(f"No {icot} model was measured, so the paper's main claim is not tested here.")
    if aux in findings.index:
        row = findings.loc[aux]
        has_tree = "has" if tree[aux] else "does not have"
        used = (
            f", {int(row['n_broad_used'])} of them used by the answer (group knockout)" if row["broad_tested"] else ""
        )
        broad = (
            f"and {int(row['n_broad'])} (head, position) reads most needed digits at once{used}"
            if row["n_broad"]
            else "and no head reads most needed digits at once"
        )
        parts.append(f"Our {aux} model {has_tree} such a tree, {broad} (the paper: the same tree plus one such head).")
    if sft in findings.index:
        parts.append(f"Our {sft} model {'has' if tree[sft] else 'has no'} such tree.")
    return " ".join(parts)


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
        axis=alt.Axis(labelAngle=-90, labelFontSize=9),
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
    ).properties(width=alt.Step(11), height=alt.Step(14))
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
        .properties(width=alt.Step(11), height=120, title="the selected position's row (outlined above)")
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
    df: pd.DataFrame, *, title: str = "What knocking out one attention edge costs, digit by digit"
) -> alt.VConcatChart:
    """For each model, rows: its knocked-out edges (costliest first), columns: the output digits c0 … c7,
    colour: the drop in teacher-forced accuracy (points) or in the correct logit, picked under the chart,
    on one scale for all models, diverging at 0 so that a knockout that helps a digit (a negative drop)
    shows in its own colour. Edges that do not pass the importance test are faded; sink edges are marked
    "[sink]". Data: a :func:`knockout_frame`."""
    data = df.copy()
    data["digit"] = "c" + data["k"].astype(int).astype(str)
    data["accuracy"] = (100 * data["accuracy_drop"]).round(2)
    data["logit"] = data["logit_drop"].round(3)
    data["label"] = data["edge"] + np.where(data["role"] == "sink", " [sink]", "")
    data = data[["model", "label", "role", "rank", "weight", "important", "digit", "k", "accuracy", "logit"]]
    models = list(dict.fromkeys(data["model"]))
    n_c = int(data["k"].max()) + 1 if len(data) else 8
    measure = alt.param(
        name="measure",
        value="accuracy",
        bind=alt.binding_radio(
            options=["accuracy", "logit"], labels=["accuracy drop (points)", "correct-logit drop"], name="colour: "
        ),
    )

    def panel(model: str, first: bool) -> alt.Chart:
        return (
            alt.Chart(data[data["model"] == model], title=alt.Title(model, anchor="start", fontSize=13))
            .transform_fold(["accuracy", "logit"], as_=["measure_name", "value"])
            .transform_filter(alt.datum.measure_name == measure)
            .mark_rect(stroke="white", strokeWidth=0.5)
            .encode(
                x=alt.X(
                    "digit:N",
                    sort=[f"c{k}" for k in range(n_c)],
                    title="output digit" if first else None,
                    axis=alt.Axis(orient="top", labelAngle=0),
                ),
                y=alt.Y("label:N", sort=alt.EncodingSortField(field="rank", op="min"), title=None, axis=alt.Axis(labelLimit=260)),
                color=alt.Color(
                    "value:Q",
                    scale=alt.Scale(range=["#f1a340", "#f7f7f7", "#08519c"], domainMid=0),
                    title="drop (< 0: the knockout helps)",
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
            .properties(width=alt.Step(22), height=alt.Step(12))
        )

    panels = [panel(m, i == 0) for i, m in enumerate(models)] or [_nothing("no knocked-out edge to show")]
    return (
        alt.vconcat(*panels)
        .add_params(measure)
        .resolve_scale(color="shared")
        .properties(title=alt.Title(title, subtitle="faded: edges below the importance threshold; [sink]: key is || or *; orange: the knockout helps"))
    )


def graph_frame(
    graphs: Mapping[str, AttentionGraph],
    labels: Mapping[str, Sequence[str]],
    *,
    points: int = 16,
) -> pd.DataFrame:
    """The important edges of each model (an :func:`attention_graph`) as arcs over the sequence, laid out
    left to right: ``part`` "node" rows (x, label, text, kind) for every operand digit, ``*``, ``||``,
    ``####``, answer digit and any chain-of-thought position an edge touches (its text is its index); ``part`` "arc" rows (x, y, step, per
    ``edge``) tracing a half-ellipse from key to query, above the line for layer-1 edges and below it
    for layer-2 edges; a head's edge onto its own position is a small loop."""
    columns = [
        "model", "part", "x", "y", "step", "edge", "label", "text", "kind", "layer", "layer_name", "head", "role", "effect",
    ]  # fmt: skip
    rows = []
    for model, graph in graphs.items():
        lab = list(labels[model])
        used = {n.position for n in graph.nodes}
        shown = [p for p, name in enumerate(lab) if (key_kind(name) != "cot" and name != "<eos>") or p in used]
        x_of = {p: i for i, p in enumerate(shown)}
        for p in shown:
            kind = key_kind(lab[p])
            rows.append(
                {
                    "model": model,
                    "part": "node",
                    "x": x_of[p],
                    "y": 0.0,
                    "label": lab[p],
                    "text": lab[p][3:] if kind == "cot" else lab[p],  # "cot41" → "41", coloured as chain of thought
                    "kind": _KIND_NAMES[kind],
                }
            )
        for n, e in enumerate(graph.edges):
            x0, x1 = x_of[e.src], x_of[e.dst]
            sign = 1.0 if e.layer == 0 else -1.0
            name = edge_name(e.layer, e.head, lab[e.dst], lab[e.src])
            common = {
                "model": model,
                "part": "arc",
                "edge": f"{n}: {name}",
                "label": name,
                "layer": e.layer,
                "layer_name": layer_name(e.layer),
                "head": f"head {e.head}",
                "role": edge_role(e.layer, e.dst, e.src, lab[e.src]),
                "effect": round(100 * e.effect, 2),
            }
            for s in range(points + 1):
                t = math.pi * s / points
                if x0 == x1:  # a loop onto the head's own position
                    x, y = x0 + 0.3 * math.sin(2 * t), sign * (0.55 - 0.3 * math.cos(2 * t))
                else:  # starting just off the token line, so as not to cross the labels
                    half = (x1 - x0) / 2
                    x = x0 + half - half * math.cos(t)
                    y = sign * (0.25 + (0.4 + 0.45 * abs(half)) * math.sin(t))
                rows.append({**common, "x": round(x, 3), "y": round(y, 3), "step": s})
    return pd.DataFrame(rows, columns=columns)


def graph_chart(df: pd.DataFrame, *, title: str = "The attention edges the answer depends on", width: int = 560) -> alt.VConcatChart:
    """The important edges of each model drawn as a graph: positions left to right, layer-1 edges as arcs
    above the line, layer-2 edges below, coloured by head, thicker for a larger accuracy cost, dashed
    for sink edges. Click a head in the legend to highlight its edges; hover an arc for the edge.
    Data: a :func:`graph_frame`."""
    data = df.copy()
    data["sink"] = data["role"] == "sink"
    models = list(dict.fromkeys(data["model"]))
    heads = sorted(h for h in dict.fromkeys(data["head"].dropna())) or ["head 0"]
    pick = alt.selection_point(name="head_pick", fields=["head"], bind="legend")

    def panel(model: str, first: bool) -> alt.LayerChart:
        part = data[data["model"] == model]
        arcs = part[part["part"] == "arc"]
        x = alt.X("x:Q", axis=None, scale=alt.Scale(nice=False, padding=12))
        y = alt.Y("y:Q", axis=None, scale=alt.Scale(nice=False, padding=10))
        lines = (
            alt.Chart(arcs)
            .mark_line(interpolate="monotone")
            .encode(
                x=x,
                y=y,
                detail="edge:N",
                order="step:Q",
                stroke=alt.Stroke("head:N", scale=alt.Scale(domain=heads, scheme="category10"), title="head (click)"),
                strokeWidth=alt.StrokeWidth(
                    "effect:Q", scale=alt.Scale(range=[1, 5], domainMin=0), title="accuracy cost (points)"
                ),
                strokeDash=alt.StrokeDash(
                    "sink:N", scale=alt.Scale(domain=[False, True], range=[[1, 0], [4, 3]]), legend=None
                ),
                opacity=alt.when(pick).then(alt.value(0.9)).otherwise(alt.value(0.1)),
                tooltip=[
                    alt.Tooltip("model:N"),
                    alt.Tooltip("label:N", title="edge (query←key)"),
                    alt.Tooltip("layer_name:N", title="layer"),
                    alt.Tooltip("role:N"),
                    alt.Tooltip("effect:Q", title="largest accuracy drop (points)", format=".1f"),
                ],
            )
        )
        if first:  # a selection is defined once; the other panels use it too
            lines = lines.add_params(pick)
        nodes = (
            alt.Chart(part[part["part"] == "node"])
            .mark_text(fontSize=9, fontWeight="bold")
            .encode(
                x=x,
                y=y,
                text="text:N",
                tooltip=[alt.Tooltip("label:N", title="position")],
                fill=alt.Fill(
                    "kind:N",
                    scale=alt.Scale(domain=list(_KIND_NAMES.values()), range=list(_KIND_COLORS.values())),
                    title="position",
                ),
            )
        )
        note = "" if len(arcs) else " (no important edge)"
        n_nodes = int((part["part"] == "node").sum())
        return alt.layer(lines, nodes).properties(
            width=max(width, 16 * n_nodes), height=150, title=alt.Title(model + note, anchor="start", fontSize=13)
        )

    panels = [panel(m, i == 0) for i, m in enumerate(models)] or [_nothing("no important edge to draw")]
    return (
        alt.vconcat(*panels)
        .resolve_scale(stroke="shared", strokeWidth="shared", fill="shared", strokeDash="shared")
        .properties(
            title=alt.Title(
                title,
                subtitle="above the tokens: layer-1 edges (cache); below: layer-2 edges (retrieve); dashed: sink edges",
            )
        )
    )
