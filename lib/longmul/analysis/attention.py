"""Attention: where each head looks, which attention edges the answer depends on, and the graph they form.

The paper (FACTS §5.3) reads the ICoT model's mechanism as a sparse tree: layer-0 heads at earlier
positions attend to pairs of operand digits ``(a_i, b_j)`` and cache their products there; layer-1 heads
at the position predicting ``c_k`` attend back to those positions to retrieve them. Attention maps alone
only show where a head *looks*; an edge is *used* if zeroing it (attention knockout,
:class:`longmul.hooks.Knockout`: one head's query→key weight set to 0, the row renormalised) changes the
answer. So this module

1. averages every head's attention pattern over many problems (:func:`mean_attention`) and summarises
   what each head reads at each answer position (:func:`head_summary`, :func:`pattern_records`);
2. measures a knockout's effect on per-digit teacher-forced accuracy and on the correct digit's logit
   (:func:`teacher_forced_scores`, :func:`knockout_sweep`), recomputing from one clean pass only what
   each knockout can change (:mod:`longmul.analysis.knockouts`);
3. proposes edges with high mean attention and keeps those whose knockout matters
   (:func:`candidate_edges`, :func:`find_important_edges`);
4. turns the important edges into a graph of plain data (:func:`attention_graph`).

Positions are indices into the teacher-forced sequence of :func:`longmul.evaluate.teacher_forced_batch`
(the model's own format); :func:`position_labels` names them (``a0``, ``*``, ``b1``, ``||``, ``####``,
``c0``, …). "The position predicting ``c_k``" holds ``####`` for ``k = 0`` and the token ``c_{k-1}`` after.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from ..evaluate import cot_tokens_of
from ..hooks import Knockout
from ..model import model_config_of
from ..sequences import DIGIT_ID0
from ..task import Problem
from .knockouts import knocked_logits, resid_pre_names
from .passes import DEFAULT_BATCH_SIZE, as_pairs, teacher_forced_passes

# --------------------------------------------------------------------------- inputs and positions


def position_labels(model: GPT2LMHeadModel) -> list[str]:
    """A name for every position of the model's teacher-forced sequence: ``a0 … * b0 … || [cot…] #### c0 …
    <eos>``. Chain-of-thought tokens still written (ICoT before full removal) are ``cot{i}``, ``i`` their
    index in the full chain of thought."""
    layout = model_config_of(model).layout
    cot_kept = cot_tokens_of(model)
    cot = [f"cot{i}" for i in range(layout.cot_len - cot_kept, layout.cot_len)]
    return (
        [f"a{i}" for i in range(layout.n_a)]
        + ["*"]
        + [f"b{j}" for j in range(layout.n_b)]
        + ["||"]
        + cot
        + ["####"]
        + [f"c{k}" for k in range(layout.n_c)]
        + ["<eos>"]
    )


def answer_positions(model: GPT2LMHeadModel) -> list[int]:
    """``[p_0, …, p_{n_c-1}]``: ``p_k`` is the position whose next-token prediction is ``c_k``."""
    layout = model_config_of(model).layout
    return [layout.predicting_position(k, cot_tokens_of(model)) for k in range(layout.n_c)]


# --------------------------------------------------------------------------- attention patterns


@dataclass
class AttentionPatterns:
    """Every head's attention pattern averaged over ``n_problems`` problems."""

    mean: np.ndarray  # (L, H, T_query, T_key)
    labels: list[str]  # (T,) position names, see position_labels
    answer_positions: list[int]  # (n_c,) the position predicting c_k
    n_problems: int

    @property
    def at_answers(self) -> np.ndarray:
        """The rows of the answer positions: (L, H, n_c, T_key), ``[l, h, k]`` is what head ``h`` of layer
        ``l`` reads at the position predicting ``c_k``."""
        return self.mean[:, :, self.answer_positions, :]


def mean_attention(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> AttentionPatterns:
    """Attention patterns of every layer and head, averaged over the teacher-forced ``problems``
    (a single problem gives that problem's own patterns)."""
    pairs = as_pairs(model, problems)
    n_layers = model.config.n_layer
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    total = None
    for _, _, cache in teacher_forced_passes(model, pairs, names, batch_size=batch_size):
        chunk = torch.stack([cache[n].sum(0) for n in names]).double().cpu()  # (L, H, T, T)
        total = chunk if total is None else total + chunk
    labels = position_labels(model)
    if total.shape[-1] != len(labels):
        raise ValueError(f"sequence has {total.shape[-1]} positions but {len(labels)} labels; model format not understood")
    return AttentionPatterns(
        mean=(total / len(pairs)).numpy(),
        labels=labels,
        answer_positions=answer_positions(model),
        n_problems=len(pairs),
    )


def key_kind(label: str) -> str:
    """``a``/``b`` (operand digit), ``answer`` (``####`` or an answer digit), ``cot`` or ``symbol``."""
    if label[:1] in ("a", "b") and label[1:].isdigit():
        return label[0]
    if label == "####" or (label[:1] == "c" and label[1:].isdigit()):
        return "answer"
    if label.startswith("cot"):
        return "cot"
    return "symbol"


def pattern_records(patterns: AttentionPatterns) -> list[dict]:
    """Tidy rows of the attention at the answer positions, one per (layer, head, k, key) with key at or
    before the query: ``layer, head, k, query, query_label, key, key_label, key_kind, weight``.
    The long format an altair heatmap with head/position selectors takes (``pandas.DataFrame(rows)``)."""
    rows = []
    L, H = patterns.mean.shape[:2]
    for layer in range(L):
        for head in range(H):
            for k, query in enumerate(patterns.answer_positions):
                for key in range(query + 1):
                    rows.append(
                        {
                            "layer": layer,
                            "head": head,
                            "k": k,
                            "query": query,
                            "query_label": patterns.labels[query],
                            "key": key,
                            "key_label": patterns.labels[key],
                            "key_kind": key_kind(patterns.labels[key]),
                            "weight": float(patterns.mean[layer, head, query, key]),
                        }
                    )
    return rows


def head_summary(patterns: AttentionPatterns, top: int = 3) -> list[dict]:
    """What each head reads at each answer position, one row per (layer, head, k):

    ``operand_weight`` (attention on all a/b digits), ``top_a``/``top_a_weight`` and ``top_b``/``top_b_weight``
    (the operand digits it reads most: the candidate pair ``(a_i, b_j)`` it caches), ``answer_weight``
    (attention on ``####`` and earlier answer tokens: retrieval from earlier positions), and ``top_keys``
    (its ``top`` keys with weights, e.g. ``"a1 0.42, b2 0.31, c0 0.10"``)."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    labels = patterns.labels
    kinds = np.array([key_kind(label) for label in labels])
    a_keys, b_keys = np.flatnonzero(kinds == "a"), np.flatnonzero(kinds == "b")
    rows = []
    L, H = patterns.mean.shape[:2]
    for layer in range(L):
        for head in range(H):
            for k, query in enumerate(patterns.answer_positions):
                row = patterns.mean[layer, head, query, : query + 1]  # (query + 1,)
                ranked = np.argsort(-row, kind="stable")[:top]
                ia, ib = a_keys[np.argmax(row[a_keys])], b_keys[np.argmax(row[b_keys])]
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "k": k,
                        "query": query,
                        "query_label": labels[query],
                        "operand_weight": float(row[np.concatenate([a_keys, b_keys])].sum()),
                        "top_a": labels[ia],
                        "top_a_weight": float(row[ia]),
                        "top_b": labels[ib],
                        "top_b_weight": float(row[ib]),
                        "answer_weight": float(row[kinds[: query + 1] == "answer"].sum()),
                        "top_keys": ", ".join(f"{labels[p]} {row[p]:.2f}" for p in ranked),
                    }
                )
    return rows


# --------------------------------------------------------------------------- knockout


@dataclass
class TeacherForcedScores:
    """How the model does on each answer digit when fed the correct prefix."""

    predicted: np.ndarray  # (B, n_c) argmax digit at the position predicting c_k, -1 if not a digit
    correct: np.ndarray  # (B, n_c) bool, predicted == c_k
    logit: np.ndarray  # (B, n_c) logit of the correct token c_k

    @property
    def accuracy(self) -> np.ndarray:
        """(n_c,) per-digit accuracy."""
        return self.correct.mean(0)


def teacher_forced_scores(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    knockouts: Iterable[Knockout] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TeacherForcedScores:
    """Per-digit teacher-forced predictions, correctness and correct-token logits, with ``knockouts``
    applied (none: the clean model). The argmax is over the whole vocabulary, so a non-digit is wrong."""
    pairs = as_pairs(model, problems)
    knockouts = list(knockouts)
    _check_edges(model, knockouts)
    predicted, correct, logit = [], [], []
    for batch, logits, _ in teacher_forced_passes(model, pairs, [], knockouts, batch_size):
        pos = batch.answer_positions.to(logits.device)  # (b, n_c)
        target = batch.input_ids.to(logits.device).gather(1, pos + 1)  # (b, n_c) token ids of c_k
        at_answers = logits.gather(1, pos[..., None].expand(-1, -1, logits.shape[-1]))  # (b, n_c, V)
        for kept, part in zip((predicted, correct, logit), _score_parts(at_answers, target)):
            kept.append(part)
    return TeacherForcedScores(
        predicted=torch.cat(predicted).numpy(),
        correct=torch.cat(correct).numpy(),
        logit=torch.cat(logit).numpy(),
    )


def _score_parts(at_answers: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted digit (-1 if not a digit), correctness and correct-token logit, each (..., n_c), from the
    logits at the answer positions (..., n_c, V) and the correct tokens (..., n_c)."""
    top = at_answers.argmax(-1)  # (..., n_c)
    digit = top - DIGIT_ID0
    predicted = torch.where((digit >= 0) & (digit <= 9), digit, -1).cpu()
    correct = (top == target).cpu()
    logit = at_answers.gather(-1, target[..., None])[..., 0].float().cpu()  # (..., n_c)
    return predicted, correct, logit


def _check_edges(model: GPT2LMHeadModel, edges: Sequence[Knockout]) -> None:
    """Each knockout names one query and one key (an edge) or a non-empty group of keys (a head's
    attention to all of them removed at once), inside the sequence, no key after the query."""
    n_positions = len(position_labels(model))
    for edge in edges:
        keys = [edge.key] if isinstance(edge.key, (int, np.integer)) else list(edge.key)
        if not keys or not all(
            isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in (edge.query, *keys)
        ):
            raise ValueError(
                f"{edge}: a knockout names a single query position and one key position or a non-empty "
                "list of them (ints)"
            )
        if not all(0 <= key <= edge.query < n_positions for key in keys):
            raise ValueError(
                f"{edge}: need 0 <= key <= query < {n_positions} (attention is causal; the sequence has "
                f"{n_positions} positions)"
            )
        if len(set(keys)) == edge.query + 1:
            raise ValueError(f"{edge}: removing every key leaves the attention row with nothing to renormalise over")


@dataclass
class EdgeEffect:
    """What knocking out one attention edge does, averaged over the problems (positive = it hurts)."""

    edge: Knockout
    accuracy_drop: np.ndarray  # (n_c,) clean minus knocked-out accuracy of each digit c_k
    logit_drop: np.ndarray  # (n_c,) mean over problems of clean minus knocked-out correct-token logit

    @property
    def max_accuracy_drop(self) -> float:
        return float(self.accuracy_drop.max())

    @property
    def max_logit_drop(self) -> float:
        return float(self.logit_drop.max())


def knockout_sweep(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    edges: Iterable[Knockout],
    batch_size: int = DEFAULT_BATCH_SIZE,
    method: str = "cached",
) -> list[EdgeEffect]:
    """Knock out each edge on its own and measure the change of every digit's teacher-forced accuracy
    and correct-token logit against the clean model, on the same problems (a paired difference: an edge
    the model does not use scores exactly 0). An "edge" may name a group of keys
    (``Knockout(layer, head, query, [k1, k2, …])``): they are removed together.

    ``method="cached"`` (the default) runs one clean pass and recomputes, for all edges at once, only
    what each knockout can change (:mod:`longmul.analysis.knockouts`); ``"full"`` runs one whole hooked
    forward pass per edge. Both give the same numbers (tests/test_knockout_cache.py)."""
    if method not in ("cached", "full"):
        raise ValueError(f"method must be 'cached' or 'full', got {method!r}")
    pairs = as_pairs(model, problems)
    edges = list(edges)
    _check_edges(model, edges)
    clean = teacher_forced_scores(model, pairs, batch_size=batch_size)
    if method == "full":
        knocked = [teacher_forced_scores(model, pairs, [edge], batch_size) for edge in edges]
    else:
        knocked = _cached_knockout_scores(model, pairs, edges, batch_size)
    return [
        EdgeEffect(
            edge=edge,
            accuracy_drop=clean.accuracy - scores.accuracy,
            logit_drop=(clean.logit - scores.logit).mean(0),
        )
        for edge, scores in zip(edges, knocked)
    ]


def _cached_knockout_scores(
    model: GPT2LMHeadModel, pairs: np.ndarray, edges: list[Knockout], batch_size: int
) -> list[TeacherForcedScores]:
    """Per edge, the scores :func:`teacher_forced_scores` gives with that edge knocked out, from one clean
    pass per chunk of problems (shared with other analyses through :mod:`longmul.pass_cache`)."""
    if not edges:
        return []
    names = resid_pre_names(model)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for batch, logits, cache in teacher_forced_passes(model, pairs, names, batch_size=batch_size):
        pos = batch.answer_positions.to(logits.device)  # (b, n_c)
        if not bool((pos == pos[:1]).all()):  # every sequence of one model has the same format
            raise ValueError("cached knockouts need the answer at the same positions in every sequence")
        positions = pos[0].tolist()
        target = batch.input_ids.to(logits.device).gather(1, pos + 1)  # (b, n_c)
        at_answers = logits[:, positions]  # (b, n_c, V)
        knocked = knocked_logits(model, [cache[n] for n in names], edges, positions, at_answers)  # (E, b, n_c, V)
        parts.append(_score_parts(knocked, target.expand(len(edges), -1, -1)))
    predicted, correct, logit = (torch.cat([p[i] for p in parts], dim=1).numpy() for i in range(3))  # (E, B, n_c)
    return [TeacherForcedScores(predicted=predicted[e], correct=correct[e], logit=logit[e]) for e in range(len(edges))]


def candidate_edges(
    patterns: AttentionPatterns,
    min_weight: float = 0.2,
    queries: Iterable[int] | None = None,
) -> list[Knockout]:
    """Edges ``(layer, head, query, key)`` whose mean attention is at least ``min_weight``, at the answer
    positions (or the given query positions), strongest first: the edges worth knocking out. Position 0
    is never a query here: its one key is all it can attend to, so there is nothing to knock out."""
    if not 0 < min_weight <= 1:
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight}")
    queries = patterns.answer_positions if queries is None else [int(q) for q in queries]
    T = patterns.mean.shape[-1]
    if any(not 0 <= q < T for q in queries):
        raise ValueError(f"query positions must be in 0..{T - 1}, got {queries}")
    found = []
    for query in (q for q in queries if q > 0):
        layer, head, key = np.nonzero(patterns.mean[:, :, query, : query + 1] >= min_weight)
        for l_, h, k in zip(layer, head, key):
            weight = patterns.mean[l_, h, query, k]
            found.append((-weight, Knockout(int(l_), int(h), int(query), int(k))))
    found.sort(key=lambda item: (item[0], item[1].layer, item[1].head, item[1].query, item[1].key))
    return [edge for _, edge in found]


def find_important_edges(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    min_weight: float = 0.2,
    min_accuracy_drop: float = 0.02,
    min_logit_drop: float | None = None,
    queries: Iterable[int] | None = None,
    patterns: AttentionPatterns | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[EdgeEffect]:
    """Propose the edges with mean attention ≥ ``min_weight`` at the answer positions (or at
    ``queries``, e.g. ``range(T)`` to include prompt positions that may cache something too), knock
    each out, and keep those that lower some digit's accuracy by ≥ ``min_accuracy_drop`` (or, when
    ``min_logit_drop`` is given, its correct logit by at least that much); largest accuracy drop first.
    ``patterns`` (from :func:`mean_attention` on the same problems) saves recomputing them."""
    if min_accuracy_drop <= 0 or (min_logit_drop is not None and min_logit_drop <= 0):
        raise ValueError("the thresholds min_accuracy_drop and min_logit_drop must be positive")
    pairs = as_pairs(model, problems)
    patterns = mean_attention(model, pairs, batch_size) if patterns is None else patterns
    effects = knockout_sweep(model, pairs, candidate_edges(patterns, min_weight, queries), batch_size)
    kept = [
        e
        for e in effects
        if e.max_accuracy_drop >= min_accuracy_drop or (min_logit_drop is not None and e.max_logit_drop >= min_logit_drop)
    ]
    return sorted(kept, key=lambda e: (-e.max_accuracy_drop, -e.max_logit_drop))


def effects_table(effects: Iterable[EdgeEffect], labels: Sequence[str]) -> list[dict]:
    """Tidy rows, one per (edge, output digit k): ``layer, head, query, query_label, key, key_label, k,
    accuracy_drop, logit_drop``: the knockout evidence as a table or heatmap."""
    rows = []
    for e in effects:
        for k, (acc, logit) in enumerate(zip(e.accuracy_drop, e.logit_drop)):
            rows.append(
                {
                    "layer": e.edge.layer,
                    "head": e.edge.head,
                    "query": e.edge.query,
                    "query_label": labels[e.edge.query],
                    "key": e.edge.key,
                    "key_label": labels[e.edge.key],
                    "k": k,
                    "accuracy_drop": float(acc),
                    "logit_drop": float(logit),
                }
            )
    return rows


# --------------------------------------------------------------------------- the graph


class GraphNode(NamedTuple):
    position: int
    label: str  # the token there: "a1", "b2", "####", "c0", …
    kind: str  # "a", "b", "answer", "cot" or "symbol"
    predicts: int | None  # k if this is the position predicting c_k


class GraphEdge(NamedTuple):
    src: int  # key position (information flows from the key …)
    dst: int  # … to the query position
    layer: int
    head: int
    effect: float  # the edge's largest per-digit drop (accuracy or logit, see attention_graph)


@dataclass
class AttentionGraph:
    """The causally important attention edges as a directed graph over sequence positions."""

    nodes: list[GraphNode]  # every position an edge touches, in sequence order
    edges: list[GraphEdge]  # in the order given


def attention_graph(
    effects: Iterable[EdgeEffect],
    labels: Sequence[str],
    answer_positions: Sequence[int],
    measure: str = "accuracy",
) -> AttentionGraph:
    """Build the graph of the edges in ``effects`` (e.g. from :func:`find_important_edges`): an edge per
    knocked-out (layer, head, query, key) from key to query, weighted by its largest per-digit accuracy
    drop (``measure="accuracy"``) or logit drop (``"logit"``). Plain data, for altair or matplotlib."""
    if measure not in ("accuracy", "logit"):
        raise ValueError(f"measure must be 'accuracy' or 'logit', got {measure!r}")
    edges = []
    for e in effects:
        effect = e.max_accuracy_drop if measure == "accuracy" else e.max_logit_drop
        edges.append(GraphEdge(e.edge.key, e.edge.query, e.edge.layer, e.edge.head, effect))
    predicts = {p: k for k, p in enumerate(answer_positions)}
    used = sorted({e.src for e in edges} | {e.dst for e in edges})
    nodes = [GraphNode(p, labels[p], key_kind(labels[p]), predicts.get(p)) for p in used]
    return AttentionGraph(nodes=nodes, edges=edges)
