"""Greedy decoding, exact match and per-digit accuracy.

A model is prompted with ``a * b ||`` and generates until ``<eos>``: the remaining chain of thought
(for an ICoT model still in training), then ``####`` and the answer digits. The answer is read from
the tokens after the first ``####``; a missing ``####`` or a non-digit counts as wrong.

ICoT models trained with ``keep_position`` expect the tokens after ``||`` to sit ``position_skip``
positions later than their index (the removed chain of thought still occupies its positions). The
skip is stored in the model config as ``longmul_position_skip`` and applied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from .model import model_config_of
from .sequences import (
    ANSWER_ID,
    DIGIT_ID0,
    EOS_ID,
    PAD_ID,
    Batch,
    Layout,
    decode_tokens,
    full_ids,
    make_batch,
    problems_to_pairs,
)
from .task import Problem


def position_skip_of(model: GPT2LMHeadModel) -> int:
    """Positions between ``||`` and the first generated token (ICoT with kept positions)."""
    return int(getattr(model.config, "longmul_position_skip", 0))


def cot_tokens_of(model: GPT2LMHeadModel) -> int:
    """Chain-of-thought tokens the model writes before ``####`` (0 once internalised)."""
    return int(getattr(model.config, "longmul_cot_tokens", 0))


def teacher_forced_batch(model: GPT2LMHeadModel, pairs: np.ndarray) -> Batch:
    """The full correct sequences of ``pairs`` in the format ``model`` reads and writes (its chain of
    thought, if it still writes one, and its position skip): the input of every activation analysis.
    ``batch.answer_positions[:, k]`` is the position whose next-token prediction is ``c_k``."""
    layout = model_config_of(model).layout
    cot_tokens, skip = cot_tokens_of(model), position_skip_of(model)
    if cot_tokens == 0 and skip == 0:
        return make_batch(pairs, layout, removed=None)
    removed = np.full(len(pairs), layout.cot_len - cot_tokens)
    return make_batch(pairs, layout, removed=removed, keep_position=skip > 0)


@torch.no_grad()
def greedy_generate(
    model: GPT2LMHeadModel,
    pairs: np.ndarray,
    layout: Layout,
    position_skip: int | None = None,
    cot_tokens: int | None = None,
) -> np.ndarray:
    """Generate after the prompt of each pair, room for ``cot_tokens`` chain-of-thought tokens and the
    answer; returns token ids (B, cot_tokens + answer_len), ``<pad>`` after ``<eos>``.

    Keys and values of earlier tokens are cached, so each step feeds only the newest token. Every
    prompt has the same length, so no padding mask is needed."""
    if position_skip is None:
        position_skip = position_skip_of(model)
    if cot_tokens is None:
        cot_tokens = cot_tokens_of(model)
    max_new_tokens = cot_tokens + layout.answer_len
    device = next(model.parameters()).device
    prompt = torch.from_numpy(full_ids(pairs, layout, with_cot=False)[:, : layout.prompt_len]).to(device)  # (B, P)
    B, P = prompt.shape
    positions = torch.cat([torch.arange(P), P + position_skip + torch.arange(max_new_tokens)]).to(device)
    step_ids, start = prompt, 0  # the tokens fed this step and the position of the first of them
    cache = None
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    generated = []
    for _ in range(max_new_tokens):
        T = step_ids.shape[1]
        out = model(
            input_ids=step_ids,
            position_ids=positions[start : start + T].expand(B, T),
            cache=cache,
            use_cache=True,
        )
        cache = out.cache
        nxt = out.logits[:, -1].argmax(-1)  # (B,)
        nxt = torch.where(finished, torch.full_like(nxt, PAD_ID), nxt)
        generated.append(nxt)
        finished |= nxt == EOS_ID
        step_ids, start = nxt[:, None], start + T  # (B, 1)
        if bool(finished.all()):
            break
    out = torch.stack(generated, 1).cpu().numpy()  # (B, steps)
    if out.shape[1] < max_new_tokens:
        out = np.pad(out, ((0, 0), (0, max_new_tokens - out.shape[1])), constant_values=PAD_ID)
    return out


def answer_digits(generated: np.ndarray, n_c: int) -> np.ndarray:
    """Digits after the first ``####`` (B, n_c); -1 where missing or not a digit."""
    B = generated.shape[0]
    out = np.full((B, n_c), -1, dtype=np.int64)
    for row in range(B):
        hits = np.flatnonzero(generated[row] == ANSWER_ID)
        if not len(hits):
            continue
        tail = generated[row, hits[0] + 1 : hits[0] + 1 + n_c] - DIGIT_ID0
        tail = np.where((tail >= 0) & (tail <= 9), tail, -1)
        out[row, : len(tail)] = tail
    return out


@dataclass
class EvalResult:
    """Exact match and per-digit accuracy of a model on a set of problems."""

    exact_match: float
    per_digit: list[float]
    n: int
    predicted: np.ndarray = field(repr=False)  # (n, n_c) predicted digits, -1 where none
    target: np.ndarray = field(repr=False)  # (n, n_c)

    @classmethod
    def from_digits(cls, predicted: np.ndarray, target: np.ndarray) -> EvalResult:
        """Score predicted digits (n, n_c; -1 where missing) against the true ones."""
        correct = predicted == target
        return cls(
            exact_match=float(correct.all(1).mean()),
            per_digit=[float(x) for x in correct.mean(0)],
            n=len(target),
            predicted=predicted,
            target=target,
        )

    def to_dict(self) -> dict:
        return {"exact_match": self.exact_match, "per_digit": self.per_digit, "n": self.n}


def pooled(results: Sequence[EvalResult]) -> EvalResult:
    """One result over the problems of all ``results`` in order, as if they had been evaluated together."""
    if not results:
        raise ValueError("pooled needs at least one result")
    return EvalResult.from_digits(np.concatenate([r.predicted for r in results]), np.concatenate([r.target for r in results]))


def _target_digits(pairs: np.ndarray, n_c: int) -> np.ndarray:
    product = pairs[:, 0].astype(np.int64) * pairs[:, 1].astype(np.int64)
    return (product[:, None] // 10 ** np.arange(n_c)[None, :]) % 10


def evaluate_pairs(
    model: GPT2LMHeadModel,
    pairs: np.ndarray,
    layout: Layout | None = None,
    batch_size: int = 500,
    position_skip: int | None = None,
    cot_tokens: int | None = None,
    progress: bool = False,
) -> EvalResult:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    layout = layout or model_config_of(model).layout
    was_training = model.training
    model.eval()
    chunks = range(0, len(pairs), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="evaluating", unit="batch")
    predicted = np.concatenate(
        [
            answer_digits(greedy_generate(model, pairs[s : s + batch_size], layout, position_skip, cot_tokens), layout.n_c)
            for s in chunks
        ]
    )
    model.train(was_training)
    return EvalResult.from_digits(predicted, _target_digits(pairs, layout.n_c))


def evaluate(model: GPT2LMHeadModel, problems: Sequence[Problem], batch_size: int = 500, progress: bool = False) -> EvalResult:
    """Greedy-decode every problem; exact match and per-digit accuracy (c_0 first). ``ValueError`` unless
    every problem has the operand sizes the model was trained on."""
    layout = model_config_of(model).layout
    problems = list(problems)
    if not problems:
        raise ValueError("no problems to evaluate")
    sizes = sorted({(p.n_a, p.n_b) for p in problems})
    if sizes != [(layout.n_a, layout.n_b)]:
        got = ", ".join(f"{a}x{b}" for a, b in sizes)
        raise ValueError(f"model was trained on {layout.n_a}x{layout.n_b} problems, got {got}")
    return evaluate_pairs(model, problems_to_pairs(problems), layout, batch_size, progress=progress)


@dataclass
class Prediction:
    problem: Problem
    digits: list[int]  # predicted c_0 … c_{n-1}; -1 where the model wrote no digit
    correct: list[bool]
    tokens: list[str]  # everything the model generated

    @property
    def exact(self) -> bool:
        return all(self.correct)


def predict(model: GPT2LMHeadModel, problem: Problem) -> Prediction:
    """The model's answer to one problem, digit by digit (``ValueError`` if the model reads another size)."""
    layout = model_config_of(model).layout
    if (problem.n_a, problem.n_b) != (layout.n_a, layout.n_b):
        raise ValueError(
            f"model was trained on {layout.n_a}x{layout.n_b} problems, "
            f"got {problem.n_a}x{problem.n_b} ({problem.a} × {problem.b})"
        )
    pairs = problems_to_pairs([problem])
    was_training = model.training
    model.eval()
    generated = greedy_generate(model, pairs, layout)
    model.train(was_training)
    digits = answer_digits(generated, layout.n_c)[0]
    tokens = [t for t in decode_tokens(generated[0]) if t != "<pad>"]
    return Prediction(
        problem=problem,
        digits=[int(d) for d in digits],
        correct=[int(d) == c for d, c in zip(digits, problem.c_digits)],
        tokens=tokens,
    )
