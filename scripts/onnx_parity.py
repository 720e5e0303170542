"""Print how closely onnxruntime decodes the shipped models as PyTorch does (issue 24's parity figures).

For each shipped model: on N fresh problems, with no knockout and under each of K random knockouts
of attention edges into the answer positions, the share of identical greedy answers, the largest
|Δlogit| and PyTorch's own float32 error (distance from float64). Run from the repository root::

    .venv/bin/python scripts/onnx_parity.py            # N = 1,000, K = 20 (several minutes on one core)
    .venv/bin/python scripts/onnx_parity.py --n 200 --knockouts 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from longmul.onnx_runtime import answer_knockouts, compare, load_onnx
from longmul.saved import load_model
from longmul.sequences import problems_to_pairs
from longmul.shipped import MODEL_LABELS, shipped_dir
from longmul.task import random_problems

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="problems per model and per knockout")
    parser.add_argument("--knockouts", type=int, default=20, help="random knockouts per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = problems_to_pairs(random_problems(args.n, seed=24))
    for name in sorted(MODEL_LABELS):
        directory = shipped_dir(ROOT / "models", name)
        if directory is None:
            print(f"models/{name}: not shipped")
            continue
        model, onnx = load_model(directory).model, load_onnx(directory)
        plain = compare(model, onnx, pairs)
        print(
            f"{directory.relative_to(ROOT)}: {plain.n:,} problems, no knockout: same answers {plain.same_answers:.1%}, "
            f"max |Δlogit| {plain.max_logit_gap:.2e} (PyTorch float32 vs float64: {plain.float32_error:.2e})"
        )
        runs = [
            compare(model, onnx, pairs, [k]) for k in answer_knockouts(onnx, args.knockouts, np.random.default_rng(24))
        ]
        changed = sum(not np.array_equal(r.generated, plain.generated) for r in runs)
        print(
            f"    {len(runs)} knockouts x {args.n:,} problems: same answers {min(r.same_answers for r in runs):.1%} "
            f"(worst knockout), max |Δlogit| {max(r.max_logit_gap for r in runs):.2e} (float32 error "
            f"{max(r.float32_error for r in runs):.2e}); {changed} knockouts changed some answer",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
