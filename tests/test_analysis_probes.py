import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from longmul.analysis.probes import (
    DEFAULT_ALPHAS,
    PAPER_SITE,
    collect_activations,
    fit_probes,
    predict_running_sums,
    probe_running_sums,
    probe_sites,
    probe_with_controls,
    untrained_like,
)
from longmul.model import PRESETS, build_model
from longmul.task import Problem, sample_operands

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return build_model(PRESETS["tiny"], seed=0).eval()


@pytest.fixture(scope="module")
def pairs():
    return sample_operands(np.random.default_rng(0), 80)


def synthetic(N=600, n_c=3, d=16, noise=0.1, seed=0):
    """Site "linear": ĉ_k is an exact linear function of the features plus noise; site "noise": unrelated."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, n_c, d))
    w = rng.normal(scale=10.0, size=(n_c, d))
    y = np.einsum("nkd,kd->nk", x, w) + 50.0 + rng.normal(scale=noise, size=(N, n_c))  # (N, n_c)
    return {"linear": x, "noise": rng.normal(size=(N, n_c, d))}, y


def test_probe_recovers_a_linear_target_and_finds_nothing_in_noise():
    features, y = synthetic()
    result = fit_probes(features, y, test_fraction=0.25, seed=0)
    assert (result.metric("linear", "r2") > 0.999).all()
    assert (result.metric("linear", "mae") < 0.2).all()
    assert (result.metric("noise", "r2") < 0.05).all()
    np.testing.assert_allclose(result.y_test, y[result.test_index])
    assert result.predictions["linear"].shape == (150, 3)
    assert np.abs(result.predictions["linear"] - result.y_test).mean() < 0.2


def test_probes_are_what_standard_scaler_and_ridgecv_fit():
    features, y = synthetic(N=300, noise=5.0)
    result = fit_probes(features, y, seed=2)
    train = np.setdiff1d(np.arange(300), result.test_index)
    for site, x in features.items():
        for k in range(3):
            reference = make_pipeline(StandardScaler(), RidgeCV(alphas=DEFAULT_ALPHAS)).fit(x[train, k], y[train, k])
            assert result.metric(site, "alpha")[k] == reference[-1].alpha_
            expected = reference.predict(x[result.test_index, k])
            np.testing.assert_allclose(result.predictions[site][:, k], expected, rtol=1e-9, atol=1e-9)


def test_the_controls_sharing_features_equal_separate_fits(tiny, pairs):
    results = probe_with_controls(tiny, pairs, sites=[PAPER_SITE], seed=3)  # none and shuffled fitted together
    for shuffle, control in ((False, "none"), (True, "shuffled")):
        alone = probe_running_sums(tiny, pairs, sites=[PAPER_SITE], seed=3, shuffle_targets=shuffle)
        for row, row_alone in zip(results[control].rows, alone.rows, strict=True):
            numbers = ("mae", "r2", "exact")
            assert {key: row[key] for key in numbers} == pytest.approx(
                {key: row_alone[key] for key in numbers}, abs=1e-9
            )
            assert {key: v for key, v in row.items() if key not in numbers} == {
                key: v for key, v in row_alone.items() if key not in numbers
            }
        np.testing.assert_allclose(results[control].predictions[PAPER_SITE], alone.predictions[PAPER_SITE], atol=1e-9)


def test_probe_on_a_shuffled_target_explains_nothing():
    features, y = synthetic()
    shuffled = y[np.random.default_rng(1).permutation(len(y))]
    result = fit_probes(features, shuffled, seed=0, control="shuffled")
    assert (result.metric("linear", "r2") < 0.05).all()
    assert {row["control"] for row in result.rows} == {"shuffled"}


def test_exact_is_the_share_of_readings_that_round_to_the_integer_target():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 300, size=(400, 2)).astype(float)  # integers, like ĉ_k
    readable = np.concatenate([targets[..., None], rng.normal(size=(400, 2, 3))], axis=2)  # ĉ_k is a feature
    blurred = readable.copy()
    blurred[..., 0] += rng.normal(scale=3.0, size=(400, 2))  # readable only to within a few units
    result = fit_probes({"readable": readable, "blurred": blurred, "noise": rng.normal(size=(400, 2, 4))}, targets)
    assert (result.metric("readable", "exact") > 0.99).all()
    assert (result.metric("blurred", "exact") < 0.3).all() and (result.metric("blurred", "r2") > 0.99).all()
    assert (result.metric("noise", "exact") < 0.05).all()
    for site in ("readable", "blurred"):
        rounded = np.rint(result.predictions[site]) == result.y_test  # (n_test, n_c)
        np.testing.assert_allclose(result.metric(site, "exact"), rounded.mean(0))


def test_table_is_tidy():
    features, y = synthetic(N=100)
    result = fit_probes(features, y, test_fraction=0.2)
    assert len(result.rows) == 2 * 3
    assert set(result.rows[0]) == {"site", "k", "mae", "r2", "exact", "alpha", "n_train", "n_test", "control"}
    assert [(r["site"], r["k"]) for r in result.rows[:3]] == [("linear", 0), ("linear", 1), ("linear", 2)]
    assert all(r["n_train"] == 80 and r["n_test"] == 20 for r in result.rows)
    assert sorted(result.probes) == sorted((s, k) for s in ("linear", "noise") for k in range(3))


def test_fit_probes_refuses_bad_input():
    features, y = synthetic(N=20)
    with pytest.raises(ValueError, match="too few"):
        fit_probes(features, y, test_fraction=0.05)
    with pytest.raises(ValueError, match="test_fraction"):
        fit_probes(features, y, test_fraction=1.0)
    with pytest.raises(ValueError, match="must be \\(N=20, n_c=3, d\\)"):
        fit_probes({"x": features["linear"][:10]}, y)
    with pytest.raises(ValueError, match="targets must be"):
        fit_probes(features, y[:, 0])
    result = fit_probes(features, y)
    with pytest.raises(ValueError, match="was not probed"):
        result.metric("blocks.0.hook_resid_pre")
    with pytest.raises(ValueError, match="unknown metric"):
        result.metric("linear", "rmse")


def test_probe_sites_are_in_forward_order():
    assert probe_sites(1) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
    ]
    with_heads = probe_sites(2, n_heads=2)
    assert len(with_heads) == 12 and with_heads[1:3] == ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]
    assert PAPER_SITE in probe_sites(2)


def test_activations_are_read_at_the_answer_positions(tiny, pairs):
    sites = ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_resid_mid", "blocks.1.attn.hook_z[2]"]
    acts = collect_activations(tiny, pairs, sites, batch_size=80)
    assert acts["blocks.1.hook_resid_mid"].shape == (80, 8, 32) and acts["blocks.1.attn.hook_z[2]"].shape == (80, 8, 8)
    np.testing.assert_allclose(
        acts["blocks.1.hook_resid_mid"], acts["blocks.1.hook_resid_pre"] + acts["blocks.1.hook_attn_out"], atol=1e-5
    )
    chunked = collect_activations(tiny, pairs, sites, batch_size=30)
    for site in sites:
        np.testing.assert_allclose(chunked[site], acts[site], atol=1e-5)
    # The position predicting c_1 holds the token c_0: its embedding layer input depends on nothing else.
    embed = collect_activations(tiny, pairs, ["blocks.0.hook_resid_pre"])["blocks.0.hook_resid_pre"]
    c0 = (pairs[:, 0] * pairs[:, 1]) % 10
    same = np.flatnonzero(c0 == c0[0])
    np.testing.assert_allclose(embed[same, 1], np.broadcast_to(embed[same[0], 1], embed[same, 1].shape), atol=1e-6)


def test_probes_read_the_position_predicting_c_k(tiny):
    # blocks.0.hook_resid_pre is the token embedding plus the position embedding, so at the position
    # predicting c_k (k ≥ 1) it holds the token c_{k-1} and nothing of c_k, the token after it.
    problems = sample_operands(np.random.default_rng(1), 300)
    embed = collect_activations(tiny, problems, ["blocks.0.hook_resid_pre"])  # site → (300, 8, 32)
    c = (problems[:, :1] * problems[:, 1:]) // 10 ** np.arange(8) % 10  # (300, 8): c_0 … c_7
    token_there = np.concatenate([np.zeros((300, 1)), c[:, :-1]], axis=1)  # (300, 8): ####, then c_{k-1}
    read_there = fit_probes(embed, token_there).metric("blocks.0.hook_resid_pre", "r2")
    read_next = fit_probes(embed, c).metric("blocks.0.hook_resid_pre", "r2")
    assert (read_there[1:] > 0.999).all()
    assert (read_next < 0.2).all()


def test_unknown_sites_are_refused(tiny, pairs):
    bad = (
        "blocks.2.hook_resid_pre",
        "blocks.0.attn.hook_pattern",
        "blocks.0.attn.hook_z",
        "blocks.0.attn.hook_z[4]",
        "resid",
    )
    for site in bad:
        with pytest.raises(ValueError, match="unknown site"):
            collect_activations(tiny, pairs[:2], [site])
    with pytest.raises(ValueError, match="at least 10 problems"):
        probe_running_sums(tiny, n_problems=5)


def test_end_to_end_on_a_tiny_model_with_controls(tiny, pairs):
    results = probe_with_controls(tiny, pairs, seed=0)
    assert sorted(results) == ["none", "shuffled", "untrained"]
    n_sites = len(probe_sites(2))
    for control, result in results.items():
        assert len(result.rows) == n_sites * 8
        assert {r["control"] for r in result.rows} == {control}
        assert all(r["n_train"] == 64 and r["n_test"] == 16 for r in result.rows)
        assert all(np.isfinite([r["mae"], r["r2"]]).all() for r in result.rows)
    assert not np.allclose(results["none"].y_test, results["shuffled"].y_test)
    plain = probe_running_sums(tiny, pairs, sites=[PAPER_SITE])
    np.testing.assert_allclose(plain.metric(PAPER_SITE), results["none"].metric(PAPER_SITE))
    readout = predict_running_sums(tiny, plain, pairs[plain.test_index])
    np.testing.assert_allclose(readout, plain.predictions[PAPER_SITE], atol=1e-6)
    one = predict_running_sums(tiny, plain, [Problem(2365, 4347)])
    assert one.shape == (1, 8)


def test_untrained_twin_has_the_same_shape_and_format(tiny):
    tiny.config.longmul_position_skip = 46
    try:
        twin = untrained_like(tiny, seed=5)
    finally:
        del tiny.config.longmul_position_skip
    assert twin.config.longmul_position_skip == 46 and not twin.training
    assert [p.shape for p in twin.parameters()] == [p.shape for p in tiny.parameters()]
    assert not torch.equal(twin.transformer.h[0].attn.c_attn.weight, tiny.transformer.h[0].attn.c_attn.weight)
