"""Run the auxiliary-loss ablation sweep (chapter "Why SFT fails, and the fix") into results/aux_ablation/.

    .venv/bin/python scripts/aux_ablation.py --max-steps 10000                     # every configuration
    .venv/bin/python scripts/aux_ablation.py --max-steps 10000 --only none,site_heads   # a subset
    .venv/bin/python scripts/aux_ablation.py --max-steps 100000 --print-commands        # run them elsewhere

The configurations are :data:`longmul.sweeps.ABLATION_PLAN`: no aux loss, three probe sites, two
weights and the shuffled-target control, all with the same optimiser settings and seed. Each runs with
``longmul train`` one after the other (start two instances with disjoint ``--only`` lists to use two
cores). A configuration already finished is skipped; one with a checkpoint is resumed, so the script
can be stopped (Ctrl-C or SIGTERM: the run in flight checkpoints first) and started again. With
``--print-commands`` it prints those commands (``--resume`` added where a checkpoint exists) one per
line instead of running them, e.g. for ``scripts/device_session.py`` to run side by side on a GPU.

``results/aux_ablation/README.md`` records the exact command of every configuration, the form in
which :func:`longmul.sweeps.read_sweep` finds them; the chapter reads the folder.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from longmul.sweeps import ABLATION_PLAN, ablation_commands

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "results/aux_ablation"


def readme(commands: list[dict], max_steps: int) -> str:
    lines = [
        "# Auxiliary-loss ablation sweep",
        "",
        "Each configuration differs from the shipped aux run (`models/aux`) in one setting; all share the",
        f"optimiser settings, seed 0 and at most {max_steps:,} steps. Written by",
        f"`scripts/aux_ablation.py --max-steps {max_steps}`; each run was started with the command below",
        "(and resumed, when interrupted, with the same command plus `--resume`). Weights and checkpoints",
        "may be deleted to keep the repository small: `history.jsonl` and `training.json` are what the",
        "chapter reads.",
        "",
    ]
    for c in commands:
        lines += [f"## {c['configuration']}: {c['varies']}", "", "```bash", c["command"], "```", ""]
    return "\n".join(lines)


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
    (folder / "README.md").write_text(readme(commands, args.max_steps))  # every command, run or not
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: the child checkpoints
    for c in commands:
        name = c["configuration"]
        if name not in wanted:
            continue
        run_dir = folder / name
        if (run_dir / "training.json").is_file():
            print(f"{name}: finished already, skipped", file=sys.stderr)
            continue
        args_run = shlex.split(c["command"])[1:] + (["--resume"] if (run_dir / "checkpoint").is_dir() else [])
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
