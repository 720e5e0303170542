"""Geometry of attention outputs: PCA views and a number for the "Minkowski sum" claim.

The paper (FACTS §5.4) projects layer-1 (``blocks.0``) attention outputs at the position predicting ``c_0`` and
``c_2`` onto three principal components and sees clusters by ``b_j`` that contain sub-clusters by
``a_i``: the point cloud looks like the Minkowski sum ``{f(a_i)} + {g(b_j)}`` of one set per digit. A picture
can suggest nesting; :func:`variance_explained` measures it. For activations ``X`` (N, d) and two digit
labels it compares the share of variance explained by

* ``a``: the group means of ``a_i`` alone,
* ``b``: the group means of ``b_j`` alone,
* ``additive``: the least-squares fit ``μ + f(a_i) + g(b_j)`` (a two-way ANOVA without interaction),
* ``full``: the mean of every cell ``(a_i, b_j)`` (all interactions).

A Minkowski sum is exactly the additive model; ``additive / full`` near 1 says the structure the two
digits explain is additive, ``full − additive`` is what only their interaction (e.g. the product
``a_i · b_j``) explains. The models fit different numbers of parameters per dimension
(:func:`parameter_counts`: 10, 10, 19 and 100 for ten values per digit), and a model with ``p`` of them
absorbs about ``p / N`` of pure noise: raw R² would favour ``full`` by that much and make a noisy sum look
less additive than it is. So every share is adjusted for its parameters (:func:`adjusted_r2`), and noise
scores about 0 under each model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from transformers import GPT2LMHeadModel

from ..hooks import hook_names
from ..model import model_config_of
from ..sequences import operand_digits
from ..task import Problem
from .passes import DEFAULT_BATCH_SIZE, as_pairs, teacher_forced_passes

# --------------------------------------------------------------------------- activations and labels


def activations_at(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    names: Iterable[str],
    k: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """The named activations at the position predicting ``c_k`` of each teacher-forced problem:
    ``name → (B, *rest)``, e.g. ``blocks.0.hook_attn_out`` → (B, d_model), ``blocks.0.attn.hook_result``
    → (B, H, d_model). Attention patterns (no single position axis) are not accepted."""
    pairs = as_pairs(model, problems)
    n_c = model_config_of(model).layout.n_c
    if not 0 <= k < n_c:
        raise ValueError(f"k must be an output digit index in 0..{n_c - 1}, got {k}")
    names = list(names)
    if not names:
        raise ValueError("no activation names given")
    # Position embeddings may be stored once for the whole batch; patterns have two position axes.
    allowed = [n for n in hook_names(model.config.n_layer) if not n.endswith("hook_pattern") and n != "hook_pos_embed"]
    for name in names:
        if name not in allowed:
            raise ValueError(f"{name!r} is not an activation with a position axis; choose from {allowed}")
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch, _, cache in teacher_forced_passes(model, pairs, names, batch_size=batch_size):
        device = cache[names[0]].device
        rows = torch.arange(len(batch.input_ids), device=device)  # (b,)
        pos = batch.answer_positions[:, k].to(device)  # (b,)
        for name in names:
            chunks[name].append(cache[name][rows, pos].float().cpu().numpy())  # (b, *rest)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def digit_columns(model: GPT2LMHeadModel, problems: np.ndarray | Sequence[Problem]) -> dict[str, np.ndarray]:
    """Every digit of every problem, for colouring and grouping: ``a0 …``, ``b0 …``, ``c0 …`` → (B,)."""
    pairs = as_pairs(model, problems)
    layout = model_config_of(model).layout
    a, b = operand_digits(pairs, layout)  # (B, n_a), (B, n_b)
    product = pairs[:, 0] * pairs[:, 1]  # (B,)
    c = (product[:, None] // 10 ** np.arange(layout.n_c)[None, :]) % 10  # (B, n_c)
    columns = {f"a{i}": a[:, i] for i in range(layout.n_a)}
    columns |= {f"b{j}": b[:, j] for j in range(layout.n_b)}
    return columns | {f"c{m}": c[:, m] for m in range(layout.n_c)}


# --------------------------------------------------------------------------- variance decomposition


def parameter_counts(n_a: int = 10, n_b: int = 10, cells: int | None = None) -> dict[str, int]:
    """Parameters per dimension that each model of :func:`variance_explained` fits, the overall mean
    included, for labels with ``n_a`` and ``n_b`` values (``cells``: the (a, b) cells that hold samples,
    all ``n_a · n_b`` by default): ``a`` and ``b`` one mean per value, ``additive`` n_a + n_b − 1, ``full``
    one mean per cell."""
    return {"a": n_a, "b": n_b, "additive": n_a + n_b - 1, "full": n_a * n_b if cells is None else cells}


def adjusted_r2(r2: float, n: int, p: int) -> float:
    """R² adjusted for the ``p`` parameters (the mean included) a model fits to ``n`` samples:
    ``1 − (1 − R²)(n − 1)/(n − p)``. Noise scores about 0 whatever ``p``, so models with different numbers
    of parameters can be compared. NaN when there are no more samples than parameters (nothing is left to
    tell fit from noise)."""
    if n <= p:
        return float("nan")
    return 1.0 - (1.0 - r2) * (n - 1) / (n - p)


@dataclass(frozen=True)
class VarianceExplained:
    """Shares of the total variance of an activation matrix explained by two digit labels, each adjusted
    for the parameters its model fits (:func:`adjusted_r2`): about 0 for noise, and slightly negative
    when a model explains less than its parameters would absorb by chance."""

    a: float  # by the first label alone (its group means)
    b: float  # by the second label alone
    additive: float  # by f(a) + g(b), fitted by least squares
    full: float  # by the mean of every (a, b) cell

    @property
    def interaction(self) -> float:
        """What only the interaction of the two labels explains."""
        return self.full - self.additive

    @property
    def additive_share(self) -> float:
        """The part of the explained structure that is additive (1: a perfect Minkowski sum)."""
        return self.additive / self.full if self.full > 0 else float("nan")


def _one_hot(codes: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(codes), n))
    out[np.arange(len(codes)), codes] = 1.0
    return out


def _samples_and_labels(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float64 (N, d) (a vector becomes one column) and the digit labels ``a``, ``b`` as (N,)
    arrays, or a ValueError naming the shapes."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    a, b = np.asarray(a), np.asarray(b)
    if X.ndim != 2 or a.shape != (len(X),) or b.shape != (len(X),):
        raise ValueError(f"expected X of shape (N, d) and labels of shape (N,), got {X.shape}, {a.shape}, {b.shape}")
    return X, a, b


def variance_explained(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> VarianceExplained:
    """Decompose the variance of ``X`` (N, d) — or (N,) — by two integer labels ``a``, ``b`` (N,):
    shares explained by ``a`` alone, ``b`` alone, the additive model ``μ + f(a) + g(b)`` and the full
    interaction model (every ``(a, b)`` cell its own mean), each adjusted for the parameters it fits
    (:func:`parameter_counts`, :func:`adjusted_r2`). Variance is summed over the ``d`` dimensions, so a
    direction matters in proportion to its variance (PCA's view of the cloud).

    Every model is constant within a cell, so each is fitted to the cell means weighted by the cell
    counts: exactly the least-squares fit to ``X`` (its residual is the within-cell scatter plus the
    weighted misfit of the cell means), at the cost of a (cells, d) problem instead of an (N, d) one."""
    X, a, b = _samples_and_labels(X, a, b)
    _, a_codes = np.unique(a, return_inverse=True)
    _, b_codes = np.unique(b, return_inverse=True)
    n_a, n_b = int(a_codes.max()) + 1, int(b_codes.max()) + 1
    if n_a < 2 or n_b < 2:
        raise ValueError("each label needs at least two distinct values")
    Xc = X - X.mean(0)  # (N, d)
    total = float((Xc**2).sum())
    if total <= 0:
        raise ValueError("X has no variance to explain")
    cell = a_codes * n_b + b_codes  # (N,) index of the (a, b) cell, G = n_a * n_b cells
    counts = np.bincount(cell, minlength=n_a * n_b).astype(np.float64)  # (G,)
    order = np.argsort(cell, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)  # (G,)
    filled = counts > 0
    sums = np.zeros((n_a * n_b, X.shape[1]))
    sums[filled] = np.add.reduceat(Xc[order], starts[filled], axis=0)
    means = sums / np.maximum(counts, 1)[:, None]  # (G, d) cell means, 0 for empty cells
    within = total - float((counts[:, None] * means**2).sum())  # scatter inside the cells

    cell_a = _one_hot(np.repeat(np.arange(n_a), n_b), n_a)  # (G, n_a): the a of each cell
    cell_b = _one_hot(np.tile(np.arange(n_b), n_a), n_b)  # (G, n_b)
    weight = np.sqrt(counts)[:, None]  # (G, 1)

    def r2(design: np.ndarray) -> float:
        coef, *_ = np.linalg.lstsq(weight * design, weight * means, rcond=None)
        misfit = float((counts[:, None] * (means - design @ coef) ** 2).sum())
        return 1.0 - (within + misfit) / total

    raw = {
        "a": r2(cell_a),
        "b": r2(cell_b),
        "additive": r2(np.concatenate([cell_a, cell_b[:, 1:]], axis=1)),
        "full": 1.0 - within / total,
    }
    params = parameter_counts(n_a, n_b, cells=int(filled.sum()))
    return VarianceExplained(**{name: adjusted_r2(value, len(X), params[name]) for name, value in raw.items()})


def digit_pair_variance(X: np.ndarray, digits: dict[str, np.ndarray]) -> list[dict]:
    """:func:`variance_explained` for every operand pair ``(a_i, b_j)`` in ``digits`` (as from
    :func:`digit_columns`): tidy rows ``a_digit, b_digit, a, b, additive, full, interaction,
    additive_share`` (adjusted shares), to find which pair a head's output is organised by and whether
    additively."""
    a_names = [n for n in digits if n[0] == "a"]
    b_names = [n for n in digits if n[0] == "b"]
    if not a_names or not b_names:
        raise ValueError(f"need a- and b-digit columns (a0, b0, …), got {sorted(digits)}")
    rows = []
    for a_name in a_names:
        for b_name in b_names:
            v = variance_explained(X, digits[a_name], digits[b_name])
            rows.append(
                {
                    "a_digit": a_name,
                    "b_digit": b_name,
                    "a": v.a,
                    "b": v.b,
                    "additive": v.additive,
                    "full": v.full,
                    "interaction": v.interaction,
                    "additive_share": v.additive_share,
                }
            )
    return rows


def main_effects(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two digits' main effects on ``X`` (N, d): ``f`` (n_a, d), the mean of ``X`` over the samples
    with each value of ``a`` minus the overall mean, and ``g`` (n_b, d) the same for ``b`` (rows in the
    order of the sorted values). For independent, uniform digits they are the ``f`` and ``g`` of the
    additive model ``μ + f(a) + g(b)``: the two sets of points whose Minkowski sum the cloud is."""
    X, a, b = _samples_and_labels(X, a, b)
    mean = X.mean(0)  # (d,)
    f = np.stack([X[a == value].mean(0) - mean for value in np.unique(a)])  # (n_a, d)
    g = np.stack([X[b == value].mean(0) - mean for value in np.unique(b)])  # (n_b, d)
    return f, g


@dataclass(frozen=True)
class EffectMatch:
    """How alike the two sets of a Minkowski sum are (:func:`effect_match`)."""

    scale: float  # size of the b-set over the a-set (root-mean-square distance from their centres)
    cosine: float  # mean over the values n of the cosine between f(n) and g(n): 1 when digit n moves X alike

    @property
    def same_set(self) -> bool:
        """The two digits write (nearly) the same vector per value, at (nearly) the same size: the sum is
        symmetric, and the point of (a, b) falls on the point of (b, a)."""
        return self.cosine > 0.9 and 0.8 < self.scale < 1.25


def effect_match(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> EffectMatch:
    """Compare the a-set and the b-set of ``X`` (N, d) labelled by two digits with the same values
    (:func:`main_effects`). A head that attends to the tokens of ``a`` and ``b`` with weights α and 1 − α
    and writes the same value vector for a digit wherever it reads it outputs α·v(a) + (1 − α)·v(b): the
    two sets are one shape at the sizes α and 1 − α (cosine 1, scale (1 − α)/α). Nested clusters, as in
    the paper's figure, need one set much larger than the other; equal sets give a symmetric sum."""
    f, g = main_effects(X, a, b)
    if f.shape != g.shape:
        raise ValueError(f"the two digits take different sets of values: {len(f)} and {len(g)}")
    norms = np.linalg.norm(f, axis=1) * np.linalg.norm(g, axis=1)  # (n,)
    if not (norms > 0).all():
        raise ValueError("a digit value does not move X at all: no cosine to measure")
    cosine = float(np.mean((f * g).sum(1) / norms))
    return EffectMatch(scale=float(np.linalg.norm(g) / np.linalg.norm(f)), cosine=cosine)


# --------------------------------------------------------------------------- PCA views


@dataclass
class ActivationView:
    """One activation site at one position, projected on its principal components."""

    site: str  # hook name, e.g. "blocks.0.hook_attn_out" or "blocks.0.attn.hook_result"
    head: int | None  # the head, for per-head sites
    k: int  # the position is the one predicting c_k
    coords: np.ndarray  # (N, n_components)
    explained_variance_ratio: np.ndarray  # (n_components,)
    digits: dict[str, np.ndarray]  # a0…, b0…, c0… → (N,), for colouring
    variance: list[dict]  # digit_pair_variance of the full activations (not only the components)

    @property
    def title(self) -> str:
        """Layers counted from 1, as in the paper and the book (``blocks.0`` is "layer 1")."""
        layer = int(self.site.split(".")[1]) + 1
        what = "attention output" if self.head is None else f"head {self.head}"
        return f"layer {layer} {what}, position predicting c{self.k}"

    def records(self) -> list[dict]:
        """Tidy rows, one per problem: ``pc1 …`` and every digit column (for altair)."""
        n = self.coords.shape[1]
        columns = {f"pc{i + 1}": self.coords[:, i] for i in range(n)} | self.digits
        return [dict(zip(columns, values)) for values in zip(*(c.tolist() for c in columns.values()))]


def pca(X: np.ndarray, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (N, n_components) of ``X`` (N, d) on its principal components, and the share of
    variance each explains. Deterministic: scikit-learn fixes the signs, and the seed of its randomised
    solver (which it only picks for large, wide matrices) is fixed."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not 1 <= n_components <= min(X.shape):
        raise ValueError(f"need X of shape (N, d) with n_components <= min(N, d), got {X.shape} and {n_components}")
    fitted = PCA(n_components=n_components, random_state=0)
    coords = fitted.fit_transform(X)  # (N, n_components)
    return coords, fitted.explained_variance_ratio_


def minkowski_views(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    ks: Iterable[int] = (0, 2),
    layer: int = 0,
    n_components: int = 3,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[ActivationView]:
    """PCA views of layer ``layer``'s attention output and of each of its heads' outputs at the positions
    predicting ``c_k`` for ``k`` in ``ks`` (the paper: layer index 0, ``c_0`` and ``c_2``, 5,000 problems),
    with the operand digits for colouring and the variance decomposition for every ``(a_i, b_j)``."""
    if not 0 <= layer < model.config.n_layer:
        raise ValueError(f"layer must be in 0..{model.config.n_layer - 1}, got {layer}")
    pairs = as_pairs(model, problems)
    digits = digit_columns(model, pairs)
    attn_out, result = f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.attn.hook_result"
    views = []
    for k in ks:
        acts = activations_at(model, pairs, [attn_out, result], k, batch_size)
        sites = [(attn_out, None, acts[attn_out])]  # (N, d_model)
        sites += [(result, h, acts[result][:, h]) for h in range(model.config.n_head)]  # (N, d_model) each
        for site, head, X in sites:
            coords, ratio = pca(X, n_components)
            views.append(ActivationView(site, head, k, coords, ratio, digits, digit_pair_variance(X, digits)))
    return views
