"""Rebuild a saved model from its ``config.json`` and ``model.safetensors``, refusing any mismatch.

The architecture is read from a few entries of ``config.json`` (width, layers, heads, dropout, tied
embeddings, operand sizes) into a :class:`~longmul.model.ModelConfig`; every other entry that
:func:`longmul.model.gpt2_config` sets must then hold the value it writes, so an edited config is an
error rather than a different model. The tensors in ``model.safetensors`` must be exactly those of that
model, with the same shapes (checked from the file's header, before anything is allocated): no weight
is left at its random initialisation. Errors are ``ValueError`` naming the file at fault.
"""

from __future__ import annotations

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from .config import RECIPES
from .files import read_json_object
from .model import ModelConfig, gpt2_config
from .task import MAX_DIGITS

# Entries of config.json that decide what the model computes; each must match what gpt2_config writes.
CHECKED_KEYS = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "tie_word_embeddings",
    "activation_function",
    "layer_norm_epsilon",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "add_cross_attention",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "longmul_n_a",
    "longmul_n_b",
)
TIED = "lm_head.weight"  # absent from the file when the embeddings are tied


def _entry(config: dict, key: str, kind: type, path, default=None):
    value = config.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{path}: {key} must be {kind.__name__}, got {value!r}")
    return value


def read_model_config(path) -> tuple[ModelConfig, dict]:
    """The :class:`ModelConfig` a ``config.json`` describes and its longmul decoding entries
    (``longmul_position_skip``, ``longmul_cot_tokens``, ``longmul_recipe``)."""
    config = read_json_object(path)
    n_a = _entry(config, "longmul_n_a", int, path, 4)  # models saved before operand sizes were recorded: 4x4
    n_b = _entry(config, "longmul_n_b", int, path, 4)
    for key, value in (("longmul_n_a", n_a), ("longmul_n_b", n_b)):
        if not 1 <= value <= MAX_DIGITS:
            raise ValueError(f"{path}: {key} must be from 1 to {MAX_DIGITS}, got {value}")
    dropout = config.get("resid_pdrop")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float):
        raise ValueError(f"{path}: resid_pdrop must be a number, got {dropout!r}")  # noqa: TRY004 (one error type for bad input)
    model_config = ModelConfig(
        d_model=_entry(config, "n_embd", int, path),
        n_layers=_entry(config, "n_layer", int, path),
        n_heads=_entry(config, "n_head", int, path),
        dropout=float(dropout),
        tie_embeddings=_entry(config, "tie_word_embeddings", bool, path),
        n_a=n_a,
        n_b=n_b,
    )
    try:
        model_config.validate()
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    expected = gpt2_config(model_config).to_dict()
    for key in CHECKED_KEYS:
        if config.get(key) != expected.get(key):
            raise ValueError(
                f"{path}: {key} is {config.get(key)!r}, but a longmul model of this shape has {expected.get(key)!r}"
            )
    layout = model_config.layout
    decoding = {
        "longmul_position_skip": _entry(config, "longmul_position_skip", int, path, 0),
        "longmul_cot_tokens": _entry(config, "longmul_cot_tokens", int, path, 0),
    }
    if min(decoding.values()) < 0 or sum(decoding.values()) > layout.cot_len:
        raise ValueError(
            f"{path}: longmul_position_skip and longmul_cot_tokens must be non-negative and add up to at most "
            f"the chain of thought's {layout.cot_len} tokens, got {decoding}"
        )
    if "longmul_recipe" in config:
        decoding["longmul_recipe"] = config["longmul_recipe"]
        if decoding["longmul_recipe"] not in RECIPES:
            raise ValueError(f"{path}: longmul_recipe must be one of {list(RECIPES)}, got {config['longmul_recipe']!r}")
    return model_config, decoding


def weight_shapes(path) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor in a safetensors file, from its header."""
    try:
        with safe_open(path, "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (a safe_open is not iterable)
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is unreadable: {err}") from None


def check_weights(path, config: GPT2Config) -> None:
    """``ValueError`` unless the safetensors file at ``path`` holds exactly the tensors of the model
    ``config`` describes, shaped alike."""
    shapes = weight_shapes(path)
    if config.tie_word_embeddings:
        shapes.pop(TIED, None)  # plain transformers may save the tied copy too
    # Cheap bounds first, so that an edited width or depth cannot make even the shapes costly to build.
    embedding = shapes.get("transformer.wte.weight")
    if embedding != (config.vocab_size, config.n_embd) or config.n_layer > len(shapes):
        raise ValueError(
            f"{path} does not fit its config.json: the embedding is {embedding} (config: {config.vocab_size} x "
            f"{config.n_embd}) and the file holds {len(shapes)} tensors for {config.n_layer} layers"
        )
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = GPT2LMHeadModel(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop(TIED)
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit its config.json: missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise ValueError(f"{path} does not fit its config.json: {name} has shape {shapes[name]}, expected {shape}")


def load_gpt2(directory) -> GPT2LMHeadModel:
    """The model saved in ``directory`` (``config.json`` and ``model.safetensors``), in eval mode."""
    model_config, decoding = read_model_config(directory / "config.json")
    config = gpt2_config(model_config)
    for key, value in decoding.items():
        setattr(config, key, value)
    weights = directory / "model.safetensors"
    check_weights(weights, config)
    try:
        tensors = load_file(weights)
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{weights} is unreadable: {err}") from None
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; leave the caller's RNG alone
        model = GPT2LMHeadModel(config)
    if config.tie_word_embeddings:
        tensors[TIED] = tensors["transformer.wte.weight"]
    model.load_state_dict(tensors)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()
