"""scripts/aux_ablation.py: the README it writes records a command for every configuration in the
form the chapter's reader expects, and bad arguments stop it before anything runs."""

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

from longmul import sweeps

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "aux_ablation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("aux_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_records_every_command_where_read_sweep_finds_them(tmp_path):
    script = load_script()
    commands = sweeps.ablation_commands(script.FOLDER, max_steps=1234)
    folder = tmp_path / "aux_ablation"
    folder.mkdir()
    (folder / "README.md").write_text(script.readme(commands, 1234))
    (folder / "none").mkdir()
    (folder / "none" / "history.jsonl").write_text('{"kind": "eval", "step": 1000, "val_exact_match": 0.0}\n')
    sweep = sweeps.read_sweep(folder)
    assert set(sweep.commands) == {name for name, _, _ in sweeps.ABLATION_PLAN}
    assert all("--max-steps 1234" in c for c in sweep.commands.values())
    assert sweep.without_command == []


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_unknown_configuration_is_refused():
    result = run_script("--only", "none,site_nowhere")
    assert result.returncode == 2 and "unknown configuration(s) site_nowhere" in result.stderr


def test_nonpositive_steps_are_refused():
    result = run_script("--max-steps", "0")
    assert result.returncode == 2 and "--max-steps must be positive" in result.stderr


def test_print_commands_lists_what_is_left_to_run(tmp_path):
    folder = tmp_path / "sweep"
    (folder / "none" / "checkpoint").mkdir(parents=True)  # started: resumed
    (folder / "weight_10").mkdir(parents=True)
    (folder / "weight_10" / "training.json").write_text("{}")  # finished: skipped
    result = run_script("--max-steps", "50", "--folder", str(folder), "--print-commands")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = [name for name, _, _ in sweeps.ABLATION_PLAN if name != "weight_10"]
    assert [shlex.split(line)[shlex.split(line).index("--out") + 1] for line in lines] == [f"{folder}/{n}" for n in expected]
    assert all(line.startswith("longmul train ") and "--max-steps 50" in line for line in lines)
    assert [line.endswith("--resume") for line in lines] == [n == "none" for n in expected]
    assert "weight_10: finished already" in result.stderr
    assert (folder / "README.md").is_file()  # the record of every command, run here or elsewhere
