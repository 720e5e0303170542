"""Unit tests of longmul.sweeps: reading a folder of sweep results, its tables and summaries, and the
planned ablation commands."""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import fields

import numpy as np
import pytest

from longmul import sweeps
from longmul.cli import build_parser
from longmul.config import TrainConfig
from test_dynamics import eval_row, synthetic_rows, write_history

AUX = {"recipe": "aux", "aux_site": "blocks.1.hook_resid_mid", "aux_weight": 1.0, "aux_target": "running_sum", "aux_heads": [], "seed": 0}


def finished_run(
    folder, name: str, steps: int, command: str | None = None, final_em: float | None = None, middle: float | None = None, **config
) -> None:
    """A finished configuration: the synthetic history (its last evaluation's exact match set to
    ``final_em`` and its c3–c5 accuracy to ``middle``, where given) and a training.json recording ``config``."""
    rows = synthetic_rows(steps)
    if final_em is not None or middle is not None:
        last = dict(rows[-1])  # logged again: the later copy counts
        if final_em is not None:
            last["val_exact_match"] = final_em
        if middle is not None:
            last["val_per_digit"] = [*last["val_per_digit"][:3], middle, middle, middle, *last["val_per_digit"][6:]]
        rows.append(last)
    write_history(folder / name / "history.jsonl", rows)
    record = {"steps": steps, "config": {**AUX, **config}}
    if command:
        record["command"] = command
    (folder / name / "training.json").write_text(json.dumps(record))


def test_no_sweep_yet(tmp_path):
    assert sweeps.read_sweep(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("planned")
    assert sweeps.read_sweep(tmp_path / "empty") is None


def test_results_without_a_readme_are_refused(tmp_path):
    write_history(tmp_path / "sweep" / "w1" / "history.jsonl", synthetic_rows(1_000))
    with pytest.raises(ValueError, match="README.md"):
        sweeps.read_sweep(tmp_path / "sweep")


def test_read_sweep_and_its_table(tmp_path):
    folder = tmp_path / "aux_ablation"
    finished_run(folder, "weight_1", 3_000)
    own = "longmul train --recipe aux --aux-weight 10 --max-steps 3000 --out results/aux_ablation/weight_10 --resume"
    finished_run(folder, "weight_10", 3_000, command=own, aux_weight=10.0)
    write_history(folder / "bare.jsonl", synthetic_rows(1_000))
    (folder / "notes.txt").write_text("ignored")
    (folder / "README.md").write_text(
        "# sweep\n\n```bash\nlongmul train --recipe aux --aux-weight 1 --out results/aux_ablation/weight_1 --seed 0\n```\n"
        "```bash\nlongmul train --recipe aux --aux-weight 10 --max-steps 50 --out results/aux_ablation/weight_10\n```\n"
    )
    sweep = sweeps.read_sweep(folder)
    assert sorted(sweep.runs) == ["bare", "weight_1", "weight_10"]
    assert sweep.commands["weight_1"] == "longmul train --recipe aux --aux-weight 1 --out results/aux_ablation/weight_1 --seed 0"
    assert sweep.without_command == ["bare"]
    rows = {r["configuration"]: r for r in sweeps.sweep_rows(sweep)}
    w1 = rows["weight_1"]
    assert w1["status"] == "finished" and w1["aux weight"] == 1.0 and w1["steps"] == 3_000
    assert w1["c0"] == 1.0 and w1["c4"] == 0.1 and w1["steps to 99% exact match"] is None
    assert sweeps.MIDDLE_COLUMN == "c3–c5 mean" and w1["c3–c5 mean"] == pytest.approx(np.mean([w1["c3"], w1["c4"], w1["c5"]]))
    # validation accuracy of c0, c1 reaches 95% at the evaluation of step 1,000, c7 at 2,000; c2 (6,600) not by 3,000
    reached = [w1[f"steps to c{k} ≥ 95%"] for k in range(8)]
    assert reached == [1_000, 1_000, None, None, None, None, None, 2_000]
    assert (w1["command"], w1["command recorded in"]) == (sweep.commands["weight_1"], "README.md")
    # the run's own record wins over README.md's
    assert (rows["weight_10"]["command"], rows["weight_10"]["command recorded in"]) == (own, "the run's record")
    assert rows["bare"]["command"] is None and rows["bare"]["command recorded in"] is None
    assert w1["varies"] is None and w1["compared with"] is None  # not a configuration of the plan


def test_a_bare_sft_history_takes_its_settings_from_its_command(tmp_path):
    folder = tmp_path / "aux_ablation"
    write_history(folder / "none.jsonl", synthetic_rows(2_000))
    (folder / "README.md").write_text("```bash\nlongmul train --recipe sft --max-steps 2000 --out results/aux_ablation/none\n```\n")
    sweep = sweeps.read_sweep(folder)
    run = sweep.runs["none"]
    assert run.recipe == "sft" and run.planned_steps == 2_000 and run.config["lr"] == TrainConfig().lr
    (row,) = sweeps.sweep_rows(sweep)
    assert row["recipe"] == "sft" and row["varies"] == "no aux loss (SFT)" and row["compared with"] == sweeps.REFERENCE
    assert [row[key] for key in ("aux site", "aux heads", "aux weight", "aux target")] == [None] * 4
    assert row["command recorded in"] == "README.md" and row["status"] == "in progress"


def control_sweep(tmp_path, with_control: bool = True):
    folder = tmp_path / "aux_ablation"
    finished_run(folder, "site_layer2_attn", 3_000, final_em=0.93, middle=0.9)
    finished_run(folder, "weight_0.1", 3_000, final_em=0.5, aux_weight=0.1)
    finished_run(folder, "site_layer1", 3_000, final_em=0.2, aux_site="blocks.0.hook_resid_post")  # another probe: not compared
    finished_run(folder, "none", 2_000, final_em=0.001, recipe="sft")
    if with_control:
        finished_run(folder, "control_shuffled", 3_000, final_em=0.05, aux_target="shuffled")
    (folder / "README.md").write_text("# sweep\n")
    return sweeps.read_sweep(folder)


def test_control_rows_set_each_control_beside_its_true_target_and_no_aux_loss(tmp_path):
    sweep = control_sweep(tmp_path)
    assert list(sweep.runs) == ["none", "site_layer1", "site_layer2_attn", "weight_0.1", "control_shuffled"]  # the plan's order
    rows = sweeps.control_rows(sweep)
    assert [(r["configuration"], r["role"]) for r in rows] == [
        ("control_shuffled", "control: ĉ_k shuffled, λ = 1"),
        ("site_layer2_attn", "running sum, λ = 1"),
        ("none", "no aux loss"),
    ]
    assert [r["final val exact match"] for r in rows] == pytest.approx([0.05, 0.93, 0.001])
    assert [r[sweeps.MIDDLE_COLUMN] for r in rows] == pytest.approx([0.1, 0.9, 0.1])


def test_a_replicate_control_is_set_beside_the_true_target_of_its_own_seed(tmp_path):
    control_sweep(tmp_path)
    folder = tmp_path / "aux_ablation"
    finished_run(folder, "control_shuffled_seed1", 3_000, final_em=0.0, aux_target="shuffled", seed=1)
    finished_run(folder, "site_layer2_attn_seed1", 3_000, final_em=0.9, seed=1)
    sweep = sweeps.read_sweep(folder)
    rows = sweeps.control_rows(sweep)
    assert [(r["configuration"], r["seed"]) for r in rows] == [
        ("control_shuffled", 0),
        ("site_layer2_attn", 0),
        ("control_shuffled_seed1", 1),
        ("site_layer2_attn_seed1", 1),
        ("none", 0),
    ]


def test_comparison_rows_give_each_digit_and_the_middle_mean_by_target(tmp_path):
    sweep = control_sweep(tmp_path)
    rows = sweeps.comparison_rows(sweep)
    kinds = {r["run"]: r["target"] for r in rows}
    assert kinds == {
        "none": "no aux loss",
        "site_layer1": "running sum ĉ_k",
        "site_layer2_attn": "running sum ĉ_k",
        "weight_0.1": "running sum ĉ_k",
        "control_shuffled": "ĉ_k shuffled (control)",
    }
    final = [r for r in rows if r["run"] == "site_layer2_attn" and r["step"] == 3_000]
    by_digit = {r["digit"]: r["accuracy"] for r in final[-9:]}  # the last logged evaluation
    assert list(by_digit) == [*(f"c{k}" for k in range(8)), "c3–c5"]
    assert by_digit["c3–c5"] == pytest.approx(0.9)
    first = {r["digit"]: r["accuracy"] for r in rows if r["run"] == "none" and r["step"] == 1_000}
    assert first["c3–c5"] == pytest.approx(np.mean([first["c3"], first["c4"], first["c5"]]))


def test_no_control_yet(tmp_path):
    sweep = control_sweep(tmp_path, with_control=False)
    assert sweeps.control_rows(sweep) == []


def test_a_configuration_that_reaches_the_target_gives_its_step(tmp_path):
    sweep = control_sweep(tmp_path)
    assert all(row["steps to 99% exact match"] is None for row in sweeps.sweep_rows(sweep))
    history = tmp_path / "aux_ablation" / "weight_0.1" / "history.jsonl"
    history.write_text(history.read_text() + json.dumps(eval_row(3_000, [1.0] * 8)) + "\n")  # every digit right
    rows = {row["configuration"]: row for row in sweeps.sweep_rows(sweeps.read_sweep(tmp_path / "aux_ablation"))}
    assert rows["weight_0.1"]["steps to 99% exact match"] == 3_000
    assert rows["weight_0.1"][sweeps.MIDDLE_COLUMN] == pytest.approx(1.0)


def test_the_planned_ablation_commands_parse():
    parser = build_parser()
    planned = sweeps.ablation_commands(max_steps=1234)
    assert {p["configuration"] for p in planned} >= {"none", "site_layer1", "site_heads", "weight_10", "control_shuffled", "control_shuffled_weight_0.1"}
    for plan in planned:
        words = shlex.split(plan["command"])
        assert words[:2] == ["longmul", "train"]
        args = parser.parse_args(words[1:])
        assert args.max_steps == 1234 and args.out.name == plan["configuration"]
        assert sweeps._out_name(plan["command"]) == plan["configuration"]
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        config.validate()  # the site, heads and target exist for the cpu preset
        assert sweeps.command_config(plan["command"]) == config.to_dict()


def test_each_configuration_differs_from_its_baseline_in_one_setting():
    planned = {p["configuration"]: p for p in sweeps.ablation_commands()}
    assert planned[sweeps.REFERENCE]["compared with"] is None
    assert planned["control_shuffled_weight_0.1"]["compared with"] == "weight_0.1"
    for name, plan in planned.items():
        if plan["compared with"] is None:
            continue
        mine = sweeps.command_config(plan["command"])
        theirs = sweeps.command_config(planned[plan["compared with"]]["command"])
        differing = {n for n in mine if mine[n] != theirs[n]} - {"aux_heads"}  # heads go with the site
        assert len(differing) == 1, (name, differing)


def test_command_config_refuses_what_is_not_a_train_command():
    assert sweeps.command_config("longmul train --no-such-option --out x") is None
    assert sweeps.command_config("longmul eval models/aux") is None
    assert sweeps.command_config('longmul train --out "unterminated') is None


def test_config_differences_name_what_a_run_changed_on_resume(tmp_path):
    reference = sweeps.command_config("longmul train --recipe aux --max-steps 50000 --out x")
    run_dir = tmp_path / "aux"
    rows = synthetic_rows(3_000)
    rows.insert(20, {"kind": "resume", "step": 2_000, "changed": {"lr": [0.001, 0.0001]}})
    write_history(run_dir / "history.jsonl", rows)
    config = {**reference, "lr": 0.0001, "max_steps": 400_000, "threads": 3, "checkpoint_minutes": 2.0}
    del config["lr_schedule"]  # a configuration from before the option: its default
    (run_dir / "training.json").write_text(json.dumps({"steps": 3_000, "config": config}))
    from longmul.dynamics import load_run

    assert sweeps.config_differences(reference, load_run(run_dir)) == [
        {"setting": "lr", "reference": 0.001, "run": "0.0001 (0.001 until step 2,000)"},
        {"setting": "max_steps", "reference": 50_000, "run": "400,000"},
    ]  # threads and checkpointing do not change what is trained


def test_shuffled_target_floor_is_the_variance_of_the_running_sums():
    # 1x1 problems: ĉ_0 = a·b and ĉ_1 = ⌊a·b / 10⌋, a and b uniform in 1..9
    products = np.array([a * b for a, b in itertools.product(range(1, 10), repeat=2)], dtype=float)
    exact = (products.var() + (products // 10).var()) / 2
    assert sweeps.shuffled_target_floor(1.0, n_digits=1, n_problems=20_000) == pytest.approx(exact, rel=0.03)
    assert sweeps.shuffled_target_floor(10.0, n_digits=1, n_problems=20_000) == pytest.approx(exact / 100, rel=0.03)
