"""What a training step costs, counted from the model's config: parameters, FLOPs and memory.

The model is GPT-2 as Hugging Face builds it (:mod:`longmul.model`): token and position embeddings,
``n_layers`` blocks (layer norm, attention with a fused q/k/v projection and an output projection,
layer norm, a 4×-wide MLP), a final layer norm, and an LM head tied to the token embedding.

* :func:`parameter_count` is exact.
* :func:`training_flops` counts the matrix multiplications of a forward and backward pass, the count
  ``torch.utils.flop_counter.FlopCounterMode`` makes (tests/test_cost.py checks both against a model):
  each weight a token meets costs 2 FLOPs forward and 4 backward (the gradients of its input and of the
  weight), so ``6 · weights · tokens``; attention adds ``12 · n_layers · seq_len · d_model`` per token
  (scores against every key, the weighted sum of the values; eager attention computes the full square
  and masks it). Layer norms, GELU, softmax and the optimizer are elementwise and left out, as in the
  usual model-FLOPs utilisation (MFU).
* :func:`training_memory` estimates a training step's memory: weights, gradients and AdamW's two
  moments (16 bytes a parameter, 20 with a moving average), and the activations kept for the backward
  pass, ``34 · d_model + 5 · n_heads · seq_len`` float32 values per token and layer (Korthikanti et al.,
  2022, count that many *bytes* in 16-bit training; eager float32 attention keeps more copies). On the
  CPU it came out 1.1-1.6× the measured peak of a step (widths 128-768, 2-6 layers, 4×4 and 8×8).
* :func:`matmul_flops_per_second` measures the machine's limit for MFU: a large float32 matmul.
* :func:`available_memory` is what the device has free now (the kernel's ``MemAvailable`` on the CPU),
  which ``longmul train`` compares with :func:`training_memory` before it builds the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .model import ModelConfig

MEMINFO = Path("/proc/meminfo")

FLOAT_BYTES = 4  # float32: weights, gradients, optimizer state and activations


def _vocab_size() -> int:
    from .sequences import VOCAB

    return len(VOCAB)


def parameter_count(config: ModelConfig) -> int:
    """The model's parameters (what ``longmul.model.count_parameters`` finds in the built model)."""
    d, vocab, positions = config.d_model, _vocab_size(), config.layout.max_len
    # q/k/v and output projections 4d² + 4d; MLP up and down 8d² + 5d; two layer norms 4d
    block = 12 * d * d + 13 * d
    head = 0 if config.tie_embeddings else vocab * d  # the LM head has no bias
    return (vocab + positions) * d + config.n_layers * block + 2 * d + head


def matmul_weights(config: ModelConfig) -> int:
    """Weights every token is multiplied by: the blocks' projections and the LM head (the tied embedding
    counts here; the position embedding, biases and layer norms are not multiplied)."""
    return 12 * config.n_layers * config.d_model**2 + _vocab_size() * config.d_model


def training_flops(config: ModelConfig, batch_size: int, seq_len: int) -> int:
    """Matmul FLOPs of one training step, forward and backward, on ``batch_size`` sequences of
    ``seq_len`` tokens (padding included: it is computed)."""
    tokens = batch_size * seq_len
    attention = 12 * config.n_layers * seq_len * config.d_model  # per token: q·kᵀ and the sum of values, ×3
    return 6 * matmul_weights(config) * tokens + attention * tokens


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of a training step: ``state`` (weights, gradients, AdamW moments, the moving average) and
    ``activations`` (kept for the backward pass)."""

    state: int
    activations: int

    @property
    def total(self) -> int:
        return self.state + self.activations


def training_memory(config: ModelConfig, batch_size: int, seq_len: int, ema: bool = False) -> MemoryEstimate:
    """An estimate of a training step's memory (see the module docstring for how good it is)."""
    copies = 4 + ema  # weights, gradients, AdamW's two moments, and the moving average if there is one
    state = FLOAT_BYTES * copies * parameter_count(config)
    per_token_layer = 34 * config.d_model + 5 * config.n_heads * seq_len
    activations = FLOAT_BYTES * batch_size * seq_len * config.n_layers * per_token_layer
    return MemoryEstimate(state, activations)


def matmul_flops_per_second(size: int = 2048, seconds: float = 1.0) -> float:
    """FLOPs per second of a ``size``-square float32 matmul on the CPU, with torch's threads as they are
    set now: the best of timings repeated for about ``seconds`` (at least one, after a warm-up), so that
    a busy machine's pauses count less."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: threads started, pages touched
    best, spent = float("inf"), 0.0
    while spent == 0.0 or spent < seconds:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * size**3 / best


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a training step on ``device`` now: on a CUDA device what the driver reports free,
    on the CPU the kernel's estimate of memory available without swapping (``MemAvailable``); None where
    it cannot be told (another OS, another accelerator)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu" or not MEMINFO.is_file():
        return None
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the file counts kB
    return None
