"""Ridge regression with its penalty picked by leave-one-out error: every penalty and every target of
one feature matrix from a single eigendecomposition.

It fits what scikit-learn's ``make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))`` fits for each
target column: the features standardised (a constant feature is left unscaled), an intercept, and per
target the penalty with the smallest mean squared leave-one-out error, the first of equal ones (the
efficient leave-one-out of Rifkin & Lippert, 2007, that ``RidgeCV`` uses by default). ``RidgeCV``
decomposes the feature matrix again for every target and builds a matrix per penalty; the probes fit
hundreds of targets, so here one eigendecomposition of the standardised, centred features' ``ZᵀZ`` serves
every penalty and every target. The two agree to float rounding (tests/test_analysis_ridge.py).

For centred standardised features ``Z`` with ``ZᵀZ = V diag(s²) Vᵀ``, ``W = Z V`` and centred targets ``y``,
the fit with penalty ``α`` has the weights ``V diag(1 / (s² + α)) Wᵀ y`` and the hat matrix
``H = W diag(1 / (s² + α)) Wᵀ``.
With the intercept (the mean of ``y``) refitted too, leaving row ``i`` out changes its residual to
``(y − H y)_i / (1 − H_ii − 1/n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class RidgeFit:
    """A fitted standardisation and ridge regression, for one target (``coef`` (d,)) or several ((d, t))."""

    mean: np.ndarray  # (d,) feature means of the training rows
    scale: np.ndarray  # (d,) their standard deviations, 1 for a constant feature
    coef: np.ndarray  # (d,) or (d, t) weights on the standardised features
    intercept: np.ndarray  # () or (t,)
    alpha: np.ndarray  # () or (t,) the penalty chosen for each target

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Readings of the rows of ``x`` (n, d): (n,) for one target, (n, t) for several."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept

    def target(self, j: int) -> RidgeFit:
        """The fit of target column ``j`` alone (its ``predict`` gives (n,))."""
        return RidgeFit(self.mean, self.scale, self.coef[:, j], self.intercept[j], self.alpha[j])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and scales as ``StandardScaler`` takes them: a feature whose variance is within float
    rounding of 0 (relative to its mean and the number of rows) is constant and keeps scale 1."""
    n = len(x)
    mean, var = x.mean(0), x.var(0)  # (d,) each
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return mean, np.where(constant, 1.0, np.sqrt(var))


def fit_ridge_cv(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> RidgeFit:
    """Standardise ``x`` (n, d) and fit a ridge regression with an intercept to each column of ``y``
    ((n,) or (n, t)), each with the penalty from ``alphas`` of least leave-one-out error."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    if x.ndim != 2 or y.ndim not in (1, 2) or len(y) != len(x):
        raise ValueError(f"need x (n, d) and y (n,) or (n, t) with the same n, got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 rows to leave one out, got {len(x)}")
    if alphas.ndim != 1 or not len(alphas) or not (np.isfinite(alphas) & (alphas > 0)).all():
        raise ValueError(f"alphas must be positive finite numbers, got {alphas}")
    columns = y.reshape(len(y), -1)  # (n, t)
    n = len(x)
    mean, scale = _standardise(x)
    z = (x - mean) / scale  # (n, d)
    z_mean = z.mean(0)  # (d,) ≈ 0; the intercept absorbs what standardising leaves
    y_mean = columns.mean(0)  # (t,)
    yc = columns - y_mean  # (n, t)
    zc = z - z_mean  # (n, d)
    eigvals, v = np.linalg.eigh(zc.T @ zc)  # (d,), (d, d): Zᵀ Z = V diag(s²) Vᵀ
    w = zc @ v  # (n, d) = U S
    wy = w.T @ yc  # (d, t)
    inverse = 1.0 / (eigvals + alphas[:, None])  # (A, d) 1 / (s² + α) per penalty
    fitted = w @ (inverse[:, :, None] * wy)  # (A, n, t) H y
    leverage = inverse @ (w**2).T  # (A, n) diag(H)
    loo = (yc - fitted) / (1.0 - leverage - 1.0 / n)[:, :, None]  # (A, n, t) leave-one-out residuals
    best = (loo**2).mean(1).argmin(0)  # (t,) the first penalty of least mean squared error
    chosen = alphas[best]  # (t,)
    coef = v @ (wy / (eigvals[:, None] + chosen))  # (d, t)
    intercept = y_mean - z_mean @ coef  # (t,)
    if y.ndim == 1:
        return RidgeFit(mean, scale, coef[:, 0], intercept[0], chosen[0])
    return RidgeFit(mean, scale, coef, intercept, chosen)
