import numpy as np
import pytest
import torch

from longmul.analysis.geometry import (
    activations_at,
    adjusted_r2,
    digit_columns,
    digit_pair_variance,
    effect_match,
    main_effects,
    minkowski_views,
    parameter_counts,
    pca,
    variance_explained,
)
from longmul.evaluate import teacher_forced_batch
from longmul.hooks import run_with_cache
from longmul.model import PRESETS, build_model
from longmul.sequences import problems_to_pairs
from longmul.task import random_problems

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def digits_and_effects(rng, n=4000, d=6):
    a, b = rng.integers(0, 10, n), rng.integers(0, 10, n)
    f, g = rng.normal(size=(10, d)), rng.normal(size=(10, d))
    return a, b, f, g


def test_purely_additive_data_is_additive(rng):
    a, b, f, g = digits_and_effects(rng)
    X = f[a] + g[b] + 0.01 * rng.normal(size=(len(a), f.shape[1]))  # a Minkowski sum plus a little noise
    v = variance_explained(X, a, b)
    assert v.additive > 0.999 and abs(v.interaction) < 1e-3 and v.additive_share > 0.999
    assert 0.2 < v.a < 0.8 and 0.2 < v.b < 0.8
    assert v.a + v.b == pytest.approx(v.additive, abs=0.02)  # independent labels: the shares nearly add up


def test_adjusted_r2_counts_each_models_parameters():
    assert parameter_counts() == {"a": 10, "b": 10, "additive": 19, "full": 100}
    assert parameter_counts(10, 10, cells=97)["full"] == 97
    assert adjusted_r2(0.5, n=101, p=11) == pytest.approx(1 - 0.5 * 100 / 90)
    assert adjusted_r2(1.0, n=50, p=40) == 1.0 and np.isnan(adjusted_r2(0.3, n=40, p=40))  # no samples left over


def test_a_weak_sum_in_noise_is_still_additive(rng):
    """A Minkowski sum that explains only a quarter of the variance, at N = 1,000: raw R² would score
    additive / full ≈ 0.8 (the 100 cell means absorb ≈ 10% of the noise, the 19 additive numbers ≈ 2%);
    adjusted for their parameters, both models explain the same quarter."""
    a, b, f, g = digits_and_effects(rng, n=1000, d=8)
    signal = f[a] + g[b]
    noise = rng.normal(size=signal.shape) * np.sqrt(3 * signal.var(0).sum() / signal.shape[1])  # 3× the signal
    v = variance_explained(signal + noise, a, b)
    assert v.full == pytest.approx(0.25, abs=0.03) and v.additive_share > 0.95
    n, p = len(a), parameter_counts()
    raw = {m: 1 - (1 - getattr(v, m)) * (n - p[m]) / (n - 1) for m in ("additive", "full")}
    assert raw["additive"] / raw["full"] < 0.85  # what the unadjusted ratio would have said
    pure = variance_explained(rng.normal(size=(1000, 8)), a, b)  # no structure: every share about 0
    assert max(abs(pure.a), abs(pure.b), abs(pure.additive), abs(pure.full)) < 0.01


def test_pure_interaction_is_not_additive(rng):
    a, b, _, _ = digits_and_effects(rng)
    cells = rng.normal(size=(10, 10, 4))
    cells -= cells.mean(0, keepdims=True)  # remove the row and column means: no main effects left
    cells -= cells.mean(1, keepdims=True)
    v = variance_explained(cells[a, b], a, b)
    assert v.full == pytest.approx(1.0) and v.additive < 0.02 and v.interaction > 0.98
    assert v.a < 0.02 and v.b < 0.02


def test_one_label_only(rng):
    a, b, f, _ = digits_and_effects(rng)
    v = variance_explained(f[a], a, b)
    assert v.a == pytest.approx(1.0) and v.b < 0.01 and v.additive == pytest.approx(1.0)
    one_dim = variance_explained(f[a, 0], a, b)  # a vector works too
    assert one_dim.a == pytest.approx(1.0)


def test_additive_fit_is_least_squares_when_labels_are_correlated(rng):
    """When b often equals a, f(a) and g(b) overlap: the group-mean shares no longer add up, but the
    joint least-squares fit still explains additive data completely."""
    a, b, f, g = digits_and_effects(rng)
    b = np.where(rng.random(len(a)) < 0.6, a, b)
    v = variance_explained(f[a] + g[b], a, b)
    assert v.additive == pytest.approx(1.0) and v.full == pytest.approx(1.0)
    assert abs(v.a + v.b - v.additive) > 0.1


def test_pair_table_finds_the_pair(rng):
    n = 3000
    digits = {name: rng.integers(0, 10, n) for name in ("a0", "a1", "b0", "b1", "c0")}
    f, g = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    X = f[digits["a1"]] + g[digits["b0"]]
    rows = digit_pair_variance(X, digits)
    assert [(r["a_digit"], r["b_digit"]) for r in rows] == [("a0", "b0"), ("a0", "b1"), ("a1", "b0"), ("a1", "b1")]
    best = max(rows, key=lambda r: r["additive"])
    assert (best["a_digit"], best["b_digit"]) == ("a1", "b0") and best["additive"] == pytest.approx(1.0)


def test_variance_bad_input(rng):
    a, b, f, _ = digits_and_effects(rng, n=50)
    with pytest.raises(ValueError, match="shape"):
        variance_explained(f[a], a[:-1], b)
    with pytest.raises(ValueError, match="two distinct"):
        variance_explained(f[a], np.zeros(50, dtype=int), b)
    with pytest.raises(ValueError, match="no variance"):
        variance_explained(np.ones((50, 3)), a, b)
    with pytest.raises(ValueError, match="a- and b-digit"):
        digit_pair_variance(f[a], {"c0": a})
    with pytest.raises(ValueError, match="n_components"):
        pca(f, n_components=11)


def test_main_effects_are_the_two_sets_of_the_sum(rng):
    a, b, f, g = digits_and_effects(rng, n=20_000)
    fa, gb = main_effects(f[a] + g[b] + 5.0, a, b)
    # Centred: the sets come back up to their means; the other digit adds only sampling noise (sd ≈ 0.02).
    np.testing.assert_allclose(fa, f - f[a].mean(0), atol=0.1)
    np.testing.assert_allclose(gb, g - g[b].mean(0), atol=0.1)
    assert fa.shape == gb.shape == (10, f.shape[1])
    with pytest.raises(ValueError, match="shape"):
        main_effects(f[a], a[:-1], b)


def test_effect_match_tells_a_symmetric_sum_from_a_nested_one(rng):
    """Attention with weights α, 1 − α on two tokens whose digits share one value vector v: the sets are
    one shape at two sizes. α = ½ gives a symmetric sum; α = ¼ the nested clusters of the paper's figure."""
    a, b, v, other = digits_and_effects(rng, n=20_000)
    noise = 0.01 * rng.normal(size=(len(a), v.shape[1]))
    even = effect_match(0.5 * v[a] + 0.5 * v[b] + noise, a, b)
    assert even.cosine > 0.99 and even.scale == pytest.approx(1.0, abs=0.05) and even.same_set
    nested = effect_match(0.25 * v[a] + 0.75 * v[b] + noise, a, b)
    assert nested.cosine > 0.99 and nested.scale == pytest.approx(3.0, rel=0.05) and not nested.same_set
    unrelated = effect_match(v[a] + other[b] + noise, a, b)  # two different sets
    assert abs(unrelated.cosine) < 0.5 and not unrelated.same_set
    with pytest.raises(ValueError, match="different sets of values"):
        effect_match(v[a], a, np.minimum(b, 4))
    with pytest.raises(ValueError, match="does not move"):
        effect_match(np.zeros((len(a), 2)), a, b)


@pytest.fixture(scope="module")
def model():
    return build_model(PRESETS["tiny"], seed=2).eval()


@pytest.fixture(scope="module")
def problems():
    return random_problems(300, seed=5)


def test_activations_at_reads_the_position_predicting_c_k(model, problems):
    pairs = problems_to_pairs(problems)
    acts = activations_at(model, pairs, ["blocks.0.hook_attn_out", "blocks.0.attn.hook_result"], k=2, batch_size=128)
    assert acts["blocks.0.hook_attn_out"].shape == (300, 32)
    assert acts["blocks.0.attn.hook_result"].shape == (300, 4, 32)
    batch = teacher_forced_batch(model, pairs[:5])
    _, cache = run_with_cache(model, batch.input_ids, batch.position_ids, batch.attention_mask)
    expected = cache["blocks.0.hook_attn_out"][torch.arange(5), batch.answer_positions[:, 2]]
    np.testing.assert_allclose(acts["blocks.0.hook_attn_out"][:5], expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="position axis"):
        activations_at(model, pairs, ["blocks.0.attn.hook_pattern"], k=0)
    with pytest.raises(ValueError, match="0..7"):
        activations_at(model, pairs, ["logits"], k=8)


def test_digit_columns_match_the_problems(model, problems):
    cols = digit_columns(model, problems)
    assert list(cols) == [f"a{i}" for i in range(4)] + [f"b{j}" for j in range(4)] + [f"c{k}" for k in range(8)]
    for row in (0, 17, 299):
        p = problems[row]
        assert [int(cols[f"a{i}"][row]) for i in range(4)] == list(p.a_digits)
        assert [int(cols[f"b{j}"][row]) for j in range(4)] == list(p.b_digits)
        assert [int(cols[f"c{k}"][row]) for k in range(8)] == list(p.c_digits)


def test_minkowski_views(model, problems):
    views = minkowski_views(model, problems, ks=(0, 2), batch_size=150)
    assert len(views) == 2 * (1 + 4)
    assert [(v.k, v.head) for v in views[:5]] == [(0, None), (0, 0), (0, 1), (0, 2), (0, 3)]
    first = views[0]
    assert first.site == "blocks.0.hook_attn_out" and first.title == "layer 1 attention output, position predicting c0"
    assert views[6].title == "layer 1 head 0, position predicting c2"
    for v in views:
        assert v.coords.shape == (300, 3)
        assert np.all(np.diff(v.explained_variance_ratio) <= 1e-12)
        assert len(v.variance) == 16
        for r in v.variance:  # adjusted shares: undo the adjustment to check the raw ones nest
            cells = len(set(zip(v.digits[r["a_digit"]].tolist(), v.digits[r["b_digit"]].tolist())))
            p = parameter_counts(cells=cells)
            raw = {m: 1 - (1 - r[m]) * (300 - p[m]) / 299 for m in ("additive", "full")}
            assert 0 <= raw["additive"] <= raw["full"] + 1e-9 <= 1 + 1e-9 and r["full"] <= 1
    records = first.records()
    assert len(records) == 300 and set(records[0]) >= {"pc1", "pc2", "pc3", "a0", "b3", "c7"}
    assert records[0]["b0"] == problems[0].b_digits[0]
    with pytest.raises(ValueError, match="layer"):
        minkowski_views(model, problems, layer=2)
