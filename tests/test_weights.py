import json
import shutil

import pytest
import torch
from transformers import GPT2LMHeadModel

from longmul.model import build_model, model_config_from_preset
from longmul.saved import save_model
from longmul.weights import load_gpt2


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """A freshly built 2x2 tiny model, saved (no training needed to check the file format)."""
    model = build_model(model_config_from_preset("tiny", n_a=2, n_b=2), seed=3)
    model.config.longmul_position_skip, model.config.longmul_cot_tokens = 0, 0
    return save_model(tmp_path_factory.mktemp("w") / "tiny", model, {"recipe": "sft"})


@pytest.fixture
def copy(saved_tiny, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved_tiny, target)
    return target


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_loads_the_same_weights_as_plain_transformers(saved_tiny):
    ours = load_gpt2(saved_tiny)
    theirs = GPT2LMHeadModel.from_pretrained(saved_tiny, attn_implementation="eager")
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert ours.lm_head.weight is ours.transformer.wte.weight and not ours.training
    assert (ours.config.longmul_n_a, ours.config.longmul_cot_tokens) == (2, 0)


def test_loading_leaves_the_global_random_state_alone(saved_tiny):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_gpt2(saved_tiny)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_embd": 64}, r"model.safetensors does not fit its config.json: the embedding is \(18, 32\)"),
        ({"n_layer": 3}, r"model.safetensors does not fit its config.json: missing \['transformer.h.2"),
        (
            {"n_layer": 1},
            r"model.safetensors does not fit its config.json: missing \[\], unexpected \['transformer.h.1",
        ),
        ({"n_embd": 10**9}, "the embedding is"),  # refused from the header, before anything is allocated
        ({"n_positions": 10}, "config.json: n_positions is 10, but a longmul model of this shape has 20"),
        ({"vocab_size": 20}, "config.json: vocab_size is 20"),
        ({"activation_function": "relu"}, "config.json: activation_function is 'relu'"),
        ({"n_embd": "x"}, "config.json: n_embd must be int, got 'x'"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be bool"),
        ({"n_head": 3}, "config.json: model config: d_model=32 is not divisible by n_heads=3"),
        ({"longmul_n_a": 30}, "longmul_n_a must be from 1 to 9, got 30"),
        ({"longmul_cot_tokens": 50}, "must be non-negative and add up to at most the chain of thought's 8 tokens"),
        ({"longmul_position_skip": -1}, "must be non-negative"),
        ({"longmul_recipe": "rl"}, "longmul_recipe must be one of"),
    ],
)
def test_a_config_that_does_not_fit_is_refused(copy, changes, message):
    edit_config(copy, **changes)
    with pytest.raises(ValueError, match=message):
        load_gpt2(copy)


def test_a_config_that_is_not_an_object_is_named(copy):
    (copy / "config.json").write_text("[]")
    with pytest.raises(ValueError, match="config.json does not hold a JSON object"):
        load_gpt2(copy)


@pytest.mark.parametrize("keep", [0, 4, 100, -100])
def test_truncated_weights_are_named(copy, keep):
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[:keep])
    with pytest.raises(ValueError, match="model.safetensors is unreadable"):
        load_gpt2(copy)


def test_a_weight_file_with_the_tied_copy_still_loads(copy):
    """Plain transformers may save lm_head.weight beside the embedding it is tied to."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(copy / "model.safetensors")
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    save_file(tensors, copy / "model.safetensors")
    assert torch.equal(load_gpt2(copy).lm_head.weight, tensors["transformer.wte.weight"])
