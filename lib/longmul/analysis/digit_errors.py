"""How wrong the wrong digits are: the offset ``(predicted − true) mod 10`` of every wrong output digit.

The offset tells two kinds of failure apart. A model that has the running sum ĉ_k to within a unit but
misjudges the carry out of the columns below writes c_k ± 1: offsets 1 and 9. A model that guesses
spreads its errors evenly over the nine wrong digits, so a share of 2/9 of them land on ±1 by chance.
A third pattern: errors only at even offsets mean the model has the digit's parity right.

Offsets are reported signed, from −4 to +5 (+5 and −5 are the same digit mod 10). Digits a model did
not write at all (``-1`` in :class:`longmul.evaluate.EvalResult`) count as *missing*: wrong (``wrong``
and ``error_rate`` include them, here and in :class:`BoundaryErrors`), but without an offset, so the
shares of offsets are taken over the digits written wrong (``written_wrong``).

:func:`carry_boundary_errors` asks where carry errors happen. The carry into position k is
⌊ĉ_{k−1} / 10⌋. A model that estimates ĉ_{k−1} to within about a unit gets that carry wrong only when
ĉ_{k−1} is close to a multiple of ten: one too small (so c_k − 1) when its last digit is 0 or 1, one
too large (c_k + 1) when it is 8 or 9. A model that guesses c_k is wrong equally often whatever that
last digit is.

:func:`running_sum_size_errors` and :func:`large_sum_shares` ask which problems the errors fall on. The
running sum ĉ_k is spread widely but thinly at the top: a large ĉ_k needs most of the pairs in
column k to be large digits, so a model that learned ĉ_k from random problems saw few of them. A
model that has ĉ_k right except in that rare tail has its errors of c_k piled at large ĉ_k; a model
that guesses has them wherever the problems are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_OFFSETS = 10
CARRY_CHANCE = 2 / 9  # share of uniformly random wrong digits that are off by ±1
PARITY_CHANCE = 4 / 9  # share of uniformly random wrong digits off by an even amount (±2, ±4)


def signed_offset(offset: int) -> int:
    """An offset mod 10 as a signed one in −4 … +5 (9 → −1, 5 → +5)."""
    if not 0 <= offset < N_OFFSETS:
        raise ValueError(f"an offset mod 10 is in 0…9, got {offset}")
    return offset if offset <= 5 else offset - N_OFFSETS


@dataclass(frozen=True)
class DigitErrors:
    """Per output digit c_k: how often each offset occurred, and how often the digit was missing.

    ``counts[k, d]`` is the number of problems whose predicted c_k is ``(true + d) mod 10``;
    column 0 counts the right ones. ``missing[k]`` counts problems with no c_k at all.
    """

    counts: np.ndarray  # (n_c, 10) int
    missing: np.ndarray  # (n_c,) int

    @property
    def n(self) -> int:
        """Problems evaluated."""
        return int(self.counts[0].sum() + self.missing[0])

    @property
    def written_wrong(self) -> np.ndarray:
        """(n_c,) digits written but wrong: the ones with an offset, over which the shares are taken."""
        return self.counts[:, 1:].sum(1)

    @property
    def wrong(self) -> np.ndarray:
        """(n_c,) digits not right: written wrong or missing (as :attr:`BoundaryErrors.wrong` counts them)."""
        return self.written_wrong + self.missing

    @property
    def error_rate(self) -> np.ndarray:
        """(n_c,) share of the problems whose c_k is not right, missing digits included."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.wrong / self.n

    def _share_of_written_wrong(self, offsets: list[int]) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.written_wrong > 0, self.counts[:, offsets].sum(1) / self.written_wrong, np.nan)

    @property
    def carry_share(self) -> np.ndarray:
        """(n_c,) share of the wrong digits written that are off by exactly ±1; NaN where none is."""
        return self._share_of_written_wrong([1, 9])

    @property
    def even_share(self) -> np.ndarray:
        """(n_c,) share of the wrong digits written that are off by an even amount (parity right); NaN
        where none is."""
        return self._share_of_written_wrong([2, 4, 6, 8])


def _checked_digits(predicted: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(
            f"predicted and target must be (n, n_c) arrays of one shape, got {predicted.shape} and {target.shape}"
        )
    if ((target < 0) | (target > 9)).any():
        raise ValueError("target digits must be 0…9")
    if ((predicted < -1) | (predicted > 9)).any():
        raise ValueError("predicted digits must be 0…9, or -1 where missing")
    return predicted, target


def digit_errors(predicted: np.ndarray, target: np.ndarray) -> DigitErrors:
    """Count offsets of ``predicted`` digits from ``target`` digits, both (n, n_c), -1 = missing."""
    predicted, target = _checked_digits(predicted, target)
    present = predicted >= 0
    offsets = (predicted - target) % N_OFFSETS  # (n, n_c)
    n_c = target.shape[1]
    counts = np.zeros((n_c, N_OFFSETS), dtype=np.int64)
    for k in range(n_c):
        counts[k] = np.bincount(offsets[present[:, k], k], minlength=N_OFFSETS)
    return DigitErrors(counts=counts, missing=(~present).sum(0).astype(np.int64))


@dataclass(frozen=True)
class BoundaryErrors:
    """Errors of each c_k split by ``r = ĉ_{k−1} mod 10``, the last digit of the running sum below.

    Arrays are (n_c, 10), indexed ``[k, r]``; row 0 is all zero (nothing carries into c_0).
    """

    problems: np.ndarray  # problems with that r
    wrong: np.ndarray  # of which c_k was wrong (a missing digit counts as wrong)
    plus_one: np.ndarray  # of which c_k was one too large (mod 10)
    minus_one: np.ndarray  # of which c_k was one too small (mod 10)

    @property
    def error_rate(self) -> np.ndarray:
        """(n_c, 10) share of the problems with that r whose c_k is wrong; NaN where there are none."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.problems > 0, self.wrong / self.problems, np.nan)

    @property
    def boundary_ratio(self) -> np.ndarray:
        """(n_c,) error rate where r is 0 or 9 over the error rate where r is 3 … 6: about 1 for a model
        that guesses, large for one whose only errors are carries misjudged near a multiple of ten.
        NaN where either rate is undefined or the inner rate is 0."""
        edge, inner = [0, 9], [3, 4, 5, 6]
        with np.errstate(invalid="ignore", divide="ignore"):
            edge_rate = self.wrong[:, edge].sum(1) / self.problems[:, edge].sum(1)
            inner_rate = self.wrong[:, inner].sum(1) / self.problems[:, inner].sum(1)
            return np.where(inner_rate > 0, edge_rate / inner_rate, np.nan)

    @property
    def signed_errors(self) -> np.ndarray:
        """(n_c,) errors of c_k that are exactly one too small or one too large."""
        return self.minus_one.sum(1) + self.plus_one.sum(1)

    @property
    def carry_signed(self) -> np.ndarray:
        """(n_c,) of the ±1 errors, those that go the way a misjudged carry would: −1 where r ≤ 4 and
        +1 where r ≥ 5."""
        return self.minus_one[:, :5].sum(1) + self.plus_one[:, 5:].sum(1)

    @property
    def sign_agreement(self) -> np.ndarray:
        """(n_c,) ``carry_signed / signed_errors``: about 1/2 for guesses; NaN where there is no ±1 error."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.signed_errors > 0, self.carry_signed / self.signed_errors, np.nan)


def carry_boundary_errors(predicted: np.ndarray, target: np.ndarray, running_sums: np.ndarray) -> BoundaryErrors:
    """Split the errors of each c_k (k ≥ 1) by the last digit of ĉ_{k−1}.

    ``predicted``, ``target``: (n, n_c) digits (-1 = missing); ``running_sums``: (n, n_c) ĉ_k of the same
    problems (``Problem.running_sums``), whose last digits must be the targets.
    """
    predicted, target = _checked_digits(predicted, target)
    running_sums = _checked_running_sums(target, running_sums)
    n_c = target.shape[1]
    shape = (n_c, N_OFFSETS)
    problems, wrong, plus_one, minus_one = (np.zeros(shape, dtype=np.int64) for _ in range(4))
    offsets = (predicted - target) % N_OFFSETS
    present = predicted >= 0
    for k in range(1, n_c):
        r = running_sums[:, k - 1] % N_OFFSETS  # (n,)
        problems[k] = np.bincount(r, minlength=N_OFFSETS)
        wrong[k] = np.bincount(r[predicted[:, k] != target[:, k]], minlength=N_OFFSETS)
        plus_one[k] = np.bincount(r[present[:, k] & (offsets[:, k] == 1)], minlength=N_OFFSETS)
        minus_one[k] = np.bincount(r[present[:, k] & (offsets[:, k] == N_OFFSETS - 1)], minlength=N_OFFSETS)
    return BoundaryErrors(problems=problems, wrong=wrong, plus_one=plus_one, minus_one=minus_one)


def _checked_running_sums(target: np.ndarray, running_sums: np.ndarray) -> np.ndarray:
    running_sums = np.asarray(running_sums)
    if running_sums.shape != target.shape:
        raise ValueError(f"running_sums must have the targets' shape {target.shape}, got {running_sums.shape}")
    if ((running_sums % N_OFFSETS) != target).any():
        raise ValueError("running_sums do not belong to these targets: ĉ_k mod 10 must be c_k")
    return running_sums


@dataclass(frozen=True)
class SizeErrors:
    """Errors of each c_k split by the size of its own running sum ĉ_k, in bins ``[edges[i], edges[i+1])``.

    Arrays are (n_c, n_bins), indexed ``[k, bin]``.
    """

    edges: np.ndarray  # (n_bins + 1,) increasing
    problems: np.ndarray  # problems whose ĉ_k falls in the bin
    wrong: np.ndarray  # of which c_k was wrong (a missing digit counts as wrong)

    @property
    def error_rate(self) -> np.ndarray:
        """(n_c, n_bins) share of the problems in the bin whose c_k is wrong; NaN where there are none."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.problems > 0, self.wrong / self.problems, np.nan)


def running_sum_size_errors(predicted: np.ndarray, target: np.ndarray, running_sums: np.ndarray, edges) -> SizeErrors:
    """Split the errors of each c_k by ĉ_k into the bins ``[edges[i], edges[i+1])``.

    ``predicted``, ``target``: (n, n_c) digits (-1 = missing); ``running_sums``: (n, n_c) ĉ_k of the same
    problems; ``edges``: increasing bin edges that hold every ĉ_k.
    """
    predicted, target = _checked_digits(predicted, target)
    running_sums = _checked_running_sums(target, running_sums)
    edges = np.asarray(edges)
    if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
        raise ValueError(f"edges must be at least two increasing numbers, got {edges.tolist()}")
    if running_sums.min() < edges[0] or running_sums.max() >= edges[-1]:
        raise ValueError(
            f"the bins [{edges[0]}, {edges[-1]}) do not hold every running sum: they run from "
            f"{running_sums.min()} to {running_sums.max()}"
        )
    n_c, n_bins = target.shape[1], len(edges) - 1
    bins = np.searchsorted(edges, running_sums, side="right") - 1  # (n, n_c)
    wrong = predicted != target  # (n, n_c)
    problems = np.stack([np.bincount(bins[:, k], minlength=n_bins) for k in range(n_c)])
    wrong_counts = np.stack([np.bincount(bins[wrong[:, k], k], minlength=n_bins) for k in range(n_c)])
    return SizeErrors(edges=edges, problems=problems.astype(np.int64), wrong=wrong_counts.astype(np.int64))


@dataclass(frozen=True)
class LargeSumShares:
    """Per c_k: how much of the problems, and how much of the errors of c_k, have ĉ_k ≥ ``threshold[k]``.

    Arrays are (n_c,). A model whose errors fall anywhere has ``error_share`` close to ``problem_share``.
    """

    threshold: np.ndarray  # the smallest ĉ_k counted as large
    problem_share: np.ndarray  # share of the problems with ĉ_k ≥ threshold
    wrong: np.ndarray  # wrong c_k over all problems (a missing digit counts as wrong)
    error_share: np.ndarray  # share of those wrong c_k with ĉ_k ≥ threshold; NaN where none is wrong


def large_sum_shares(
    predicted: np.ndarray, target: np.ndarray, running_sums: np.ndarray, top: float = 0.1
) -> LargeSumShares:
    """Where ĉ_k is large, meaning among the ``top`` share of the problems' values (the threshold is
    the ``1 − top`` quantile of ĉ_k; ties at it count as large, so ``problem_share`` can exceed ``top``):
    what share of the problems and what share of the errors of c_k are there."""
    predicted, target = _checked_digits(predicted, target)
    running_sums = _checked_running_sums(target, running_sums)
    if not 0 < top < 1:
        raise ValueError(f"top is a share of the problems, strictly between 0 and 1, got {top}")
    threshold = np.quantile(running_sums, 1 - top, axis=0, method="higher")  # (n_c,)
    large = running_sums >= threshold  # (n, n_c)
    wrong = predicted != target  # (n, n_c)
    wrong_count = wrong.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        error_share = np.where(wrong_count > 0, (wrong & large).sum(0) / wrong_count, np.nan)
    return LargeSumShares(
        threshold=threshold.astype(np.int64),
        problem_share=large.mean(0),
        wrong=wrong_count.astype(np.int64),
        error_share=error_share,
    )
