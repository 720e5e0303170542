"""Digits in a Fourier basis: the paper's Table 1 and its "pentagonal prism" (FACTS §5.5).

A vector indexed by digit, ``v[n]`` for ``n = 0 … 9``, is a function on ten points, and the ten
functions

    const,  cos k·2πn/10, sin k·2πn/10  (k = 1 … 4),  parity = cos 5·2πn/10 = (−1)^n

are an orthogonal basis of such functions (Nanda et al.'s grokking analysis uses the same layout: a
basis matrix with one row per basis function and a parallel list of names). ``k = 2`` has period 5
(a pentagon when drawn as cos/sin), ``k = 5`` tells even from odd. The paper fits digit-indexed objects of
the model (embeddings, unembeddings, the last MLP's output weights read by the digit embeddings, the
final hidden state averaged per digit) with the frequencies ``{0, 1, 2, 5}``, reports the median R² over
the vectors' dimensions and the R² as frequencies are added one at a time; and it finds that the
per-digit centroids of the final residual stream form two pentagons (``k = 2``) joined along a parity
axis (``k = 5``). Here the final hidden state is taken after the final layer norm (what the unembedding
reads), the book's choice: the paper says "final residual stream".

R² here is the ordinary, centred one (1 − residual / variance about the mean), per dimension, the
book's choice: every fit includes the constant, so R² measures how much of the variation *across
digits* the chosen frequencies explain, and ``k = 0`` on its own explains nothing (its row in the
cumulative table is 0 by construction).
``pooled_r2`` is the same over all dimensions at once (each dimension weighted by its variance), a check
on the median.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from transformers import GPT2LMHeadModel

from ..sequences import DIGIT_ID0
from ..task import Problem
from .geometry import activations_at, digit_columns, pca
from .passes import DEFAULT_BATCH_SIZE

N_DIGITS = 10
DEFAULT_FREQUENCIES = (0, 1, 2, 5)  # the paper's basis {1, cos/sin 2πn/10, cos/sin 2πn/5, (−1)^n}


def fourier_basis(n: int = N_DIGITS) -> tuple[np.ndarray, list[str]]:
    """The orthonormal Fourier basis of functions on ``0 … n-1``: a matrix (n, n) with one basis
    function per row, and their names (``const``, ``cos1``, ``sin1``, …, ``parity`` for even ``n``)."""
    if n < 2:
        raise ValueError(f"a Fourier basis needs at least 2 points, got {n}")
    x = np.arange(n)
    rows, names = [np.ones(n)], ["const"]
    for k in range(1, (n + 1) // 2):
        rows += [np.cos(2 * np.pi * k * x / n), np.sin(2 * np.pi * k * x / n)]
        names += [f"cos{k}", f"sin{k}"]
    if n % 2 == 0:
        rows.append(np.cos(np.pi * x))  # (−1)^n
        names.append("parity")
    basis = np.stack(rows)  # (n, n)
    return basis / np.linalg.norm(basis, axis=1, keepdims=True), names


def frequency_names(frequencies: Iterable[int], n: int = N_DIGITS) -> list[str]:
    """Names of the basis functions of the given frequencies: 0 → const, ``k`` → cos k, sin k,
    ``n/2`` → parity."""
    names = []
    for k in frequencies:
        if not 0 <= k <= n // 2:
            raise ValueError(f"frequency {k} is not in 0..{n // 2}")
        if k == 0:
            names.append("const")
        elif 2 * k == n:
            names.append("parity")
        else:
            names += [f"cos{k}", f"sin{k}"]
    return names


def _as_digit_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim == 1:
        vectors = vectors[:, None]
    if vectors.ndim != 2 or vectors.shape[0] != N_DIGITS:
        raise ValueError(f"expected digit-indexed vectors of shape ({N_DIGITS}, d) (one row per digit), got {vectors.shape}")
    return vectors


def _fit(vectors: np.ndarray, frequencies: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (10, d) of the least-squares fit on the constant and the chosen frequencies, and the
    centred vectors."""
    basis, names = fourier_basis(N_DIGITS)
    chosen = basis[sorted({names.index(name) for name in frequency_names([0, *frequencies])})]  # (m, 10)
    fitted = chosen.T @ (chosen @ vectors)  # (10, d): projection = least squares for an orthonormal basis
    return vectors - fitted, vectors - vectors.mean(0)


def fourier_r2(vectors: np.ndarray, frequencies: Iterable[int] = DEFAULT_FREQUENCIES) -> np.ndarray:
    """R² of the least-squares fit of each dimension of digit-indexed ``vectors`` (10, d) on the constant
    and the basis functions of ``frequencies``: (d,), NaN for a dimension that does not vary with the digit."""
    vectors = _as_digit_vectors(vectors)
    residual, centred = _fit(vectors, frequencies)
    ss_tot = (centred**2).sum(0)  # (d,)
    flat = ss_tot <= 1e-12 * max(float(ss_tot.max()), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flat, np.nan, 1.0 - (residual**2).sum(0) / ss_tot)


def median_r2(vectors: np.ndarray, frequencies: Iterable[int] = DEFAULT_FREQUENCIES) -> float:
    """Median over the dimensions of :func:`fourier_r2` (the paper's per-object number)."""
    return float(np.nanmedian(fourier_r2(vectors, frequencies)))


def pooled_r2(vectors: np.ndarray, frequencies: Iterable[int] = DEFAULT_FREQUENCIES) -> float:
    """R² over all dimensions at once: 1 − total residual / total variance about the per-dimension means."""
    vectors = _as_digit_vectors(vectors)
    residual, centred = _fit(vectors, frequencies)
    total = float((centred**2).sum())
    if total <= 0:
        raise ValueError("the vectors do not vary with the digit")
    return 1.0 - float((residual**2).sum()) / total


def chance_r2(frequencies: Iterable[int] = DEFAULT_FREQUENCIES) -> float:
    """Expected R² of vectors with no digit structure (independent noise per digit): the fit's
    non-constant functions span ``m`` of the 9 directions of variation, so ``m / 9`` — 5/9 ≈ 0.56 for
    the default ``{0, 1, 2, 5}``. A median R² means something only well above it."""
    return len([name for name in frequency_names(set(frequencies)) if name != "const"]) / (N_DIGITS - 1)


def fourier_table(objects: dict[str, np.ndarray], order: Sequence[int] = DEFAULT_FREQUENCIES) -> list[dict]:
    """Table 1 in tidy rows: for each object (name → digit-indexed vectors (10, d)) and each step of
    adding the frequencies of ``order`` one at a time, ``object, step, added, basis, median_r2,
    pooled_r2, chance_r2``. The last step of each object is its R² on the full frequency set."""
    if len(set(order)) != len(order) or not order:
        raise ValueError(f"order must list distinct frequencies, got {order}")
    rows = []
    for name, vectors in objects.items():
        for step in range(1, len(order) + 1):
            frequencies = order[:step]
            rows.append(
                {
                    "object": name,
                    "step": step,
                    "added": "k=" + str(order[step - 1]),
                    "basis": ", ".join(frequency_names(frequencies)),
                    "median_r2": median_r2(vectors, frequencies),
                    "pooled_r2": pooled_r2(vectors, frequencies),
                    "chance_r2": chance_r2(frequencies),
                }
            )
    return rows


def _basis_power(values: np.ndarray) -> tuple[np.ndarray, list[str], float]:
    """The power of a digit-indexed function ``values`` (10,) on each basis function of :func:`fourier_basis`
    (its squared coefficient after removing the mean), the basis functions' names and the total power."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (N_DIGITS,):
        raise ValueError(f"expected one value per digit, shape ({N_DIGITS},), got {values.shape}")
    basis, names = fourier_basis(N_DIGITS)
    power = (basis @ (values - values.mean())) ** 2  # (10,)
    total = float(power.sum())
    if total <= 0:
        raise ValueError("the values do not vary with the digit")
    return power, names, total


def basis_shares(values: np.ndarray) -> dict[str, float]:
    """Share of the variance of a digit-indexed function ``values`` (10,) carried by each named basis
    function of :func:`fourier_basis` (``cos1``, ``sin1``, …, ``parity``; the constant carries none); the
    shares add up to 1. :func:`frequency_spectrum` adds up each frequency's cos and sin."""
    power, names, total = _basis_power(values)
    return {name: float(p / total) for name, p in zip(names, power) if name != "const"}


def frequency_spectrum(values: np.ndarray) -> dict[int, float]:
    """Share of the variance of a digit-indexed function ``values`` (10,) carried by each frequency
    ``k = 1 … 5`` (cos and sin together; ``k = 5`` is parity). The shares add up to 1."""
    power, names, total = _basis_power(values)
    spectrum = {}
    for k in range(1, N_DIGITS // 2 + 1):
        spectrum[k] = float(sum(power[names.index(n)] for n in frequency_names([k])) / total)
    return spectrum


# --------------------------------------------------------------------------- the model's digit vectors


def digit_centroids(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    k: int = 2,
    site: str = "ln_final.hook_normalized",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """(10, d) mean of activation ``site`` at the position predicting ``c_k``, grouped by the true digit
    ``c_k`` (row ``n``: the problems whose ``c_k`` is ``n``). Default site: the final hidden state (after
    the last layer norm: what the unembedding reads, Hugging Face's last ``hidden_states``)."""
    acts = activations_at(model, problems, [site], k, batch_size)[site]  # (B, d)
    if acts.ndim != 2:
        raise ValueError(f"{site} is per head; choose a site of shape (B, T, d)")
    target = digit_columns(model, problems)[f"c{k}"]  # (B,)
    missing = sorted(set(range(N_DIGITS)) - set(target.tolist()))
    if missing:
        raise ValueError(f"no problem has c{k} = {missing}: use more problems")
    return np.stack([acts[target == n].mean(0) for n in range(N_DIGITS)])  # (10, d)


def digit_vectors(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    k: int = 2,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """The model's digit-indexed objects of Table 1, each (10, dim), row ``n`` belonging to digit ``n``:

    * ``embedding``: token embeddings of the digits, W_E[n] (d_model)
    * ``unembedding``: the digits' rows of the output matrix W_U (equal to W_E when tied)
    * ``mlp_out_embedding``: the last layer's MLP output weights read by the digit embeddings,
      W_E[n] · W_out[i] for each neuron ``i`` (d_mlp): how much neuron ``i`` writes towards digit ``n``
    * ``final_hidden``: the final hidden state at the position predicting ``c_k``, averaged over
      problems with ``c_k = n`` (d_model), see :func:`digit_centroids`
    * ``final_hidden_unembedding``: those centroids times the digit unembeddings (10): their digit logits
    """
    digits = slice(DIGIT_ID0, DIGIT_ID0 + N_DIGITS)
    w_e = model.transformer.wte.weight[digits].detach().double().cpu().numpy()  # (10, d_model)
    w_u = model.lm_head.weight[digits].detach().double().cpu().numpy()  # (10, d_model)
    w_out = model.transformer.h[-1].mlp.c_proj.weight.detach().double().cpu().numpy()  # (d_mlp, d_model), Conv1D
    centroids = digit_centroids(model, problems, k, batch_size=batch_size)  # (10, d_model)
    return {
        "embedding": w_e,
        "unembedding": w_u,
        "mlp_out_embedding": w_e @ w_out.T,  # (10, d_mlp)
        "final_hidden": centroids,
        "final_hidden_unembedding": centroids @ w_u.T,  # (10, 10)
    }


@dataclass
class CentroidPCA:
    """The digit centroids on their principal components, each axis named by its main frequency."""

    coords: np.ndarray  # (10, n_components), row n = digit n
    explained_variance_ratio: np.ndarray  # (n_components,)
    spectra: list[dict[int, float]]  # per component: share of its variance per frequency k = 1 … 5

    @property
    def axis_labels(self) -> list[str]:
        """E.g. ``["PC1: k=2 (98%)", "PC2: k=2 (97%)", "PC3: parity (99%)"]``."""
        labels = []
        for i, spectrum in enumerate(self.spectra):
            k = max(spectrum, key=spectrum.get)
            name = "parity" if 2 * k == N_DIGITS else f"k={k}"
            labels.append(f"PC{i + 1}: {name} ({spectrum[k]:.0%})")
        return labels

    def records(self) -> list[dict]:
        """Tidy rows, one per digit: ``digit, pc1 …`` (for altair)."""
        return [{"digit": n} | {f"pc{i + 1}": float(v) for i, v in enumerate(row)} for n, row in enumerate(self.coords)]


def centroid_pca(centroids: np.ndarray, n_components: int = 3) -> CentroidPCA:
    """3-D PCA of per-digit centroids (10, d) — the paper's pentagonal prism, where two components carry
    ``k = 2`` (a pentagon) and one carries parity (the two pentagons' offset) — with the frequency
    content of each component."""
    centroids = _as_digit_vectors(centroids)
    coords, ratio = pca(centroids, n_components)  # (10, n_components)
    return CentroidPCA(coords, ratio, [frequency_spectrum(coords[:, i]) for i in range(coords.shape[1])])
