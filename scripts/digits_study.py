"""Run the small-n study ("Beyond 4×4") into results/digits_study/ and write its summary.json.

    .venv/bin/python scripts/digits_study.py --minutes 120              # the plan in order, for two hours
    .venv/bin/python scripts/digits_study.py --only n3_icot_w128_paced  # one cell
    .venv/bin/python scripts/digits_study.py --list                     # the plan and what has run
    .venv/bin/python scripts/digits_study.py --print-commands           # run them elsewhere

The cells are :func:`longmul.study.study_plan`, most informative first; each is one ``longmul train``
command (:meth:`longmul.study.Cell.command`), run with one thread. A finished cell is skipped and one
with a checkpoint is resumed, so the script can be stopped (Ctrl-C or SIGTERM: the cell in flight
checkpoints first; so does one still running when ``--minutes`` is up) and started again. A finished
cell keeps its history, metrics and records; its weights and checkpoint are deleted to keep the
repository light (rerun its command, recorded in ``summary.json`` and its ``training.json``, to
re-make them). ``summary.json`` is rewritten after every cell.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from longmul.dynamics import CHECKPOINT_DIRS
from longmul.study import STUDY_FOLDER, Cell, study_plan, study_rows, write_summary

ROOT = Path(__file__).resolve().parents[1]
WEIGHT_FILES = ("model.safetensors",)


def cell_state(run_dir: Path) -> str:
    """``"finished"``, ``"started"`` (a checkpoint to resume) or ``"new"``."""
    if (run_dir / "training.json").is_file():
        return "finished"
    if any((run_dir / d / "state.json").is_file() for d in CHECKPOINT_DIRS):
        return "started"
    return "new"


def lighten(run_dir: Path) -> None:
    """Delete a finished cell's weights and checkpoint (its records stay)."""
    for name in WEIGHT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in CHECKPOINT_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def run_cell(args_run: list[str], deadline: float | None) -> int:
    """Run one ``longmul train``; at ``deadline`` (monotonic seconds) stop it with a checkpoint."""
    child = subprocess.Popen([sys.executable, "-m", "longmul.cli", *args_run], cwd=ROOT)
    try:
        while True:
            try:
                return child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    child.send_signal(signal.SIGTERM)  # the run checkpoints at its next step boundary
                    child.wait()
                    return -signal.SIGTERM
    except KeyboardInterrupt:
        child.send_signal(signal.SIGTERM)
        child.wait()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    plan = study_plan()
    names = [c.name for c in plan]
    parser.add_argument("--only", help="comma-separated cells (default: the whole plan, in order)")
    parser.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    parser.add_argument(
        "--folder", default=STUDY_FOLDER, help=f"where the cells go, from the repository root (default {STUDY_FOLDER})"
    )
    parser.add_argument("--print-commands", action="store_true", help="print each unfinished cell's command and stop")
    parser.add_argument("--list", action="store_true", help="list the plan with each cell's state and stop")
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes:g}")
    wanted = names
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            parser.error(f"unknown cell(s) {', '.join(unknown)}; `--list` shows the plan")
    folder = ROOT / args.folder
    if args.list:
        for row in study_rows(folder, include_unrun=True):
            done = f"{row['examples']:,} of {row['budget_examples']:,} examples" if "examples" in row else ""
            print(f"{row['cell']:<34}{row['status']:<13}{done}")
        return 0
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: the cell checkpoints
    try:
        return run_plan(plan, wanted, folder, args, deadline)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_plan(
    plan: list[Cell], wanted: list[str], folder: Path, args: argparse.Namespace, deadline: float | None
) -> int:
    """Run (or with ``--print-commands`` print) the unfinished cells of ``wanted`` in plan order."""
    for cell in plan:
        if cell.name not in wanted:
            continue
        run_dir = folder / cell.name
        state = cell_state(run_dir)
        if state == "finished":
            continue
        command = shlex.split(cell.command(args.folder))
        args_run = command[1:] + (["--resume"] if state == "started" else [])
        if args.print_commands:
            print(shlex.join(["longmul", *args_run]))
            continue
        if deadline is not None and time.monotonic() >= deadline:
            print(f"time is up; {cell.name} and the cells after it wait for the next call", file=sys.stderr)
            break
        print(f"{cell.name}: longmul {' '.join(args_run)}", flush=True)
        try:
            code = run_cell(args_run, deadline)
        except KeyboardInterrupt:
            write_summary(folder)
            print(f"{cell.name}: stopped; rerun this script to resume it", file=sys.stderr)
            return 130
        if code == -signal.SIGTERM:
            write_summary(folder)
            print(f"{cell.name}: stopped with a checkpoint at the time limit; rerun to resume it", file=sys.stderr)
            return 0
        if code != 0:
            print(f"{cell.name}: longmul train exited with {code}", file=sys.stderr)
            return code
        lighten(run_dir)
        write_summary(folder)
    if not args.print_commands:
        write_summary(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
