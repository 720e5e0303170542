import shutil

import pytest
import torch
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

from longmul.train import TrainConfig, Trainer, train

# Hypothesis profiles. "longmul-ci", loaded by default, is Hypothesis's default (100 examples per test)
# without a deadline (a first case may load a model); the fuzzer (test_fuzz_cli.py) gives each of its
# tests a share of that budget, which keeps the module under a minute on one core. "thorough"
# (`pytest --hypothesis-profile=thorough tests/test_fuzz_cli.py`) runs 20 times as many: over 10,000
# fuzz cases in all.
# Both build on the profile Hypothesis picked itself (its "ci" profile where the CI variable is set).
_NO_DEADLINE = {"parent": settings.default, "deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("longmul-ci", max_examples=100, **_NO_DEADLINE)
settings.register_profile("thorough", max_examples=2_000, **_NO_DEADLINE)
settings.load_profile("longmul-ci")


def tiny_config(**overrides) -> TrainConfig:
    """A run that takes a second or two: tiny model, 2x2-digit problems, small batches."""
    base = {
        "preset": "tiny",
        "n_digits": 2,
        "batch_size": 16,
        "max_steps": 12,
        "log_every": 3,
        "eval_every": 6,
        "n_val": 32,
        "final_eval_random": 64,
        "icot_gate_problems": 16,
        "icot_gate_every": 4,
        "icot_tokens_per_stage": 4,
        "icot_gate": 0.0,
        "progress": False,
        "threads": 1,
    }
    base.update(overrides)
    return TrainConfig(**base)


def kill_training_at(monkeypatch, step: int):
    """Make the next training stop with an exception ("simulated kill", as when a session ends) when
    it reaches ``step``; returns the function that restores ``Trainer.train_step``."""
    original = Trainer.train_step

    def dies_at_step(self, log):
        if self.step == step:
            raise RuntimeError("simulated kill")
        return original(self, log)

    monkeypatch.setattr(Trainer, "train_step", dies_at_step)
    return lambda: monkeypatch.setattr(Trainer, "train_step", original)


def train_until_killed(config: TrainConfig, out, step: int, monkeypatch) -> None:
    """Start a run and kill it (an exception, as when a session ends) when it reaches ``step``; its
    last checkpoint stays behind. ``Trainer.train_step`` is restored afterwards."""
    restore = kill_training_at(monkeypatch, step)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(config, out, command="pytest")
    restore()


@pytest.fixture(scope="session")
def tiny_sft_model(tmp_path_factory):
    """A saved (untrained-ish) 4x4 model directory shared by tests that only need the format."""
    out = tmp_path_factory.mktemp("models") / "sft"
    config = tiny_config(n_digits=4, max_steps=4, final_eval_random=20)
    return train(config, out, command="pytest fixture")


@pytest.fixture(scope="module")
def exported(tiny_sft_model, tmp_path_factory):
    """A copy of ``tiny_sft_model`` with its ONNX export (tests that change it copy it first)."""
    from longmul.onnx_export import export_onnx  # needs the onnx extra: only imported by tests that use it

    copy = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(tiny_sft_model, copy)
    export_onnx(copy)
    return copy


@pytest.fixture(scope="module")
def one_thread():
    """Analyses on small batches: one thread (torch and numpy's BLAS) avoids oversubscribing the two
    cores under ``pytest -n 2``, which otherwise makes them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)
