"""Sweeps: folders of training runs that vary one setting each, and the commands that made them.

Sweep results (:func:`read_sweep`) live in one folder per sweep, e.g. ``results/aux_ablation/``::

    README.md        what the sweep varies and, for every configuration, the exact command that made
                     it: a line ``longmul train ... --out results/aux_ablation/<name> ...``
    <name>/          what ``longmul train --out results/aux_ablation/<name>`` wrote: history.jsonl
                     and training.json at least (weights and checkpoint may be deleted to keep the
                     repository small); a run that was stopped early keeps checkpoint/state.json
    <name>.jsonl     or a configuration's history alone (its settings then come from README.md only)

:data:`ABLATION_PLAN` and :func:`ablation_commands` are the auxiliary-loss ablation the book asks for
(run by ``scripts/aux_ablation.py``); :func:`read_sweep` and :func:`sweep_rows` read what was run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from longmul.dynamics import N_C, RunHistory, load_run, steps_to_exact_match

SWEEP_COMMAND = re.compile(r"longmul train\b[^\n`]*")


@dataclass
class Sweep:
    """A folder of sweep results (format: see the module docstring)."""

    path: Path
    readme: str
    commands: dict[str, str]  # configuration name -> the `longmul train` command in README.md
    runs: dict[str, RunHistory]

    @property
    def without_command(self) -> list[str]:
        """Configurations whose command README.md does not record."""
        return [name for name in self.runs if name not in self.commands]


def _out_name(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word == "--out" and i + 1 < len(words):
            return Path(words[i + 1]).name
        if word.startswith("--out="):
            return Path(word.split("=", 1)[1]).name
    return None


def read_sweep(folder: str | Path) -> Sweep | None:
    """The results in ``folder``, or None when it does not exist or holds no configuration yet.

    Raises ``ValueError`` when results are there but ``README.md`` is not: results without the
    commands that made them are not shipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    entries = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and ((p.is_dir() and ((p / "history.jsonl").is_file() or (p / "training.json").is_file())) or p.suffix == ".jsonl")
    )
    if not entries:
        return None
    readme_path = folder / "README.md"
    if not readme_path.is_file():
        raise ValueError(f"{folder} holds results but no README.md recording the commands that made them")
    readme = readme_path.read_text()
    commands = {}
    for match in SWEEP_COMMAND.finditer(readme):
        command = match.group(0).strip()
        name = _out_name(command)
        if name:
            commands[name] = command
    runs = {}
    for entry in entries:
        run = load_run(entry)
        runs[run.name] = run
    return Sweep(folder, readme, commands, runs)


def sweep_rows(sweep: Sweep, target: float = 0.99) -> list[dict]:
    """One row per configuration: what it varies (from its recorded configuration, where there is
    one), how far it ran, its final validation exact match and per-digit accuracy, and the step at
    which validation exact match first reached ``target``."""
    out = []
    for name, run in sweep.runs.items():
        latest = run.latest_eval
        row = {
            "configuration": name,
            "status": run.status,
            "recipe": run.recipe,
            "aux site": run.config.get("aux_site") if run.recipe == "aux" else None,
            "aux heads": ",".join(map(str, run.config.get("aux_heads") or [])) or None,
            "aux weight": run.config.get("aux_weight") if run.recipe == "aux" else None,
            "aux target": run.config.get("aux_target") if run.recipe == "aux" else None,
            "steps": run.last_step,
            "examples": run.examples,
            "final val exact match": latest["val_exact_match"] if latest else None,
            f"steps to {target:.0%} exact match": steps_to_exact_match(run, target),
        }
        for k, acc in enumerate(latest["val_per_digit"] if latest else [None] * N_C):
            row[f"c{k}"] = acc
        row["command recorded"] = name in sweep.commands
        out.append(row)
    return out


# The configurations issue 8 asks for, as `longmul train` commands to run outside the book. A plan, not
# a result: read_sweep reads what was actually run, with the commands its README.md records.
ABLATION_PLAN: tuple[tuple[str, str, str], ...] = (
    ("none", "no aux loss (SFT)", "--recipe sft"),
    ("site_layer1", "probe after layer 1", "--recipe aux --aux-site blocks.0.hook_resid_post"),
    ("site_layer2_attn", "probe after layer-2 attention (the shipped aux model's site)", "--recipe aux --aux-site blocks.1.hook_resid_mid"),
    ("site_heads", "probe on the layer-2 heads' outputs", "--recipe aux --aux-site blocks.1.attn.hook_z --aux-heads 0,1,2,3"),
    ("weight_0.1", "weight λ = 0.1", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 0.1"),
    ("weight_10", "weight λ = 10", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 10"),
    ("control_shuffled", "control: ĉ_k shuffled across the batch", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-target shuffled"),
)


def ablation_commands(folder: str = "results/aux_ablation", max_steps: int = 50_000, seed: int = 0) -> list[dict]:
    """The planned sweep (:data:`ABLATION_PLAN`) as full commands with shared settings."""
    shared = f"--preset cpu --seed {seed} --threads 1 --max-steps {max_steps} --eval-every 1000 --checkpoint-minutes 4"
    return [
        {"configuration": name, "varies": what, "command": f"longmul train {args} {shared} --out {folder}/{name}"}
        for name, what, args in ABLATION_PLAN
    ]
