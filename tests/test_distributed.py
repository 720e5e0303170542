"""Data-parallel training on 2 CPU processes (gloo), launched by torchrun as a user would launch it.

Two launches, each a few seconds of training after torchrun has started the ranks: the four recipes'
runs on 2 ranks (which must hold the same weights and log what one process logs), and a run whose
rank 1 is killed (the other must stop with one clear line, and the run resume in one process).

Run as a script, this module is the program each rank runs in the first launch
(``python -m torch.distributed.run … tests/test_distributed.py OUT RUNS_JSON``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from conftest import tiny_config
from longmul import distributed
from longmul.cli import main
from longmul.distributed import Ranks, process_group, relaunch
from longmul.train import TrainConfig, Trainer, start_session, train

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
LAUNCH_LIMIT_S = 300  # guards against a hang only: a launch takes well under a minute
# Rows logged by 2 ranks and by one process agree to float rounding (the ranks' gradients are added
# in another order): measured here, 5e-7 at most over 50 steps.
TOLERANCE = 1e-5

RUNS = {  # recipe runs on the global batch of 16 (8 rows a rank), 50 steps, every step logged
    "sft": {"recipe": "sft", "ema_decay": 0.9, "eval_every": 10},  # validation of the moving average
    "icot": {"recipe": "icot", "eval_every": 10},  # the gate (rank 0's verdict) passes at every check
    "aux": {"recipe": "aux", "eval_every": 25},
    "aux_shuffled": {"recipe": "aux", "aux_target": "shuffled", "eval_every": 25},  # rank 0's permutation
}


def run_config(overrides: dict) -> TrainConfig:
    return tiny_config(max_steps=50, log_every=1, **overrides)


def rank_main(out: Path, runs: dict) -> None:
    """Each rank: train every run, then write the weights it holds (with the probe and the moving
    average) to ``RUN/rank{r}.safetensors``."""
    with process_group("cpu") as ranks:
        for name, overrides in runs.items():
            trainer = start_session(
                run_config(overrides), out / name, resume=False, command="pytest ranks", ranks=ranks
            )
            trainer.run()
            held = {f"param.{i}": p.detach().clone() for i, p in enumerate(trainer.parameters())}
            held |= {f"ema.{i}": a.clone() for i, a in enumerate(trainer.ema or [])}
            save_file(held, out / name / f"rank{ranks.rank}.safetensors")


def launch(command: list[str], out: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``command`` with its output in ``out/launch.out`` and ``out/launch.err``."""
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command,
        stdout=open(out / "launch.out", "w"),
        stderr=open(out / "launch.err", "w"),
        env=env or os.environ.copy(),
    )


def rows_of(run: Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("elapsed_s", None)
    return [r for r in rows if kind is None or r["kind"] == kind]


def largest_difference(rows: list[dict], reference: list[dict]) -> float:
    """The largest absolute difference between the numbers of two lists of train rows, which must
    hold the same steps and entries."""
    assert [r["step"] for r in rows] == [r["step"] for r in reference]
    worst = 0.0
    for row, ref in zip(rows, reference, strict=True):
        assert row.keys() == ref.keys()
        for key in row.keys() - {"kind"}:
            values, expected = (row[key], ref[key]) if isinstance(ref[key], list) else ([row[key]], [ref[key]])
            worst = max(worst, *(abs(a - b) for a, b in zip(values, expected, strict=True)))
    return worst


def cli_flags(config: TrainConfig) -> list[str]:
    """The ``longmul train`` flags of ``config`` (those that differ from the defaults)."""
    defaults = TrainConfig()
    flags = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if value != getattr(defaults, f.name):
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            flags.append(f"--{f.name.replace('_', '-')}={str(value).lower() if isinstance(value, bool) else value}")
    return flags


def pid_of_rank(marker: str, rank: int) -> int | None:
    """The process of ``rank`` among those started with LONGMUL_TEST_MARKER=marker in their environment."""
    wanted = {f"LONGMUL_TEST_MARKER={marker}".encode(), f"RANK={rank}".encode()}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                return int(entry.name)
        except OSError:  # gone, or not ours
            continue
    return None


def test_two_ranks_hold_the_same_weights_and_log_what_one_process_logs(tmp_path):
    ranks_out = tmp_path / "ranks"
    launcher = launch([*TORCHRUN, __file__, str(ranks_out), json.dumps(RUNS)], tmp_path)
    assert launcher.wait(timeout=LAUNCH_LIMIT_S) == 0, (tmp_path / "launch.err").read_text()[-3000:]
    for name, overrides in RUNS.items():
        run = ranks_out / name
        held = [load_file(run / f"rank{r}.safetensors") for r in (0, 1)]
        assert held[0].keys() == held[1].keys()
        assert all(torch.equal(held[0][k], held[1][k]) for k in held[0]), f"{name}: the ranks' weights differ"

        alone = train(run_config(overrides), tmp_path / "one" / name, command="pytest")
        kinds = [(r["kind"], r["step"]) for r in rows_of(run)]
        assert kinds == [(r["kind"], r["step"]) for r in rows_of(alone)], f"{name}: rows at other steps"
        assert rows_of(run, "stage") == rows_of(alone, "stage")
        worst = largest_difference(rows_of(run, "train"), rows_of(alone, "train"))
        print(f"{name}: largest difference over 50 steps {worst:.3g}")
        assert worst <= TOLERANCE, f"{name}: the 2-rank rows differ from one process's by {worst}"

        hardware = json.loads((run / "checkpoint" / "state.json").read_text())["sessions"][-1]["hardware"]
        assert hardware["world_size"] == 2 and hardware["backend"] == "gloo"
        assert [r["device"] for r in hardware["ranks"]] == ["cpu", "cpu"]


def test_a_killed_rank_stops_the_other_and_the_run_resumes_in_one_process(tmp_path):
    config = tiny_config(recipe="aux", max_steps=100_000, log_every=1, eval_every=1_000, checkpoint_minutes=0.0)
    run, marker = tmp_path / "run", uuid.uuid4().hex
    # --nproc in the middle of the command line: `longmul train --nproc 2` runs it under torchrun.
    command = [sys.executable, "-m", "longmul", "train", "--nproc", "2", *cli_flags(config), f"--out={run}"]
    launcher = launch(command, tmp_path, env={**os.environ, "LONGMUL_TEST_MARKER": marker})
    deadline = time.monotonic() + LAUNCH_LIMIT_S
    while not ((run / "history.jsonl").exists() and len(rows_of(run, "train")) >= 5):
        assert launcher.poll() is None, (tmp_path / "launch.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "the ranks did not start training"
        time.sleep(0.2)
    os.kill(pid_of_rank(marker, 1), signal.SIGKILL)

    assert launcher.wait(timeout=LAUNCH_LIMIT_S) != 0
    err = (tmp_path / "launch.err").read_text()
    assert "longmul: error: rank 0 of 2 lost the other ranks" in err and "--resume" in err
    assert "Signal 9 (SIGKILL) received by PID" in err  # torchrun's report names the killed rank

    logged = rows_of(run, "train")
    step = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    assert step >= 1
    resumed = train(replace(config, max_steps=step + 3), run, resume=True, command="pytest")
    rows = rows_of(resumed, "train")
    assert [r["step"] for r in rows] == list(range(1, step + 4))
    assert rows[:step] == [r for r in logged if r["step"] <= step]  # nothing checkpointed is lost
    assert rows_of(resumed, "resume") == [
        {
            "kind": "resume",
            "step": step,
            "examples": step * 16,
            "changed": {"max_steps": [100_000, step + 3]},
            "world_size": 1,
        }
    ]
    sessions = json.loads((resumed / "training.json").read_text())["sessions"]
    assert [s["hardware"].get("world_size") for s in sessions] == [2, None]
    # The run goes on as the one process it now is would have trained it from the start.
    alone = train(replace(config, max_steps=step + 3), tmp_path / "alone", command="pytest")
    assert largest_difference(rows, rows_of(alone, "train")) <= TOLERANCE


@given(world_size=st.integers(1, 8), share=st.integers(1, 64))
def test_the_ranks_rows_are_disjoint_shares_that_make_up_the_batch(world_size, share):
    batch = world_size * share
    rows = [Ranks(rank, world_size).rows(batch) for rank in range(world_size)]
    covered = [i for part in rows for i in range(batch)[part]]
    assert covered == list(range(batch))
    assert {part.stop - part.start for part in rows} == {share}


def test_a_batch_the_ranks_cannot_share_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"--batch-size.*3 ranks"):
        Trainer(tiny_config(batch_size=16), tmp_path, "pytest", ranks=Ranks(0, 3, backend="gloo"))


def test_nproc_under_torchrun_must_be_torchrun_s_count(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert relaunch(2, ["train"]) is None  # this process is one of the 2 ranks: it trains
    with pytest.raises(ValueError, match="--nproc 4: torchrun started 2"):
        relaunch(4, ["train"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--recipe", "sft", "--d-model", "0"], "--d-model"),
        (["--batch-size", "0", "--recipe", "sft"], "--batch-size"),
        ([], "give a recipe file"),
    ],
)
def test_nproc_checks_the_options_before_starting_any_process(monkeypatch, tmp_path, capsys, flags, message):
    def started(*args):
        raise AssertionError("torchrun was started for options this process could refuse")

    monkeypatch.setattr(distributed, "relaunch", started)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--nproc", "2", *flags, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]), json.loads(sys.argv[2]))
