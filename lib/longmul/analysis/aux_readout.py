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
    model = loaded.model
    layout = model_config_of(model).layout
    pairs = analysis_pairs(layout, problems, n_problems, seed, minimum=1)  # (N, 2)
    readings, written = [], []
    with torch.no_grad():
        for batch, logits, cache in teacher_forced_passes(model, pairs, [probe.site], batch_size=batch_size):
            positions = batch.answer_positions.to(logits.device)  # (b, n_c)
            features = aux_features(cache[probe.site], positions, probe.heads)  # (b, n_c, d_in)
            readings.append(((features * probe.weight.to(features.device)).sum(-1) * probe.scale).cpu().numpy())
            rows = torch.arange(len(positions), device=logits.device)[:, None]  # (b, 1)
            written.append((logits[rows, positions].argmax(-1) - DIGIT_ID0).cpu().numpy())  # (b, n_c)
    reading = np.concatenate(readings)  # (N, n_c)
    model_digit = np.concatenate(written)  # (N, n_c): -DIGIT_ID0… for non-digits, never in 0…9 then
    truth = running_sums_batch(pairs, layout)  # (N, n_c)
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
