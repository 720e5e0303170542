"""longmul.study and scripts/digits_study.py: every cell of the small-n study is a valid `longmul train`
command within its example budget, the table reads what a run learned, and the driver runs, resumes
and lightens cells."""

import importlib.util
import json
import shlex
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longmul import study
from longmul.cli import build_parser
from longmul.config import TrainConfig
from longmul.dynamics import load_run
from longmul.study import Cell, cell_by_name, cell_row, chance_accuracy, icot_outcome, study_plan, study_rows
from longmul.task import random_problems

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "digits_study.py"


def train_config(command: str) -> TrainConfig:
    args = build_parser().parse_args(shlex.split(command)[1:])
    values = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__}
    return TrainConfig(**values)


def test_every_cell_is_a_valid_train_command_within_its_budget():
    plan = study_plan()
    assert len({c.name for c in plan}) == len(plan)
    for cell in plan:
        config = train_config(cell.command())
        config.validate()
        assert (config.recipe, config.n_digits, config.d_model, config.seed) == (
            cell.recipe,
            cell.n,
            cell.width,
            cell.seed,
        )
        assert (config.dropout, config.lr, config.threads) == (cell.dropout, cell.lr, 1)
        assert (
            config.max_steps * config.batch_size
            <= study.EXAMPLE_BUDGET[cell.n]
            < (config.max_steps + 1) * config.batch_size
        )
        assert cell_by_name(cell.name) == cell
        if cell.schedule == "paced":
            assert config.icot_tokens_per_stage == 1 and config.icot_stage_examples == study.EXAMPLES_PER_TOKEN[cell.n]
            assert config.icot_smoothing == 4.0 and config.icot_reset_optimizer
        elif cell.schedule == "gated":
            assert config.icot_stage_examples == 0 and config.icot_gate == study.GATE
        if cell.recipe == "aux":
            assert (config.aux_site, config.aux_weight) == ("blocks.1.hook_resid_mid", 10.0)


def test_plan_starts_with_the_cells_that_decide_the_next_4x4_run_and_covers_every_size():
    plan = study_plan()
    assert [c.name for c in plan[:4]] == ["n2_icot_w128_paced", "n3_icot_w128_paced", "n3_sft_w128", "n3_icot_w128_gated"]
    first_n4 = next(i for i, c in enumerate(plan) if c.n >= 4)
    assert all(c.n <= 3 for c in plan[:first_n4])
    assert {c.n for c in plan} == set(study.SIZES)
    assert {c.width for c in plan if c.n == 3 and c.recipe == "icot"} == set(study.WIDTHS)
    n3_icot = [c for c in plan if c.n == 3 and c.recipe == "icot"]
    assert {c.seed for c in n3_icot} == {0, 1} and {c.dropout for c in n3_icot} == {0.0, 0.1}
    assert {c.lr for c in n3_icot} == {study.LR, study.LOW_LR}
    assert {c.recipe for c in plan if c.n == 5} == {"sft"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 7, "recipe": "sft", "width": 64}, "n = 7 is not in the study"),
        ({"n": 3, "recipe": "icot", "width": 64}, "needs schedule"),
        ({"n": 5, "recipe": "icot", "width": 64, "schedule": "paced"}, "no paced ICoT pace"),
        ({"n": 3, "recipe": "sft", "width": 64, "schedule": "gated"}, "only ICoT cells"),
    ],
)
def test_bad_cells_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Cell(**kwargs)
    with pytest.raises(ValueError, match="no cell named"):
        cell_by_name("n9_sft_w1")


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 5), st.integers(0, 100))
def test_chance_is_the_most_common_value_of_each_digit(n, seed):
    chance = chance_accuracy(n, problems=2_000, seed=seed)
    digits = [p.c_digits for p in random_problems(2_000, seed=seed, n_digits=n)]
    assert chance == [max(column.count(d) for d in range(10)) / 2_000 for column in map(list, zip(*digits))]
    assert all(0.1 <= c <= 1.0 for c in chance)
    assert chance[0] > 0.2  # the units digit is 0 far more often than 1 in 10 (any even factor times a 5)


def write_icot_run(
    folder: Path, evals: list[tuple[int, int, float, list[float]]], stages: list[tuple[int, int]]
) -> Path:
    """A fake ICoT cell in progress: evaluations (step, removed, exact match, per digit) and stages (step, removed)."""
    folder.mkdir(parents=True)
    rows = [{"kind": "train", "step": 1, "examples": 64, "loss": 2.0, "removed": 0}]
    rows += [{"kind": "stage", "step": s, "examples": 64 * s, "removed": r} for s, r in stages]
    rows += [
        {"kind": "eval", "step": s, "examples": 64 * s, "removed": r, "val_exact_match": em, "val_per_digit": d}
        for s, r, em, d in evals
    ]
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "checkpoint").mkdir()
    state = {"step": evals[-1][0], "config": {"recipe": "icot", "n_digits": 2, "max_steps": 4687}, "elapsed_s": 360.0}
    (folder / "checkpoint" / "state.json").write_text(json.dumps(state))
    return folder


def test_a_row_names_the_digits_learned_those_at_chance_and_how_far_icot_got(tmp_path):
    cell = Cell(2, "icot", 64, "gated")
    good, chance_digit = [1.0, 1.0, 0.99, 0.97], [1.0, 0.12, 0.5, 0.97]
    run = load_run(write_icot_run(
        tmp_path / cell.name,
        evals=[(100, 0, 0.95, good), (300, 4, 0.90, good), (500, 8, 0.05, chance_digit), (700, 8, 0.06, chance_digit)],
        stages=[(200, 4), (400, 8)],
    ))  # fmt: skip
    chance = [0.1, 0.1, 0.1, 0.35]
    row = cell_row(cell, run, chance)
    assert row["status"] == "in progress" and row["cpu_hours"] == 0.1
    assert row["learned"] == [0, 3]  # at the latest evaluation: no final metrics yet
    assert row["exact_match"] == 0.06 and row["scored_on"] == "the latest validation (500 problems)"
    assert row["never_left_chance"] == []  # the best over the run counts: every digit was right earlier
    assert (row["removed"], row["cot_len"], row["stuck_before"]) == (8, 8, None)
    assert row["furthest_at_chance"] == [1]
    stuck = load_run(
        write_icot_run(tmp_path / "stuck", evals=[(100, 0, 0.95, good), (300, 4, 0.1, chance_digit)], stages=[(200, 4)])
    )
    assert icot_outcome(stuck, 2) == {
        "removed": 4, "cot_len": 8, "stuck_before": "partial product 1, digit 0", "furthest_at_chance": [1]
    }  # fmt: skip


def test_unrun_cells_are_left_out_unless_asked_for(tmp_path):
    assert study_rows(tmp_path) == []
    rows = study_rows(tmp_path, include_unrun=True)
    assert [r["cell"] for r in rows] == [c.name for c in study_plan()]
    assert all(r["status"] == "not run" and r["command"].startswith("longmul train") for r in rows)


def load_script():
    spec = importlib.util.spec_from_file_location("digits_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_runs_a_cell_lightens_it_and_summarises(tmp_path, monkeypatch):
    script = load_script()
    cell = Cell(2, "icot", 64, "paced")
    monkeypatch.setattr(study, "EXAMPLE_BUDGET", {**study.EXAMPLE_BUDGET, 2: 64 * 12})
    monkeypatch.setattr(study, "EXAMPLES_PER_TOKEN", {**study.EXAMPLES_PER_TOKEN, 2: 64})
    monkeypatch.setattr(study, "FINAL_EVAL_PROBLEMS", 50)
    monkeypatch.setattr(study, "study_plan", lambda: [cell])
    monkeypatch.setattr(script, "study_plan", lambda: [cell])
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(Path(study.__file__).resolve().parents[1]))
    handler = signal.getsignal(signal.SIGTERM)
    assert script.main(["--folder", "study"]) == 0
    assert signal.getsignal(signal.SIGTERM) is handler  # the script's own handler does not outlive it
    run_dir = tmp_path / "study" / cell.name
    assert script.cell_state(run_dir) == "finished"
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "checkpoint").exists()
    assert (run_dir / "history.jsonl").is_file() and (run_dir / "metrics.json").is_file()
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["cells_run"] == summary["cells_planned"] == 1
    (row,) = summary["rows"]
    assert row["examples"] == 64 * 12 and row["removed"] == 8 and row["scored_on"] == "50 fresh problems"
    assert summary["cpu_hours_total"] == row["cpu_hours"] == round(load_run(run_dir).elapsed_s / 3600, 3)
    assert script.main(["--folder", "study", "--print-commands"]) == 0  # a finished cell prints nothing


def test_the_script_refuses_unknown_cells_and_bad_minutes(capsys):
    script = load_script()
    with pytest.raises(SystemExit):
        script.main(["--only", "n2_sft_w128,bogus"])
    assert "unknown cell(s) bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--minutes", "0"])
    assert "--minutes must be positive" in capsys.readouterr().err
