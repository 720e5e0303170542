"""Teacher-forced forward passes over many problems: the loop every analysis runs.

Each chunk of problems is turned into the correct full sequences in the model's own format
(:func:`longmul.evaluate.teacher_forced_batch`) and run once with the requested activations cached and
any attention knockouts applied, in eval mode (no dropout), on the model's device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from .. import pass_cache
from ..evaluate import teacher_forced_batch
from ..hooks import ActivationCache, Knockout, run_with_cache
from ..model import model_config_of
from ..pass_cache import PassChunk, pass_key
from ..sequences import Batch, pairs_for_layout
from ..task import Problem

DEFAULT_BATCH_SIZE = 1000


def as_pairs(model: GPT2LMHeadModel, problems: np.ndarray | Sequence[Problem]) -> np.ndarray:
    """Operand pairs (B, 2) int64 from an array or a list of :class:`~longmul.task.Problem`, checked
    against the operand sizes the model was trained on (``ValueError`` otherwise)."""
    return pairs_for_layout(problems, model_config_of(model).layout)


def teacher_forced_passes(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    names: Iterable[str],
    knockouts: Iterable[Knockout] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[Batch, torch.Tensor, ActivationCache]]:
    """Teacher-forced forward passes (in eval mode) over ``problems`` in chunks of ``batch_size``, with
    ``knockouts`` applied: ``(batch, logits (b, T, V), cache of the named activations)`` per chunk.

    A clean pass (no knockouts) is shared through :data:`longmul.pass_cache.PASS_CACHE`: the same model
    (by the sha256 of its weights) on the same problems is run once, and later calls get the same
    tensors back; they must not change them in place."""
    pairs = as_pairs(model, problems)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    names, knockouts = list(names), list(knockouts)
    store = pass_cache.PASS_CACHE  # looked up at each call: tests swap it
    if knockouts or not store.enabled:
        yield from _run_passes(model, pairs, names, knockouts, batch_size)
        return
    key = pass_key(model, pairs, batch_size)
    cached = store.get(key, names)
    if cached is not None:
        for chunk in cached:
            yield chunk.batch, chunk.logits, ActivationCache({n: chunk.store[n] for n in names})
        return
    kept: list[PassChunk] | None = []
    size = 0
    for batch, logits, cache in _run_passes(model, pairs, names, knockouts, batch_size):
        if kept is not None:
            kept.append(PassChunk(batch, logits, dict(cache.store)))
            size += kept[-1].nbytes()
            if size > store.limit_bytes:
                kept = None  # larger than the whole cache: stream it without keeping it
        yield batch, logits, cache
    if kept is not None:  # only a pass run to the end is stored
        store.put(key, kept)


def share_passes(
    model: GPT2LMHeadModel,
    problems: np.ndarray | Sequence[Problem],
    names: Iterable[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> None:
    """Run ``model``'s clean pass over ``problems`` once now, keeping every one of ``names`` in the pass
    cache, so that analyses of the same problems (at the same ``batch_size``) that read different subsets
    of them all get them from there: one forward pass instead of one per subset. Does nothing while the
    cache is off."""
    if pass_cache.PASS_CACHE.enabled:
        for _ in teacher_forced_passes(model, problems, names, batch_size=batch_size):
            pass


def _run_passes(
    model: GPT2LMHeadModel, pairs: np.ndarray, names: list[str], knockouts: list[Knockout], batch_size: int
) -> Iterator[tuple[Batch, torch.Tensor, ActivationCache]]:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout in an analysis
    try:
        for start in range(0, len(pairs), batch_size):
            batch = teacher_forced_batch(model, pairs[start : start + batch_size])
            logits, cache = run_with_cache(
                model,
                batch.input_ids.to(device),
                batch.position_ids.to(device),
                batch.attention_mask.to(device),
                names=names,
                knockouts=knockouts,
            )
            yield batch, logits, cache
    finally:
        model.train(was_training)
