"""scripts/aux_ablation.py: the README it writes records the command of each configuration it runs or
prints, in the form the chapter's reader expects, keeps every other entry, and never rewrites the
command that started a configuration; bad arguments stop it before anything runs."""

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
    folder = tmp_path / "aux_ablation"
    folder.mkdir()
    for command in sweeps.ablation_commands(script.FOLDER, max_steps=1234):
        script.record(folder, command)
    (folder / "none").mkdir()
    (folder / "none" / "history.jsonl").write_text(
        '{"kind": "eval", "step": 1000, "val_exact_match": 0.0, "val_per_digit": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}\n'
    )
    sweep = sweeps.read_sweep(folder)
    assert set(sweep.commands) == {name for name, _, _ in sweeps.ABLATION_PLAN}
    assert all("--max-steps 1234" in c for c in sweep.commands.values())
    assert sweep.without_command == []
    readme = (folder / "README.md").read_text()
    assert "## weight_0.1: weight λ = 0.1, against `site_layer2_attn`" in readme
    assert "## control_shuffled_weight_0.1: control: ĉ_k shuffled across the batch, at weight λ = 0.1, against `weight_0.1`" in readme
    assert f"## {sweeps.REFERENCE}: probe after layer-2 attention, the reference" in readme
    assert "shipped" not in readme  # the reference, not models/aux, is what each configuration differs from


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_unknown_configuration_is_refused():
    result = run_script("--only", "none,site_nowhere")
    assert result.returncode == 2 and "unknown configuration(s) site_nowhere" in result.stderr


def test_nonpositive_steps_are_refused():
    result = run_script("--max-steps", "0")
    assert result.returncode == 2 and "--max-steps must be positive" in result.stderr


def out_folders(stdout: str) -> list[str]:
    return [shlex.split(line)[shlex.split(line).index("--out") + 1] for line in stdout.splitlines()]


def test_print_commands_lists_what_is_left_to_run(tmp_path):
    folder = tmp_path / "sweep"
    (folder / "none" / "checkpoint").mkdir(parents=True)  # started: resumed
    (folder / "none" / "checkpoint" / "state.json").write_text("{}")
    (folder / "site_heads" / "checkpoint.old").mkdir(parents=True)  # killed between a save's renames: resumed
    (folder / "site_heads" / "checkpoint.old" / "state.json").write_text("{}")
    (folder / "site_layer1" / "checkpoint").mkdir(parents=True)  # a checkpoint folder with no state: not resumable
    (folder / "weight_10").mkdir(parents=True)
    (folder / "weight_10" / "training.json").write_text('{"steps": 50}')  # finished: skipped
    (folder / "weight_0.1" / "checkpoint").mkdir(parents=True)  # finished shorter, with its checkpoint: extended
    (folder / "weight_0.1" / "checkpoint" / "state.json").write_text("{}")
    (folder / "weight_0.1" / "training.json").write_text('{"steps": 20}')
    (folder / "control_shuffled").mkdir(parents=True)  # finished shorter, no checkpoint: cannot be extended
    (folder / "control_shuffled" / "training.json").write_text('{"steps": 20}')
    result = run_script("--max-steps", "50", "--folder", str(folder), "--print-commands")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = [name for name, _, _ in sweeps.ABLATION_PLAN if name not in ("weight_10", "control_shuffled")]
    assert out_folders(result.stdout) == [f"{folder}/{n}" for n in expected]
    assert all(line.startswith("longmul train ") and "--max-steps 50" in line for line in lines)
    assert [line.endswith("--resume") for line in lines] == [n in ("none", "site_heads", "weight_0.1") for n in expected]
    assert "weight_10: finished already (50 steps)" in result.stderr
    assert "control_shuffled: finished at 20 steps and kept no checkpoint to extend from" in result.stderr
    assert set(sweeps.read_sweep(folder).commands) == set(expected)  # the printed commands are recorded, the skipped ones not


def test_an_entry_survives_calls_for_other_configurations_and_resumes(tmp_path):
    folder = tmp_path / "sweep"
    assert run_script("--max-steps", "50", "--folder", str(folder), "--only", "none", "--print-commands").returncode == 0
    assert run_script("--max-steps", "70", "--folder", str(folder), "--only", "weight_10", "--print-commands").returncode == 0
    readme = (folder / "README.md").read_text()
    commands = load_script().recorded_entries(readme)
    assert list(commands) == ["none", "weight_10"]  # only what was printed, in the plan's order
    assert "--max-steps 50 " in commands["none"] and "--max-steps 70 " in commands["weight_10"]
    # "none" has started: a resume with another budget prints the new command but keeps the record
    (folder / "none" / "checkpoint").mkdir(parents=True)
    (folder / "none" / "checkpoint" / "state.json").write_text("{}")
    result = run_script("--max-steps", "90", "--folder", str(folder), "--only", "none", "--print-commands")
    assert "--max-steps 90 " in result.stdout and result.stdout.strip().endswith("--resume")
    assert (folder / "README.md").read_text() == readme
    # not started yet: printing it again with another budget replaces its entry
    run_script("--max-steps", "80", "--folder", str(folder), "--only", "weight_10", "--print-commands")
    assert "--max-steps 80 " in load_script().recorded_entries((folder / "README.md").read_text())["weight_10"]


def record_after(barrier, script, folder, command):
    barrier.wait(timeout=60)  # every process records at the same moment
    script.record(folder, command)


def test_scripts_recording_at_once_keep_each_others_entries(tmp_path):
    """Two instances (one per core) start their first configurations together: neither entry is lost.
    A lost update is likely, not certain, in one round without the lock: three rounds make it near-certain."""
    import multiprocessing

    script = load_script()
    commands = sweeps.ablation_commands(script.FOLDER, max_steps=10)
    context = multiprocessing.get_context("fork")  # Linux, like the script's users; no re-imports
    for round_ in range(3):
        folder = tmp_path / f"sweep{round_}"
        folder.mkdir()
        barrier = context.Barrier(len(commands))
        workers = [context.Process(target=record_after, args=(barrier, script, folder, c), daemon=True) for c in commands]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert [w.exitcode for w in workers] == [0] * len(commands)
        entries = script.recorded_entries((folder / "README.md").read_text())
        assert set(entries) == {c["configuration"] for c in commands}
