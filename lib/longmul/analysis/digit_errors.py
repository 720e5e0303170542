"""How wrong the wrong digits are: the offset ``(predicted − true) mod 10`` of every wrong output digit.

The offset tells two kinds of failure apart. A model that has the running sum ĉ_k to within a unit but
misjudges the carry out of the columns below writes c_k ± 1: offsets 1 and 9. A model that guesses
spreads its errors evenly over the nine wrong digits, so a share of 2/9 of them land on ±1 by chance.
A third pattern: errors only at even offsets mean the model has the digit's parity right.

Offsets are reported signed, from −4 to +5 (+5 and −5 are the same digit mod 10). Digits a model did
not write at all (``-1`` in :class:`longmul.evaluate.EvalResult`) count as *missing*, not as an offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_OFFSETS = 10
SIGNED_OFFSETS = tuple(range(-4, 6))  # the display order: −4 … −1, 0, +1 … +5
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
    def wrong(self) -> np.ndarray:
        """(n_c,) digits written but wrong (missing ones excluded)."""
        return self.counts[:, 1:].sum(1)

    def _share_of_wrong(self, offsets: list[int]) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.wrong > 0, self.counts[:, offsets].sum(1) / self.wrong, np.nan)

    @property
    def carry_share(self) -> np.ndarray:
        """(n_c,) share of the wrong digits that are off by exactly ±1; NaN where none is wrong."""
        return self._share_of_wrong([1, 9])

    @property
    def even_share(self) -> np.ndarray:
        """(n_c,) share of the wrong digits off by an even amount (parity right); NaN where none is wrong."""
        return self._share_of_wrong([2, 4, 6, 8])


def digit_errors(predicted: np.ndarray, target: np.ndarray) -> DigitErrors:
    """Count offsets of ``predicted`` digits from ``target`` digits, both (n, n_c), -1 = missing."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f"predicted and target must be (n, n_c) arrays of one shape, got {predicted.shape} and {target.shape}")
    if ((target < 0) | (target > 9)).any():
        raise ValueError("target digits must be 0…9")
    if ((predicted < -1) | (predicted > 9)).any():
        raise ValueError("predicted digits must be 0…9, or -1 where missing")
    present = predicted >= 0
    offsets = (predicted - target) % N_OFFSETS  # (n, n_c)
    n_c = target.shape[1]
    counts = np.zeros((n_c, N_OFFSETS), dtype=np.int64)
    for k in range(n_c):
        counts[k] = np.bincount(offsets[present[:, k], k], minlength=N_OFFSETS)
    return DigitErrors(counts=counts, missing=(~present).sum(0).astype(np.int64))
