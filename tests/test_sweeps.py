"""Unit tests of longmul.sweeps: reading a folder of sweep results and the planned ablation commands."""

from __future__ import annotations

import json
import shlex
from dataclasses import fields

import pytest

from longmul import sweeps
from longmul.cli import build_parser
from longmul.config import TrainConfig
from test_dynamics import synthetic_rows, write_history


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
    done = folder / "weight_1"
    write_history(done / "history.jsonl", synthetic_rows(3_000))
    (done / "training.json").write_text(
        json.dumps({"steps": 3_000, "config": {"recipe": "aux", "aux_site": "blocks.1.hook_resid_mid", "aux_weight": 1.0, "aux_target": "running_sum", "aux_heads": []}})
    )
    write_history(folder / "bare.jsonl", synthetic_rows(1_000))
    (folder / "notes.txt").write_text("ignored")
    (folder / "README.md").write_text(
        "# sweep\n\n```bash\nlongmul train --recipe aux --aux-weight 1 --out results/aux_ablation/weight_1 --seed 0\n```\n"
    )
    sweep = sweeps.read_sweep(folder)
    assert sorted(sweep.runs) == ["bare", "weight_1"]
    assert sweep.commands == {"weight_1": "longmul train --recipe aux --aux-weight 1 --out results/aux_ablation/weight_1 --seed 0"}
    assert sweep.without_command == ["bare"]
    rows = {r["configuration"]: r for r in sweeps.sweep_rows(sweep)}
    w1 = rows["weight_1"]
    assert w1["status"] == "finished" and w1["aux weight"] == 1.0 and w1["steps"] == 3_000
    assert w1["c0"] == 1.0 and w1["c4"] == 0.1 and w1["steps to 99% exact match"] is None
    assert w1["command recorded"] and not rows["bare"]["command recorded"]


def test_the_planned_ablation_commands_parse():
    parser = build_parser()
    planned = sweeps.ablation_commands(max_steps=1234)
    assert {p["configuration"] for p in planned} >= {"none", "site_layer1", "site_heads", "weight_10", "control_shuffled"}
    for plan in planned:
        words = shlex.split(plan["command"])
        assert words[:2] == ["longmul", "train"]
        args = parser.parse_args(words[1:])
        assert args.max_steps == 1234 and args.out.name == plan["configuration"]
        assert sweeps._out_name(plan["command"]) == plan["configuration"]
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        config.validate()  # the site, heads and target exist for the cpu preset
