"""Linear probes for the running sum ĉ_k (paper Fig. 3, FACTS §5.2).

Does the model's residual stream hold ``ĉ_k = s_k + ⌊ĉ_{k-1}/10⌋`` (the pair sum plus the carry, up
to 313 for 4×4) linearly, at the position that predicts ``c_k``? A model that has learned the
long-range dependency needs it there: ``c_k = ĉ_k mod 10`` and the carry it passes on come from it.

For every *site* (an activation: each layer's ``resid_pre``, ``attn_out``, ``resid_mid``,
``resid_post``, optionally each head's ``hook_z``) and every answer position ``k``, a ridge regression
maps the activation at the position predicting ``c_k`` to ``ĉ_k``. It is fitted on a
training split of the problems and scored on the held-out rest: mean absolute error in units of ĉ and
R². Each model is probed on its **own** activations, on its own teacher-forced sequence (see
:func:`longmul.evaluate.teacher_forced_batch`). The paper reports the site after layer 2's attention,
before its MLP: ``blocks.1.hook_resid_mid`` here (:data:`PAPER_SITE`).

The features are standardised and the ridge penalty is picked per probe from :data:`DEFAULT_ALPHAS`
by efficient leave-one-out cross-validation on the training split, as scikit-learn's ``RidgeCV`` picks
it (:mod:`longmul.analysis.ridge`: one decomposition per site and position serves every penalty and
every control's target). The target needs no scaling: a closed-form ridge fit is equivariant to it.

Controls (:func:`probe_with_controls`): the same probes on a shuffled target (ĉ permuted across
problems, so nothing is there to find: R² ≈ 0 or below) and on an untrained model of the same shape
(what random features of the input give for free).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import mean_absolute_error, r2_score
from transformers import GPT2LMHeadModel

from ..hooks import hook_names
from ..model import build_model, model_config_of
from ..task import Problem
from ..train import running_sums_batch
from .attribution import analysis_pairs
from .passes import teacher_forced_passes
from .ridge import RidgeFit, fit_ridge_cv

PAPER_SITE = "blocks.1.hook_resid_mid"  # "layer 2, after attention, before its MLP"
SITE_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_resid_post")
DEFAULT_ALPHAS = tuple(10.0**e for e in range(-4, 6))  # 1e-4 … 1e5, on standardised features
DEFAULT_PROBLEMS = 2_000
MIN_PROBLEMS = 10  # a train/test split with a few problems on each side
_HEAD_SITE = re.compile(r"^(blocks\.\d+\.attn\.hook_(?:z|result))\[(\d+)\]$")


def probe_sites(n_layers: int, n_heads: int = 0) -> list[str]:
    """The sites probed by default, in forward order: per layer ``resid_pre``, then (if ``n_heads``)
    each head's output ``blocks.{l}.attn.hook_z[h]``, then ``attn_out``, ``resid_mid``, ``resid_post``."""
    sites = []
    for layer in range(n_layers):
        sites.append(f"blocks.{layer}.hook_resid_pre")
        sites += [f"blocks.{layer}.attn.hook_z[{h}]" for h in range(n_heads)]
        sites += [f"blocks.{layer}.{hook}" for hook in SITE_HOOKS[1:]]
    return sites


def _parse_site(site: str, n_layers: int, n_heads: int) -> tuple[str, int | None]:
    """``site`` → (hook name, head or None); ``ValueError`` for anything a probe cannot read."""
    match = _HEAD_SITE.match(site)
    hook, head = (match.group(1), int(match.group(2))) if match else (site, None)
    readable = [n for n in hook_names(n_layers) if not n.endswith(("hook_pattern", "hook_z", "hook_result", "logits"))]
    if match and (hook not in hook_names(n_layers) or not 0 <= head < n_heads):
        raise ValueError(f"unknown site {site!r}: this model has {n_layers} layers and {n_heads} heads")
    if not match and hook not in readable:
        raise ValueError(
            f"unknown site {site!r}; a probe reads one of {readable} "
            f"or one head of a per-head activation, e.g. 'blocks.0.attn.hook_z[0]'"
        )
    return hook, head


def collect_activations(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    sites: Sequence[str],
    batch_size: int = 500,
) -> dict[str, np.ndarray]:
    """The model's activation at each site at the positions predicting c_0 … c_{n_c-1}, on the
    teacher-forced correct sequences of ``problems``: site → float32 array (N, n_c, d)."""
    config = model_config_of(model)
    pairs = analysis_pairs(config.layout, problems, 0, 0, minimum=1)
    parsed = {site: _parse_site(site, config.n_layers, config.n_heads) for site in sites}
    if not parsed:
        raise ValueError("no sites given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chunks: dict[str, list[np.ndarray]] = {site: [] for site in parsed}
    hooks = {hook for hook, _ in parsed.values()}
    for batch, _, cache in teacher_forced_passes(model, pairs, hooks, batch_size=batch_size):
        rows = torch.arange(len(batch.input_ids))[:, None]  # (B, 1)
        positions = batch.answer_positions  # (B, n_c)
        for site, (hook, head) in parsed.items():
            act = cache[hook].cpu()[rows, positions]  # (B, n_c, d) or (B, n_c, H, d) per head
            if head is not None:
                act = act[:, :, head]  # (B, n_c, d)
            chunks[site].append(act.float().numpy())
    return {site: np.concatenate(parts) for site, parts in chunks.items()}


@dataclass
class ProbeResult:
    """Held-out scores of one probe per (site, k), with what a scatter plot or a readout needs."""

    rows: list[dict]  # one per (site, k): site, k, mae, r2, exact, alpha, n_train, n_test, control
    y_test: np.ndarray  # (n_test, n_c) true ĉ_k of the held-out problems (shuffled for that control)
    predictions: dict[str, np.ndarray]  # site → (n_test, n_c) the probes' predictions on them
    test_index: np.ndarray  # (n_test,) which of the input problems were held out
    probes: dict[tuple[str, int], RidgeFit]  # (site, k) → the fitted standardisation + ridge

    def metric(self, site: str, name: str = "mae") -> np.ndarray:
        """``name`` ("mae", "r2", "exact" or "alpha") of ``site``'s probes for k = 0 … n_c-1: (n_c,)."""
        if site not in self.predictions:
            raise ValueError(f"site {site!r} was not probed; probed: {list(self.predictions)}")
        if name not in ("mae", "r2", "exact", "alpha"):
            raise ValueError(f"unknown metric {name!r}; choose 'mae', 'r2', 'exact' or 'alpha'")
        return np.array([row[name] for row in self.rows if row["site"] == site])


def fit_probes(
    features: Mapping[str, np.ndarray],
    targets: np.ndarray,
    test_fraction: float = 0.2,
    seed: int = 0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    control: str = "none",
) -> ProbeResult:
    """Fit a ridge probe per site and position on a random train split and score it on the rest.

    ``features``: site → (N, n_c, d) activations; ``targets``: (N, n_c) values to read out (ĉ_k).
    The split is a permutation drawn with ``seed``; ``control`` only labels the rows. Besides MAE and R²,
    each row has ``exact``: the share of held-out problems whose reading, rounded, is the target itself
    (for ĉ_k, then also its digit c_k = ĉ_k mod 10)."""
    return _fit_probe_sets(features, {control: targets}, test_fraction, seed, alphas)[control]


def _fit_probe_sets(
    features: Mapping[str, np.ndarray],
    targets_by_control: Mapping[str, np.ndarray],
    test_fraction: float,
    seed: int,
    alphas: Sequence[float],
) -> dict[str, ProbeResult]:
    """:func:`fit_probes` of the same features for several target sets (control → (N, n_c)) at once:
    each site and position's training features are decomposed once for all of them
    (:func:`longmul.analysis.ridge.fit_ridge_cv`)."""
    controls = list(targets_by_control)
    stacked = np.stack([np.asarray(targets_by_control[c], dtype=np.float64) for c in controls], axis=-1)
    if stacked.ndim != 3:
        raise ValueError(f"targets must be (N, n_c), got shape {stacked.shape[:-1]}")
    if not features:
        raise ValueError("no features given")
    N, n_c, _ = stacked.shape  # (N, n_c, controls)
    for site, x in features.items():
        if x.ndim != 3 or x.shape[:2] != (N, n_c):
            raise ValueError(f"features of {site!r} must be (N={N}, n_c={n_c}, d), got shape {x.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    n_test = round(N * test_fraction)
    if n_test < 2 or N - n_test < 2:
        raise ValueError(
            f"{N} problems are too few: train and test splits need at least 2 each (got {N - n_test} and {n_test})"
        )
    order = np.random.default_rng(seed).permutation(N)
    test, train = order[:n_test], order[n_test:]
    results = {c: ProbeResult([], stacked[test, :, i], {}, test, {}) for i, c in enumerate(controls)}
    for site, x in features.items():
        predicted = np.empty((n_test, n_c, len(controls)))  # (n_test, n_c, controls)
        fits = []
        for k in range(n_c):
            fit = fit_ridge_cv(x[train, k], stacked[train, k], alphas)  # every control's target at once
            predicted[:, k] = fit.predict(x[test, k])  # (n_test, controls)
            fits.append(fit)
        for i, control in enumerate(controls):
            result, truth = results[control], stacked[test, :, i]  # (n_test, n_c)
            for k, fit in enumerate(fits):
                reading = predicted[:, k, i]  # (n_test,)
                result.rows.append(
                    {
                        "site": site,
                        "k": k,
                        "mae": float(mean_absolute_error(truth[:, k], reading)),
                        "r2": float(r2_score(truth[:, k], reading)),
                        "exact": float((np.rint(reading) == truth[:, k]).mean()),
                        "alpha": float(fit.alpha[i]),
                        "n_train": len(train),
                        "n_test": n_test,
                        "control": control,
                    }
                )
                result.probes[(site, k)] = fit.target(i)
            result.predictions[site] = predicted[:, :, i]
    return results


def _shuffled(targets: np.ndarray, seed: int) -> np.ndarray:
    """The shuffled-target control: whole rows of ĉ permuted across problems."""
    return targets[np.random.default_rng([seed, 2]).permutation(len(targets))]


def _default_sites(model: GPT2LMHeadModel, sites: Sequence[str] | None) -> list[str]:
    return list(sites) if sites is not None else probe_sites(model_config_of(model).n_layers)


def _activations_and_targets(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem] | None,
    n_problems: int,
    sites: Sequence[str] | None,
    seed: int,
    batch_size: int,
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], np.ndarray]:
    """What the probes are fitted on: the problems as operand pairs (N, 2) (``problems``, or ``n_problems``
    random ones drawn with ``seed``), the sites (default :func:`probe_sites`), ``model``'s activations at
    them (site → (N, n_c, d), :func:`collect_activations`) and the targets ĉ (N, n_c)."""
    layout = model_config_of(model).layout
    pairs = analysis_pairs(layout, problems, n_problems, seed, minimum=MIN_PROBLEMS)  # (N, 2)
    sites = _default_sites(model, sites)
    features = collect_activations(model, pairs, sites, batch_size)
    targets = running_sums_batch(pairs, layout)  # (N, n_c)
    return pairs, sites, features, targets


def probe_running_sums(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem] | None = None,
    n_problems: int = DEFAULT_PROBLEMS,
    sites: Sequence[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    shuffle_targets: bool = False,
    batch_size: int = 500,
) -> ProbeResult:
    """Probe ``model``'s own activations for ĉ_k at every site (default :func:`probe_sites`) and k.

    ``problems`` defaults to ``n_problems`` uniform random problems drawn with ``seed``.
    ``shuffle_targets`` permutes ĉ across problems (the shuffled-target control)."""
    _, _, features, targets = _activations_and_targets(model, problems, n_problems, sites, seed, batch_size)
    if shuffle_targets:
        targets = _shuffled(targets, seed)
    return fit_probes(features, targets, test_fraction, seed, alphas, "shuffled" if shuffle_targets else "none")


def untrained_like(model: GPT2LMHeadModel, seed: int = 0) -> GPT2LMHeadModel:
    """A randomly initialised model of the same shape that reads and writes the same sequence format
    (chain-of-thought length and position skip), on the same device, in eval mode."""
    twin = build_model(model_config_of(model), seed)
    for name in ("longmul_position_skip", "longmul_cot_tokens"):
        if hasattr(model.config, name):
            setattr(twin.config, name, getattr(model.config, name))
    return twin.to(next(model.parameters()).device).eval()


def probe_with_controls(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem] | None = None,
    n_problems: int = DEFAULT_PROBLEMS,
    sites: Sequence[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    batch_size: int = 500,
) -> dict[str, ProbeResult]:
    """The probes and both controls on the same problems and split: ``{"none": …, "shuffled": …,
    "untrained": …}``; each row's ``control`` says which. The shuffled control reuses the model's
    activations; the untrained twin is :func:`untrained_like` with ``seed``."""
    pairs, sites, features, targets = _activations_and_targets(model, problems, n_problems, sites, seed, batch_size)
    shuffled = _shuffled(targets, seed)
    twin_features = collect_activations(untrained_like(model, seed), pairs, sites, batch_size)
    fitted = _fit_probe_sets(features, {"none": targets, "shuffled": shuffled}, test_fraction, seed, alphas)
    return fitted | {"untrained": fit_probes(twin_features, targets, test_fraction, seed, alphas, "untrained")}


def predict_running_sums(
    model: GPT2LMHeadModel,
    result: ProbeResult,
    problems: np.ndarray | Sequence[Problem],
    site: str = PAPER_SITE,
) -> np.ndarray:
    """Read ĉ_0 … ĉ_{n_c-1} of ``problems`` off ``model`` with ``result``'s probes at ``site``: (N, n_c).
    ``model`` must be the model the probes were fitted on (for the widget's per-problem readout)."""
    if site not in result.predictions:
        raise ValueError(f"site {site!r} was not probed; probed: {list(result.predictions)}")
    x = collect_activations(model, problems, [site])[site]  # (N, n_c, d)
    n_c = x.shape[1]
    return np.stack([result.probes[(site, k)].predict(x[:, k].astype(np.float64)) for k in range(n_c)], axis=1)
