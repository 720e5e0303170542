"""Cached knockouts (longmul.analysis.knockouts) against whole hooked forward passes with the knockout.

The cached path recomputes only the rows a knockout can change, from the clean residual streams; the
reference is :func:`longmul.hooks.run_with_cache` with the same :class:`~longmul.hooks.Knockout`. They must
agree within 1e-5 on the logits, for every shipped model and for random tiny models (hypothesis).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.analysis.attention import answer_positions, knockout_sweep
from longmul.analysis.knockouts import knocked_logits, resid_pre_names
from longmul.analysis.passes import as_pairs
from longmul.datasets import icot_problems
from longmul.evaluate import teacher_forced_batch
from longmul.hooks import Knockout, run_with_cache
from longmul.model import ModelConfig, build_model
from longmul.saved import load_model
from longmul.shipped import MODEL_LABELS, shipped_dir

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
ATOL = 1e-5
N_PROBLEMS = 40
N_RANDOM_KNOCKOUTS = 16


def reference_logits(model, input_ids, position_ids, attention_mask, knockout, positions) -> torch.Tensor:
    """(B, P, V): the whole hooked forward pass with ``knockout``, at ``positions``."""
    logits, _ = run_with_cache(model, input_ids, position_ids, attention_mask, names=[], knockouts=[knockout])
    return logits[:, positions]


def cached_logits(model, input_ids, position_ids, attention_mask, knockouts, positions) -> torch.Tensor:
    """(E, B, P, V): the cached path from one clean pass."""
    names = resid_pre_names(model)
    logits, cache = run_with_cache(model, input_ids, position_ids, attention_mask, names=names)
    return knocked_logits(model, [cache[n] for n in names], knockouts, positions, logits[:, positions])


def random_knockouts(rng: np.random.Generator, n_layers: int, n_heads: int, T: int, n: int) -> list[Knockout]:
    """Single edges and key groups at random layers, heads and queries (query >= 1: position 0 has one
    key, which a knockout may not remove)."""
    knockouts = []
    for _ in range(n):
        query = int(rng.integers(1, T))
        n_keys = int(rng.integers(1, query + 1))  # at most `query` of the query + 1 keys: one is left
        keys = sorted(int(k) for k in rng.choice(query + 1, size=n_keys, replace=False))
        key = keys[0] if n_keys == 1 and rng.random() < 0.5 else keys
        knockouts.append(Knockout(int(rng.integers(n_layers)), int(rng.integers(n_heads)), query, key))
    return knockouts


@pytest.fixture(params=sorted(MODEL_LABELS), scope="module")
def shipped_model(request):
    directory = shipped_dir(MODELS_DIR, request.param)
    if directory is None:
        pytest.skip(f"models/{request.param} is not shipped yet")
    return load_model(directory).model.eval()


def test_cached_knockouts_equal_full_passes_on_shipped_models(shipped_model, one_thread):
    model = shipped_model
    batch = teacher_forced_batch(model, as_pairs(model, icot_problems("test")[:N_PROBLEMS]))
    T = batch.input_ids.shape[1]
    positions = answer_positions(model)
    rng = np.random.default_rng(30)
    knockouts = random_knockouts(rng, model.config.n_layer, model.config.n_head, T, N_RANDOM_KNOCKOUTS)
    # and the edges that matter most in the chapter: every head's knockout of '####' and of the first key
    knockouts += [
        Knockout(layer, head, positions[0], 0)
        for layer in range(model.config.n_layer)
        for head in range(model.config.n_head)
    ]
    inputs = (batch.input_ids, batch.position_ids, batch.attention_mask)
    cached = cached_logits(model, *inputs, knockouts, positions)
    clean = run_with_cache(model, *inputs, names=[])[0][:, positions]
    assert cached.shape == (len(knockouts), N_PROBLEMS, len(positions), model.config.vocab_size)
    changed = 0
    for knockout, got in zip(knockouts, cached):
        want = reference_logits(model, *inputs, knockout, positions)
        torch.testing.assert_close(got, want, rtol=0, atol=ATOL, msg=lambda m, k=knockout: f"{k}: {m}")
        changed += not torch.equal(want, clean)
    assert changed > len(knockouts) // 2  # the knockouts do change the logits: the comparison has teeth


def test_the_cached_sweep_gives_the_full_sweeps_numbers(shipped_model, one_thread):
    model = shipped_model
    problems = icot_problems("test")[:N_PROBLEMS]
    positions = answer_positions(model)
    edges = [
        Knockout(layer, head, q, key)
        for layer in range(2)
        for head in (0, 3)
        for q, key in ((positions[2], 1), (positions[5], [0, 4]))
    ]
    full = knockout_sweep(model, problems, edges, method="full")
    cached = knockout_sweep(model, problems, edges, method="cached")
    for a, b in zip(full, cached):
        assert a.edge == b.edge
        np.testing.assert_array_equal(a.accuracy_drop, b.accuracy_drop)
        np.testing.assert_allclose(a.logit_drop, b.logit_drop, rtol=0, atol=ATOL)


def test_knockouts_before_a_position_leave_its_logits_clean():
    """A knockout at query q cannot reach positions before q: their logits are the clean ones exactly."""
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=4), seed=3).eval()
    ids = torch.randint(2, 18, (5, 12), generator=torch.Generator().manual_seed(1))
    clean, _ = run_with_cache(model, ids)
    got = cached_logits(model, ids, None, torch.ones_like(ids), [Knockout(0, 1, 8, [2, 5])], list(range(12)))
    assert torch.equal(got[0, :, :8], clean[:, :8])
    assert not torch.allclose(got[0, :, 8:], clean[:, 8:])


@st.composite
def tiny_cases(draw):
    n_heads = draw(st.sampled_from([1, 2, 4]))
    config = ModelConfig(
        d_model=n_heads * draw(st.sampled_from([4, 8])),
        n_layers=draw(st.integers(1, 3)),
        n_heads=n_heads,
        n_a=draw(st.integers(1, 3)),
        n_b=draw(st.integers(1, 3)),
    )
    T = draw(st.integers(2, config.layout.max_len))
    B = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    knockouts = []
    for _ in range(draw(st.integers(1, 5))):
        query = draw(st.integers(1, T - 1))
        keys = draw(st.lists(st.integers(0, query), min_size=1, max_size=query, unique=True))
        layer, head = draw(st.integers(0, config.n_layers - 1)), draw(st.integers(0, n_heads - 1))
        knockouts.append(Knockout(layer, head, query, keys[0] if len(keys) == 1 else keys))
    positions = draw(st.lists(st.integers(0, T - 1), min_size=1, max_size=T, unique=True))
    return config, T, B, seed, knockouts, positions


@settings(max_examples=60)
@given(tiny_cases())
def test_cached_knockouts_equal_full_passes_on_random_tiny_models(case):
    config, T, B, seed, knockouts, positions = case
    model = build_model(config, seed=seed).eval()
    with torch.no_grad():  # larger weights than the initialisation's 0.02: attention far from uniform
        for p in model.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, model.config.vocab_size, (B, T), generator=generator)
    position_ids = torch.arange(T).expand(B, T)
    mask = torch.ones_like(ids)
    cached = cached_logits(model, ids, position_ids, mask, knockouts, positions)
    for knockout, got in zip(knockouts, cached):
        want = reference_logits(model, ids, position_ids, mask, knockout, positions)
        torch.testing.assert_close(got, want, rtol=0, atol=ATOL)


def test_bad_knockouts_are_named():
    model = build_model(ModelConfig(d_model=16, n_layers=2, n_heads=2), seed=0).eval()
    ids = torch.randint(2, 18, (2, 6), generator=torch.Generator().manual_seed(0))
    for knockout, message in [
        (Knockout(2, 0, 3, 1), "layer/head"),
        (Knockout(0, 2, 3, 1), "layer/head"),
        (Knockout(0, 0, 3, 4), "key <= query"),
        (Knockout(0, 0, 3, []), "non-empty"),
        (Knockout(0, 0, 2, [0, 1, 2]), "nothing to renormalise"),
        (Knockout(0, 0, 6, 1), "query < 6"),
    ]:
        with pytest.raises(ValueError, match=message):
            cached_logits(model, ids, None, torch.ones_like(ids), [knockout], [5])
    with pytest.raises(TypeError, match="one query position"):
        cached_logits(model, ids, None, torch.ones_like(ids), [Knockout(0, 0, [3, 4], 1)], [5])
    names = resid_pre_names(model)
    logits, cache = run_with_cache(model, ids, names=names)
    with pytest.raises(ValueError, match="each of the 2 layers"):
        knocked_logits(model, [cache[names[0]]], [Knockout(0, 0, 3, 1)], [5], logits[:, [5]])
    with pytest.raises(ValueError, match="positions must be in 0..5"):
        knocked_logits(model, [cache[n] for n in names], [Knockout(0, 0, 3, 1)], [6], logits[:, [5]])
    with pytest.raises(ValueError, match="clean_logits must be"):
        knocked_logits(model, [cache[n] for n in names], [Knockout(0, 0, 3, 1)], [4, 5], logits[:, [5]])


def test_a_sweep_with_an_unknown_method_is_refused():
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2), seed=0)
    with pytest.raises(ValueError, match="method must be"):
        knockout_sweep(model, np.array([[1234, 5678]]), [], method="fast")
