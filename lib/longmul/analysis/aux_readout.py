"""Reading is not writing: an aux-loss model's own probe against the digits the model writes.

The auxiliary loss trains a bias-free linear probe jointly with the model (saved beside it as
``aux_probe.safetensors``): at the position that predicts ``c_k`` it reads ``ĉ_k / aux_scale`` from
one activation (``aux_site``, optionally some heads only). For each ``k`` this module measures, on
teacher-forced sequences:

- how close the probe's reading is to ``ĉ_k`` (mean absolute error, in units of ĉ);
- how often the reading, rounded, *is* ``ĉ_k``, and how often it gives the right digit
  (``round(reading) mod 10 = c_k``): what a readout of the linear value alone would write;
- how often the model itself writes ``c_k`` there (argmax over the vocabulary; a non-digit is wrong).

A probe that reads ``ĉ_k`` to within a unit while the model's ``c_k`` stays at chance says the running
sum is in the residual stream, linearly, but the layers after the site have not (yet) turned it into
the digit: ``c_k = ĉ_k mod 10`` of a value up to 313 is a sharply periodic function of it.

:func:`aux_readout_by_size` makes the same comparison for one digit, split by the size of ĉ_k: a
model can read and write ĉ_k where it is common and still fail on its rare large values, and the
split says whether the probe's reading or the writing fails there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..model import model_config_of
from ..saved import LoadedModel
from ..sequences import DIGIT_ID0
from ..task import Problem
from ..train import aux_features, running_sums_batch
from .attribution import analysis_pairs
from .passes import teacher_forced_passes

PROBE_FILE = "aux_probe.safetensors"
DEFAULT_PROBLEMS = 2_000


@dataclass(frozen=True)
class SavedAuxProbe:
    """The jointly trained probe of an aux-loss model as saved beside it (the weights of
    :class:`longmul.train.AuxProbe`), and where it reads."""

    weight: torch.Tensor  # (n_c, d_in): one readout per output digit
    site: str
    heads: tuple[int, ...]
    scale: float


def load_aux_probe(loaded: LoadedModel) -> SavedAuxProbe:
    """The probe saved with an aux-loss model; ``ValueError`` if the model has none."""
    config = loaded.training.get("config", {})
    path = Path(loaded.path) / PROBE_FILE
    if loaded.training.get("recipe") != "aux" or not path.is_file():
        raise ValueError(f"{loaded.path} is not an aux-loss model with a saved probe ({PROBE_FILE})")
    weight = load_file(str(path))["weight"]
    return SavedAuxProbe(weight, config["aux_site"], tuple(config.get("aux_heads") or ()), float(config["aux_scale"]))


def _read_and_write(
    loaded: LoadedModel, probe: SavedAuxProbe, pairs: np.ndarray, batch_size: int
) -> tuple[np.ndarray, ...]:
    """Teacher-forced on ``pairs`` (N, 2): the probe's readings of ĉ_k, the digits the model writes (argmax;
    a non-digit is a value outside 0…9) and the true ĉ_k, each (N, n_c)."""
    model = loaded.model
    readings, written = [], []
    with torch.no_grad():
        for batch, logits, cache in teacher_forced_passes(model, pairs, [probe.site], batch_size=batch_size):
            positions = batch.answer_positions.to(logits.device)  # (b, n_c)
            features = aux_features(cache[probe.site], positions, probe.heads)  # (b, n_c, d_in)
            readings.append(((features * probe.weight.to(features.device)).sum(-1) * probe.scale).cpu().numpy())
            rows = torch.arange(len(positions), device=logits.device)[:, None]  # (b, 1)
            written.append((logits[rows, positions].argmax(-1) - DIGIT_ID0).cpu().numpy())  # (b, n_c)
    truth = running_sums_batch(pairs, model_config_of(model).layout)  # (N, n_c)
    return np.concatenate(readings), np.concatenate(written), truth


def aux_readout(
    loaded: LoadedModel,
    problems: np.ndarray | Sequence[Problem] | None = None,
    n_problems: int = DEFAULT_PROBLEMS,
    seed: int = 0,
    batch_size: int = 500,
) -> list[dict]:
    """Per output digit ``k``: the probe's reading of ``ĉ_k`` against the digit the model writes.

    Rows: ``k``, ``digit`` ("c0"…), ``mae`` (|reading − ĉ_k|, mean), ``probe_exact`` (share of
    problems whose rounded reading equals ĉ_k), ``probe_digit`` (share whose rounded reading mod 10
    is c_k), ``model_digit`` (share where the model's argmax is c_k), ``n`` (problems). ``problems``
    defaults to ``n_problems`` uniform random ones drawn with ``seed``."""
    probe = load_aux_probe(loaded)
    layout = model_config_of(loaded.model).layout
    pairs = analysis_pairs(layout, problems, n_problems, seed, minimum=1)  # (N, 2)
    reading, model_digit, truth = _read_and_write(loaded, probe, pairs, batch_size)
    rounded = np.rint(reading).astype(np.int64)
    return [
        {
            "k": k,
            "digit": f"c{k}",
            "mae": float(np.abs(reading[:, k] - truth[:, k]).mean()),
            "probe_exact": float((rounded[:, k] == truth[:, k]).mean()),
            "probe_digit": float((rounded[:, k] % 10 == truth[:, k] % 10).mean()),
            "model_digit": float((model_digit[:, k] == truth[:, k] % 10).mean()),
            "n": len(truth),
        }
        for k in range(truth.shape[1])
    ]


SIZE_POOL = 100_000  # random problems drawn to find enough with a large ĉ_k (about 1% have ĉ_3 ≥ 200)


def aux_readout_by_size(
    loaded: LoadedModel,
    k: int,
    width: int = 50,
    per_bin: int = 300,
    pool: int = SIZE_POOL,
    seed: int = 0,
    batch_size: int = 500,
) -> list[dict]:
    """:func:`aux_readout` for one digit ``c_k``, split by the size of ĉ_k into bins ``[low, low + width)``.

    Large running sums are rare, so each bin holds up to ``per_bin`` problems drawn at random from ``pool``
    uniform random problems (``seed``) whose ĉ_k falls in it; the shares are per bin, not over random
    problems. Rows: ``low``, ``high`` (inclusive), ``bin`` ("200–249"), ``n`` (problems read), ``in_pool``
    (problems of the pool in the bin), ``mae``, ``probe_exact``, ``model_digit`` as in :func:`aux_readout`.
    """
    probe = load_aux_probe(loaded)
    layout = model_config_of(loaded.model).layout
    if not 0 <= k < layout.n_c:
        raise ValueError(f"k is an output digit, 0…{layout.n_c - 1}, got {k}")
    if width < 1 or per_bin < 1:
        raise ValueError(f"width and per_bin must be at least 1, got {width} and {per_bin}")
    rng = np.random.default_rng([seed, 1])  # a stream apart from the one that draws the pool
    candidates = analysis_pairs(layout, None, pool, seed, minimum=1)  # (pool, 2)
    bins = running_sums_batch(candidates, layout)[:, k] // width  # (pool,)
    chosen = {b: rng.permutation(np.flatnonzero(bins == b))[:per_bin] for b in np.unique(bins)}
    picked = np.concatenate(list(chosen.values()))
    reading, model_digit, truth = _read_and_write(loaded, probe, candidates[picked], batch_size)
    picked_bins = bins[picked]
    rows = []
    for b in sorted(chosen):
        here = picked_bins == b
        low = int(b * width)
        rows.append(
            {
                "low": low,
                "high": low + width - 1,
                "bin": f"{low}–{low + width - 1}",
                "n": int(here.sum()),
                "in_pool": int((bins == b).sum()),
                "mae": float(np.abs(reading[here, k] - truth[here, k]).mean()),
                "probe_exact": float((np.rint(reading[here, k]).astype(np.int64) == truth[here, k]).mean()),
                "model_digit": float((model_digit[here, k] == truth[here, k] % 10).mean()),
            }
        )
    return rows
