"""Tidy tables behind chapter 1's charts ("The puzzle"): per-digit results, what each output digit
depends on, two shortcuts that get the outer digits without the carry chain, and how far off the
wrong digits are.

Each function returns a ``pandas.DataFrame`` in the shape the builders of
:mod:`longmul.charts.accuracy` take (digit positions in a column ``k``, c_0 = units).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from longmul.analysis.digit_errors import (
    CARRY_CHANCE,
    N_OFFSETS,
    PARITY_CHANCE,
    carry_boundary_errors,
    digit_errors,
    large_sum_shares,
    running_sum_size_errors,
    signed_offset,
)
from longmul.evaluate import EvalResult
from longmul.task import Problem


def _shortcut_last_two(a: np.ndarray, b: np.ndarray, n_digits: int) -> np.ndarray:
    """The product of the operands' last two digits: exact for c_0 and c_1."""
    return (a % 100) * (b % 100)


def _shortcut_first_two(a: np.ndarray, b: np.ndarray, n_digits: int) -> np.ndarray:
    """Keep each operand's first two digits, set the rest to the middle of their range (…50), multiply:
    the size of the product, which mostly fixes its leading digits."""
    unit = 10 ** (n_digits - 2)
    return (a // unit * unit + unit // 2) * (b // unit * unit + unit // 2)


SHORTCUTS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "shortcut: last two digits": _shortcut_last_two,
    "shortcut: first two digits": _shortcut_first_two,
}


def shortcut_accuracy(problems: Sequence[Problem]) -> pd.DataFrame:
    """Per-digit accuracy of each rule in :data:`SHORTCUTS`: columns ``series``, ``k``, ``accuracy``."""
    n = problems[0].n_a
    if any(p.n_a != n or p.n_b != n for p in problems):
        raise ValueError("shortcut_accuracy needs square problems of one size")
    a = np.array([p.a for p in problems], dtype=np.int64)
    b = np.array([p.b for p in problems], dtype=np.int64)
    true_digits = np.array([p.c_digits for p in problems])  # (problems, n_c)
    rows = []
    for name, rule in SHORTCUTS.items():
        value = rule(a, b, n)
        for k in range(true_digits.shape[1]):
            rows.append(
                {"series": name, "k": k, "accuracy": float(((value // 10**k) % 10 == true_digits[:, k]).mean())}
            )
    return pd.DataFrame(rows, columns=["series", "k", "accuracy"])


OWN_COLUMN = "in its own column s_k"
THROUGH_CARRY = "in lower columns, through the carry"


def dependency_counts(problem: Problem) -> pd.DataFrame:
    """For each output digit c_k: the digit pairs (a_i, b_j) in its own column (i + j = k) and those in
    lower columns, which reach it through the carry. Columns ``k``, ``kind`` (:data:`OWN_COLUMN` or
    :data:`THROUGH_CARRY`), ``pairs``."""
    rows = []
    for k in range(problem.n_c):
        own = len(problem.pairs_for_digit(k))
        below = sum(len(problem.pairs_for_digit(i)) for i in range(k))
        rows.append({"k": k, "kind": OWN_COLUMN, "pairs": own})
        rows.append({"k": k, "kind": THROUGH_CARRY, "pairs": below})
    return pd.DataFrame(rows, columns=["k", "kind", "pairs"])


def dependency_peaks(deps: pd.DataFrame) -> dict[str, tuple[list[int], int]]:
    """The output digits that depend on the most pairs, from :func:`dependency_counts`: ``"own"``
    counts the pairs of the digit's own column, ``"total"`` adds those below it. Each maps to
    ``(digits, pairs)``, every digit tied at the maximum listed."""
    own = deps[deps["kind"] == OWN_COLUMN].groupby("k")["pairs"].sum()
    total = deps.groupby("k")["pairs"].sum()
    return {
        name: ([int(k) for k in counts.index[counts == counts.max()]], int(counts.max()))
        for name, counts in (("own", own), ("total", total))
    }


def running_sum_stats(problems: Sequence[Problem]) -> pd.DataFrame:
    """Spread of the running sums ĉ_k and of the carries r_k over ``problems``, one column per k."""
    running = np.array([p.running_sums for p in problems])  # (problems, n_c)
    carries = np.array([p.carries for p in problems])  # (problems, n_c)
    n_c = running.shape[1]
    return pd.DataFrame(
        [
            [f"{x:.1f}" for x in running.mean(0)],
            [f"{x:.1f}" for x in running.std(0)],
            [int(x) for x in running.max(0)],
            [len(np.unique(carries[:, k])) for k in range(n_c)],
        ],
        index=["mean ĉ_k", "std ĉ_k", "largest ĉ_k", "distinct carries r_k"],
        columns=[f"k={k}" for k in range(n_c)],
    )


def label_with_cot(label: str, cot_tokens: int) -> str:
    """A model's label where its numbers stand beside the paper's: a model that still writes a chain of
    thought (``cot_tokens`` > 0, :func:`longmul.evaluate.cot_tokens_of`) is not the paper's finished
    ICoT model, and its label says so: "ICoT (writes 12 CoT tokens)"."""
    if cot_tokens < 0:
        raise ValueError(f"cot_tokens must be ≥ 0, got {cot_tokens}")
    return f"{label} (writes {cot_tokens} CoT tokens)" if cot_tokens else label


def per_digit_frame(results: Mapping[str, EvalResult]) -> pd.DataFrame:
    """Per-digit accuracy of each named result: columns ``series``, ``k``, ``accuracy``."""
    rows = [
        {"series": name, "k": k, "accuracy": acc}
        for name, result in results.items()
        for k, acc in enumerate(result.per_digit)
    ]
    return pd.DataFrame(rows, columns=["series", "k", "accuracy"])


def answer_grid_frame(results: Mapping[str, EvalResult], problems: Sequence[Problem]) -> pd.DataFrame:
    """Every model's digits on the first ``len(problems)`` problems it was evaluated on (the same
    problems, in order), for :func:`longmul.charts.accuracy.problem_grid_chart`."""
    rows = []
    for name, result in results.items():
        if len(result.predicted) < len(problems):
            raise ValueError(f"{name} was evaluated on {len(result.predicted)} problems, fewer than {len(problems)}")
        for row, problem in enumerate(problems):
            if tuple(result.target[row]) != problem.c_digits:
                raise ValueError(f"{name}: evaluation row {row} is not the problem {problem.a} × {problem.b}")
            for k, target in enumerate(problem.c_digits):
                predicted = int(result.predicted[row, k])
                rows.append(
                    {
                        "model": name,
                        "problem": f"{problem.a} × {problem.b}",
                        "k": k,
                        "predicted": predicted,
                        "target": target,
                        "running_sum": problem.running_sums[k],
                        "correct": predicted == target,
                    }
                )
    columns = ["model", "problem", "k", "predicted", "target", "running_sum", "correct"]
    return pd.DataFrame(rows, columns=columns)


def error_offset_frame(results: Mapping[str, EvalResult]) -> pd.DataFrame:
    """Where each model's wrong digits land: one row per (model, c_k, signed offset ≠ 0).

    Columns ``model``, ``k``, ``offset`` (−4 … +5: predicted − true, mod 10), ``count``,
    ``written_wrong`` (wrong digits written at c_k in all; a missing digit has no offset) and ``share``
    (count / written_wrong; NaN where none is).
    """
    rows = []
    for name, result in results.items():
        errors = digit_errors(result.predicted, result.target)
        for k in range(errors.counts.shape[0]):
            written_wrong = int(errors.written_wrong[k])
            for offset in range(1, N_OFFSETS):
                count = int(errors.counts[k, offset])
                rows.append(
                    {
                        "model": name,
                        "k": k,
                        "offset": signed_offset(offset),
                        "count": count,
                        "written_wrong": written_wrong,
                        "share": count / written_wrong if written_wrong else float("nan"),
                    }
                )
    return pd.DataFrame(rows, columns=["model", "k", "offset", "count", "written_wrong", "share"])


MOSTLY = 0.75  # a share of the wrong digits written from which one kind of error "dominates"
NEAR_CHANCE = 0.1  # both shares within this of their chance levels: the errors look like guesses


def error_kind(carry_share: float, even_share: float) -> str:
    """Name the pattern of a digit's wrong answers from the shares off by ±1 and off by an even amount."""
    if carry_share >= MOSTLY:
        return "carry errors (±1)"
    if even_share >= MOSTLY:
        return "parity right"
    if abs(carry_share - CARRY_CHANCE) <= NEAR_CHANCE and abs(even_share - PARITY_CHANCE) <= NEAR_CHANCE:
        return "guesses"
    return "mixed"


def error_summary(results: Mapping[str, EvalResult], min_wrong: int = 1) -> pd.DataFrame:
    """Per (model, c_k) with at least ``min_wrong`` wrong digits written: ``wrong`` (digits not right,
    missing ones included, as :func:`carry_boundary_summary` counts them), ``missing``, the ``error
    rate`` (wrong / problems), the shares of the wrong digits written that are off by ±1 (a carry
    error) and by an even amount (guessing gives 2/9 and 4/9), and what that pattern looks like
    (:func:`error_kind`). A missing digit has no offset, so the shares and ``min_wrong`` count only
    the digits written."""
    rows = []
    for name, result in results.items():
        errors = digit_errors(result.predicted, result.target)
        for k in range(errors.counts.shape[0]):
            if errors.written_wrong[k] < min_wrong:
                continue
            carry, even = float(errors.carry_share[k]), float(errors.even_share[k])
            rows.append(
                {
                    "model": name,
                    "k": k,
                    "wrong": int(errors.wrong[k]),
                    "missing": int(errors.missing[k]),
                    "error rate": float(errors.error_rate[k]),
                    "off by ±1": carry,
                    "off by an even amount": even,
                    "looks like": error_kind(carry, even),
                }
            )
    columns = ["model", "k", "wrong", "missing", "error rate", "off by ±1", "off by an even amount", "looks like"]
    return pd.DataFrame(rows, columns=columns)


def _running_sums_of(result: EvalResult, problems: Sequence[Problem]) -> np.ndarray:
    """(n, n_c) ĉ_k of the problems ``result`` was evaluated on, in order."""
    if len(problems) != len(result.target):
        raise ValueError(f"the result covers {len(result.target)} problems, got {len(problems)}")
    return np.array([p.running_sums for p in problems])


def _boundary_errors(result: EvalResult, problems: Sequence[Problem]):
    return carry_boundary_errors(result.predicted, result.target, _running_sums_of(result, problems))


def carry_boundary_frame(results: Mapping[str, EvalResult], problems: Sequence[Problem]) -> pd.DataFrame:
    """Each model's errors of c_k (k ≥ 1) by ``residue`` = ĉ_{k−1} mod 10, the last digit of the running
    sum below. ``problems``: the problems every result was evaluated on, in order.

    One row per (model, k, residue, kind), ``kind`` one of "one too small", "one too large", "other
    wrong", with ``rate`` (share of the problems with that residue) and the counts ``count``,
    ``problems``.
    """
    rows = []
    for name, result in results.items():
        split = _boundary_errors(result, problems)
        other = split.wrong - split.plus_one - split.minus_one
        for k in range(1, split.problems.shape[0]):
            for residue in range(N_OFFSETS):
                n = int(split.problems[k, residue])
                for kind, counts in (
                    ("one too small", split.minus_one),
                    ("one too large", split.plus_one),
                    ("other wrong", other),
                ):
                    count = int(counts[k, residue])
                    rows.append(
                        {
                            "model": name,
                            "k": k,
                            "residue": residue,
                            "kind": kind,
                            "count": count,
                            "problems": n,
                            "rate": count / n if n else float("nan"),
                        }
                    )
    return pd.DataFrame(rows, columns=["model", "k", "residue", "kind", "count", "problems", "rate"])


def carry_boundary_summary(
    results: Mapping[str, EvalResult], problems: Sequence[Problem], min_wrong: int = 1
) -> pd.DataFrame:
    """Per (model, c_k) with at least ``min_wrong`` wrong digits (missing ones included): how much
    likelier an error is where ĉ_{k−1} ends in 0 or 9 than where it ends in 3…6 (``boundary ratio``,
    ≈ 1 for guesses), the number of ``±1 errors``, the share of them whose sign a misjudged carry
    predicts (``sign as a carry predicts``, ≈ 1/2 for guesses), and whether that share differs from a
    coin toss (``sign``: :func:`sign_verdict`)."""
    rows = []
    for name, result in results.items():
        split = _boundary_errors(result, problems)
        ratio, agreement = split.boundary_ratio, split.sign_agreement
        for k in range(1, split.problems.shape[0]):
            wrong = int(split.wrong[k].sum())
            if wrong < min_wrong:
                continue
            rows.append(
                {
                    "model": name,
                    "k": k,
                    "wrong": wrong,
                    "boundary ratio": float(ratio[k]),
                    "±1 errors": int(split.signed_errors[k]),
                    "sign as a carry predicts": float(agreement[k]),
                    "sign": sign_verdict(int(split.carry_signed[k]), int(split.signed_errors[k])),
                }
            )
    columns = ["model", "k", "wrong", "boundary ratio", "±1 errors", "sign as a carry predicts", "sign"]
    return pd.DataFrame(rows, columns=columns)


SIGN_CHANCE = 0.5  # share of the ±1 errors that go the carry's way when their sign is a coin toss
MIN_SIGNED_ERRORS = 20  # ±1 errors a digit needs before the sign of its errors is judged at all
SIGN_Z = 1.96  # half-width of the interval in standard errors: a 95% interval


def wilson_interval(successes: int, n: int, z: float = SIGN_Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial share, ``successes`` of ``n`` (n > 0): unlike the
    normal approximation it stays inside [0, 1] and is honest when the share is near 0 or 1."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n and n > 0, got {successes} of {n}")
    share = successes / n
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half_width = z * math.sqrt(share * (1 - share) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half_width, centre + half_width


def sign_verdict(carry_signed: int, signed_errors: int) -> str:
    """How a digit's ±1 errors split between the sign a misjudged carry predicts (``carry_signed`` of
    them) and the other: "too few" under :data:`MIN_SIGNED_ERRORS`; "as a carry predicts" or "against
    the carry" when the :func:`wilson_interval` of the share lies wholly above or below
    :data:`SIGN_CHANCE`; else "coin toss" (no different from one at this many errors)."""
    if signed_errors < MIN_SIGNED_ERRORS:
        return "too few"
    low, high = wilson_interval(carry_signed, signed_errors)
    if low > SIGN_CHANCE:
        return "as a carry predicts"
    if high < SIGN_CHANCE:
        return "against the carry"
    return "coin toss"


SIZE_BIN_WIDTH = 25  # ĉ_k per bin of running_sum_size_frame: up to 15 bins over the largest ĉ_k of 4×4 digits


def running_sum_size_frame(
    results: Mapping[str, EvalResult], problems: Sequence[Problem], width: int = SIZE_BIN_WIDTH
) -> pd.DataFrame:
    """Each model's errors of c_k by the size of ĉ_k, in bins ``[low, low + width)``. ``problems``: the
    problems every result was evaluated on, in order.

    One row per (model, k, bin) with at least one problem: ``low``, ``high`` (inclusive), ``bin`` (a label
    such as "150–174"), ``problems`` in the bin, ``wrong`` c_k among them and their share ``rate``.
    """
    if width < 1:
        raise ValueError(f"width is a number of ĉ_k values per bin, at least 1, got {width}")
    rows = []
    for name, result in results.items():
        running = _running_sums_of(result, problems)
        edges = np.arange(0, running.max() + width + 1, width)
        split = running_sum_size_errors(result.predicted, result.target, running, edges)
        rate = split.error_rate
        for k in range(split.problems.shape[0]):
            for b, low in enumerate(edges[:-1]):
                n = int(split.problems[k, b])
                if not n:
                    continue
                rows.append(
                    {
                        "model": name,
                        "k": k,
                        "low": int(low),
                        "high": int(low + width - 1),
                        "bin": f"{low}–{low + width - 1}",
                        "problems": n,
                        "wrong": int(split.wrong[k, b]),
                        "rate": float(rate[k, b]),
                    }
                )
    return pd.DataFrame(rows, columns=["model", "k", "low", "high", "bin", "problems", "wrong", "rate"])


LARGE_SUM_TOP = 0.1  # "large ĉ_k": the top tenth of the problems' values


def large_sum_summary(
    results: Mapping[str, EvalResult], problems: Sequence[Problem], top: float = LARGE_SUM_TOP, min_wrong: int = 1
) -> pd.DataFrame:
    """Per (model, c_k) with at least ``min_wrong`` wrong digits: the smallest large ĉ_k (``large ĉ_k
    from``, the ``1 − top`` quantile), the ``share of problems`` with ĉ_k that large, and the ``share of
    errors`` of c_k on them (close to the share of problems for a model whose errors fall anywhere)."""
    rows = []
    for name, result in results.items():
        shares = large_sum_shares(result.predicted, result.target, _running_sums_of(result, problems), top)
        for k in range(len(shares.wrong)):
            if shares.wrong[k] < min_wrong:
                continue
            rows.append(
                {
                    "model": name,
                    "k": k,
                    "wrong": int(shares.wrong[k]),
                    "large ĉ_k from": int(shares.threshold[k]),
                    "share of problems": float(shares.problem_share[k]),
                    "share of errors": float(shares.error_share[k]),
                }
            )
    return pd.DataFrame(rows, columns=["model", "k", "wrong", "large ĉ_k from", "share of problems", "share of errors"])
