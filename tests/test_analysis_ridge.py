"""The shared-decomposition ridge (longmul.analysis.ridge) fits what StandardScaler + RidgeCV fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from longmul.analysis.probes import DEFAULT_ALPHAS
from longmul.analysis.ridge import fit_ridge_cv


def sklearn_probe(x, y, alphas):
    """The reference: one scaler + RidgeCV per target, its leave-one-out errors kept."""
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, store_cv_results=True)).fit(x, y)


def problem(seed, n, d, n_targets, noise, constant):
    """Features on mixed scales and offsets (some constant), targets linear in them plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.01, 100.0, d) + rng.normal(scale=50.0, size=d)  # (n, d)
    x[:, :constant] = rng.normal(size=constant)  # constant columns
    w = rng.normal(size=(d, n_targets)) * rng.uniform(0.0, 1.0, n_targets)  # (d, t); some targets ~ noise
    y = (x - x.mean(0)) / (x.std(0) + 1e-9) @ w + rng.normal(scale=noise, size=(n, n_targets)) + 40.0
    return x, y, rng.normal(size=(7, d)) * x.std(0) + x.mean(0)  # and new rows to predict


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(4, 120),
    d=st.integers(1, 40),
    n_targets=st.integers(1, 3),
    noise=st.sampled_from([1e-3, 0.1, 1.0, 30.0]),
    constant=st.integers(0, 2),
)
def test_every_target_matches_standard_scaler_and_ridgecv(seed, n, d, n_targets, noise, constant):
    x, y, x_new = problem(seed, n, d, n_targets, noise, min(constant, d - 1))
    fit = fit_ridge_cv(x, y, DEFAULT_ALPHAS)
    assert fit.predict(x_new).shape == (len(x_new), n_targets)
    for j in range(n_targets):
        reference = sklearn_probe(x, y[:, j], DEFAULT_ALPHAS)
        ours = fit.target(j)
        if ours.alpha != reference[-1].alpha_:
            # a tie within rounding: then RidgeCV's own leave-one-out errors of the two penalties agree
            errors = reference[-1].cv_results_.mean(0)  # (A,)
            picked = [DEFAULT_ALPHAS.index(a) for a in (ours.alpha, reference[-1].alpha_)]
            np.testing.assert_allclose(errors[picked[0]], errors[picked[1]], rtol=1e-9)
            continue
        scale = 1.0 + np.abs(y[:, j]).max()
        np.testing.assert_allclose(ours.predict(x_new), reference.predict(x_new), rtol=1e-6, atol=1e-6 * scale)
        np.testing.assert_allclose(ours.predict(x), reference.predict(x), rtol=1e-6, atol=1e-6 * scale)


def test_the_penalty_follows_the_noise():
    x, y, _ = problem(0, 200, 10, 1, 0.0, 0)
    clean = fit_ridge_cv(x, y[:, 0], DEFAULT_ALPHAS)
    noise = fit_ridge_cv(x, np.random.default_rng(1).normal(size=200), DEFAULT_ALPHAS)
    assert clean.alpha == min(DEFAULT_ALPHAS) and noise.alpha >= 100.0
    np.testing.assert_allclose(clean.predict(x), y[:, 0], atol=1e-6)  # an exact linear target, read exactly


def test_one_target_gives_flat_readings_and_several_targets_fit_each_alone():
    x, y, x_new = problem(3, 60, 8, 2, 1.0, 1)
    both = fit_ridge_cv(x, y, DEFAULT_ALPHAS)
    for j in range(2):
        alone = fit_ridge_cv(x, y[:, j], DEFAULT_ALPHAS)
        assert alone.predict(x_new).shape == (7,) and alone.alpha == both.alpha[j]
        np.testing.assert_allclose(alone.predict(x_new), both.predict(x_new)[:, j], rtol=1e-12, atol=1e-9)


def test_bad_input_is_refused():
    x, y, _ = problem(0, 10, 3, 1, 1.0, 0)
    with pytest.raises(ValueError, match="positive"):
        fit_ridge_cv(x, y, [0.0, 1.0])
    with pytest.raises(ValueError, match="same n"):
        fit_ridge_cv(x, y[:5], DEFAULT_ALPHAS)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_ridge_cv(x[:1], y[:1], DEFAULT_ALPHAS)


def test_a_constant_feature_is_left_unscaled_as_standard_scaler_leaves_it():
    rng = np.random.default_rng(4)
    x = np.concatenate([np.full((37, 1), 0.1), rng.normal(size=(37, 2))], axis=1)  # 0.1: its mean rounds
    y = x[:, 1] * 3.0 + rng.normal(scale=0.5, size=37)
    fit = fit_ridge_cv(x, y, DEFAULT_ALPHAS)
    reference = sklearn_probe(x, y, DEFAULT_ALPHAS)
    np.testing.assert_array_equal(fit.scale[0], 1.0)
    x_new = x[:5] + [1.0, 0.0, 0.0]  # the constant feature moves: an unscaled feature barely matters
    np.testing.assert_allclose(fit.predict(x_new), reference.predict(x_new), rtol=1e-6, atol=1e-6)
