"""Logit attribution: which operand digits each output digit depends on (paper Fig. 2, FACTS §5.1).

For output digit ``c_k`` and operand digit ``x`` (one of ``a_0 … a_{n_a-1}, b_0 … b_{n_b-1}``):

1. run the teacher-forced correct sequence and note the token the model predicts for ``c_k`` and its
   logit;
2. replace ``x``'s token by a uniformly random *different* digit (a leading digit stays in 1–9),
   leaving every other token as it was, so the prefix before ``c_k`` is still the original one;
3. the attribution is the drop of the logit of the originally predicted token, averaged over problems.

A model that computes ``c_k`` from ``x`` shows a large drop; one that ignores ``x`` shows none. A
single forward pass of the whole teacher-forced sequence scores every ``c_k`` at once: the model is
causal, so the logits at the position predicting ``c_k`` see exactly the prefix before ``c_k``.
A replaced digit changes nothing before its position: each corrupted run reuses the clean run's
queries, keys and values there and finishes only the answer positions in the last layer (the same
logits as a whole forward pass, at about 60% of its cost).

Everything is vectorised over problems and deterministic in ``seed``: the replacement digits are drawn
for all problems up front, so the result does not depend on ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from ..evaluate import teacher_forced_batch
from ..model import model_config_of
from ..sequences import DIGIT_ID0, Batch, Layout, operand_digits, pairs_for_layout
from ..task import Problem, sample_operands
from .knockouts import _check_model, _finish, _project, _qkv, _scores, _softmax

DEFAULT_PROBLEMS = 1_000


@dataclass
class Attribution:
    """Mean logit drop of each output digit (rows) when each operand digit (columns) is replaced."""

    matrix: np.ndarray  # (n_c, n_a + n_b) mean drop of the originally predicted token's logit
    sem: np.ndarray  # (n_c, n_a + n_b) standard error of that mean
    outputs: list[str]  # row labels c0 … c_{n_c-1}
    operands: list[str]  # column labels a0 … b_{n_b-1}
    accuracy: np.ndarray  # (n_c,) how often the originally predicted token is the correct c_k
    n_samples: int  # problems (or, for one problem, replacements per operand digit) averaged

    def to_records(self) -> list[dict]:
        """One dict per cell (output, operand, drop, sem): the tidy form for altair / pandas."""
        return [
            {"output": out, "operand": op, "drop": float(self.matrix[r, c]), "sem": float(self.sem[r, c])}
            for r, out in enumerate(self.outputs)
            for c, op in enumerate(self.operands)
        ]


def replacement_digits(digits: np.ndarray, leading: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each digit, a uniformly random *different* digit; where ``leading`` is True the new digit
    is in 1–9 (an operand keeps its length). ``leading`` broadcasts against ``digits``."""
    digits = np.asarray(digits, dtype=np.int64)
    leading = np.broadcast_to(np.asarray(leading, dtype=bool), digits.shape)
    if digits.size and (digits.min() < 0 or digits.max() > 9):
        raise ValueError("digits must be in 0-9")
    if np.any(leading & (digits == 0)):
        raise ValueError("a leading digit is 0: operands must not have a leading zero")
    low = leading.astype(np.int64)  # smallest allowed digit: 1 for a leading digit, else 0
    span = 10 - low  # number of allowed digits (9 or 10)
    offset = rng.integers(1, span)  # 1 … span-1: never 0, so never the original digit
    return low + (digits - low + offset) % span


def _operand_slots(layout: Layout) -> list[tuple[int, bool]]:
    """(sequence position, is the leading digit) of a_0 … a_{n_a-1}, b_0 … b_{n_b-1}."""
    return [(layout.a_position(i), i == layout.n_a - 1) for i in range(layout.n_a)] + [
        (layout.b_position(j), j == layout.n_b - 1) for j in range(layout.n_b)
    ]


def analysis_pairs(
    layout: Layout,
    problems: np.ndarray | Sequence[Problem] | None,
    n_problems: int,
    seed: int,
    minimum: int,
) -> np.ndarray:
    """The (N, 2) operand pairs an analysis runs on: ``problems`` (pairs or :class:`Problem` objects),
    checked against the model's operand sizes, or else ``n_problems`` uniform random pairs drawn with
    ``seed``. Fewer than ``minimum`` is a ``ValueError``."""
    if problems is None:
        pairs = sample_operands(np.random.default_rng(seed), max(n_problems, 0), layout.n_a, layout.n_b)
    else:
        pairs = pairs_for_layout(problems, layout)
    if len(pairs) < minimum:
        raise ValueError(f"this analysis needs at least {minimum} problems, got {len(pairs)}")
    return pairs


def _answer_logits(model: GPT2LMHeadModel, batch: Batch, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits at the positions predicting c_0 … c_{n_c-1}: (B, n_c, V)."""
    device = next(model.parameters()).device
    logits = model(
        input_ids=input_ids.to(device),
        position_ids=batch.position_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
    ).logits  # (B, T, V)
    rows = torch.arange(len(input_ids), device=device)[:, None]  # (B, 1)
    return logits[rows, batch.answer_positions.to(device)].float()  # (B, n_c, V)


@dataclass
class _Baseline:
    """The clean teacher-forced run of a batch of problems."""

    batch: Batch
    predicted: torch.Tensor  # (B, n_c, 1) token the model predicts for each c_k
    logit: torch.Tensor  # (B, n_c) its logit
    correct: np.ndarray  # (B, n_c) whether that token is the right digit
    layers: list[dict[str, torch.Tensor]] | None = None  # per layer: the clean q, k, v (B, H, T, d_head)


def _baseline(model: GPT2LMHeadModel, pairs: np.ndarray) -> _Baseline:
    batch = teacher_forced_batch(model, pairs)
    logits = _answer_logits(model, batch, batch.input_ids)  # (B, n_c, V)
    return _scored(batch, logits)


def _scored(batch: Batch, logits: torch.Tensor, layers: list | None = None) -> _Baseline:
    predicted = logits.argmax(-1, keepdim=True)  # (B, n_c, 1)
    rows = torch.arange(len(batch.input_ids))[:, None]  # (B, 1)
    targets = batch.labels[rows, batch.answer_positions]  # (B, n_c): the token after each position is c_k
    correct = (predicted[..., 0].cpu() == targets).numpy()
    return _Baseline(batch, predicted, logits.gather(-1, predicted)[..., 0], correct, layers)


def _logit_drop(model: GPT2LMHeadModel, clean: _Baseline, positions: np.ndarray, new_digits: np.ndarray) -> np.ndarray:
    """Drop (B, n_c) of each originally predicted token's logit when row r's token at ``positions[r]``
    (an operand digit) becomes ``new_digits[r]``; every other token stays the original one."""
    rows = torch.arange(len(positions))  # (B,)
    corrupted_ids = clean.batch.input_ids.clone()  # (B, T)
    corrupted_ids[rows, torch.from_numpy(positions)] = DIGIT_ID0 + torch.from_numpy(new_digits)
    answers = clean.batch.answer_positions[0]  # (n_c,)
    if clean.layers is not None and (positions == positions[0]).all() and positions[0] <= int(answers.min()):
        logits = _answer_logits_from(model, clean.batch, corrupted_ids, int(positions[0]), clean.layers)[0]
    else:
        logits = _answer_logits(model, clean.batch, corrupted_ids)
    corrupted = logits.gather(-1, clean.predicted)[..., 0]  # (B, n_c)
    return (clean.logit - corrupted).cpu().numpy()


def _recomputable(model: GPT2LMHeadModel, batch: Batch) -> bool:
    """Whether :func:`_answer_logits_from` computes what the model does: a GPT-2 it supports, no padding,
    and the answer at the same positions in every row."""
    if not isinstance(model, GPT2LMHeadModel):
        return False
    try:
        _check_model(model)
    except ValueError:
        return False
    return bool(batch.attention_mask.all()) and bool((batch.answer_positions == batch.answer_positions[0]).all())


def _answer_logits_from(
    model: GPT2LMHeadModel, batch: Batch, input_ids: torch.Tensor, start: int, clean: list | None
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Logits at the positions predicting c_0 … c_{n_c-1} (B, n_c, V) of ``input_ids``, which equal the
    sequences of the ``clean`` run (per layer: its q, k, v) before position ``start`` (``clean=None``,
    ``start=0``: the clean run itself, whose per-layer state is returned too).

    A token changed at ``start`` changes nothing before it (attention is causal), and only the answer
    positions' logits are read. So every layer computes its rows from ``start`` on and keeps the clean
    rows before; the last layer finishes (attention output, MLP) the answer positions only. The layer
    norms, projections and MLP treat rows one by one; the attention products run over all T queries and
    keys with the clean rows spliced in, the same shapes as in the whole forward pass. Written with the
    blocks' own submodules as :mod:`longmul.analysis.knockouts` does, it gives the whole pass's logits
    (tests/test_analysis_attribution.py checks 1e-5; on the book's models they are the same bits)."""
    device = next(model.parameters()).device
    blocks, n_heads = model.transformer.h, model.config.n_head
    answers = batch.answer_positions[0].to(device)  # (n_c,) the same in every row of a layout
    ids = input_ids[:, start:].to(device)  # (B, R)
    x = model.transformer.wte(ids) + model.transformer.wpe(batch.position_ids[:, start:].to(device))  # (B, R, d)
    layers = []
    for index, block in enumerate(blocks):
        q, k, v = _qkv(block, x, n_heads)  # (B, H, R, d_head) each
        if clean is not None:
            q, k, v = (
                torch.cat([clean[index][n][..., :start, :], new], dim=-2) for n, new in (("q", q), ("k", k), ("v", v))
            )
        layers.append({"q": q, "k": k, "v": v})
        T = q.shape[-2]
        future = torch.ones(T, T, dtype=torch.bool, device=device).triu(1)  # (T, T)
        z = torch.matmul(_softmax(_scores(block, q, k), future, in_place=True), v)  # (B, H, T, d_head)
        if index + 1 < len(blocks):
            x = _finish(block, x, _project(block, z[..., start:, :]))  # (B, R, d)
        else:
            x = _finish(block, x[:, answers - start], _project(block, z[..., answers, :]))  # (B, n_c, d)
    logits = model.lm_head(model.transformer.ln_f(x)).float()  # (B, n_c, V)
    return logits, layers


def _labelled(matrix: np.ndarray, sem: np.ndarray, correct: np.ndarray, n_samples: int, layout: Layout) -> Attribution:
    return Attribution(
        matrix=matrix,
        sem=sem,
        outputs=[f"c{k}" for k in range(layout.n_c)],
        operands=layout.operand_labels(),
        accuracy=correct.mean(0),
        n_samples=n_samples,
    )


def _in_eval_mode(model: GPT2LMHeadModel, fn):
    """Call ``fn()`` without gradients and with dropout off, restoring the model's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return fn()
    finally:
        model.train(was_training)


def logit_attribution(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem] | None = None,
    n_problems: int = DEFAULT_PROBLEMS,
    seed: int = 0,
    batch_size: int = 500,
) -> Attribution:
    """The (n_c × (n_a + n_b)) attribution matrix of ``model``, averaged over problems.

    ``problems`` (operand pairs (N, 2) or :class:`Problem` objects) defaults to ``n_problems`` uniform
    random problems drawn with ``seed``; the replacement digits are drawn with ``seed`` too."""
    layout = model_config_of(model).layout
    pairs = analysis_pairs(layout, problems, n_problems, seed, minimum=2)  # (N, 2); 2 for a standard error
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    a_digits, b_digits = operand_digits(pairs, layout)
    originals = np.concatenate([a_digits, b_digits], axis=1)  # (N, n_ops)
    positions, leading = (np.array(column) for column in zip(*_operand_slots(layout)))  # (n_ops,) each
    replacements = replacement_digits(originals, leading, np.random.default_rng([seed, 1]))  # (N, n_ops)

    def run() -> Attribution:
        drops = np.empty((len(pairs), layout.n_c, len(positions)))  # (N, n_c, n_ops)
        correct = np.empty((len(pairs), layout.n_c), dtype=bool)  # (N, n_c)
        for start in range(0, len(pairs), batch_size):
            rows = slice(start, start + batch_size)
            batch = teacher_forced_batch(model, pairs[rows])
            if _recomputable(model, batch):  # keep the clean layers: each replacement recomputes from its position
                clean = _scored(batch, *_answer_logits_from(model, batch, batch.input_ids, 0, None))
            else:
                clean = _scored(batch, _answer_logits(model, batch, batch.input_ids))
            correct[rows] = clean.correct
            for slot, position in enumerate(positions):
                at = np.full(len(clean.correct), position)  # (B,)
                drops[rows, :, slot] = _logit_drop(model, clean, at, replacements[rows, slot])
        sem = drops.std(0, ddof=1) / np.sqrt(len(pairs))  # (n_c, n_ops)
        return _labelled(drops.mean(0), sem, correct, len(pairs), layout)

    return _in_eval_mode(model, run)


def problem_attribution(model: GPT2LMHeadModel, problem: Problem | tuple[int, int]) -> Attribution:
    """The attribution matrix of one problem (for the interactive widget).

    Each operand digit is replaced by *every* allowed different digit in turn (9, or 8 for a leading
    digit) and the drops are averaged: the exact expectation of the random replacement that
    :func:`logit_attribution` samples, so the result needs no seed. ``sem`` is over those replacements;
    ``n_samples`` is the number of replacements of a non-leading digit."""
    layout = model_config_of(model).layout
    problems = [problem] if isinstance(problem, Problem) else np.array([problem], dtype=np.int64)
    pair = analysis_pairs(layout, problems, 1, 0, minimum=1)  # (1, 2)
    a_digits, b_digits = operand_digits(pair, layout)
    originals = np.concatenate([a_digits, b_digits], axis=1)[0]  # (n_ops,)
    slots, positions, new_digits = [], [], []  # one row per (operand digit, alternative digit)
    for slot, (position, is_leading) in enumerate(_operand_slots(layout)):
        alternatives = [d for d in range(int(is_leading), 10) if d != originals[slot]]  # 9, or 8 if leading
        slots += [slot] * len(alternatives)
        positions += [position] * len(alternatives)
        new_digits += alternatives
    slots = np.array(slots)  # (R,)

    def run() -> Attribution:
        clean = _baseline(model, np.repeat(pair, len(slots), axis=0))  # R identical clean rows, one pass
        drops = _logit_drop(model, clean, np.array(positions), np.array(new_digits))  # (R, n_c)
        per_slot = [drops[slots == slot] for slot in range(len(originals))]  # each (9 or 8, n_c)
        matrix = np.stack([d.mean(0) for d in per_slot], axis=1)  # (n_c, n_ops)
        sem = np.stack([d.std(0, ddof=1) / np.sqrt(len(d)) for d in per_slot], axis=1)  # (n_c, n_ops)
        return _labelled(matrix, sem, clean.correct[:1], 9, layout)

    return _in_eval_mode(model, run)
