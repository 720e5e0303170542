"""Unit tests of longmul.analysis.digit_errors: offsets of wrong digits, carry and parity shares, and
where carry errors happen, and how large the running sums of the wrong digits are."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from longmul.analysis.digit_errors import (
    CARRY_CHANCE,
    PARITY_CHANCE,
    carry_boundary_errors,
    digit_errors,
    large_sum_shares,
    running_sum_size_errors,
    signed_offset,
)
from longmul.task import random_problems


def test_signed_offsets_run_from_minus_four_to_plus_five():
    assert [signed_offset(d) for d in range(10)] == [0, 1, 2, 3, 4, 5, -4, -3, -2, -1]
    with pytest.raises(ValueError, match="0…9"):
        signed_offset(10)


def test_counts_offsets_and_missing_digits():
    target = np.array([[3, 0], [3, 9], [3, 5], [3, 5]])
    predicted = np.array([[3, 1], [4, 0], [2, -1], [7, 5]])
    errors = digit_errors(predicted, target)
    # c0: right, +1, −1 (offset 9), +4
    assert errors.counts[0].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 0, 1]
    # c1: +1, +1 (9 → 0 wraps), missing, right
    assert errors.counts[1].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    assert errors.missing.tolist() == [0, 1]
    assert errors.n == 4
    assert errors.written_wrong.tolist() == [3, 2]
    assert errors.wrong.tolist() == [3, 3]  # the missing c1 is wrong too …
    np.testing.assert_allclose(errors.error_rate, [3 / 4, 3 / 4])
    # … but has no offset: the shares are over the two c1 digits written wrong
    np.testing.assert_allclose(errors.carry_share, [2 / 3, 1.0])
    np.testing.assert_allclose(errors.even_share, [1 / 3, 0.0])


def test_a_digit_never_wrong_has_no_share():
    errors = digit_errors(np.array([[1], [2]]), np.array([[1], [2]]))
    assert errors.wrong.tolist() == [0] and errors.error_rate.tolist() == [0.0]
    assert np.isnan(errors.carry_share[0]) and np.isnan(errors.even_share[0])


def test_guessing_lands_on_plus_minus_one_at_the_chance_rate():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 10, size=(200_000, 1))
    errors = digit_errors(rng.integers(0, 10, size=target.shape), target)
    assert errors.carry_share[0] == pytest.approx(CARRY_CHANCE, abs=0.01)
    assert errors.even_share[0] == pytest.approx(PARITY_CHANCE, abs=0.01)


@pytest.mark.parametrize(
    ("predicted", "target", "match"),
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), "one shape"),
        (np.zeros(3), np.zeros(3), "one shape"),
        (np.zeros((1, 2)), np.full((1, 2), 10), "target digits"),
        (np.full((1, 2), -2), np.zeros((1, 2)), "predicted digits"),
    ],
)
def test_bad_input_is_named(predicted, target, match):
    with pytest.raises(ValueError, match=match):
        digit_errors(predicted.astype(int), target.astype(int))


@given(
    target=arrays(np.int64, st.tuples(st.integers(1, 30), st.integers(1, 8)), elements=st.integers(0, 9)),
    shift=st.integers(0, 9),
)
def test_a_constant_shift_puts_every_digit_at_that_offset(target, shift):
    errors = digit_errors((target + shift) % 10, target)
    n = target.shape[0]
    assert (errors.counts[:, shift] == n).all()
    assert errors.counts.sum() == target.size
    assert (errors.wrong == (0 if shift == 0 else n)).all()


# --------------------------------------------------------------------------- carry boundary


def _problem_arrays(n: int, seed: int):
    problems = random_problems(n, seed=seed)
    return np.array([p.c_digits for p in problems]), np.array([p.running_sums for p in problems])


def test_a_misjudged_carry_errs_only_next_to_a_multiple_of_ten():
    target, running = _problem_arrays(3_000, seed=4)
    rng = np.random.default_rng(0)
    predicted = target.copy()
    for k in range(1, target.shape[1]):
        estimate = running[:, k - 1] + rng.integers(-1, 2, size=len(target))  # ĉ_{k−1} to within a unit
        carry_error = estimate // 10 - running[:, k - 1] // 10  # −1, 0 or +1
        predicted[:, k] = (target[:, k] + carry_error) % 10
    split = carry_boundary_errors(predicted, target, running)
    k = 4
    assert split.problems[k].sum() == len(target) and split.problems[0].sum() == 0
    assert split.wrong[k, 1:9].sum() == 0  # only residues 0 and 9 can flip the carry
    assert split.minus_one[k, 0] > 0 and split.minus_one[k, 1:].sum() == 0
    assert split.plus_one[k, 9] > 0 and split.plus_one[k, :9].sum() == 0
    assert split.sign_agreement[k] == 1.0
    assert split.carry_signed[k] == split.signed_errors[k] == split.wrong[k].sum()
    assert np.isnan(split.boundary_ratio[k])  # no error at residues 3…6
    np.testing.assert_allclose(split.error_rate[k, [0, 9]], 1 / 3, atol=0.08)


def test_guesses_do_not_care_about_the_carry():
    target, running = _problem_arrays(20_000, seed=5)
    guesses = np.random.default_rng(1).integers(0, 10, size=target.shape)
    split = carry_boundary_errors(guesses, target, running)
    assert split.boundary_ratio[4] == pytest.approx(1.0, abs=0.1)
    assert split.sign_agreement[4] == pytest.approx(0.5, abs=0.05)


def test_missing_digits_count_as_wrong_but_not_as_plus_or_minus_one():
    target, running = _problem_arrays(50, seed=6)
    predicted = target.copy()
    predicted[:, 3] = -1
    split = carry_boundary_errors(predicted, target, running)
    assert split.wrong[3].sum() == 50 and split.plus_one[3].sum() == split.minus_one[3].sum() == 0
    assert split.signed_errors[3] == 0 and np.isnan(split.sign_agreement[3])
    errors = digit_errors(predicted, target)
    assert errors.wrong[3] == split.wrong[3].sum() == 50  # one meaning of "wrong" in both tallies
    assert errors.written_wrong[3] == 0 and errors.error_rate[3] == 1.0


def test_running_sums_of_other_problems_are_refused():
    target, running = _problem_arrays(20, seed=7)
    with pytest.raises(ValueError, match="do not belong"):
        carry_boundary_errors(target, target, running[::-1])
    with pytest.raises(ValueError, match="shape"):
        carry_boundary_errors(target, target, running[:, :4])


@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
def test_boundary_counts_add_up(seed, n):
    target, running = _problem_arrays(n, seed=seed)
    predicted = np.random.default_rng(seed).integers(-1, 10, size=target.shape)
    split = carry_boundary_errors(predicted, target, running)
    wrong = predicted != target
    assert (split.problems[1:].sum(1) == n).all()
    assert (split.wrong[1:].sum(1) == wrong[:, 1:].sum(0)).all()
    assert (split.plus_one + split.minus_one <= split.wrong).all()
    assert (split.wrong <= split.problems).all()


def test_errors_above_a_running_sum_land_in_the_bins_above_it():
    target, running = _problem_arrays(2_000, seed=9)
    predicted = target.copy()
    large = running[:, 3] >= 150
    predicted[large, 3] = (predicted[large, 3] + 1) % 10  # c3 wrong exactly where ĉ3 ≥ 150
    edges = np.arange(0, 401, 50)
    split = running_sum_size_errors(predicted, target, running, edges)
    assert (split.problems.sum(1) == len(target)).all()
    assert split.wrong[3, :3].sum() == 0 and split.wrong[3, 3:].sum() == large.sum()
    np.testing.assert_array_equal(split.wrong[3, 3:], split.problems[3, 3:])
    assert split.wrong[[0, 1, 2, 4, 5, 6, 7]].sum() == 0
    rate = split.error_rate[3]
    assert (rate[:3] == 0).all() and (rate[3:][split.problems[3, 3:] > 0] == 1).all()
    assert np.isnan(rate[split.problems[3] == 0]).all()


def test_running_sum_bins_must_be_increasing_and_hold_every_sum():
    target, running = _problem_arrays(30, seed=10)
    with pytest.raises(ValueError, match="increasing"):
        running_sum_size_errors(target, target, running, [0, 100, 50, 400])
    with pytest.raises(ValueError, match="do not hold every running sum"):
        running_sum_size_errors(target, target, running, [0, 10])
    with pytest.raises(ValueError, match="do not belong"):
        running_sum_size_errors(target, target, running[::-1], [0, 400])


@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), width=st.integers(1, 120))
def test_size_counts_add_up(seed, n, width):
    target, running = _problem_arrays(n, seed=seed)
    predicted = np.random.default_rng(seed).integers(-1, 10, size=target.shape)
    split = running_sum_size_errors(predicted, target, running, np.arange(0, running.max() + width + 1, width))
    assert (split.problems.sum(1) == n).all()
    assert (split.wrong.sum(1) == (predicted != target).sum(0)).all()
    assert (split.wrong <= split.problems).all()


def test_errors_only_at_large_sums_take_the_whole_tail_share():
    target, running = _problem_arrays(5_000, seed=11)
    predicted = target.copy()
    shares = large_sum_shares(predicted, target, running, top=0.1)
    assert (shares.wrong == 0).all() and np.isnan(shares.error_share).all()
    large = running[:, 3] >= shares.threshold[3]
    predicted[large, 3] = -1  # missing digits count as wrong
    shares = large_sum_shares(predicted, target, running, top=0.1)
    assert shares.error_share[3] == 1.0 and shares.wrong[3] == large.sum()
    assert shares.problem_share[3] == pytest.approx(0.1, abs=0.02)  # ties at the threshold count as large


def test_guesses_spread_their_errors_like_the_problems():
    target, running = _problem_arrays(20_000, seed=12)
    guesses = np.random.default_rng(2).integers(0, 10, size=target.shape)
    shares = large_sum_shares(guesses, target, running, top=0.1)
    np.testing.assert_allclose(shares.error_share, shares.problem_share, atol=0.02)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        large_sum_shares(guesses, target, running, top=1.0)
