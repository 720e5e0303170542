import pytest
import torch

from longmul.hooks import Knockout, capture, hook_names, run_with_cache
from longmul.model import PRESETS, build_model

EXPECTED_HOOK_NAMES = [
    "hook_embed",
    "hook_pos_embed",
    "blocks.0.hook_resid_pre",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.0.attn.hook_result",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_mid",
    "blocks.0.hook_mlp_out",
    "blocks.0.hook_resid_post",
    "blocks.1.hook_resid_pre",
    "blocks.1.attn.hook_pattern",
    "blocks.1.attn.hook_z",
    "blocks.1.attn.hook_result",
    "blocks.1.hook_attn_out",
    "blocks.1.hook_resid_mid",
    "blocks.1.hook_mlp_out",
    "blocks.1.hook_resid_post",
    "ln_final.hook_normalized",
    "logits",
]


@pytest.fixture(scope="module")
def model():
    m = build_model(PRESETS["tiny"], seed=1)
    return m.eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(2, 18, (3, 12), generator=torch.Generator().manual_seed(0))


def test_hook_names_are_pinned():
    assert hook_names(2) == EXPECTED_HOOK_NAMES


def test_every_hook_has_its_documented_shape(model, ids):
    logits, cache = run_with_cache(model, ids)
    assert sorted(cache.keys()) == sorted(EXPECTED_HOOK_NAMES)
    B, T, d, H = 3, 12, 32, 4
    for name in EXPECTED_HOOK_NAMES:
        shape = tuple(cache[name].shape)
        if name.endswith("hook_pattern"):
            assert shape == (B, H, T, T)
        elif name.endswith("hook_z"):
            assert shape == (B, T, H, d // H)
        elif name.endswith("hook_result"):
            assert shape == (B, T, H, d)
        elif name == "logits":
            assert shape == (B, T, 18) and torch.equal(cache[name], logits)
        elif name == "hook_pos_embed":
            assert shape in {(B, T, d), (1, T, d)}
        else:
            assert shape == (B, T, d), name


def test_activations_add_up(model, ids):
    _, c = run_with_cache(model, ids)
    torch.testing.assert_close(c["hook_embed"] + c["hook_pos_embed"], c["blocks.0.hook_resid_pre"])
    for layer in range(2):
        p = f"blocks.{layer}"
        bias = model.transformer.h[layer].attn.c_proj.bias
        torch.testing.assert_close(c[f"{p}.attn.hook_result"].sum(2) + bias, c[f"{p}.hook_attn_out"])
        torch.testing.assert_close(c[f"{p}.hook_resid_pre"] + c[f"{p}.hook_attn_out"], c[f"{p}.hook_resid_mid"])
        torch.testing.assert_close(c[f"{p}.hook_resid_mid"] + c[f"{p}.hook_mlp_out"], c[f"{p}.hook_resid_post"])
        pattern = c[f"{p}.attn.hook_pattern"]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 4, 12))
        assert torch.all(pattern.triu(1) == 0)  # causal


def test_knockout_renormalises_exactly_one_edge(model, ids):
    _, clean = run_with_cache(model, ids)
    q, k = 9, 4
    _, knocked = run_with_cache(model, ids, knockouts=[Knockout(layer=0, head=2, query=q, key=k)])
    before = clean["blocks.0.attn.hook_pattern"]
    after = knocked["blocks.0.attn.hook_pattern"]
    expected_row = before[:, 2, q].clone()
    expected_row[:, k] = 0
    expected_row /= expected_row.sum(-1, keepdim=True)
    torch.testing.assert_close(after[:, 2, q], expected_row)
    untouched = torch.ones_like(before, dtype=torch.bool)
    untouched[:, 2, q] = False
    torch.testing.assert_close(after[untouched], before[untouched])
    # The edit propagates: the head's output at the query position changes, earlier positions do not.
    z0, z1 = clean["blocks.0.attn.hook_z"], knocked["blocks.0.attn.hook_z"]
    assert not torch.allclose(z0[:, q, 2], z1[:, q, 2])
    torch.testing.assert_close(z0[:, :q], z1[:, :q])


def test_a_knockout_that_leaves_a_query_no_key_is_refused(model, ids):
    with pytest.raises(ValueError, match="every key that position 0 may attend to .layer 1, head 3"):
        run_with_cache(model, ids, knockouts=[Knockout(layer=1, head=3, query=0, key=0)])
    with pytest.raises(ValueError, match="every key that position 2 may attend to"):
        run_with_cache(model, ids, knockouts=[Knockout(layer=0, head=0, query=2, key=[0, 1, 2])])
    run_with_cache(model, ids, knockouts=[Knockout(layer=0, head=0, query=2, key=[0, 1])])  # one key left: fine


def test_knockout_of_a_head_that_copies_a_token_changes_the_prediction():
    """Hand-set model: layer-0 head 0 at the last position attends only to position 0 and the
    unembedding reads what it copied; knocking that edge out must change the answer."""
    torch.manual_seed(0)
    m = build_model(PRESETS["tiny"], seed=0).eval()
    d, dh = 32, 8
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for ln in [m.transformer.ln_f] + [b.ln_1 for b in m.transformer.h] + [b.ln_2 for b in m.transformer.h]:
            ln.weight.fill_(1.0)
        # token t -> one-hot in dims 0..17 (d=32 leaves room); position 0 -> a flag in dim 31
        m.transformer.wte.weight[:, :18] = 10 * torch.eye(18)
        m.transformer.wpe.weight[0, 31] = 30.0
        attn = m.transformer.h[0].attn
        w = attn.c_attn.weight  # (d, 3d): q | k | v
        attn.c_attn.bias[0] = 5.0  # every query has q[0] = 5 in head 0
        w[31, d + 0] = 5.0  # only position 0 has a key in head 0
        for t in range(dh):  # value: copy the first 8 token dims
            w[t, 2 * d + t] = 1.0
        for t in range(dh):
            attn.c_proj.weight[t, t] = 50.0  # head 0's output -> token dims
    ids = torch.tensor([[5, 9, 9, 9]])
    logits, _ = run_with_cache(m, ids)
    assert logits[0, -1].argmax().item() == 5  # copied from position 0
    knocked, _ = run_with_cache(m, ids, knockouts=[Knockout(0, 0, query=3, key=0)])
    assert knocked[0, -1].argmax().item() != 5


def test_capture_keeps_gradients_for_training(model, ids):
    with capture(model, ["blocks.1.hook_resid_mid"]) as cache:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert list(cache.keys()) == ["blocks.1.hook_resid_mid"]
    assert cache["blocks.1.hook_resid_mid"].requires_grad


def test_bad_requests_are_named(model, ids):
    with pytest.raises(ValueError, match="unknown hook names"):
        run_with_cache(model, ids, names=["blocks.9.hook_resid_post"])
    with pytest.raises(ValueError, match="layer/head"):
        run_with_cache(model, ids, knockouts=[Knockout(0, 7, 1, 0)])
    with pytest.raises(KeyError, match="was not cached"):
        run_with_cache(model, ids, names=["logits"])[1]["hook_embed"]
    # hooks are removed afterwards
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
