"""Greedy decoding speed: `longmul.evaluate.greedy_generate` (key/value cache) against recomputing
the whole sequence at every step, on a saved model.

    python benchmarks/decoding.py models/icot/snapshot            # 500 ICoT test problems, 1 thread
    python benchmarks/decoding.py models/icot --n 1000 --threads 2

A model that still writes its chain of thought generates the most tokens and gains the most.
Prints both times, their ratio, and whether both produced the same tokens.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from longmul.datasets import icot_problems
from longmul.evaluate import cot_tokens_of, greedy_generate, position_skip_of
from longmul.model import model_config_of
from longmul.saved import load_model
from longmul.sequences import EOS_ID, PAD_ID, full_ids, problems_to_pairs


@torch.no_grad()
def generate_without_cache(model, pairs: np.ndarray) -> np.ndarray:
    """The baseline: every step runs the model over the prompt and everything generated so far."""
    layout = model_config_of(model).layout
    n_new = cot_tokens_of(model) + layout.answer_len
    ids = torch.from_numpy(full_ids(pairs, layout, with_cot=False)[:, : layout.prompt_len])  # (B, P)
    B, P = ids.shape
    positions = torch.cat([torch.arange(P), P + position_skip_of(model) + torch.arange(n_new)])
    finished = torch.zeros(B, dtype=torch.bool)
    for _ in range(n_new):
        T = ids.shape[1]
        nxt = model(input_ids=ids, position_ids=positions[:T].expand(B, T)).logits[:, -1].argmax(-1)  # (B,)
        nxt = torch.where(finished, torch.full_like(nxt, PAD_ID), nxt)
        finished |= nxt == EOS_ID
        ids = torch.cat([ids, nxt[:, None]], 1)
        if bool(finished.all()):
            break
    out = ids[:, P:].numpy()
    return np.pad(out, ((0, 0), (0, n_new - out.shape[1])), constant_values=PAD_ID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--n", type=int, default=500, help="ICoT test problems (at most 1,000)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model_dir).model
    pairs = problems_to_pairs(icot_problems("test")[: args.n])
    layout = model_config_of(model).layout
    start = time.perf_counter()
    cached = greedy_generate(model, pairs, layout)
    t_cached = time.perf_counter() - start
    start = time.perf_counter()
    uncached = generate_without_cache(model, pairs)
    t_uncached = time.perf_counter() - start
    print(
        f"{args.model_dir}: {len(pairs)} problems, {cot_tokens_of(model)} chain-of-thought tokens, "
        f"{args.threads} thread(s): cached {t_cached:.2f} s, without cache {t_uncached:.2f} s "
        f"({t_uncached / t_cached:.1f}x); same tokens: {np.array_equal(cached, uncached)}"
    )


if __name__ == "__main__":
    main()
