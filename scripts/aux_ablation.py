"""Run the auxiliary-loss ablation sweep (the book's lab notebook, book/lab_notebook.md) into results/aux_ablation/.

    .venv/bin/python scripts/aux_ablation.py --max-steps 10000                     # every configuration
    .venv/bin/python scripts/aux_ablation.py --max-steps 10000 --only none,site_heads   # a subset
    .venv/bin/python scripts/aux_ablation.py --max-steps 100000 --print-commands        # run them elsewhere

The configurations are :data:`longmul.sweeps.ABLATION_PLAN`: no aux loss, three probe sites, two
weights and two shuffled-target controls, all with the same optimiser settings and seed; each differs
in one setting from the configuration :func:`longmul.sweeps.baseline_of` names (the reference
``site_layer2_attn``, or for the control at λ = 0.1, ``weight_0.1``). Each runs with ``longmul train``
one after the other (start two instances with disjoint ``--only`` lists to use two cores: they share
README.md under a lock). A configuration already finished with at least ``--max-steps`` steps is
skipped; one with a checkpoint is resumed, so the script can be stopped (Ctrl-C or SIGTERM: the run in
flight checkpoints first) and started again, and a sweep that finished can be extended by calling it
again with a larger ``--max-steps`` (each finished run keeps its checkpoint; without one it cannot be
extended). With
``--print-commands`` it prints those commands (``--resume`` added where a checkpoint exists) one per
line instead of running them, e.g. for ``scripts/device_session.py`` to run side by side on a GPU.

``results/aux_ablation/README.md`` records, in the form in which :func:`longmul.sweeps.read_sweep`
finds it, the command that started each configuration: an entry is written when the script runs or
prints a configuration's command, and kept once that configuration's folder exists (a resume, even
with another ``--max-steps``, does not rewrite it; the run's own record names every session's
command). Entries of configurations the call leaves alone are kept as they are.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from longmul.dynamics import CHECKPOINT_DIRS
from longmul.sweeps import ABLATION_PLAN, REFERENCE, ablation_commands

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "results/aux_ablation"
HEADER = f"""# Auxiliary-loss ablation sweep

Each configuration differs in one setting from the configuration its entry names (the reference
`{REFERENCE}`, unless said otherwise); all share the optimiser settings and seed 0. Written by
`scripts/aux_ablation.py`: each entry gives the command that started its configuration (resumed, when
interrupted, with `--resume` added, and possibly another `--max-steps`: each run's own `training.json`
or `checkpoint/state.json` names the command of every session). `history.jsonl` and `training.json` are
what the chapter reads; each run keeps its checkpoint so that the sweep can be extended (the script
called again with a larger `--max-steps` resumes every configuration from there).
"""
ENTRY = re.compile(r"^## (\S+?):", re.MULTILINE)


def entry(command: dict) -> str:
    """README.md's section for one configuration of :func:`longmul.sweeps.ablation_commands`."""
    against = f", against `{command['compared with']}`" if command["compared with"] else ", the reference"
    return f"## {command['configuration']}: {command['varies']}{against}\n\n```bash\n{command['command']}\n```\n"


def recorded_entries(readme: str) -> dict[str, str]:
    """The sections of an existing README.md, by configuration."""
    starts = [m.start() for m in ENTRY.finditer(readme)] + [len(readme)]
    return {ENTRY.match(readme, a).group(1): readme[a:b].rstrip("\n") + "\n" for a, b in itertools.pairwise(starts)}


def record(folder: Path, command: dict) -> None:
    """Write ``command``'s entry into ``folder``/README.md, unless its configuration has started (its
    folder exists) and already has one; every other entry stays as it was. Two instances of this script
    (one per core) may record at the same moment: a lock on ``folder`` keeps either from overwriting the
    other's entry."""
    descriptor = os.open(folder, os.O_RDONLY)  # a directory: the lock leaves no file behind
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        _record_unlocked(folder, command)
    finally:
        os.close(descriptor)  # releases the lock


def _record_unlocked(folder: Path, command: dict) -> None:
    path = folder / "README.md"
    entries = recorded_entries(path.read_text()) if path.is_file() else {}
    name = command["configuration"]
    if name in entries and (folder / name).exists():
        return
    entries[name] = entry(command)
    planned = [n for n, _, _ in ABLATION_PLAN]
    order = [n for n in planned if n in entries] + [n for n in entries if n not in planned]
    path.write_text(HEADER + "\n" + "\n".join(entries[n] for n in order))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=10_000, help="steps per configuration (default 10,000)")
    parser.add_argument(
        "--only", help="comma-separated configurations (default: all): " + ", ".join(n for n, _, _ in ABLATION_PLAN)
    )
    parser.add_argument("--folder", default=FOLDER, help=f"where the runs go, from the repository root (default {FOLDER})")
    parser.add_argument("--print-commands", action="store_true", help="print the commands, one per line, and stop")
    args = parser.parse_args(argv)
    if args.max_steps < 1:
        parser.error(f"--max-steps must be positive, got {args.max_steps}")
    commands = ablation_commands(args.folder, max_steps=args.max_steps)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {c["configuration"] for c in commands})
        if unknown:
            parser.error(
                f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(c['configuration'] for c in commands)}"
            )
    else:
        wanted = [c["configuration"] for c in commands]
    folder = ROOT / args.folder
    folder.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: the child checkpoints
    for c in commands:
        name = c["configuration"]
        if name not in wanted:
            continue
        run_dir = folder / name
        started = any((run_dir / d / "state.json").is_file() for d in CHECKPOINT_DIRS)
        if (run_dir / "training.json").is_file():
            done = json.loads((run_dir / "training.json").read_text()).get("steps", 0)
            if done >= args.max_steps:
                print(f"{name}: finished already ({done:,} steps), skipped", file=sys.stderr)
                continue
            if not started:
                print(
                    f"{name}: finished at {done:,} steps and kept no checkpoint to extend from, skipped "
                    f"(delete {run_dir} to train it again from the start)",
                    file=sys.stderr,
                )
                continue
        args_run = shlex.split(c["command"])[1:] + (["--resume"] if started else [])
        record(folder, c)
        if args.print_commands:
            print(shlex.join(["longmul", *args_run]))
            continue
        print(f"{name}: longmul {' '.join(args_run)}", flush=True)
        child = subprocess.Popen([sys.executable, "-m", "longmul.cli", *args_run], cwd=ROOT)
        try:
            code = child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGTERM)  # the run checkpoints at its next step boundary
            child.wait()
            print(f"{name}: stopped; rerun this script to resume it", file=sys.stderr)
            return 130
        if code != 0:
            print(f"{name}: longmul train exited with {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
