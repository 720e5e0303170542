"""Token sequences the models read and write, built straight from digits (vectorised, no strings).

Layout of one training sequence (4×4 shown; the chain of thought is present only for ICoT)::

    a0 a1 a2 a3 * b0 b1 b2 b3 || [chain of thought …] #### c0 c1 … c7 <eos>
    |------------- prompt -------------|                 |-- answer --|

The model is prompted with everything up to ``||`` and generates the rest. The token that predicts
``c_k`` sits one position before ``c_k``: ``####`` predicts ``c0``, ``c0`` predicts ``c1``, and so on.

ICoT removes chain-of-thought tokens from the left. With ``keep_position`` the tokens that remain keep
the position ids they had in the full sequence, so removing tokens never moves the answer; the number
of skipped positions is recorded so that decoding can reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .task import Problem

SPECIAL_TOKENS = ["<pad>", "<eos>"]
SYMBOL_TOKENS = ["*", "||", "+", "(", ")", "####"]
VOCAB: list[str] = SPECIAL_TOKENS + [str(d) for d in range(10)] + SYMBOL_TOKENS
TOKEN_ID: dict[str, int] = {tok: i for i, tok in enumerate(VOCAB)}
PAD_ID = TOKEN_ID["<pad>"]
EOS_ID = TOKEN_ID["<eos>"]
DIGIT_ID0 = TOKEN_ID["0"]  # digit d has id DIGIT_ID0 + d
TIMES_ID, SEP_ID, PLUS_ID = TOKEN_ID["*"], TOKEN_ID["||"], TOKEN_ID["+"]
OPEN_ID, CLOSE_ID, ANSWER_ID = TOKEN_ID["("], TOKEN_ID[")"], TOKEN_ID["####"]
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Layout:
    """Where everything sits in the sequence of an ``n_a × n_b`` problem."""

    n_a: int = 4
    n_b: int = 4

    @property
    def n_c(self) -> int:
        return self.n_a + self.n_b

    @property
    def prompt_len(self) -> int:
        """``a`` digits, ``*``, ``b`` digits, ``||``."""
        return self.n_a + 1 + self.n_b + 1

    @property
    def cot_len(self) -> int:
        """Tokens of the full chain of thought: partial products, ``+`` signs and bracketed totals."""
        widths = [self.n_a + 1 + j for j in range(self.n_b)]
        partials = sum(widths) + (self.n_b - 1)  # digits and '+' separators
        totals = sum(w + 2 for w in widths[1:-1])  # '(' digits ')'
        return partials + totals

    @property
    def answer_len(self) -> int:
        """``####``, the answer digits and ``<eos>``."""
        return 1 + self.n_c + 1

    @property
    def max_len(self) -> int:
        return self.prompt_len + self.cot_len + self.answer_len

    def a_position(self, i: int) -> int:
        return i

    def b_position(self, j: int) -> int:
        return self.n_a + 1 + j

    def predicting_position(self, k: int, cot_kept: int = 0) -> int:
        """Index (in the compacted sequence) of the token whose next-token prediction is ``c_k``."""
        return self.prompt_len + cot_kept + k

    def operand_labels(self) -> list[str]:
        return [f"a{i}" for i in range(self.n_a)] + [f"b{j}" for j in range(self.n_b)]


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(B,) non-negative ints → (B, width) digits, least-significant first."""
    powers = 10 ** np.arange(width, dtype=np.int64)  # (width,)
    return (values[:, None] // powers[None, :]) % 10


def operand_digits(pairs: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2) operand pairs → a digits (B, n_a), b digits (B, n_b)."""
    return _digits(pairs[:, 0], layout.n_a), _digits(pairs[:, 1], layout.n_b)


def cot_ids(pairs: np.ndarray, layout: Layout) -> np.ndarray:
    """Token ids of the full chain of thought, shape (B, cot_len)."""
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    b_digits = _digits(b, layout.n_b)
    B = len(pairs)
    pieces: list[np.ndarray] = []
    total = np.zeros(B, dtype=np.int64)
    last = layout.n_b - 1
    for j in range(layout.n_b):
        width = layout.n_a + 1 + j
        partial = a * b_digits[:, j] * 10**j
        total = total + partial
        if j > 0:
            pieces.append(np.full((B, 1), PLUS_ID))
        pieces.append(DIGIT_ID0 + _digits(partial, width))
        if 0 < j < last:
            pieces.append(np.full((B, 1), OPEN_ID))
            pieces.append(DIGIT_ID0 + _digits(total, width))
            pieces.append(np.full((B, 1), CLOSE_ID))
    return np.concatenate(pieces, axis=1)


def full_ids(pairs: np.ndarray, layout: Layout, with_cot: bool) -> np.ndarray:
    """Complete sequences (B, T): prompt, optional chain of thought, ``####``, answer, ``<eos>``."""
    a_d, b_d = operand_digits(pairs, layout)
    B = len(pairs)
    c_d = _digits(pairs[:, 0].astype(np.int64) * pairs[:, 1].astype(np.int64), layout.n_c)
    parts = [
        DIGIT_ID0 + a_d,
        np.full((B, 1), TIMES_ID),
        DIGIT_ID0 + b_d,
        np.full((B, 1), SEP_ID),
    ]
    if with_cot:
        parts.append(cot_ids(pairs, layout))
    parts += [np.full((B, 1), ANSWER_ID), DIGIT_ID0 + c_d, np.full((B, 1), EOS_ID)]
    return np.concatenate(parts, axis=1).astype(np.int64)


@dataclass
class Batch:
    """A padded batch ready for the model. ``labels[t]`` is the target of position ``t`` (already
    shifted: the model's logits at ``t`` are compared with ``labels[t]``)."""

    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX where no loss
    answer_positions: torch.Tensor  # (B, n_c): index of the token predicting c_k
    pairs: np.ndarray  # (B, 2) operands


def make_batch(pairs: np.ndarray, layout: Layout, removed: np.ndarray | None = None, keep_position: bool = True) -> Batch:
    """Build a batch. ``removed`` (B,) is how many chain-of-thought tokens each example drops from the
    left; ``None`` means no chain of thought at all (SFT). Loss covers everything after ``||``."""
    B = len(pairs)
    with_cot = removed is not None
    ids = full_ids(pairs, layout, with_cot)  # (B, T_full)
    T_full = ids.shape[1]
    positions = np.broadcast_to(np.arange(T_full), (B, T_full))
    keep = np.ones((B, T_full), dtype=bool)
    if with_cot:
        removed = np.clip(np.asarray(removed, dtype=np.int64), 0, layout.cot_len)
        offsets = np.arange(layout.cot_len)[None, :]  # (1, cot_len)
        keep[:, layout.prompt_len : layout.prompt_len + layout.cot_len] = offsets >= removed[:, None]
    lengths = keep.sum(1)  # (B,)
    T = int(lengths.max())
    # Stable sort moves kept tokens to the front of each row in order (the compaction step).
    order = np.argsort(~keep, axis=1, kind="stable")[:, :T]  # (B, T)
    input_ids = np.take_along_axis(ids, order, 1)
    pos = np.take_along_axis(positions, order, 1)
    valid = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
    if with_cot and not keep_position:
        pos = np.broadcast_to(np.arange(T), (B, T))
    input_ids = np.where(valid, input_ids, PAD_ID)
    pos = np.where(valid, pos, 0)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
    labels[:, :-1] = input_ids[:, 1:]
    target_ok = np.zeros((B, T), dtype=bool)
    target_ok[:, :-1] = valid[:, 1:]
    target_ok[:, : layout.prompt_len - 1] = False  # no loss on the prompt (the operands are random)
    labels = np.where(target_ok, labels, IGNORE_INDEX)
    cot_kept = layout.cot_len - removed if with_cot else np.zeros(B, dtype=np.int64)
    answer_positions = layout.prompt_len + cot_kept[:, None] + np.arange(layout.n_c)[None, :]  # (B, n_c)
    return Batch(
        input_ids=torch.from_numpy(np.ascontiguousarray(input_ids)),
        position_ids=torch.from_numpy(np.ascontiguousarray(pos)),
        attention_mask=torch.from_numpy(valid.astype(np.int64)),
        labels=torch.from_numpy(labels),
        answer_positions=torch.from_numpy(np.ascontiguousarray(answer_positions)),
        pairs=pairs,
    )


def problems_to_pairs(problems: list[Problem]) -> np.ndarray:
    """(B, 2) int64 operand array of a list of problems (all of one size)."""
    if not problems:
        raise ValueError("no problems given")
    shapes = {(p.n_a, p.n_b) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"problems of several sizes in one batch: {sorted(shapes)}")
    return np.array([(p.a, p.b) for p in problems], dtype=np.int64)


def pairs_for_layout(problems, layout: Layout) -> np.ndarray:
    """Operand pairs (B, 2) int64 from an array or a list of :class:`~longmul.task.Problem`, checked
    against the operand sizes of ``layout`` (``ValueError`` naming the first bad operand otherwise)."""
    if isinstance(problems, np.ndarray):
        pairs = problems
    else:
        problems = list(problems)
        if not problems:
            raise ValueError("no problems given")
        pairs = problems_to_pairs(problems) if isinstance(problems[0], Problem) else np.asarray(problems)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"expected operand pairs of shape (B, 2) with B >= 1, got shape {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"operand pairs must be integers, got dtype {pairs.dtype}")
    for column, (name, width) in enumerate((("a", layout.n_a), ("b", layout.n_b))):
        bad = (pairs[:, column] < 10 ** (width - 1)) | (pairs[:, column] >= 10**width)
        if bad.any():
            raise ValueError(
                f"operand {name}={int(pairs[bad, column][0])} is not a {width}-digit number; "
                f"the model multiplies {layout.n_a}x{layout.n_b}-digit operands"
            )
    return pairs.astype(np.int64)


def decode_tokens(ids: list[int] | torch.Tensor) -> list[str]:
    return [VOCAB[int(i)] for i in ids]
