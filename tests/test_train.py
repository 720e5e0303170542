import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config, train_until_killed
from longmul.saved import MANIFEST, load_model
from longmul.sequences import Layout
from longmul.task import Problem
from longmul.train import TrainConfig, Trainer, running_sums_batch, train


def _history(path):
    rows = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("elapsed_s", None)
    return rows


@pytest.mark.parametrize("recipe", ["sft", "icot", "aux"])
def test_loss_falls(recipe, tmp_path):
    config = tiny_config(recipe=recipe, max_steps=80, lr=3e-3, warmup_steps=5, log_every=10, eval_every=80, icot_gate=2.0)
    out = train(config, tmp_path / recipe, command="pytest")
    rows = [r for r in _history(out) if r["kind"] == "train"]
    assert rows[-1]["loss"] < 0.85 * rows[0]["loss"]
    assert len(rows[-1]["digit_loss"]) == len(rows[-1]["digit_grad_norm"]) == 4
    if recipe == "aux":
        assert rows[-1]["aux_loss"] < rows[0]["aux_loss"]
    # The finished run is a valid model directory: its manifest lists exactly its own files.
    assert load_model(out).training["steps"] == 80
    listed = set(json.loads((out / MANIFEST).read_text()))
    assert listed == {p.name for p in out.iterdir() if p.is_file() and p.name != MANIFEST}
    assert ("aux_probe.safetensors" in listed) == (recipe == "aux")


@pytest.mark.parametrize(
    "recipe, ema_decay", [("sft", 0.0), ("icot", 0.0), ("aux", 0.0), ("sft", 0.9), ("icot", 0.9)]
)
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(recipe, ema_decay, tmp_path, monkeypatch):
    config = tiny_config(recipe=recipe, dropout=0.1, checkpoint_minutes=0.0, ema_decay=ema_decay)
    whole = train(config, tmp_path / "whole", command="pytest")

    train_until_killed(config, tmp_path / "resumed", 7, monkeypatch)
    resumed = train(config, tmp_path / "resumed", resume=True, command="pytest")

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _history(whole) == _history(resumed)
    training = json.loads((resumed / "training.json").read_text())
    assert training["steps"] == 12 and training["examples"] == 12 * 16
    assert len(training["sessions"]) == 2
    if recipe == "icot":
        assert training["icot_stages"][-1]["removed"] == Layout(2, 2).cot_len


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    runs = [train(tiny_config(seed=s), tmp_path / f"run{i}", command="pytest") for i, s in enumerate([5, 5, 6])]
    weights = [load_file(r / "model.safetensors")["transformer.wte.weight"] for r in runs]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_each_session_records_the_cpu_and_the_vector_isa_its_rounding_depends_on(tmp_path):
    out = train(tiny_config(max_steps=2), tmp_path / "run", command="pytest")
    (session,) = json.loads((out / "training.json").read_text())["sessions"]
    hardware = session["hardware"]
    assert hardware["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hardware["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "SVE128", "NEON"}
    assert isinstance(hardware["cpu_model"], str) and hardware["cpu_model"]


def test_running_sums_batch_matches_problem():
    rng = np.random.default_rng(0)
    pairs = np.stack([rng.integers(1000, 10000, 50), rng.integers(1000, 10000, 50)], 1)
    expected = [Problem(int(a), int(b)).running_sums for a, b in pairs]
    assert running_sums_batch(pairs, Layout()).tolist() == [list(e) for e in expected]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"recipe": "rl"}, "unknown recipe"),
        ({"preset": "huge"}, "unknown preset"),
        ({"d_model": 30}, "not divisible"),
        ({"batch_size": 0}, "batch_size"),
        ({"recipe": "aux", "aux_site": "blocks.7.hook_resid_mid"}, "aux_site"),
        ({"recipe": "aux", "aux_site": "blocks.1.attn.hook_z"}, "needs aux_heads"),
        ({"recipe": "aux", "aux_target": "noise"}, "unknown aux_target"),
        ({"ema_decay": 1.0}, "ema_decay must be in"),
        ({"lr_schedule": "linear"}, "unknown lr_schedule"),
    ],
)
def test_bad_configs_fail_before_anything_is_written(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(tiny_config(**overrides), tmp_path / "out", command="pytest")
    assert not (tmp_path / "out").exists()


def test_cosine_schedule_warms_up_then_decays_to_zero_at_max_steps(tmp_path):
    config = tiny_config(lr=1e-3, warmup_steps=10, max_steps=100, lr_schedule="cosine")
    trainer = Trainer(config, tmp_path / "unused", "pytest")
    rates = {}
    for step in (0, 9, 50, 100):
        trainer.step = step
        rates[step] = trainer.lr_now()
    assert rates[0] == pytest.approx(1e-4 * (1 + np.cos(0)) / 2)  # warmup's first step
    assert rates[9] == pytest.approx(1e-3 * (1 + np.cos(np.pi * 0.09)) / 2)
    assert rates[50] == pytest.approx(0.5e-3)  # half-way down
    assert rates[100] == pytest.approx(0.0, abs=1e-12)
    trainer.config = tiny_config(lr=1e-3, warmup_steps=10, max_steps=100)
    assert trainer.lr_now() == pytest.approx(1e-3)  # constant: the peak after warmup


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path):
    out = train(tiny_config(max_steps=3), tmp_path / "run", command="pytest")
    with pytest.raises(ValueError, match="not empty"):
        train(tiny_config(max_steps=3), out, command="pytest")
    with pytest.raises(ValueError, match="different settings: batch_size"):
        train(tiny_config(max_steps=6, batch_size=8), out, resume=True, command="pytest")
    with pytest.raises(ValueError, match="nothing to resume"):
        train(tiny_config(), tmp_path / "empty", resume=True, command="pytest")


def test_the_icot_gate_may_change_on_resume_and_each_stage_records_its_gate(tmp_path):
    out = train(tiny_config(recipe="icot", max_steps=4, icot_gate=0.0), tmp_path / "run", command="pytest")
    train(tiny_config(recipe="icot", max_steps=16, icot_gate=-1.0), out, resume=True, command="pytest")
    stages = json.loads((out / "training.json").read_text())["icot_stages"]
    gates = {s["step"]: s["gate"] for s in stages if "gate" in s}
    assert gates and set(gates.values()) == {0.0, -1.0}
    assert all(gate == (0.0 if step <= 4 else -1.0) for step, gate in gates.items())


def test_a_gated_run_may_remove_fewer_tokens_per_stage_after_a_resume(tmp_path):
    # Gate 0: every check passes, so each check adds one stage of the current size.
    out = train(tiny_config(recipe="icot", max_steps=4, icot_gate=0.0), tmp_path / "run", command="pytest")
    train(tiny_config(recipe="icot", max_steps=12, icot_gate=0.0, icot_tokens_per_stage=1), out, resume=True, command="pytest")
    stages = json.loads((out / "training.json").read_text())["icot_stages"]
    removed = [s["removed"] for s in stages]
    assert removed == [0, 4, 5, 6]  # checks at steps 4, 8, 12: one of 4 tokens, then two of 1
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["changed"]["icot_tokens_per_stage"] for r in rows if r["kind"] == "resume"] == [[4, 1]]


def test_a_paced_run_refuses_a_new_stage_size_on_resume(tmp_path):
    paced = {"recipe": "icot", "icot_stage_examples": 32}
    out = train(tiny_config(max_steps=4, **paced), tmp_path / "run", command="pytest")
    with pytest.raises(ValueError, match="fixed pace"):
        train(tiny_config(max_steps=8, icot_tokens_per_stage=1, **paced), out, resume=True, command="pytest")


def test_a_resume_that_changes_the_learning_rate_is_recorded(tmp_path):
    out = train(tiny_config(max_steps=6, warmup_steps=0), tmp_path / "run", command="pytest")
    train(tiny_config(max_steps=12, warmup_steps=0, lr=1e-4), out, resume=True, command="pytest")
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    resumes = [r for r in rows if r["kind"] == "resume"]
    assert resumes == [{"kind": "resume", "step": 6, "examples": 6 * 16, "changed": {"lr": [1e-3, 1e-4], "max_steps": [6, 12]}}]
    lrs = {r["step"]: r["lr"] for r in rows if r["kind"] == "train"}
    assert lrs[6] == 1e-3 and lrs[9] == lrs[12] == 1e-4


def test_the_moving_average_is_what_is_evaluated_saved_and_checkpointed(tmp_path):
    out = train(tiny_config(max_steps=12, ema_decay=0.9), tmp_path / "ema", command="pytest")
    saved = load_file(out / "model.safetensors")
    extra = load_file(out / "checkpoint" / "extra.safetensors")
    raw = load_file(out / "checkpoint" / "model.safetensors")
    wte = next(i for i, name in enumerate(n for n, _ in load_model(out).model.named_parameters()) if name == "transformer.wte.weight")
    assert torch.equal(saved["transformer.wte.weight"], extra[f"ema.{wte}"])  # the saved model is the average
    assert not torch.equal(saved["transformer.wte.weight"], raw["transformer.wte.weight"])  # not the last step's


def test_validation_scores_the_moving_average(tmp_path):
    # An average that barely moves stays at the initial weights: validation must score those.
    config = tiny_config(max_steps=12, ema_decay=0.999999, lr=3e-3, warmup_steps=0)
    out = train(config, tmp_path / "slow", command="pytest")
    trainer = Trainer(config, tmp_path / "unused", "pytest")  # the same seed: the same initial weights
    trainer.session_start, trainer.session_started = 0.0, ""
    initial = trainer.validate_now()
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "eval"][-1]
    assert last["val_per_digit"] == initial["val_per_digit"]
    # ... and not the trained raw weights, which score otherwise
    raw = load_file(out / "checkpoint" / "model.safetensors")
    trainer.model.load_state_dict(raw, strict=False)
    trainer.ema = None
    assert trainer.validate_now()["val_per_digit"] != initial["val_per_digit"]


def test_a_moving_average_switched_on_at_a_resume_starts_from_the_weights_then(tmp_path, monkeypatch):
    out = train(tiny_config(max_steps=6), tmp_path / "run", command="pytest")
    at_resume = load_file(out / "checkpoint" / "model.safetensors")["transformer.wpe.weight"]
    averages = []
    original = Trainer.train_step

    def record_first_average(self, log):
        if not averages:
            averages.append([a.clone() for a in self.ema])
        return original(self, log)

    monkeypatch.setattr(Trainer, "train_step", record_first_average)
    train(tiny_config(max_steps=8, ema_decay=0.99), out, resume=True, command="pytest")
    assert any(torch.equal(a, at_resume) for a in averages[0])
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["changed"]["ema_decay"] for r in rows if r["kind"] == "resume"] == [[0.0, 0.99]]


def test_extending_a_finished_run(tmp_path):
    out = train(tiny_config(max_steps=6), tmp_path / "run", command="pytest")
    train(tiny_config(max_steps=12), out, resume=True, command="pytest")
    assert json.loads((out / "training.json").read_text())["steps"] == 12


def test_config_round_trips_through_json():
    config = TrainConfig(recipe="aux", aux_site="blocks.1.attn.hook_z", aux_heads=(0, 2))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1})


def test_snapshot_of_a_run_in_progress(tmp_path, monkeypatch):
    from longmul.train import export_snapshot

    train_until_killed(tiny_config(checkpoint_minutes=0.0), tmp_path / "run", 5, monkeypatch)
    snapshot = export_snapshot(tmp_path / "run", tmp_path / "snap", final_eval_random=10)
    loaded = load_model(snapshot)
    assert loaded.training["steps"] == 5 and loaded.training["snapshot_of_unfinished_run"]
    assert loaded.training["command"] == "pytest"
    with pytest.raises(ValueError, match="no checkpoint"):
        export_snapshot(tmp_path / "snap", tmp_path / "other")


def test_sigterm_stops_cleanly_with_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    import os
    import signal

    config = tiny_config(recipe="icot")
    whole = train(config, tmp_path / "whole", command="pytest")
    original = Trainer.train_step

    def signalled_at_step_7(self, log):
        if self.step == 7:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step must still complete
        return original(self, log)

    monkeypatch.setattr(Trainer, "train_step", signalled_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "stopped", command="pytest")
    state = json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 8
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = train(config, tmp_path / "stopped", resume=True, command="pytest")
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _history(whole) == _history(resumed)


@pytest.mark.parametrize(
    "overrides, option, message",
    [
        ({"seed": -1}, "seed", "seed must be from 0"),
        ({"n_digits": 10}, "n_digits", "n_digits must be from 1 to 9"),
        ({"lr": float("nan")}, "lr", "lr must be a finite number"),
        ({"lr": "fast"}, "lr", "lr must be of type float, got 'fast'"),
        ({"batch_size": True}, "batch_size", "batch_size must be of type int"),
        ({"device": "bogus"}, "device", "'bogus' is not a device"),
        ({"n_val": 10**7}, "n_val", "n_val must be at most 1,000,000"),
        ({"beta1": 1.0}, "beta1", r"beta1 must be in \[0, 1\)"),
        ({"icot_gate_every": 0}, "icot_gate_every", "icot_gate_every must be at least 1"),
        ({"threads": -2}, "threads", "threads must be from 0"),
    ],
)
def test_each_bad_option_is_named(overrides, option, message):
    from longmul.config import OptionError

    with pytest.raises(OptionError, match=message) as error:
        tiny_config(**overrides).validate()
    assert error.value.option == option


def test_a_checkpoint_from_another_run_is_refused_by_name(tmp_path, monkeypatch):
    train_until_killed(tiny_config(checkpoint_minutes=0.0), tmp_path / "run", 3, monkeypatch)
    state_path = tmp_path / "run" / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    state["optimizer"]["param_groups"] = []  # no longer fits the model's parameters
    state_path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"checkpoint in .*checkpoint does not fit this run"):
        train(tiny_config(checkpoint_minutes=0.0), tmp_path / "run", resume=True, command="pytest")
