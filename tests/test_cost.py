"""longmul.cost: parameters and training FLOPs counted from a model's config, against a hand count and
against the built model (its parameters, and torch's FLOP counter on a forward and backward pass)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from longmul.cost import (
    MemoryEstimate,
    matmul_flops_per_second,
    matmul_weights,
    parameter_count,
    training_flops,
    training_memory,
)
from longmul.model import ModelConfig, build_model, count_parameters
from longmul.sequences import VOCAB


def test_a_tiny_model_by_hand():
    """Width 4, one layer, two heads, 1×1-digit problems: 10 positions (a * b ||, two CoT tokens, ####,
    two answer digits, <eos>)."""
    config = ModelConfig(d_model=4, n_layers=1, n_heads=2, n_a=1, n_b=1)
    vocab, positions = len(VOCAB), config.layout.max_len
    assert (vocab, positions) == (18, 10)
    # embeddings (18 + 10) · 4 = 112; block: q/k/v 4·12 + 12, out 4·4 + 4, MLP 4·16 + 16 and 16·4 + 4,
    # two layer norms 2 · 8  → 60 + 20 + 80 + 68 + 16 = 244; final layer norm 8; tied head 0
    assert parameter_count(config) == 112 + 244 + 8 == 364
    # multiplied weights: 12 · 4² = 192 in the block, 18 · 4 = 72 in the head
    assert matmul_weights(config) == 264
    # 2 sequences of 3 tokens: 6 · 264 · 6 = 9,504; attention 12 · 1 layer · 3 keys · 4 wide · 6 tokens = 864
    assert training_flops(config, batch_size=2, seq_len=3) == 9_504 + 864
    # state: 4 copies · 4 bytes · 364; activations 4 bytes · 6 tokens · 1 layer · (34·4 + 5·2·3) = 3,984
    assert training_memory(config, 2, 3) == MemoryEstimate(state=5_824, activations=3_984)
    assert training_memory(config, 2, 3, ema=True).state == 5 * 4 * 364


CONFIGS = st.builds(
    ModelConfig,
    d_model=st.sampled_from([8, 12, 16, 24]),
    n_layers=st.integers(1, 3),
    n_heads=st.sampled_from([1, 2, 4]),
    n_a=st.integers(1, 3),
    n_b=st.integers(1, 3),
    tie_embeddings=st.booleans(),
)


@settings(max_examples=15)
@given(config=CONFIGS, batch_size=st.integers(1, 3), seq_len=st.integers(1, 9))
def test_counts_match_the_built_model_and_torchs_flop_counter(config, batch_size, seq_len):
    seq_len = min(seq_len, config.layout.max_len)
    model = build_model(config)
    assert count_parameters(model) == parameter_count(config)
    ids = torch.randint(0, len(VOCAB), (batch_size, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    assert counter.get_total_flops() == training_flops(config, batch_size, seq_len)


def test_memory_grows_with_the_batch_and_the_model():
    small, wide = ModelConfig(d_model=128), ModelConfig(d_model=768)
    assert training_memory(small, 512, 66).activations == 2 * training_memory(small, 256, 66).activations
    assert training_memory(small, 256, 66).state == training_memory(small, 512, 66).state
    assert training_memory(wide, 256, 66).total > training_memory(small, 256, 66).total


def test_the_matmul_rate_is_a_finite_rate():
    rate = matmul_flops_per_second(size=64, seconds=0.01)
    assert 0 < rate < float("inf")
