import json
import subprocess
import sys

import pytest

from longmul.cli import main
from longmul.task import read_problems


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "longmul.cli", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["predict"], ["snapshot"], ["runs"], ["data"]])
def test_help_everywhere(command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0


def test_data_and_eval_json(tmp_path, tiny_sft_model, capsys):
    out = tmp_path / "problems.txt"
    assert main(["data", "--out", str(out), "--n", "25", "--seed", "1"]) == 0
    assert len(read_problems(out)) == 25
    capsys.readouterr()
    assert main(["eval", str(tiny_sft_model), "--problems", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 25 and len(result["per_digit"]) == 8


def test_data_creates_the_folder_it_writes_into(tmp_path):
    out = tmp_path / "new" / "folder" / "problems.txt"
    assert main(["data", "--out", str(out), "--n", "4"]) == 0
    assert len(read_problems(out)) == 4


def test_predict_prints_digits(tiny_sft_model, capsys):
    assert main(["predict", str(tiny_sft_model), "2365", "4347"]) == 0
    out = capsys.readouterr().out
    assert "2365 × 4347 = 10280655" in out and "c7" in out


def test_runs_lists_a_folder_of_runs_and_a_run_directory(tiny_sft_model, capsys):
    assert main(["runs", str(tiny_sft_model.parent)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tiny_sft_model}: sft, finished, step 4, 64 examples") and "val exact match" in out
    assert main(["runs", str(tiny_sft_model), "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["run"] == str(tiny_sft_model) and row["steps"] == 4 and row["status"] == "finished"


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{model}", "12a4", "5678"], "characters other than the digits"),
        (["predict", "{model}", "-123", "5678"], "negative"),
        (["predict", "{model}", "", "5678"], "empty"),
        (["predict", "{model}", "123", "5678"], "4-digit"),
        (["predict", "{tmp}/missing", "1234", "5678"], "model directory not found"),
        (["eval", "{model}", "--problems", "{tmp}/bad.txt"], "bad.txt:1: malformed"),
        (["train", "--recipe", "sft", "--preset", "huge", "--out", "{tmp}/x"], "unknown preset"),
        (["runs", "{tmp}/nope"], "no such folder"),
        (["runs", "{tmp}"], "no runs (directories with a history.jsonl)"),
        (["data", "--out", "{tmp}/bad.txt/x.txt", "--n", "3"], "bad.txt"),  # a file where a folder should be
    ],
)
def test_bad_input_gives_one_clear_line(args, message, tmp_path, tiny_sft_model, capsys):
    (tmp_path / "bad.txt").write_text("1 2 3 4 * 5 6 7\n")
    args = [a.format(model=tiny_sft_model, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("longmul: error:") and message in err
    assert not (tmp_path / "x").exists()


def test_errors_reach_the_shell_without_a_traceback(tmp_path):
    result = run_cli("predict", str(tmp_path / "missing"), "1234", "5678")
    assert result.returncode == 2
    assert result.stderr == f"longmul: error: model directory not found: {tmp_path / 'missing'}\n"


def test_unknown_recipe_is_rejected_by_the_parser(tmp_path):
    result = run_cli("train", "--recipe", "rl", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "invalid choice: 'rl'" in result.stderr


RECIPE = """recipe = "sft"
preset = "tiny"
n_digits = 2
seed = 1
max_steps = 6
batch_size = 16
log_every = 2
eval_every = 3
n_val = 16
final_eval_random = 16
threads = 1

[[change]]
step = 3
lr = 1e-4
"""


def test_train_runs_a_recipe_file_and_names_it(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(RECIPE)
    out = tmp_path / "run"
    assert main(["train", str(plan), "--out", str(out), "--progress", "false"]) == 0
    assert json.loads(capsys.readouterr().out)["random"]["n"] == 16
    training = json.loads((out / "training.json").read_text())
    assert training["steps"] == 6 and training["recipe_file"]["path"] == plan.as_posix()
    assert [c["step"] for c in training["schedule_changes"]] == [3]
    # resumable as any run: a finished plan resumed is finished again
    assert main(["train", str(plan), "--out", str(out), "--resume", "--progress", "false"]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["PLAN", "--lr", "0.1"], "holds the training options: --lr cannot be given with it"),
        (["PLAN", "--recipe", "sft", "--seed", "2"], "--recipe, --seed cannot be given"),
        ([], "give a recipe file (longmul train RECIPE_FILE --out DIR) or --recipe"),
    ],
)
def test_a_recipe_file_takes_no_training_flags(tmp_path, capsys, args, message):
    plan = tmp_path / "plan.toml"
    plan.write_text(RECIPE)
    argv = ["train", *(str(plan) if a == "PLAN" else a for a in args), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_bad_recipe_file_is_one_line_naming_it(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(RECIPE.replace("step = 3", "step = 9"))
    result = run_cli("train", str(plan), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"longmul: error: {plan}: change 1.step: step 9 is out of order: each change comes after the previous "
        "one (0) and before max_steps (6)"
    )
