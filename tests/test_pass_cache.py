"""The shared pass cache (longmul.pass_cache): one clean pass per model and problem set, never stale."""

import numpy as np
import pytest
import torch

from longmul import pass_cache
from longmul.analysis.attention import mean_attention, teacher_forced_scores
from longmul.analysis.geometry import activations_at
from longmul.analysis.passes import share_passes, teacher_forced_passes
from longmul.hooks import run_with_cache
from longmul.model import PRESETS, build_model
from longmul.pass_cache import PassCache, pairs_digest, weights_digest
from longmul.sequences import problems_to_pairs
from longmul.task import random_problems


@pytest.fixture
def cache(monkeypatch):
    """A fresh cache of 64 MiB in place of the process-wide one."""
    fresh = PassCache(64 * 2**20)
    monkeypatch.setattr(pass_cache, "PASS_CACHE", fresh)
    return fresh


@pytest.fixture
def model():
    return build_model(PRESETS["tiny"], seed=5).eval()


@pytest.fixture
def pairs():
    return problems_to_pairs(random_problems(40, seed=2))


def count_forward_passes(model) -> list[int]:
    """A list whose length counts the model's forward passes from now on."""
    calls: list[int] = []
    model.transformer.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_the_same_pass_is_run_once(cache, model, pairs):
    calls = count_forward_passes(model)
    first = teacher_forced_scores(model, pairs, batch_size=16)
    second = teacher_forced_scores(model, pairs, batch_size=16)
    assert len(calls) == 3  # ceil(40 / 16) chunks, once
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    np.testing.assert_array_equal(first.logit, second.logit)
    np.testing.assert_array_equal(first.predicted, second.predicted)


def test_cached_activations_equal_an_uncached_pass(cache, model, pairs, monkeypatch):
    cached = mean_attention(model, pairs)
    cached_again = mean_attention(model, pairs)
    assert cache.hits == 1
    monkeypatch.setattr(pass_cache, "PASS_CACHE", PassCache(0))  # off: every call runs its pass
    np.testing.assert_array_equal(cached.mean, mean_attention(model, pairs).mean)
    np.testing.assert_array_equal(cached_again.mean, cached.mean)


def test_a_changed_weight_is_never_served_stale_numbers(cache, model, pairs):
    before = teacher_forced_scores(model, pairs)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.bias += 0.5  # in place: same object, same parameter names
    after = teacher_forced_scores(model, pairs)
    assert cache.hits == 0 and cache.misses == 2
    assert not np.array_equal(before.logit, after.logit)
    batch = next(teacher_forced_passes(model, pairs, [], knockouts=[], batch_size=len(pairs)))[0]
    fresh, _ = run_with_cache(model, batch.input_ids, batch.position_ids, batch.attention_mask, names=[])
    pos = batch.answer_positions
    target = batch.input_ids.gather(1, pos + 1)
    want = fresh.gather(1, pos[..., None].expand(-1, -1, fresh.shape[-1])).gather(2, target[..., None])[..., 0]
    np.testing.assert_array_equal(after.logit, want.numpy())


def test_other_problems_batch_sizes_and_thread_counts_are_other_entries(cache, model, pairs):
    teacher_forced_scores(model, pairs)
    teacher_forced_scores(model, pairs[:-1])
    teacher_forced_scores(model, pairs, batch_size=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads != 1 else 2)
    try:
        teacher_forced_scores(model, pairs)
    finally:
        torch.set_num_threads(threads)
    assert (cache.hits, cache.misses, len(cache)) == (0, 4, 4)


def test_names_an_entry_lacks_are_computed_and_added(cache, model, pairs):
    a, b = "blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"
    calls = count_forward_passes(model)
    [(_, _, first)] = list(teacher_forced_passes(model, pairs, [a]))
    [(_, _, second)] = list(teacher_forced_passes(model, pairs, [b]))
    [(_, _, both)] = list(teacher_forced_passes(model, pairs, [a, b]))
    assert len(calls) == 2 and len(cache) == 1
    assert both.keys() == [a, b]
    assert both[a] is first[a] and both[b] is second[b]


def test_a_shared_pass_serves_every_later_subset_of_its_names(cache, model, pairs, monkeypatch):
    names = ["blocks.0.hook_attn_out", "blocks.0.attn.hook_result", "ln_final.hook_normalized"]
    share_passes(model, pairs, names, batch_size=16)
    calls = count_forward_passes(model)
    heads = activations_at(model, pairs, names[:2], k=2, batch_size=16)
    final = activations_at(model, pairs, names[2:], k=1, batch_size=16)
    assert calls == [] and cache.hits == 2
    monkeypatch.setattr(pass_cache, "PASS_CACHE", PassCache(0))  # off: each call runs its own pass
    for name in names[:2]:
        np.testing.assert_array_equal(heads[name], activations_at(model, pairs, [name], k=2, batch_size=16)[name])
    np.testing.assert_array_equal(
        final[names[2]], activations_at(model, pairs, names[2:], k=1, batch_size=16)[names[2]]
    )
    before = len(calls)
    share_passes(model, pairs, names, batch_size=16)  # the cache is off: it would keep nothing
    assert len(calls) == before


def test_knockouts_and_unfinished_passes_are_not_cached(cache, model, pairs):
    from longmul.hooks import Knockout

    teacher_forced_scores(model, pairs, [Knockout(0, 0, 10, 1)])
    assert len(cache) == 0
    passes = teacher_forced_passes(model, pairs, [], batch_size=10)
    next(passes)
    passes.close()  # a caller that stops early leaves nothing half-stored
    assert len(cache) == 0


def test_the_cache_stays_within_its_limit(monkeypatch, model):
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    small = PassCache(1)
    monkeypatch.setattr(pass_cache, "PASS_CACHE", small)
    list(teacher_forced_passes(model, problems_to_pairs(random_problems(8, seed=0)), names))
    assert len(small) == 0  # one entry is larger than the whole cache
    bounded = PassCache(2**62)
    monkeypatch.setattr(pass_cache, "PASS_CACHE", bounded)
    list(teacher_forced_passes(model, problems_to_pairs(random_problems(8, seed=0)), names))
    one_entry = bounded.nbytes
    bounded.limit_bytes = int(2.5 * one_entry)
    for seed in range(1, 5):
        list(teacher_forced_passes(model, problems_to_pairs(random_problems(8, seed=seed)), names))
    assert len(bounded) == 2 and bounded.nbytes <= bounded.limit_bytes
    # the oldest went first: the last two problem sets are still there
    newest = problems_to_pairs(random_problems(8, seed=4))
    list(teacher_forced_passes(model, newest, names))
    assert bounded.hits == 1


def test_digests():
    a = build_model(PRESETS["tiny"], seed=0)
    b = build_model(PRESETS["tiny"], seed=0)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.transformer.wpe.weight[3, 4] += 1e-6
    assert weights_digest(a) != weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    b.config.longmul_cot_tokens = 2  # the format it reads, hence its sequences, changed
    assert weights_digest(a) != weights_digest(b)
    pairs = np.array([[12, 34], [56, 78]])
    assert pairs_digest(pairs) == pairs_digest(pairs.copy())
    assert pairs_digest(pairs) != pairs_digest(pairs[::-1])
    assert pairs_digest(pairs) != pairs_digest(pairs.astype(np.int32))


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(pass_cache.ENV_LIMIT, "2")
    assert pass_cache._limit_from_env() == 2 * 2**20
    monkeypatch.setenv(pass_cache.ENV_LIMIT, "0")
    assert pass_cache._limit_from_env() == 0
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(pass_cache.ENV_LIMIT, bad)
        with pytest.raises(ValueError, match="LONGMUL_PASS_CACHE_MB"):
            pass_cache._limit_from_env()
    with pytest.raises(ValueError, match="at least 0"):
        PassCache(-1)
