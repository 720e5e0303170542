"""Tables, charts and the generated takeaway of the chapter "The mechanism" (paper §5.3,
FACTS §5.3): where each attention head looks, which attention edges the answer depends on (attention
knockout), and the graph those edges form.

The measurements come from :mod:`longmul.analysis.attention`; this module only arranges them. Its
frames are tidy ``pandas.DataFrame`` objects with a ``model`` column:

* :func:`pattern_frame`: mean attention of every head at every answer position (the heatmaps);
* :func:`edge_frame`: one row per knocked-out edge with its role, attention weight and cost;
* :func:`knockout_frame`: one row per (edge, output digit c_k): the knockout heatmap;
* :func:`graph_frame`: the arcs and nodes of the drawn graph of the important edges;
* :func:`cache_pairs`, :func:`tree_paths`, :func:`broad_heads`, :func:`mechanism_findings`: what the
  takeaway (:func:`takeaway_markdown`) is phrased from.

Layers are named from 1 as in the paper ("layer 1" is ``blocks.0``, ``Knockout(layer=0, …)``), heads
from 0 as in the code: ``L2H3`` is head 3 of ``blocks.1``. The charts' interaction (selectors, hover,
legend highlight) runs in the browser, so it works on the book's static site; the widget
(:func:`longmul.charts.mechanism_explorer.mechanism_explorer`) needs a live kernel.

Two readings are built in. An edge whose key is ``||`` or ``*`` is a *sink* edge: heads park attention
there when they have nothing to read, and knocking such an edge out renormalises the rest of the row,
which can cost accuracy without the key carrying information. And a model that still writes its chain
of thought reads that chain of thought at the answer positions, not a tree over the operands.
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
BROAD_OPERAND_WEIGHT = 0.5  # … and at least this much attention to operand digits in all

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
    "sink": "the key is || or *, where heads park attention: a knockout renormalises the row",
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
    fairly between layer-1 edges, layer-2 edges and sink edges: round robin over those groups, strongest
    first within each, so that sink edges (often the strongest of all) do not use up the budget."""
    if limit < 0:
        raise ValueError(f"limit must be ≥ 0, got {limit}")
    groups: dict[tuple[int, bool], list[Knockout]] = {}
    for edge in candidates:
        groups.setdefault((edge.layer, labels[edge.key] in SINK_LABELS), []).append(edge)
    queues = [groups[g] for g in sorted(groups, key=lambda g: (g[1], g[0]))]
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
    model, head_name, position, predicts (k), pair "(a1, b2)", column ("s3": the column sum
    :math:`s_{i+j}` that the pair's product goes into), a_weight, b_weight, operand_weight."""
    columns = ["model", "head_name", "position", "predicts", "pair", "column", "a_weight", "b_weight", "operand_weight"]
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
                    "column": f"s{i + j}",
                    "a_weight": r["top_a_weight"],
                    "b_weight": r["top_b_weight"],
                    "operand_weight": r["operand_weight"],
                }
            )
    return pd.DataFrame(rows, columns=columns)


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
    (the largest per-digit drops), ``accuracy_drops`` (every digit's, a tuple) and ``important`` (some
    digit loses ≥ ``min_accuracy_drop`` accuracy or ≥ ``min_logit_drop`` of its correct logit)."""
    columns = [
        "model", "edge", "layer", "head", "head_name", "query", "query_label", "predicts", "key", "key_label",
        "role", "sink", "weight", "worst", "clean_accuracy", "accuracy_drop", "logit_drop", "accuracy_drops",
        "important",
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
                    "important": _is_important(e, min_accuracy_drop, min_logit_drop),
                }
            )
        rows += sorted(part, key=lambda r: (-r["accuracy_drop"], -r["logit_drop"]))
    return pd.DataFrame(rows, columns=columns)


def edge_table(edges: pd.DataFrame, model: str, top: int | None = None) -> pd.DataFrame:
    """A model's important edges for display, indexed by edge: its role, mean attention, the digit its
    knockout hurts most with that digit's accuracy clean → knocked out, and the accuracy and logit costs
    (the ``top`` costliest, or all)."""
    part = edges[(edges["model"] == model) & edges["important"].astype(bool)]
    if top is not None:
        part = part.head(top)
    accuracy = [
        f"{c:.0%} → {c - d:.0%}" if not np.isnan(c) else "" for c, d in zip(part["clean_accuracy"], part["accuracy_drop"])
    ]
    return pd.DataFrame(
        {
            "role": part["role"].to_numpy(),
            "attention": part["weight"].map("{:.2f}".format).to_numpy(),
            "hurts most": ("c" + part["worst"].astype(str)).to_numpy(),
            "its accuracy": accuracy,
            "accuracy cost (points)": (100 * part["accuracy_drop"]).map("{:.1f}".format).to_numpy(),
            "logit drop": part["logit_drop"].map("{:.2f}".format).to_numpy(),
        },
        index=pd.Index(part["edge"].to_numpy(), name="edge (head query←key)"),
    )


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


def tree_paths(edges: pd.DataFrame) -> pd.DataFrame:
    """Two-hop paths of important edges, the paper's cache-then-retrieve shape: a layer-1 edge from an
    operand digit to a position ``p`` (role "cache") and a layer-2 edge from ``p`` to a later answer
    position (role "retrieve"). Columns: model, operand, cache_head, via (p's label), retrieve_head,
    target (label), predicts (k of the target), cache_drop (the cache edge's accuracy drop at that c_k),
    retrieve_drop (the retrieve edge's)."""
    columns = ["model", "operand", "cache_head", "via", "retrieve_head", "target", "predicts", "cache_drop", "retrieve_drop"]
    important = edges[edges["important"].astype(bool)]
    rows = []
    for model, part in important.groupby("model", sort=False):
        cache = part[part["role"] == "cache"]
        retrieve = part[part["role"] == "retrieve"]
        for _, r in retrieve.iterrows():
            for _, c in cache[cache["query"] == r["key"]].iterrows():
                k = r["predicts"]
                rows.append(
                    {
                        "model": model,
                        "operand": c["key_label"],
                        "cache_head": c["head_name"],
                        "via": c["query_label"],
                        "retrieve_head": r["head_name"],
                        "target": r["query_label"],
                        "predicts": k,
                        "cache_drop": c["accuracy_drops"][k] if k is not None else np.nan,
                        "retrieve_drop": r["accuracy_drops"][k] if k is not None else np.nan,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def broad_heads(
    patterns: pd.DataFrame,
    *,
    above_uniform: float = BROAD_ABOVE_UNIFORM,
    coverage: float = BROAD_COVERAGE,
    min_operand_weight: float = BROAD_OPERAND_WEIGHT,
    min_k: int = 2,
) -> pd.DataFrame:
    """Heads that read (nearly) every operand digit c_k needs at once, at the position predicting c_k
    (k ≥ ``min_k``). The digits a_i, b_j with i, j ≤ k can change c_k; the head "reads" one when it gives
    it ``above_uniform`` times what uniform attention over the keys would (so a head that spreads its
    attention evenly does not count); it must read at least a ``coverage`` share of them and give
    ≥ ``min_operand_weight`` to operand digits in all. ``patterns``: a :func:`pattern_frame`. Columns:
    model, head_name, position, predicts, digits_read, digits_needed, operand_weight."""
    columns = ["model", "head_name", "position", "predicts", "digits_read", "digits_needed", "operand_weight"]
    data = patterns[patterns["key_kind"].isin(["a", "b"]) & (patterns["k"] >= min_k)].copy()
    if data.empty:
        return pd.DataFrame(columns=columns)
    data["index"] = data["key_label"].str[1:].astype(int)
    data["needed"] = data["index"] <= data["k"]
    data["read"] = data["weight"] >= above_uniform / (data["query"] + 1)
    rows = []
    for (model, layer, head, k), g in data.groupby(["model", "layer", "head", "k"], sort=False):
        needed = g[g["needed"]]
        read = int(needed["read"].sum())
        operand = float(g["weight"].sum())
        if len(needed) and read / len(needed) >= coverage and operand >= min_operand_weight:
            rows.append(
                {
                    "model": model,
                    "head_name": head_name(layer, head),
                    "position": g["query_name"].iloc[0],
                    "predicts": k,
                    "digits_read": read,
                    "digits_needed": len(needed),
                    "operand_weight": operand,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def mechanism_findings(
    edges: pd.DataFrame,
    pairs: pd.DataFrame,
    broad: pd.DataFrame,
    models: Sequence[str],
    *,
    positions: Sequence[int] = MIDDLE,
) -> pd.DataFrame:
    """The numbers the takeaway is phrased from, one row per model: ``tested`` and ``important`` edges,
    how many of the important ones are ``cache``, ``retrieve``, ``sink`` and ``cot`` (chain-of-thought)
    edges, ``top_edges`` (the three costliest non-sink ones, named with their costs), ``top_sink`` (the
    costliest sink edge), ``pairs`` (operand pairs layer-1 heads read together, :func:`cache_pairs`),
    ``tree_digits`` (the c_k, k in ``positions``, reached by a cache→retrieve path, :func:`tree_paths`),
    and ``broad`` (broad heads, :func:`broad_heads`)."""
    paths = tree_paths(edges)
    rows = {}
    for model in models:
        part = edges[edges["model"] == model]
        imp = part[part["important"].astype(bool)]
        roles = imp["role"].value_counts()
        plain = imp[~imp["sink"].astype(bool)]
        sink = imp[imp["sink"].astype(bool)]
        here = paths[paths["model"] == model]
        reached = sorted({int(k) for k in here["predicts"].dropna() if int(k) in positions})
        model_pairs = pairs[pairs["model"] == model].sort_values("predicts", kind="stable")
        model_broad = broad[broad["model"] == model]
        rows[model] = {
            "tested": len(part),
            "important": len(imp),
            "cache": int(roles.get("cache", 0)),
            "retrieve": int(roles.get("retrieve", 0)),
            "sink": int(roles.get("sink", 0)),
            "cot": int(roles.get("chain of thought", 0)),
            "top_edges": "; ".join(_edge_cost(r) for _, r in plain.head(3).iterrows()),
            "top_sink": _edge_cost(sink.iloc[0]) if len(sink) else "",
            "pairs": "; ".join(
                f"{pair} at {_join(dict.fromkeys(g['position']))}" for pair, g in model_pairs.groupby("pair", sort=False)
            ),
            "n_pairs": len(model_pairs),
            "tree_digits": reached,
            "positions": len(positions),
            "paths": len(here),
            "broad": "; ".join(
                f"{head} for {_join('c' + g['predicts'].astype(str))}" for head, g in model_broad.groupby("head_name", sort=False)
            ),
            "n_broad": len(model_broad),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _join(items) -> str:
    return ", ".join(str(x) for x in items)


def _edge_cost(r: pd.Series) -> str:
    return (
        f"{r['edge']} ({r['role']}): c{int(r['worst'])} accuracy −{100 * r['accuracy_drop']:.1f} points, "
        f"logit −{r['logit_drop']:.2f}"
    )


def takeaway_markdown(
    findings: pd.DataFrame,
    *,
    cot_tokens: Mapping[str, int] | None = None,
    unfinished: Sequence[str] = (),
    missing: Sequence[str] = (),
    n_problems: int | None = None,
    icot: str = "ICoT",
    aux: str = "SFT + aux loss",
    sft: str = "SFT",
    positions: Sequence[int] = MIDDLE,
) -> str:
    """The chapter's takeaway, phrased from :func:`mechanism_findings` whatever the numbers are (MyST
    markdown, for a ``glue:md`` inside the chapter's admonition)."""
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
        + "; the tree needs important cache→retrieve paths into the middle digits "
        f"{span}."
    )
    bullets = []
    verdicts: dict[str, bool] = {}
    for model, row in findings.iterrows():
        text = f"**{model}**: {int(row['important'])} of {int(row['tested'])} tested edges matter"
        if row["important"]:
            text += (
                f" ({int(row['cache'])} cache, {int(row['retrieve'])} retrieve, {int(row['sink'])} sink"
                + (f", {int(row['cot'])} chain-of-thought" if row["cot"] else "")
                + " edges)"
            )
        text += "."
        if row["top_edges"]:
            text += f" Costliest: {row['top_edges']}."
        if row["top_sink"]:
            text += f" Costliest sink edge (a renormalisation effect, not information flow): {row['top_sink']}."
        if row["n_pairs"]:
            text += f" Layer-1 heads read operand pairs together: {row['pairs']}."
        reached = list(row["tree_digits"])
        tree = len(reached) * 2 >= int(row["positions"])
        verdicts[model] = tree and cot_tokens.get(model, 0) == 0
        text += (
            f" Cache→retrieve paths reach {len(reached)} of the middle digits {span} "
            f"({', '.join(f'c{k}' for k in reached)}; {int(row['paths'])} paths in all)."
            if reached
            else f" No cache→retrieve path reaches the middle digits {span}"
            + (f" ({int(row['paths'])} reach other digits)." if row["paths"] else ".")
        )
        if row["n_broad"]:
            text += f" Heads that read most of the operand digits a digit c_k needs at once: {row['broad']}."
        notes = []
        if cot_tokens.get(model, 0) > 0:
            notes.append(
                f"it still writes {cot_tokens[model]} chain-of-thought tokens, and at the answer positions it "
                "reads that chain of thought, not a tree over the operands"
            )
        if model in unfinished:
            notes.append("measured on a snapshot of a run still in training")
        if notes:
            text += " Caveat: " + "; ".join(notes) + "."
        bullets.append(f"- {text}")
    verdict = _verdict(findings, verdicts, cot_tokens, icot, aux, sft)
    lines = ["What our knockouts show:", "", *bullets, "", verdict, "", rule]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(missing) + "."]
    return "\n".join(lines)


def _verdict(
    findings: pd.DataFrame, tree: Mapping[str, bool], cot_tokens: Mapping[str, int], icot: str, aux: str, sft: str
) -> str:
    parts = []
    if icot in findings.index:
        if cot_tokens.get(icot, 0) > 0:
            parts.append(
                f"The paper's tree cannot be looked for in our {icot} model yet: it has not internalised its chain "
                "of thought, so its answer positions read the chain of thought."
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
        broad = (
            f"and {int(row['n_broad'])} (head, position) reads most needed digits at once"
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
    min_weight: float = 0.01,
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
    on one scale for all models. Edges that do not pass the importance test are faded; sink edges are
    marked "[sink]". Data: a :func:`knockout_frame`."""
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
                    "value:Q", scale=alt.Scale(range=["#f7fbff", "#08519c"], domainMin=0, clamp=True), title="drop"
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
        .properties(title=alt.Title(title, subtitle="faded: edges below the importance threshold; [sink]: key is || or *"))
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
