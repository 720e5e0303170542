"""The model's size and a training step's memory are capped (config.MODEL_SIZE_CAPS, MAX_STEPS,
MAX_TRAINING_GIB): past a cap ``longmul train`` stops with one line naming the flag, before it builds
anything, instead of dying in an allocation deep inside torch."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul.cli import main
from longmul.config import MAX_STEPS, MAX_TRAINING_GIB, MODEL_SIZE_CAPS, OptionError, TrainConfig
from longmul.cost import training_memory


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--d-model", "10000000"], ["--d-model: d_model must be from 1 to 8,192, got 10,000,000"]),
        (["--n-layers", "100000"], ["--n-layers: n_layers must be from 1 to 128, got 100,000"]),
        (["--n-heads", "1000"], ["--n-heads: n_heads must be from 1 to 128"]),
        (["--d-model", "0"], ["--d-model: d_model must be from 1"]),
        (["--d-model", "100", "--n-heads", "3"], ["--n-heads: d_model (100) is not divisible by n_heads (3)"]),
        (["--d-model", "30"], ["--d-model: d_model (30) is not divisible by n_heads (4)"]),
        (["--dropout", "1.5"], ["--dropout: dropout must be in [0, 1)"]),
        (["--max-steps", "10000000000"], ["--max-steps: max_steps must be at most 1,000,000,000"]),
        (["--d-model", "8192", "--n-layers", "32"], ["--d-model: ", "alone need an estimated 384 GiB"]),
        (["--batch-size", "1000000"], ["--batch-size: a training step at batch size 1,000,000", "at most about"]),
        (["--d-model", "4096", "--n-layers", "64"], ["--batch-size: ", "at most about 28"]),
    ],
)
def test_sizes_past_a_cap_are_refused_by_flag(flags, fragments, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--recipe", "sft", "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.startswith("longmul: error: ") and err.count("\n") == 1, err
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "run").exists()


def test_the_caps_themselves_are_accepted():
    TrainConfig(d_model=MODEL_SIZE_CAPS["d_model"], batch_size=1).validate()
    TrainConfig(n_layers=MODEL_SIZE_CAPS["n_layers"], batch_size=1).validate()
    TrainConfig(d_model=1024, n_heads=MODEL_SIZE_CAPS["n_heads"], batch_size=1).validate()
    TrainConfig(max_steps=MAX_STEPS).validate()
    TrainConfig(preset="paper", recipe="icot", batch_size=256).validate()  # the paper's model: ~1 GiB


@settings(max_examples=60)
@given(
    d_model=st.integers(1, 64).map(lambda k: 128 * k),
    n_layers=st.integers(1, 128),
    batch_size=st.integers(1, 1_000_000),
    ema=st.booleans(),
)
def test_a_step_within_the_memory_cap_is_accepted_and_the_batch_named_fits(d_model, n_layers, batch_size, ema):
    config = TrainConfig(d_model=d_model, n_layers=n_layers, batch_size=batch_size, ema_decay=0.999 if ema else 0.0)
    need = training_memory(config.model_config(), batch_size, config.model_config().layout.max_len, ema=ema)
    if need.total <= MAX_TRAINING_GIB * 2**30:
        config.validate()
        return
    with pytest.raises(OptionError) as error:
        config.validate()
    if error.value.option == "batch_size":  # the model fits; the batch it names does too, one more row does not
        fits = int(str(error.value).rsplit(" ", 1)[-1].replace(",", ""))
        assert fits < batch_size
        TrainConfig(d_model=d_model, n_layers=n_layers, batch_size=max(1, fits), ema_decay=config.ema_decay).validate()
    else:
        assert error.value.option == "d_model" and need.state > MAX_TRAINING_GIB * 2**30


def test_a_run_larger_than_the_memory_free_now_is_refused_naming_the_flag(tmp_path, monkeypatch):
    from conftest import tiny_config
    from longmul import train as train_module

    monkeypatch.setattr(train_module, "available_memory", lambda device: 2**20)  # 1 MiB free
    with pytest.raises(
        ValueError, match=r"--batch-size: .* over the 1 MiB free on this machine's cpu now, .* at most about"
    ):
        train_module.Trainer(tiny_config(), tmp_path, "pytest")
    monkeypatch.setattr(train_module, "available_memory", lambda device: None)  # cannot tell: no check
    train_module.Trainer(tiny_config(), tmp_path / "other", "pytest")
