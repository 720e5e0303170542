"""Shared teacher-forced passes: the analyses of one model on one problem set run its forward pass once.

A chapter asks for the same model's activations on the same problems several times (clean scores,
attention patterns, the clean pass behind every knockout sweep). :func:`longmul.analysis.passes.
teacher_forced_passes` keeps what a clean pass (no knockout) computed here and hands it out again.

An entry is keyed by

- the sha256 of the model's weights and config as they are in memory, computed at every look-up
  (:func:`weights_digest`), so a model changed in any way (in place, reloaded, retrained) never gets
  another model's numbers;
- the sha256 of the operand pairs (:func:`pairs_digest`);
- the chunk size, the device and torch's thread count: a matrix product may round differently on another
  number of threads, and the cache must return exactly what the pass would compute now.

It holds the logits and the activations that were asked for; a request for names an entry lacks runs the
pass again for those names and adds them. The cache is bounded: least recently used entries go first
once it holds more than ``LONGMUL_PASS_CACHE_MB`` (default 1536) MiB of tensors; 0 turns it off (chapter 4
keeps three models' passes over 5,000 problems with every head's output: about 1,160 MiB). The
tensors handed out are the cached ones: callers read them and must not change them in place.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_LIMIT_MB = 1536
ENV_LIMIT = "LONGMUL_PASS_CACHE_MB"


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the model's config and of every tensor of its state dict (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
        digest.update(str(getattr(config, "_attn_implementation", "")).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def pairs_digest(pairs: np.ndarray) -> str:
    """sha256 of an operand array's shape, dtype and values."""
    array = np.ascontiguousarray(pairs)
    return hashlib.sha256(f"{array.shape}|{array.dtype}|".encode() + array.tobytes()).hexdigest()


def pass_key(model: torch.nn.Module, pairs: np.ndarray, batch_size: int) -> tuple:
    """What a cached pass depends on: weights, problems, chunking, device, threads."""
    device = next(model.parameters()).device
    return (weights_digest(model), pairs_digest(pairs), int(batch_size), str(device), torch.get_num_threads())


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


@dataclass
class PassChunk:
    batch: object  # longmul.sequences.Batch
    logits: torch.Tensor  # (b, T, V)
    store: dict[str, torch.Tensor] = field(default_factory=dict)

    def nbytes(self) -> int:
        batch = self.batch
        inputs = sum(_nbytes(t) for t in (batch.input_ids, batch.position_ids, batch.attention_mask, batch.labels))
        return inputs + _nbytes(self.logits) + sum(_nbytes(t) for t in self.store.values())


class PassCache:
    """Least-recently-used store of clean teacher-forced passes, bounded in bytes."""

    def __init__(self, limit_bytes: int):
        if limit_bytes < 0:
            raise ValueError(f"the pass cache limit must be at least 0 bytes, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[tuple, list[PassChunk]] = OrderedDict()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes() for chunks in self._entries.values() for c in chunks)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0

    def get(self, key: tuple, names: Iterable[str]) -> list[PassChunk] | None:
        """The entry's chunks if it holds every one of ``names``, else ``None`` (a miss)."""
        chunks = self._entries.get(key)
        if chunks is None or not all(n in chunks[0].store for n in names):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return chunks

    def put(self, key: tuple, chunks: list[PassChunk]) -> None:
        """Store a pass, or add its activations to the entry of the same pass (same chunks), then drop
        the least recently used entries until the cache fits its limit."""
        old = self._entries.get(key)
        if old is not None and len(old) == len(chunks):
            for kept, new in zip(old, chunks):
                for name, tensor in new.store.items():
                    kept.store.setdefault(name, tensor)
            chunks = old
        self._entries[key] = chunks
        self._entries.move_to_end(key)
        while self._entries and self.nbytes > self.limit_bytes:
            self._entries.popitem(last=False)


def _limit_from_env() -> int:
    text = os.environ.get(ENV_LIMIT, str(DEFAULT_LIMIT_MB))
    try:
        mb = float(text)
    except ValueError:
        raise ValueError(f"{ENV_LIMIT} must be a number of MiB, got {text!r}") from None
    if not np.isfinite(mb) or mb < 0:
        raise ValueError(f"{ENV_LIMIT} must be a number of MiB at least 0, got {text!r}")
    return int(mb * 2**20)


PASS_CACHE = PassCache(_limit_from_env())


def clear_pass_cache() -> None:
    """Forget every cached pass (the memory is freed once no caller holds its tensors)."""
    PASS_CACHE.clear()
