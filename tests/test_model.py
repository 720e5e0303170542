import pytest
import torch

from longmul.model import (
    PRESETS,
    build_model,
    count_parameters,
    model_config_from_preset,
    model_config_of,
    pick_device,
)


def test_presets():
    assert PRESETS["paper"].d_model == 768 and PRESETS["paper"].n_layers == 2 and PRESETS["paper"].n_heads == 4
    assert PRESETS["cpu"].n_layers == 2 and PRESETS["cpu"].n_heads == 4
    assert model_config_from_preset("cpu", d_model=64).d_head == 16


def test_paper_preset_size_matches_its_architecture():
    model = build_model(PRESETS["paper"])
    non_embedding = count_parameters(model) - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel()
    # 2 blocks of 12·d² weights (+ biases and layer norms): the paper's "≈14M non-embedding".
    assert 14.0e6 < non_embedding < 14.3e6
    assert model.config._attn_implementation == "eager"


def test_config_round_trips_through_the_model():
    config = model_config_from_preset("tiny", n_heads=2)
    assert model_config_of(build_model(config)) == config


def test_build_is_deterministic_in_seed():
    a, b, c = (build_model(PRESETS["tiny"], seed=s) for s in (0, 0, 1))
    assert (a.transformer.wte.weight == b.transformer.wte.weight).all()
    assert not (a.transformer.wte.weight == c.transformer.wte.weight).all()


@pytest.mark.parametrize("overrides, message", [({"d_model": 30}, "divisible"), ({"n_layers": 0}, "at least 1"), ({"dropout": 1.5}, "dropout")])
def test_bad_model_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        model_config_from_preset("cpu", **overrides)
    with pytest.raises(ValueError, match="unknown preset"):
        model_config_from_preset("gpt4")


@pytest.mark.parametrize(
    "name, message",
    [("bogus", "'bogus' is not a device"), ("meta", "not available on this machine"), ("cuda:-1", "is not a device")],
)
def test_pick_device_refuses_what_this_machine_cannot_run_on(name, message):
    with pytest.raises(ValueError, match=message):
        pick_device(name)


def test_pick_device_auto_and_cpu():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this machine has no CUDA GPU"):
            pick_device("cuda")
