"""The small-n study ("Beyond 4×4"): which output digits SFT, the auxiliary loss and ICoT learn on
n×n problems for n = 2…5, and what ICoT needs to internalise its chain of thought.

A *cell* is one training run: a problem size ``n``, a recipe, a width and, for ICoT, a removal
schedule, dropout, learning rate and seed. Every cell of one ``n`` gets the same budget of training
examples (:data:`EXAMPLE_BUDGET`), so cells compare fairly; :func:`study_plan` lists the cells in the
order they are worth running (the ICoT cells that decide the next 4×4 run first). ``scripts/digits_study.py``
runs them into ``results/digits_study/<cell>/`` and writes ``summary.json`` with :func:`write_summary`;
the chapter reads the same rows with :func:`study_rows`.

The two ICoT schedules:

* ``paced`` — the paper's: one token at a time at a fixed number of examples per token
  (:data:`EXAMPLES_PER_TOKEN`, scaled down from the paper's 101k at 4×4 so that the whole chain of
  thought is gone after 40% (n = 2) to 70% (n = 3, 4) of the budget), removal smoothing λ = 4 and an
  optimizer reset per token;
* ``gated`` — ours: :data:`GATED_TOKENS` tokens at a time, once free-running accuracy in the current
  format reaches :data:`GATE` (the recipe of the width-128 4×4 runs that stall).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmul.dynamics import RunHistory, describe_cot_span, discover_runs, furthest_stage, icot_progress
from longmul.files import read_json_object
from longmul.task import chain_of_thought_roles, random_problems

STUDY_FOLDER = "results/digits_study"
SIZES = (2, 3, 4, 5)
WIDTHS = (64, 128, 256)
BATCH_SIZE = 64  # as many examples per CPU-second as batch 256 at these widths, four times the updates
LR = 1e-3
LOW_LR = 1e-4
# Training examples per cell, by n (the same for every recipe and width of that n).
EXAMPLE_BUDGET = {2: 1_000_000, 3: 2_000_000, 4: 4_000_000, 5: 4_000_000}
# Paced ICoT: examples per removed chain-of-thought token (8, 24 and 46 tokens at n = 2, 3, 4).
EXAMPLES_PER_TOKEN = {2: 50_000, 3: 60_000, 4: 60_000}
GATE = 0.8
GATED_TOKENS = 4
AUX_ARGS = ("--aux-site", "blocks.1.hook_resid_mid", "--aux-weight", "10")  # the shipped aux model's probe
EVALUATIONS = 20  # validations per cell
FINAL_EVAL_PROBLEMS = 2_000
STOP_EXACT_MATCH = 0.999  # a cell that has learned the task stops early (ICoT: once its CoT is gone)
LEARNED = 0.95  # a digit is learned when its final accuracy on fresh problems is at least this
CHANCE_MARGIN = 0.05  # … and never left chance when its best validation accuracy stayed within this of chance


@dataclass(frozen=True)
class Cell:
    """One training run of the study."""

    n: int
    recipe: str
    width: int
    schedule: str = ""  # ICoT only: "paced" or "gated"
    dropout: float = 0.0
    lr: float = LR
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n not in EXAMPLE_BUDGET:
            raise ValueError(f"n = {self.n} is not in the study; choose one of {sorted(EXAMPLE_BUDGET)}")
        if self.recipe == "icot" and self.schedule not in ("paced", "gated"):
            raise ValueError(f"an ICoT cell needs schedule 'paced' or 'gated', got {self.schedule!r}")
        if self.recipe == "icot" and self.schedule == "paced" and self.n not in EXAMPLES_PER_TOKEN:
            raise ValueError(f"no paced ICoT pace is set for n = {self.n}")
        if self.recipe != "icot" and self.schedule:
            raise ValueError(f"only ICoT cells have a schedule, not {self.recipe}")

    @property
    def name(self) -> str:
        parts = [f"n{self.n}", self.recipe, f"w{self.width}"]
        if self.schedule:
            parts.append(self.schedule)
        if self.dropout:
            parts.append(f"drop{self.dropout:g}")
        if self.lr != LR:
            parts.append(f"lr{self.lr:g}")
        if self.seed:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)

    @property
    def budget(self) -> int:
        return EXAMPLE_BUDGET[self.n]

    @property
    def max_steps(self) -> int:
        return self.budget // BATCH_SIZE

    def command(self, folder: str = STUDY_FOLDER) -> str:
        """The ``longmul train`` command that runs this cell from the start."""
        args = [
            "longmul", "train", "--recipe", self.recipe, "--preset", "cpu", "--d-model", str(self.width),
            "--dropout", f"{self.dropout:g}", "--n-digits", str(self.n), "--out", f"{folder}/{self.name}",
            "--seed", str(self.seed), "--threads", "1", "--batch-size", str(BATCH_SIZE), "--lr", f"{self.lr:g}",
            "--max-steps", str(self.max_steps), "--eval-every", str(max(1, self.max_steps // EVALUATIONS)),
            "--log-every", "200", "--final-eval-random", str(FINAL_EVAL_PROBLEMS),
            "--stop-exact-match", str(STOP_EXACT_MATCH), "--checkpoint-minutes", "4", "--progress", "false",
        ]  # fmt: skip
        if self.recipe == "aux":
            args += AUX_ARGS
        if self.schedule == "paced":
            args += ["--icot-tokens-per-stage", "1", "--icot-stage-examples", str(EXAMPLES_PER_TOKEN[self.n])]
        elif self.schedule == "gated":
            args += ["--icot-tokens-per-stage", str(GATED_TOKENS), "--icot-gate", str(GATE)]
        return shlex.join(args)


def study_plan() -> list[Cell]:
    """Every cell, most informative first: the three recipes at width 128 for n = 2 and 3 (paced ICoT
    first, then SFT and gated ICoT at 3×3), then what the next 4×4 ICoT run needs (ICoT at n = 3 across widths, schedules, dropout,
    learning rate and a second seed), the rest of the digit table at n = 2 and 3, and last the
    expensive n = 4 and n = 5 cells."""
    cells: list[Cell] = []

    def add(*new: Cell) -> None:
        cells.extend(c for c in new if c not in cells)

    add(
        Cell(2, "icot", 128, "paced"), Cell(3, "icot", 128, "paced"), Cell(3, "sft", 128), Cell(3, "icot", 128, "gated")
    )
    add(Cell(2, "sft", 128), Cell(2, "aux", 128), Cell(3, "aux", 128), Cell(2, "icot", 128, "gated"))
    add(Cell(3, "icot", 64, "paced"), Cell(3, "icot", 64, "gated"))
    add(Cell(3, "icot", 128, "paced", dropout=0.1), Cell(3, "icot", 128, "paced", lr=LOW_LR))
    add(Cell(3, "icot", 256, "paced"), Cell(3, "icot", 256, "gated"))
    for width in (64, 128, 256):
        add(Cell(3, "icot", width, "paced", seed=1), Cell(3, "icot", width, "gated", seed=1))
    for n in (2, 3):
        for width in WIDTHS:
            add(
                Cell(n, "sft", width),
                Cell(n, "aux", width),
                Cell(n, "icot", width, "paced"),
                Cell(n, "icot", width, "gated"),
            )
            add(Cell(n, "icot", width, "paced", seed=1), Cell(n, "icot", width, "gated", seed=1))
    add(Cell(3, "icot", 64, "paced", dropout=0.1), Cell(3, "icot", 256, "paced", dropout=0.1))
    add(Cell(3, "icot", 64, "paced", lr=LOW_LR), Cell(3, "icot", 256, "paced", lr=LOW_LR))
    for width in WIDTHS:
        add(Cell(4, "sft", width), Cell(4, "aux", width))
    add(Cell(5, "sft", 128), Cell(4, "icot", 64, "paced"), Cell(4, "icot", 128, "paced"))
    add(Cell(5, "sft", 64), Cell(5, "sft", 256))
    return cells


def cell_by_name(name: str) -> Cell:
    for cell in study_plan():
        if cell.name == name:
            return cell
    raise ValueError(f"no cell named {name!r} in the study plan")


# --------------------------------------------------------------------------- reading results


def chance_accuracy(n: int, problems: int = 20_000, seed: int = 0) -> list[float]:
    """Per output digit of an n×n product, the accuracy of always guessing its most common value on
    uniform operands: what a model that ignores the operands gets (0.1 for a uniform digit, more for
    the top digit, which is often 0)."""
    products = np.array([p.product for p in random_problems(problems, seed=seed, n_digits=n)], dtype=np.int64)
    digits = (products[:, None] // 10 ** np.arange(2 * n)[None, :]) % 10  # (problems, 2n)
    return [float(np.bincount(column, minlength=10).max() / len(column)) for column in digits.T]


def icot_outcome(run: RunHistory, n: int) -> dict:
    """How far an ICoT cell's chain of thought got: ``removed`` of ``cot_len`` tokens by its end;
    ``stuck_before``: for a cell that ended with chain of thought left, the next token it would have
    removed, by role (None once the whole chain of thought is gone); ``furthest_at_chance``: the digits
    that never left chance in the furthest stage it was evaluated in."""
    progress = icot_progress(run) or {"removed": 0, "cot_len": len(chain_of_thought_roles(n, n))}
    removed, cot_len = progress["removed"], progress["cot_len"]
    stage = furthest_stage(run)
    return {
        "removed": removed,
        "cot_len": cot_len,
        "stuck_before": describe_cot_span(removed, removed + 1, n) if removed < cot_len else None,
        "furthest_at_chance": stage["at_chance"] if stage else [],
    }


def cell_row(cell: Cell, run: RunHistory | None, chance: list[float]) -> dict:
    """One row of the study's table: the cell's settings, budget, and what it learned."""
    row = {
        "cell": cell.name, "n": cell.n, "recipe": cell.recipe, "width": cell.width, "schedule": cell.schedule or None,
        "dropout": cell.dropout, "lr": cell.lr, "seed": cell.seed, "budget_examples": cell.budget,
        "command": cell.command(),
    }  # fmt: skip
    if run is None or not (run.train or run.evals):
        row["status"] = "not run"
        return row
    metrics = _read_metrics(run.path) if run.finished else None
    best = np.max([e["val_per_digit"] for e in run.evals], axis=0).tolist() if run.evals else None
    final = metrics["random"] if metrics and "random" in metrics else None
    latest = run.latest_eval
    per_digit = final["per_digit"] if final else (latest["val_per_digit"] if latest else None)
    row.update(
        status=run.status,
        examples=run.examples,
        cpu_hours=round(run.elapsed_s / 3600, 3),
        exact_match=final["exact_match"] if final else (latest["val_exact_match"] if latest else None),
        scored_on=f"{final['n']:,} fresh problems" if final else "the latest validation (500 problems)",
        per_digit=per_digit,
        best_val_per_digit=best,
        chance=chance,
        learned=[k for k, a in enumerate(per_digit or []) if a >= LEARNED],
        never_left_chance=[k for k, a in enumerate(best or []) if a <= chance[k] + CHANCE_MARGIN],
    )
    if cell.recipe == "icot":
        row.update(icot_outcome(run, cell.n))
    return row


def _read_metrics(path: Path) -> dict | None:
    """A finished cell's ``metrics.json`` (None if it has none)."""
    metrics = path / "metrics.json"
    return read_json_object(metrics) if metrics.is_file() else None


def study_rows(folder: str | Path = STUDY_FOLDER, include_unrun: bool = False) -> list[dict]:
    """The table of the study, one row per cell of :func:`study_plan` found in ``folder`` (all of them
    with ``include_unrun``), in plan order."""
    runs = discover_runs(folder)
    chances = {n: chance_accuracy(n) for n in {c.n for c in study_plan()}}
    rows = [cell_row(c, runs.get(c.name), chances[c.n]) for c in study_plan()]
    return [r for r in rows if include_unrun or r["status"] != "not run"]


def write_summary(folder: str | Path = STUDY_FOLDER) -> Path:
    """Write ``folder/summary.json``: the budget per n, the schedules' settings, total CPU time and
    every cell's row (run or not)."""
    rows = study_rows(folder, include_unrun=True)
    summary = {
        "what": "digits learned per n×n problem size, recipe and width (longmul.study)",
        "budget_examples_per_cell": {str(n): b for n, b in EXAMPLE_BUDGET.items()},
        "batch_size": BATCH_SIZE,
        "paced_icot_examples_per_token": {str(n): e for n, e in EXAMPLES_PER_TOKEN.items()},
        "gated_icot": {"tokens_per_stage": GATED_TOKENS, "gate": GATE},
        "learned_accuracy": LEARNED,
        "chance_margin": CHANCE_MARGIN,
        "cpu_hours_total": round(sum(r.get("cpu_hours", 0.0) for r in rows), 3),
        "cells_run": sum(r["status"] != "not run" for r in rows),
        "cells_planned": len(rows),
        "rows": rows,
    }
    path = Path(folder) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(path)
    return path
