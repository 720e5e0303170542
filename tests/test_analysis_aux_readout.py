import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config
from longmul.analysis.attribution import analysis_pairs
from longmul.analysis.aux_readout import PROBE_FILE, aux_readout, aux_readout_by_size, load_aux_probe
from longmul.hooks import capture
from longmul.saved import load_model
from longmul.sequences import Layout, make_batch
from longmul.train import running_sums_batch, train

PAIRS = np.array([[12, 34], [99, 99], [10, 10], [57, 68], [23, 45], [81, 19]])


@pytest.fixture(scope="module")
def aux_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("aux") / "aux"
    train(tiny_config(recipe="aux", max_steps=4, aux_site="blocks.0.hook_resid_post"), out, command="pytest")
    return out


def with_probe(directory, weight):
    save_file({"weight": weight.contiguous()}, directory / PROBE_FILE)
    return load_model(directory, verify=False)


def test_zero_probe_reads_zero(aux_dir, one_thread):
    original = load_file(aux_dir / PROBE_FILE)["weight"]
    try:
        loaded = with_probe(aux_dir, torch.zeros_like(original))
        rows = aux_readout(loaded, PAIRS)
    finally:
        save_file({"weight": original}, aux_dir / PROBE_FILE)
    truth = running_sums_batch(PAIRS, Layout(2, 2))  # (N, n_c)
    assert [r["digit"] for r in rows] == ["c0", "c1", "c2", "c3"]
    for r in rows:
        k = r["k"]
        assert r["mae"] == pytest.approx(truth[:, k].mean())
        assert r["probe_exact"] == pytest.approx((truth[:, k] == 0).mean())
        assert r["probe_digit"] == pytest.approx((truth[:, k] % 10 == 0).mean())
        assert r["n"] == len(PAIRS)


def test_readout_matches_a_direct_forward_pass(aux_dir, one_thread):
    loaded = load_model(aux_dir)
    probe = load_aux_probe(loaded)
    assert probe.site == "blocks.0.hook_resid_post" and probe.heads == () and probe.scale == 10.0
    rows = aux_readout(loaded, PAIRS)
    batch = make_batch(PAIRS, Layout(2, 2))
    with torch.no_grad(), capture(loaded.model, [probe.site]) as cache:
        logits = loaded.model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask
        ).logits  # (N, T, V)
    positions = batch.answer_positions  # (N, n_c)
    acts = cache[probe.site][torch.arange(len(PAIRS))[:, None], positions]  # (N, n_c, d)
    reading = ((acts * probe.weight).sum(-1) * probe.scale).numpy()
    truth = running_sums_batch(PAIRS, Layout(2, 2))
    labels = batch.input_ids[torch.arange(len(PAIRS))[:, None], positions + 1]  # the digit tokens c_k
    written = logits[torch.arange(len(PAIRS))[:, None], positions].argmax(-1) == labels
    for r in rows:
        k = r["k"]
        assert r["mae"] == pytest.approx(np.abs(reading[:, k] - truth[:, k]).mean(), rel=1e-5)
        assert r["model_digit"] == pytest.approx(written[:, k].float().mean().item())


def test_a_model_without_aux_probe_is_refused(tiny_sft_model):
    with pytest.raises(ValueError, match="not an aux-loss model"):
        aux_readout(load_model(tiny_sft_model), PAIRS)
    with pytest.raises(ValueError, match="not an aux-loss model"):
        aux_readout_by_size(load_model(tiny_sft_model), 2)


def test_readout_by_size_splits_the_pool_into_bins(aux_dir, one_thread):
    loaded = load_model(aux_dir)
    pool, k = 300, 2
    rows = aux_readout_by_size(loaded, k, width=20, per_bin=pool, pool=pool, seed=3)
    assert sum(r["in_pool"] for r in rows) == pool and all(r["n"] == r["in_pool"] > 0 for r in rows)
    assert [r["low"] for r in rows] == sorted(r["low"] for r in rows) and all(r["low"] % 20 == 0 for r in rows)
    assert rows[0]["bin"] == f"{rows[0]['low']}–{rows[0]['low'] + 19}"
    # With every problem of the pool read, the bins pool back to the unsplit readout of the same problems
    # (the pool is the analysis_pairs draw with the same seed).
    whole = aux_readout(loaded, analysis_pairs(Layout(2, 2), None, pool, 3, minimum=1))[k]
    for key in ("mae", "probe_exact", "model_digit"):
        pooled = sum(r[key] * r["n"] for r in rows) / pool
        assert pooled == pytest.approx(whole[key])


def test_readout_by_size_caps_each_bin_and_checks_its_arguments(aux_dir, one_thread):
    loaded = load_model(aux_dir)
    rows = aux_readout_by_size(loaded, 1, width=50, per_bin=5, pool=400, seed=0)
    assert all(r["n"] == min(5, r["in_pool"]) for r in rows) and sum(r["in_pool"] for r in rows) == 400
    with pytest.raises(ValueError, match="output digit"):
        aux_readout_by_size(loaded, 4)
    with pytest.raises(ValueError, match="at least 1"):
        aux_readout_by_size(loaded, 1, width=0)
