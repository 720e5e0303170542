"""Training throughput per recipe and width on this machine.

    python benchmarks/throughput.py                    # widths 64 128 256, all recipes, 1 thread
    python benchmarks/throughput.py --widths 768 --threads 2 --steps 5

Prints one row per configuration: seconds per step, steps/s and tokens/s (tokens of the full
sequences, padding excluded; ICoT measured with its full chain of thought, its slowest stage).
"""

from __future__ import annotations

import argparse
import json

import torch

from longmul.train import RECIPES, TrainConfig, seconds_per_step, tokens_per_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, {args.steps} timed steps")
    if not args.json:
        print(f"{'recipe':<6}{'width':>6}{'s/step':>9}{'steps/s':>9}{'tokens/s':>10}")
    for recipe in args.recipes:
        for width in args.widths:
            config = TrainConfig(recipe=recipe, d_model=width, batch_size=args.batch_size, progress=False)
            sec = seconds_per_step(config, args.steps)
            tokens = tokens_per_sequence(config) * args.batch_size / sec
            row = {"recipe": recipe, "width": width, "s_per_step": sec, "steps_per_s": 1 / sec, "tokens_per_s": tokens}
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{recipe:<6}{width:>6}{sec:>9.3f}{1 / sec:>9.2f}{tokens:>10.0f}")


if __name__ == "__main__":
    main()
