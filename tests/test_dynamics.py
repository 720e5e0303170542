"""Unit tests of longmul.dynamics on synthetic histories whose answers are known by construction."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from longmul import dynamics as dyn
from longmul.saved import REQUIRED
from longmul.sequences import Layout

# Digit k drops from ln 10 to 0.01 at LEARNED_AT[k]; c3-c5 never do (their gradient norm stays 1).
LEARNED_AT = {0: 300, 1: 500, 7: 1_600, 2: 6_600, 6: 9_000}
FLAT_DIGITS = (3, 4, 5)


def train_row(step: int, learned_at=LEARNED_AT, flat_level: float = dyn.LN10, slope: float = 0.0, **extra) -> dict:
    losses, grads = [], []
    for k in range(8):
        if k in learned_at and step >= learned_at[k]:
            losses.append(0.01)
            grads.append(0.05)
        elif k in learned_at:
            losses.append(dyn.LN10)
            grads.append(2.0)
        else:
            losses.append(flat_level + slope * step)
            grads.append(1.0)
    return {
        "kind": "train",
        "step": step,
        "examples": step * 256,
        "elapsed_s": step / 10,
        "lr": 1e-3,
        "loss": float(np.mean(losses)),
        "digit_loss": losses,
        "digit_grad_norm": grads,
        "grad_norm": 1.0,
        **extra,
    }


def eval_row(step: int, per_digit: list[float]) -> dict:
    return {
        "kind": "eval",
        "step": step,
        "examples": step * 256,
        "elapsed_s": step / 10,
        "val_exact_match": float(np.prod(per_digit)),
        "val_per_digit": per_digit,
    }


def synthetic_rows(last_step: int = 20_000, every: int = 100, **kwargs) -> list[dict]:
    rows = [train_row(1, **kwargs)] + [train_row(s, **kwargs) for s in range(every, last_step + 1, every)]
    for s in range(1_000, last_step + 1, 1_000):
        rows.append(eval_row(s, [1.0 if k in LEARNED_AT and s >= LEARNED_AT[k] else 0.1 for k in range(8)]))
    return rows


def write_history(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def write_state(run_dir: Path, step: int, command: str = "longmul train --recipe sft --out x", **config) -> None:
    (run_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    state = {
        "config": {"recipe": "sft", "max_steps": 200_000, "n_digits": 4, **config},
        "step": step,
        "sessions": [{"command": command}],
    }
    (run_dir / "checkpoint" / "state.json").write_text(json.dumps(state))


def in_progress_run(tmp_path: Path, **kwargs) -> dyn.RunHistory:
    run_dir = tmp_path / "sft"
    write_history(run_dir / "history.jsonl", synthetic_rows(**kwargs))
    write_state(run_dir, 20_000)
    return dyn.load_run(run_dir)


# --------------------------------------------------------------------------- reading runs

def test_model_files_match_the_saved_model_format():
    assert dyn.MODEL_FILES == REQUIRED


def test_run_in_progress_with_a_half_written_last_line(tmp_path):
    run_dir = tmp_path / "sft"
    write_history(run_dir / "history.jsonl", synthetic_rows(2_000), tail='{"kind": "train", "st')
    write_state(run_dir, 1_900, command="longmul train --recipe sft --out models/sft")
    run = dyn.load_run(run_dir, name="SFT")
    assert run.name == "SFT" and run.status == "in progress" and not run.finished
    assert run.partial_last_line
    assert run.recipe == "sft" and run.planned_steps == 200_000 and run.checkpoint_step == 1_900
    assert run.command == "longmul train --recipe sft --out models/sft"
    assert run.last_step == 2_000 and run.examples == 2_000 * 256
    assert [r["step"] for r in run.evals] == [1_000, 2_000]
    row = dyn.tried_row(run)
    assert row["status"] == "in progress" and row["steps"] == 2_000
    assert row["val exact match"] == run.evals[-1]["val_exact_match"]


def test_a_bad_line_before_the_end_is_an_error(tmp_path):
    path = write_history(tmp_path / "history.jsonl", [train_row(1)], tail="not json\n" + json.dumps(train_row(2)) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        dyn.read_history_file(path)


def test_rows_logged_twice_keep_the_later_copy(tmp_path):
    first, again = train_row(100), train_row(100)
    again["loss"] = 9.0
    rows, partial = dyn.read_history_file(write_history(tmp_path / "h.jsonl", [train_row(200), first, again]))
    assert [r["step"] for r in rows] == [100, 200] and rows[0]["loss"] == 9.0 and not partial


def test_finished_snapshot_and_resumed_runs(tmp_path):
    for name, training, state_step, expected in [
        ("done", {"steps": 2_000, "config": {"recipe": "aux", "max_steps": 2_000}, "command": "longmul train A"}, 2_000, "finished"),
        ("snap", {"steps": 2_000, "config": {"recipe": "sft"}, "snapshot_of_unfinished_run": True}, 2_000, "snapshot"),
        ("resumed", {"steps": 2_000, "config": {"recipe": "sft"}}, 3_000, "in progress"),
    ]:
        run_dir = tmp_path / name
        write_history(run_dir / "history.jsonl", synthetic_rows(2_000))
        (run_dir / "training.json").write_text(json.dumps(training))
        write_state(run_dir, state_step, max_steps=4_000)
        run = dyn.load_run(run_dir)
        assert run.status == expected, name
    done = dyn.load_run(tmp_path / "done")
    assert done.recipe == "aux" and done.command == "longmul train A" and done.planned_steps == 2_000
    assert dyn.load_run(tmp_path / "resumed").planned_steps == 4_000  # the checkpoint's configuration
    assert dyn.load_run(tmp_path / "absent").status == "missing"


def test_recent_rate_is_steps_per_training_second():
    rows = [{**train_row(s), "elapsed_s": s / 4} for s in range(100, 3_001, 100)]  # 4 steps a second
    run = dyn.RunHistory("r", Path("r"), "in progress", train=rows)
    assert run.recent_rate() == pytest.approx(4.0)
    assert run.recent_rate(rows=5) == pytest.approx(4.0)
    assert dyn.RunHistory("r", Path("r"), "in progress", train=rows[:1]).recent_rate() is None


def test_recent_rate_times_the_latest_session_alone():
    # 2 steps/s up to step 2,000 (1,000 s), then resumed on a machine doing 50 steps/s
    rows = [{**train_row(s), "elapsed_s": s / 2} for s in range(100, 2_001, 100)]
    rows += [{**train_row(s), "elapsed_s": 1_000 + (s - 2_000) / 50} for s in range(2_100, 2_601, 100)]
    sessions = [{"wall_time_s": 1_000.0}, {"wall_time_s": 10.0}]
    run = dyn.RunHistory("r", Path("r"), "in progress", train=rows, sessions=sessions, recorded_wall_s=1_010.0)
    assert run.recent_rate() == pytest.approx(50.0)
    just_resumed = dyn.RunHistory("r", Path("r"), "in progress", train=rows[:20], sessions=sessions, recorded_wall_s=1_010.0)
    assert just_resumed.recent_rate() is None  # one row since the resume: too few to time


def test_load_runs_labels_and_bare_history_files(tmp_path):
    write_history(tmp_path / "sft" / "history.jsonl", synthetic_rows(1_000))
    runs = dyn.load_runs(tmp_path, {"sft": "SFT", "aux": "SFT + aux loss"})
    assert list(runs) == ["SFT", "SFT + aux loss"]
    assert runs["SFT"].status == "in progress" and runs["SFT + aux loss"].status == "missing"
    bare = write_history(tmp_path / "w10.jsonl", [train_row(100, aux_loss=0.5)])
    run = dyn.load_run(bare)
    assert run.name == "w10" and run.recipe == "aux" and run.config == {}


def test_discover_runs_and_the_table_of_everything_tried(tmp_path):
    assert dyn.discover_runs(tmp_path / "nowhere") == {}
    write_history(tmp_path / "aux_heads" / "history.jsonl", synthetic_rows(3_000))
    write_state(tmp_path / "aux_heads", 3_000, recipe="aux", aux_site="blocks.1.attn.hook_z", aux_heads=[0, 1])
    (tmp_path / "notes").mkdir()  # a folder without a history is not a run
    runs = dyn.discover_runs(tmp_path)
    assert list(runs) == ["aux_heads"]
    row = dyn.tried_row(runs["aux_heads"])
    assert row["recipe"] == "aux" and "aux_site = blocks.1.attn.hook_z" in row["recipe settings"]
    assert row["steps"] == 3_000 and row["examples"] == 3_000 * 256 and row["status"] == "in progress"
    # at step 3,000 only c0, c1 and c7 (learned at 300, 500, 1,600) are right
    assert row["val accuracy c0 … c7"] == "1.00 1.00 0.10 0.10 0.10 0.10 0.10 1.00"
    assert row["val exact match"] == pytest.approx(0.1**5)


def test_wall_time_comes_from_the_records_when_they_have_it(tmp_path):
    run_dir = tmp_path / "sft"
    write_history(run_dir / "history.jsonl", synthetic_rows(2_000))  # history: 200 s at step 2,000
    assert dyn.load_run(run_dir).elapsed_s == 200
    write_state(run_dir, 2_000)
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    state["elapsed_s"] = 150.0  # e.g. corrected for a paused process
    (run_dir / "checkpoint" / "state.json").write_text(json.dumps(state))
    assert dyn.load_run(run_dir).elapsed_s == 150.0
    (run_dir / "training.json").write_text(json.dumps({"steps": 2_000, "wall_time_s": 120.0, "config": {}}))
    assert dyn.load_run(run_dir).elapsed_s == 120.0


def test_trained_on_sums_each_machines_sessions(tmp_path):
    run_dir = tmp_path / "icot"
    write_history(run_dir / "history.jsonl", synthetic_rows(2_000))
    write_state(run_dir, 2_000)
    assert dyn.load_run(run_dir).trained_on == ""  # no session recorded its hardware
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    cpu, gpu = {"device": "cpu"}, {"device": "cuda", "gpu": "NVIDIA H200"}
    state["sessions"] = [
        {"wall_time_s": 3600.0, "hardware": cpu},
        {"wall_time_s": 360.0, "hardware": gpu},
        {"wall_time_s": 5400.0, "hardware": cpu},
    ]
    (run_dir / "checkpoint" / "state.json").write_text(json.dumps(state))
    run = dyn.load_run(run_dir)
    assert run.trained_on == "CPU 2.5 h, NVIDIA H200 0.1 h"
    assert dyn.tried_row(run)["trained on"] == run.trained_on


# --------------------------------------------------------------------------- tables

def test_digit_rows_unpooled_and_pooled(tmp_path):
    run = in_progress_run(tmp_path)
    rows = dyn.digit_rows([run])
    assert len(rows) == 8 * len(run.train)
    assert {r["digit"] for r in rows} == {f"c{k}" for k in range(8)}
    pooled = dyn.digit_rows({"x": run}, max_points=20)
    steps = sorted({r["step"] for r in pooled})
    assert len(steps) <= 20 and steps[-1] == run.last_step
    by_step = {}
    for r in pooled:
        by_step.setdefault(r["step"], r["step_from"])
    assert by_step[steps[0]] == 0  # bins are contiguous
    assert all(by_step[b] == a for a, b in itertools.pairwise(steps))
    flat = [r for r in pooled if r["k"] == 4]
    assert all(math.isclose(r["loss"], dyn.LN10) and math.isclose(r["grad_norm"], 1.0) for r in flat)


def test_pooled_gradient_norm_is_a_geometric_mean(tmp_path):
    rows = [train_row(100), train_row(200)]
    rows[0]["digit_grad_norm"] = [0.1] * 8
    rows[1]["digit_grad_norm"] = [10.0] * 8
    run = dyn.load_run(write_history(tmp_path / "h.jsonl", rows))
    (row,) = [r for r in dyn.digit_rows([run], max_points=1) if r["k"] == 0]
    assert math.isclose(row["grad_norm"], 1.0) and row["n_logs"] == 2


def test_grad_norm_matrix(tmp_path):
    run = in_progress_run(tmp_path)
    steps, matrix = dyn.grad_norm_matrix(run)
    assert matrix.shape == (8, len(run.train)) and list(steps) == [r["step"] for r in run.train]
    assert np.allclose(matrix[list(FLAT_DIGITS)], 1.0)
    assert matrix[0, -1] == pytest.approx(0.05) and matrix[0, 0] == pytest.approx(2.0)
    steps, matrix = dyn.grad_norm_matrix(run, max_points=10)
    assert matrix.shape[1] == len(steps) <= 10
    empty = dyn.RunHistory("e", tmp_path, "missing")
    assert dyn.grad_norm_matrix(empty)[1].shape == (0, 0)


def test_eval_and_stage_rows(tmp_path):
    run = in_progress_run(tmp_path)
    rows = dyn.eval_rows([run])
    assert len(rows) == 8 * len(run.evals)
    assert {r["accuracy"] for r in rows if r["k"] == 4} == {0.1}
    run.stages = [{"kind": "stage", "step": 600, "removed": 8}]
    assert dyn.stage_rows([run]) == [{"run": "sft", "step": 600, "removed": 8}]


def test_aux_error_rows_are_rms_in_units_of_c_hat(tmp_path):
    run = in_progress_run(tmp_path)
    run.config["aux_scale"] = 10.0
    for i, row in enumerate(run.train):
        row["aux_loss"] = 0.04 if i % 2 else 0.0  # pooled pairs: mean MSE 0.02
    rows = dyn.aux_error_rows([run])
    assert len(rows) == len(run.train) and rows[1]["rms_error"] == pytest.approx(0.2 * 10)
    run.train = run.train[:100]
    pooled = dyn.aux_error_rows([run], max_points=50)  # bins of two rows: MSE 0 and 0.04
    assert len(pooled) == 50 and all(r["rms_error"] == pytest.approx(math.sqrt(0.02) * 10) for r in pooled)
    assert pooled[-1]["step"] == run.train[-1]["step"]
    assert dyn.aux_error_rows([in_progress_run(tmp_path / "sft_only")]) == []


def test_stage_table(tmp_path):
    run = dyn.RunHistory("icot", tmp_path, "in progress", recipe="icot", config={"n_digits": 4})
    run.train = [train_row(s) for s in (100, 700, 2_000, 2_600)]
    run.evals = [
        {**eval_row(500, [0.5] * 8), "removed": 0},
        {**eval_row(1_000, [0.9] * 8), "removed": 8},
        {**eval_row(1_500, [0.8] * 8), "removed": 8},
        {**eval_row(2_500, [0.1] * 8), "removed": 16},
    ]
    run.stages = [{"step": 600, "removed": 8}, {"step": 2_000, "removed": 16}]
    table = dyn.stage_table(run)
    assert [(r["removed"], r["from_step"], r["to_step"], r["steps"], r["current"]) for r in table] == [
        (0, 0, 600, 600, False),
        (8, 600, 2_000, 1_400, False),
        (16, 2_000, 2_600, 600, True),
    ]
    assert table[1]["best_val_exact_match"] == pytest.approx(0.9**8)
    assert table[2]["best_val_exact_match"] == pytest.approx(0.1**8)


def test_furthest_stage_names_the_digits_that_never_left_chance(tmp_path):
    run = dyn.RunHistory("icot", tmp_path, "in progress", recipe="icot", config={"n_digits": 4})
    run.train = [train_row(s) for s in (100, 700, 2_000, 2_600, 3_000)]
    stuck = [1.0, 1.0, 0.9, 0.12, 0.08, 0.6, 0.9, 1.0]
    rising = [1.0, 1.0, 0.9, 0.16, 0.09, 0.7, 0.95, 1.0]  # c3 moves past 15%, c4 does not
    run.evals = [
        {**eval_row(1_000, [0.1] * 8), "removed": 8},
        {**eval_row(2_500, stuck), "removed": 16},
        {**eval_row(3_000, rising), "removed": 16},
    ]
    run.stages = [{"step": 600, "removed": 8}, {"step": 2_000, "removed": 16}]
    stage = dyn.furthest_stage(run)
    assert (stage["removed"], stage["cot_len"], stage["from_step"], stage["steps"], stage["evals"]) == (
        16, Layout(4, 4).cot_len, 2_000, 1_000, 2,
    )  # fmt: skip
    assert stage["current"] and stage["first"] == stuck and stage["latest"] == rising
    assert stage["entered_from"] == 8  # entering it removed tokens 8 … 15
    assert stage["best"][3] == 0.16 and stage["at_chance"] == [4]
    assert dyn.furthest_stage(run, near_chance=0.2)["at_chance"] == [3, 4]
    run.evals = run.evals[:1]  # the furthest stage has no evaluation yet: the one before it counts
    assert dyn.furthest_stage(run)["removed"] == 8 and dyn.furthest_stage(run)["at_chance"] == list(range(8))
    assert dyn.furthest_stage(run)["entered_from"] == 0
    assert dyn.furthest_stage(in_progress_run(tmp_path / "sft")) is None


# --------------------------------------------------------------------------- statistics

def test_learned_steps_by_loss_give_the_constructed_order(tmp_path):
    run = in_progress_run(tmp_path)
    learned = dyn.learned_steps(run)
    assert learned == {0: 300, 1: 500, 2: 6_600, 3: None, 4: None, 5: None, 6: 9_000, 7: 1_600}
    assert dyn.learning_order(learned) == [0, 1, 7, 2, 6]


def test_a_single_dip_is_not_learning(tmp_path):
    rows = [train_row(s, learned_at={}) for s in range(100, 1_001, 100)]
    rows[3]["digit_loss"][3] = 0.01  # one lucky batch
    rows[7]["digit_loss"][3] = 0.01
    rows[8]["digit_loss"][3] = 0.01
    run = dyn.load_run(write_history(tmp_path / "h.jsonl", rows))
    assert dyn.learned_steps(run)[3] is None  # never 3 logs in a row
    assert dyn.learned_steps(run, patience=2)[3] == 800
    assert dyn.learned_steps(run, patience=1)[3] == 400
    assert dyn.learned_steps(run, after_step=500, patience=1)[3] == 800
    with pytest.raises(ValueError):
        dyn.learned_steps(run, patience=0)
    with pytest.raises(ValueError, match="by must be"):
        dyn.learned_steps(run, by="vibes")


def test_learned_steps_by_validation_accuracy(tmp_path):
    run = in_progress_run(tmp_path)
    learned = dyn.learned_steps(run, by="accuracy")
    assert learned == {0: 1_000, 1: 1_000, 2: 7_000, 3: None, 4: None, 5: None, 6: 9_000, 7: 2_000}


LONG = 2 * dyn.FLAT_MIN_WINDOW_STEPS  # a history whose second half is just long enough for a verdict


def test_flatness_of_a_flat_and_of_a_falling_middle(tmp_path):
    flat = dyn.flatness(in_progress_run(tmp_path, last_step=LONG))
    assert flat.flat is True and flat.digits == FLAT_DIGITS
    assert flat.start_step == LONG // 2 and flat.end_step == LONG and flat.window_steps == dyn.FLAT_MIN_WINDOW_STEPS
    assert abs(flat.relative_change) < 1e-9 and flat.gap_to_chance == pytest.approx(0, abs=1e-9)
    # falls 1 nat over the second half (steps 20,000-40,000): 2.8 - 1.0 = 1.8 -> 0.8
    falling = dyn.flatness(in_progress_run(tmp_path / "b", last_step=LONG, flat_level=2.8, slope=-5e-5))
    assert falling.flat is False
    assert falling.slope_per_1k_steps == pytest.approx(-0.05)
    assert falling.fitted_start - falling.fitted_end == pytest.approx(1.0)
    assert falling.relative_change == pytest.approx(-1.0 / 1.8, rel=1e-6)
    # within the tolerance: a 1% drift is flat, unless the tolerance is tighter
    drifting = in_progress_run(tmp_path / "c", last_step=LONG, flat_level=2.3, slope=-1.15e-6)
    assert dyn.flatness(drifting).flat is True
    assert dyn.flatness(drifting, tolerance=0.005).flat is False


def test_flatness_verdicts(tmp_path):
    assert dyn.flatness(in_progress_run(tmp_path, last_step=LONG)).verdict == "flat"
    falling = in_progress_run(tmp_path / "b", last_step=LONG, flat_level=2.8, slope=-5e-5)
    assert dyn.flatness(falling).verdict == "not flat"
    short = dyn.load_run(write_history(tmp_path / "h.jsonl", [train_row(s) for s in (100, 200)]))
    assert dyn.flatness(short).verdict == "too short to tell"


def test_a_window_of_many_logs_but_few_steps_is_too_short(tmp_path):
    # 100 logged steps in the second half, but it spans 10,000 steps: a slow fall would look flat there
    run = in_progress_run(tmp_path, last_step=dyn.FLAT_MIN_WINDOW_STEPS)
    fit = dyn.flatness(run)
    assert fit.n_points >= dyn.FLAT_MIN_POINTS and fit.window_steps == dyn.FLAT_MIN_WINDOW_STEPS // 2
    assert fit.flat is None and fit.verdict == "too short to tell"
    assert dyn.flatness(run, min_window_steps=fit.window_steps).flat is True


def test_run_settings_and_digit_names(tmp_path):
    run = in_progress_run(tmp_path)  # config: recipe sft, max_steps, n_digits
    run.config.update(preset="cpu", batch_size=256, lr=0.001, log_every=100, eval_every=1000)
    settings = dyn.run_settings(run)
    assert settings["model"].startswith("2 layers, 4 heads, width 128")
    assert settings["optimiser"] == "batch_size = 256, lr = 0.001"
    assert settings["logging"] == "log_every = 100, eval_every = 1000"
    assert settings["recipe settings"] == ""
    run.recipe = "aux"
    run.config.update(aux_site="blocks.1.hook_resid_mid", aux_weight=1.0)
    assert dyn.run_settings(run)["recipe settings"] == "aux_site = blocks.1.hook_resid_mid, aux_weight = 1.0"
    assert dyn.run_settings(dyn.RunHistory("e", tmp_path, "missing"))["model"] == ""
    assert dyn.digit_names([0, 7]) == "c0, c7" and dyn.digit_names([]) == "none"


def test_optimiser_at_start_undoes_the_resumes(tmp_path):
    run_dir = tmp_path / "aux"
    rows = synthetic_rows(3_000)
    rows.insert(10, {"kind": "resume", "step": 1_000, "changed": {"lr": [0.001, 0.0003]}})
    rows.insert(20, {"kind": "resume", "step": 2_000, "changed": {"lr": [0.0003, 0.0001], "ema_decay": [0.0, 0.999]}})
    write_history(run_dir / "history.jsonl", rows)
    write_state(run_dir, 3_000, lr=0.0001, ema_decay=0.999, batch_size=256)  # no lr_schedule: older than the option
    run = dyn.load_run(run_dir)
    start = dyn.optimiser_at_start(run)
    assert set(start) == set(dyn.OPTIMISER_SETTINGS)
    assert (start["lr"], start["ema_decay"], start["lr_schedule"], start["warmup_steps"]) == (0.001, 0.0, "constant", 200)
    assert dyn.replaced_values(run, "lr") == [(0.001, 1_000), (0.0003, 2_000)]
    assert dyn.optimiser_at_start(dyn.RunHistory("e", tmp_path, "missing")) == {}


def test_common_settings():
    usual, own = dyn.common_settings({"a": {"lr": 1, "bs": 2}, "b": {"lr": 1, "bs": 2}, "c": {"lr": 3, "bs": 2}})
    assert usual == {"lr": 1, "bs": 2} and own == {"c": {"lr": 3}}
    usual, own = dyn.common_settings({"a": {"lr": 1}, "b": {"lr": 3}})
    assert usual == {"lr": 1} and own == {"b": {"lr": 3}}  # a tie: the first label's value
    assert dyn.common_settings({"a": {"lr": 1}, "b": {"lr": 1}}) == ({"lr": 1}, {})
    assert dyn.common_settings({}) == ({}, {})


def test_probe_error_below_needs_consecutive_logs(tmp_path):
    run = in_progress_run(tmp_path)
    run.config["aux_scale"] = 10.0
    for row in run.train:  # RMS error 10·sqrt(MSE): 1.0 until step 5,000, then 0.3 except one log at 5,200
        row["aux_loss"] = 0.01 if row["step"] < 5_000 or row["step"] == 5_200 else 0.0009
    assert dyn.probe_error_below(run) == 5_300  # 5,000 and 5,100 are two logs in a row, not three
    assert dyn.probe_error_below(run, patience=1) == 5_000
    assert dyn.probe_error_below(run, threshold=0.2) is None
    assert dyn.probe_error_below(in_progress_run(tmp_path / "sft")) is None  # no aux loss logged


def test_run_settings_name_what_a_resume_changed(tmp_path):
    run_dir = tmp_path / "aux"
    rows = synthetic_rows(3_000)
    rows.insert(20, {"kind": "resume", "step": 2_000, "examples": 512_000, "changed": {"lr": [0.001, 0.0001]}})
    write_history(run_dir / "history.jsonl", rows)
    write_state(run_dir, 3_000, lr=0.0001, batch_size=256)
    run = dyn.load_run(run_dir)
    assert [r["step"] for r in run.resumes] == [2_000] and run.last_step == 3_000
    assert dyn.run_settings(run)["optimiser"] == "batch_size = 256, lr = 0.0001 (0.001 until step 2,000)"
    assert dyn.tried_row(run)["changed on resume"] == "lr 0.001 → 0.0001 at step 2,000"
    bookkeeping = dyn.RunHistory("b", run_dir, "in progress", resumes=[{"step": 5, "changed": {"max_steps": [5, 9]}}])
    assert dyn.schedule_changes(bookkeeping) == ""  # a longer run trains the same way


def test_flatness_needs_enough_points(tmp_path):
    sparse = dyn.load_run(write_history(tmp_path / "h.jsonl", [train_row(s) for s in (100, 30_000, 60_000)]))
    assert dyn.flatness(sparse).window_steps >= dyn.FLAT_MIN_WINDOW_STEPS and dyn.flatness(sparse).flat is None
    assert dyn.flatness(sparse, min_points=2).flat is True
    assert dyn.flatness(dyn.RunHistory("e", tmp_path, "missing")) is None


def test_window_stats_show_gradient_on_flat_digits(tmp_path):
    stats = {r["k"]: r for r in dyn.window_stats(in_progress_run(tmp_path))}
    for k in FLAT_DIGITS:
        assert stats[k]["mean_loss"] == pytest.approx(dyn.LN10) and stats[k]["median_grad_norm"] == 1.0
    assert stats[0]["median_grad_norm"] == pytest.approx(0.05) and stats[0]["mean_loss"] == pytest.approx(0.01)
    assert stats[0]["from_step"] == 10_000 and stats[0]["to_step"] == 20_000


def test_training_changes_compare_evaluations_before_and_after(tmp_path):
    evals = [{"kind": "eval", "step": s, "val_exact_match": 0.5 if s <= 5_000 else 0.9, "val_per_digit": [1.0] * 8, "removed": 32}
             for s in range(1_000, 9_001, 1_000)]
    evals[-1]["removed"] = 40  # a new ICoT stage: another format, not counted
    resume = {"kind": "resume", "step": 5_000, "changed": {"lr": [0.001, 0.0001], "max_steps": [1, 2]}}
    bookkeeping = {"kind": "resume", "step": 2_000, "changed": {"max_steps": [1, 2]}}
    run_dir = tmp_path / "run"
    write_history(run_dir / "history.jsonl", [*evals[:2], bookkeeping, *evals[2:5], resume, *evals[5:]])
    (change,) = dyn.training_changes(dyn.load_run(run_dir), window=3)
    assert (change["step"], change["changes"]) == (5_000, "lr 0.001 → 0.0001")
    assert change["before"] == [0.5, 0.5, 0.5] and change["after"] == [0.9, 0.9, 0.9]
    assert change["after_to_step"] == 8_000
    assert dyn.training_changes(dyn.load_run(run_dir), window=10)[0]["after"] == [0.9] * 3  # stops at the new stage


def test_steps_to_exact_match(tmp_path):
    run = in_progress_run(tmp_path)
    assert dyn.steps_to_exact_match(run) is None  # c3-c5 stay at 10%
    run.evals[5]["val_exact_match"] = 0.995
    assert dyn.steps_to_exact_match(run) == run.evals[5]["step"]


def test_cot_gone_step_for_icot_runs(tmp_path):
    cot_len = Layout(4, 4).cot_len
    run = dyn.RunHistory("icot", tmp_path, "in progress", recipe="icot", config={"n_digits": 4})
    run.stages = [{"step": 600, "removed": 8}, {"step": 5_000, "removed": cot_len}]
    assert dyn.cot_gone_step(run) == 5_000
    run.stages = run.stages[:1]
    assert dyn.cot_gone_step(run) is None
    assert dyn.cot_gone_step(dyn.RunHistory("sft", tmp_path, "finished", recipe="sft")) is None


def test_icot_progress(tmp_path):
    run = dyn.RunHistory("icot", tmp_path, "in progress", recipe="icot", config={"n_digits": 4})
    run.train = [train_row(700, removed=8)]
    run.stages = [{"step": 600, "removed": 8}]
    assert dyn.icot_progress(run) == {"removed": 8, "cot_len": Layout(4, 4).cot_len, "stages": 1, "cot_gone_step": None}
    assert dyn.icot_progress(dyn.RunHistory("sft", tmp_path, "finished", recipe="sft")) is None


def test_the_papers_description_is_that_of_facts_section_4():
    sft, aux = dyn.PAPER_SFT, dyn.PAPER_AUX
    assert sft.steps_logged == 624_500 and aux.steps_logged == 1_107_500
    assert sft.learned_by == {0: 500, 1: 500, 7: 16_000, 2: 66_000} and sft.order == (0, 1, 7, 2)
    assert sft.never_learned == (3, 4, 5)
    assert sft.final_loss == (0, 0, 0.0004, 2.30, 2.30, 2.22, 1.56, 0.0001)
    assert sft.middle_grad_norm == 1.0  # §5.6: gradient norm ≈ 1 on the flat middle digits
    assert aux.order == (0, 1, 7, 2, 3, 6, 4, 5) and aux.learned_by == {5: 370_000} and aux.never_learned == ()
    assert "arXiv:2510.00184" in sft.source


def test_a_span_of_the_chain_of_thought_is_described_by_role():
    # Tokens 32-39 are what the 8-token runs removed to enter their stalled stage (40 removed).
    assert dyn.describe_cot_span(32, 40) == (
        "running total 0–2, digits 3–6; a closing bracket; a plus sign; partial product 3, digits 0–1"
    )
    assert dyn.describe_cot_span(32, 33) == "running total 0–2, digit 3"
    assert dyn.describe_cot_span(0, 0) == ""


def test_model_width_is_the_override_else_the_preset_s(tmp_path):
    run = dyn.RunHistory("icot", tmp_path, "in progress", recipe="icot", config={"preset": "cpu"})
    assert dyn.model_width(run) == 128
    run.config = {"preset": "cpu", "d_model": 256}
    assert dyn.model_width(run) == 256


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("checkpoint/state.json", "{garbage", "state.json is not valid JSON"),
        ("checkpoint/state.json", '{"config": [], "step": 3}', r"state.json is damaged: 'config' is \[\]"),
        ("training.json", '{"config": "sft"}', "training.json is damaged: 'config' is 'sft'"),
        ("training.json", "[]", "training.json does not hold a JSON object"),
    ],
)
def test_damaged_records_are_errors_naming_the_file(tmp_path, name, content, message):
    """Not a run of recipe None: a damaged record is reported."""
    run_dir = tmp_path / "sft"
    write_history(run_dir / "history.jsonl", synthetic_rows(2_000))
    write_state(run_dir, 2_000)
    (run_dir / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        dyn.load_run(run_dir)


def test_a_damaged_row_is_an_error_naming_its_line(tmp_path):
    """A flipped byte that renames a row's step (the fuzzer found it: `runs` failed with a KeyError)."""
    rows = [train_row(1), train_row(2)]
    path = write_history(tmp_path / "history.jsonl", rows)
    path.write_text(path.read_text().replace('"step": 2', '"stdp": 2'))
    with pytest.raises(ValueError, match=r"history.jsonl, line 2 is damaged: it has no 'step'"):
        dyn.read_history_file(path)
