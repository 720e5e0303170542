"""Data-parallel training throughput: examples per second on 1 and 2 processes, one thread each.

    python benchmarks/ddp.py                                # widths 128 256, 1 and 2 processes, 30 s each
    python benchmarks/ddp.py --widths 128 --seconds 10 --recipe icot --nprocs 1 2 4

Each row is one torchrun launch of this script on this machine (``torchrun --standalone``; with one
process, no process group: the plain trainer), training steps of the recipe on the global batch
``--batch-size`` (split among the processes) for ``--seconds`` after 3 warm-up steps, without writing
anything. It prints examples per second (wall clock), the speed-up over the first process count,
examples per CPU-second (summed over the ranks: what the work costs, whatever else runs on the cores),
and each rank's CPU share (its CPU time over the wall time: below 1 when a rank waited for a core, or
for the other ranks in the gradient all-reduce). Run it under ``taskset`` to choose the cores; on
cores shared with other work, examples/s measures that work too, examples per CPU-second much less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from longmul.distributed import process_group
from longmul.train import RECIPES, TrainConfig, Trainer


def measure(config: TrainConfig, seconds: float) -> dict | None:
    """This rank's part of one measurement; rank 0 returns the row, the others None."""
    torch.set_num_threads(config.threads)
    with process_group(config.device) as ranks:
        trainer = Trainer(config, Path(os.devnull), "benchmark", ranks)
        trainer.session_start, trainer.session_started = time.monotonic(), ""
        with trainer.data_parallel():
            for _ in range(3):
                trainer.train_step(log=False)
            ranks.barrier()
            start, cpu = time.perf_counter(), time.process_time()
            steps = 0
            while not ranks.any(time.perf_counter() - start >= seconds):  # every rank runs the same steps
                trainer.train_step(log=False)
                steps += 1
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        cpu_seconds = ranks.gather_objects(cpu)
    if not ranks.main:
        return None
    return {
        "recipe": config.recipe,
        "width": config.d_model,
        "processes": ranks.world_size,
        "batch_size": config.batch_size,
        "steps": steps,
        "seconds": round(wall, 1),
        "examples_per_s": steps * config.batch_size / wall,
        "examples_per_cpu_s": steps * config.batch_size / sum(cpu_seconds),
        "cpu_share": [round(c / wall, 2) for c in cpu_seconds],
    }


def launch(args: argparse.Namespace, width: int, nproc: int) -> dict:
    """One row: this script run as ``--rank`` on ``nproc`` processes by torchrun."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", __file__]
    command += ["--rank", "--recipe", args.recipe, "--widths", str(width), "--batch-size", str(args.batch_size)]
    command += ["--seconds", str(args.seconds)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=args.seconds + 600)
    if done.returncode:
        sys.exit(f"benchmarks/ddp.py: {nproc} process(es) at width {width} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--recipe", choices=RECIPES, default="sft")
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch (default 256)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed training per row (default 30)")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)  # how torchrun starts each rank
    args = parser.parse_args()
    if args.rank:
        config = TrainConfig(recipe=args.recipe, d_model=args.widths[0], batch_size=args.batch_size, threads=1, progress=False)
        row = measure(config, args.seconds)
        if row is not None:
            print(json.dumps(row))
        return
    print(f"# torch {torch.__version__}, {args.recipe}, global batch {args.batch_size}, 1 thread a process, {args.seconds:g} s a row")
    if not args.json:
        print(f"{'width':>6}{'procs':>6}{'steps':>7}{'examples/s':>12}{'speed-up':>10}{'ex/CPU-s':>10}  cpu share of each rank")
    for width in args.widths:
        alone = None
        for nproc in args.nprocs:
            row = launch(args, width, nproc)
            alone = alone or row["examples_per_s"]
            row["speed_up"] = row["examples_per_s"] / alone
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                shares = " ".join(f"{s:.2f}" for s in row["cpu_share"])
                cells = f"{row['examples_per_s']:>12.0f}{row['speed_up']:>10.2f}{row['examples_per_cpu_s']:>10.0f}"
                print(f"{width:>6}{nproc:>6}{row['steps']:>7}{cells}  {shares}", flush=True)


if __name__ == "__main__":
    main()
