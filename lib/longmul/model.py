"""The model: a Hugging Face ``GPT2LMHeadModel`` built from a small config, with named presets.

The paper's ICoT model is GPT-2 with 2 layers, 4 heads and width 768 (FACTS §2). On two CPU cores the
same architecture at width 128 trains ~20× faster per step; it is the ``cpu`` preset. Everything
downstream (training, hooks, analyses) works for any preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from .sequences import EOS_ID, PAD_ID, VOCAB, Layout


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyperparameters, in TransformerLens vocabulary."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0
    tie_embeddings: bool = True
    n_a: int = 4  # operand sizes fix the sequence length, hence the position table
    n_b: int = 4

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def layout(self) -> Layout:
        return Layout(self.n_a, self.n_b)

    def validate(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "n_a", "n_b"):
            if getattr(self, name) < 1:
                raise ValueError(f"model config: {name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"model config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # Width 128: the speed/capacity point measured on 2 CPU cores (see benchmarks/throughput.py).
    "cpu": ModelConfig(d_model=128),
    # The paper's ICoT architecture: GPT-2, 2 layers, 4 heads, width 768, dropout 0.1, tied embeddings.
    "paper": ModelConfig(d_model=768, dropout=0.1),
    # A tiny model for tests and smoke runs.
    "tiny": ModelConfig(d_model=32, n_layers=2, n_heads=4),
}


def model_config_from_preset(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    config.validate()
    return config


def gpt2_config(config: ModelConfig) -> GPT2Config:
    config.validate()
    return GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=config.layout.max_len,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        # eager attention is the implementation that returns attention weights (sdpa returns none).
        attn_implementation="eager",
        # The fused tanh-GELU kernel: the same function as GPT-2's "gelu_new", ~45% of CPU step time saved.
        activation_function="gelu_pytorch_tanh",
        longmul_n_a=config.n_a,
        longmul_n_b=config.n_b,
    )


def pick_device(name: str) -> torch.device:
    """The device ``name`` means: ``auto`` (CUDA if this machine has it, else the CPU), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``; ``ValueError`` if it is not a device or this machine lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this machine has no CUDA GPU (use auto or cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "cuda" or (device.type == "mps" and torch.backends.mps.is_available()):
        return device
    raise ValueError(f"device {name!r} is not available on this machine; use auto, cpu, cuda, cuda:N or mps")


def build_model(config: ModelConfig, seed: int = 0) -> GPT2LMHeadModel:
    """A randomly initialised model (deterministic in ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gpt2_config(config))
    return model


def model_config_of(model: GPT2LMHeadModel) -> ModelConfig:
    """Recover the :class:`ModelConfig` of a built or loaded model."""
    c = model.config
    return ModelConfig(
        d_model=c.n_embd,
        n_layers=c.n_layer,
        n_heads=c.n_head,
        dropout=c.resid_pdrop,
        tie_embeddings=bool(c.tie_word_embeddings),
        n_a=int(getattr(c, "longmul_n_a", 4)),
        n_b=int(getattr(c, "longmul_n_b", 4)),
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
