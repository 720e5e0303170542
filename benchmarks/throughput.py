"""Training throughput per recipe and width on this machine, and how close it runs to the machine's limit.

    python benchmarks/throughput.py                    # widths 64 128 256, all recipes, 1 thread
    python benchmarks/throughput.py --widths 128 256 768 --recipes sft icot --compile both
    python benchmarks/throughput.py --widths 768 --threads 2 --steps 5

Prints one row per configuration: seconds per step, steps/s and tokens/s (tokens of the full
sequences, padding excluded; ICoT measured with its full chain of thought, its slowest stage), and
the model FLOPs utilisation (MFU): the step's FLOPs per second over those of a large float32 matmul on
the same threads. A step's FLOPs are counted from the model's config by longmul.cost.training_flops
(the matmuls of the forward and backward pass, 6 · weights · tokens plus attention; the count
torch.utils.flop_counter makes, which tests/test_cost.py checks; the aux recipe's probe, a few hundred
FLOPs a row, is left out). Each timed step is followed by a timing of the matmul, and a row shows the
medians: on a core other processes share, the two sides of each ratio then see the same load.

``--compile`` times the step with the model under ``torch.compile`` (inductor; on the CPU it needs a C++
compiler): ``on``, ``off`` (the default) or ``both``. The first steps, which compile, are timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import torch

from longmul.cost import matmul_flops_per_second, training_flops
from longmul.train import RECIPES, TrainConfig, Trainer, tokens_per_sequence

WARMUP_STEPS = 3  # not timed: the allocator's first requests, and compilation under --compile


@dataclass
class Timing:
    warmup_s: float  # the warm-up steps together
    step_s: list[float]  # each timed step
    matmul_flops_per_s: list[float]  # the matmul timed after each step


def time_steps(config: TrainConfig, steps: int, compile_model: bool, matmul_size: int) -> Timing:
    """Time training steps without touching the disk, each followed by a timing of the matmul."""
    trainer = Trainer(config, Path(os.devnull), "benchmark")
    trainer.session_start = time.monotonic()
    trainer.session_started = ""
    if compile_model:
        trainer.trained = torch.compile(trainer.trained)
    start = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        trainer.train_step(log=False)
    timing = Timing(time.perf_counter() - start, [], [])
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step(log=False)
        timing.step_s.append(time.perf_counter() - start)
        timing.matmul_flops_per_s.append(matmul_flops_per_second(matmul_size, seconds=0.2))
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", choices=["off", "on", "both"], default="off", help="time under torch.compile")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmul that sets the limit")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, {args.steps} timed steps; "
        f"the limit: a float32 matmul {args.matmul_size}² (its GFLOP/s in the matmul column)"
    )
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    if not args.json:
        print(
            f"{'recipe':<6}{'width':>6}{'compile':>8}{'warm-up s':>10}{'s/step':>9}{'steps/s':>9}{'tokens/s':>10}"
            f"{'GFLOP/step':>11}{'GFLOP/s':>9}{'matmul':>8}{'MFU':>7}"
        )
    for recipe in args.recipes:
        for width in args.widths:
            for compiled in modes:
                config = TrainConfig(recipe=recipe, d_model=width, batch_size=args.batch_size, progress=False)
                timing = time_steps(config, args.steps, compiled, args.matmul_size)
                seq_len = tokens_per_sequence(config)
                flops = training_flops(config.model_config(), args.batch_size, seq_len)
                sec, peak = median(timing.step_s), median(timing.matmul_flops_per_s)
                mfu = median(
                    flops / step / rate for step, rate in zip(timing.step_s, timing.matmul_flops_per_s, strict=True)
                )
                row = {
                    "recipe": recipe,
                    "width": width,
                    "compile": compiled,
                    "warmup_s": timing.warmup_s,
                    "s_per_step": sec,
                    "steps_per_s": 1 / sec,
                    "tokens_per_s": seq_len * args.batch_size / sec,
                    "flops_per_step": flops,
                    "flops_per_s": flops / sec,
                    "matmul_flops_per_s": peak,
                    "mfu": mfu,
                }
                if args.json:
                    print(json.dumps(row))
                else:
                    print(
                        f"{recipe:<6}{width:>6}{'on' if compiled else 'off':>8}{timing.warmup_s:>10.1f}{sec:>9.3f}"
                        f"{1 / sec:>9.2f}{row['tokens_per_s']:>10.0f}{flops / 1e9:>11.2f}"
                        f"{flops / sec / 1e9:>9.1f}{peak / 1e9:>8.1f}{mfu:>7.1%}"
                    )


if __name__ == "__main__":
    main()
