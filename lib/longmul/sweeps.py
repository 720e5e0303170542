"""Sweeps: folders of training runs that vary one setting each, and the commands that made them.

Sweep results (:func:`read_sweep`) live in one folder per sweep, e.g. ``results/aux_ablation/``::

    README.md        what the sweep varies and, for every configuration, the command that started
                     it: a line ``longmul train ... --out results/aux_ablation/<name> ...``
    <name>/          what ``longmul train --out results/aux_ablation/<name>`` wrote: history.jsonl
                     and training.json at least (weights and checkpoint may be deleted to keep the
                     repository small); a run that was stopped early keeps checkpoint/state.json.
                     These records name the command of the run's latest session: the table's
                     provenance is the run's own record, README.md's only where the run has none
    <name>.jsonl     or a configuration's history alone (its settings then come from README.md only)

:data:`ABLATION_PLAN` and :func:`ablation_commands` are the auxiliary-loss ablation the book asks for
(run by ``scripts/aux_ablation.py``); :func:`read_sweep`, :func:`sweep_rows`, :func:`control_rows` and
:func:`comparison_rows` read what was run. The book's lab notebook turns them into tables and charts,
and says in its own words what they show.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from longmul.dynamics import (
    ACCURACY_THRESHOLD,
    MIDDLE_DIGITS,
    N_C,
    NEAR_CHANCE,
    RunHistory,
    learned_steps,
    load_run,
    replaced_values,
    steps_to_exact_match,
)
from longmul.task import random_problems

SWEEP_COMMAND = re.compile(r"longmul train\b[^\n`]*")
# The digits SFT never learns (the paper; our SFT run too): where configurations separate long before
# any reaches the exact-match target.
MIDDLE_NAME = f"c{MIDDLE_DIGITS[0]}–c{MIDDLE_DIGITS[-1]}"
MIDDLE_COLUMN = f"{MIDDLE_NAME} mean"
# What a configuration's auxiliary loss regresses, by :func:`target_kind`.
TARGET_KINDS = ("no aux loss", "running sum ĉ_k", "ĉ_k shuffled (control)")


@dataclass
class Sweep:
    """A folder of sweep results (format: see the module docstring)."""

    path: Path
    readme: str
    commands: dict[str, str]  # configuration name -> the `longmul train` command in README.md
    runs: dict[str, RunHistory]

    def command_of(self, name: str) -> tuple[str | None, str | None]:
        """``(command, where it is recorded)`` for configuration ``name``: the run's own record
        (``training.json`` or its checkpoint's ``state.json``: the latest session's command), else
        README.md's; ``(None, None)`` when neither records one."""
        run = self.runs.get(name)
        if run is not None and run.command:
            return run.command, "the run's record"
        if name in self.commands:
            return self.commands[name], "README.md"
        return None, None

    @property
    def without_command(self) -> list[str]:
        """Configurations whose command neither their own record nor README.md gives."""
        return [name for name in self.runs if self.command_of(name)[0] is None]


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


def command_config(command: str) -> dict | None:
    """The training configuration (:meth:`longmul.config.TrainConfig.to_dict`) that a ``longmul
    train`` command sets, defaults included; None if it is not such a command."""
    from longmul.cli import build_parser  # no torch
    from longmul.config import TrainConfig

    try:
        words = shlex.split(command)
        with contextlib.redirect_stderr(io.StringIO()):  # argparse reports a bad command on stderr
            args = build_parser().parse_args(words[1:])
    except (ValueError, SystemExit):
        return None
    if args.command != "train":
        return None
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}).to_dict()


def config_differences(reference: dict, run: RunHistory) -> list[dict]:
    """How ``run`` was trained otherwise than the configuration ``reference`` (a
    :meth:`~longmul.config.TrainConfig.to_dict`, e.g. from :func:`command_config`): one row per
    setting whose value differed from the reference's at any time of the run, ``setting``,
    ``reference`` and ``run`` (its value and the values resumes replaced, as text: "0.0001 (0.001
    until step 176,012)"). Settings that do not change what is trained (checkpointing, threads,
    device, …) are left out; one the run's configuration predates takes its default."""
    from longmul.config import RESUME_BOOKKEEPING, TrainConfig

    ignored = RESUME_BOOKKEEPING - {"max_steps", "stop_exact_match"}
    config = TrainConfig.from_dict(run.config).to_dict()
    out = []
    for name, value in config.items():
        earlier = replaced_values(run, name)
        if name in ignored or all(v == reference.get(name) for v in [value, *(old for old, _ in earlier)]):
            continue
        until = f" ({', '.join(f'{value_text(old)} until step {step:,}' for old, step in earlier)})" if earlier else ""
        out.append({"setting": name, "reference": reference.get(name), "run": f"{value_text(value)}{until}"})
    return out


def value_text(value) -> str:
    """A setting's value for a sentence: whole numbers with thousands separators."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def read_sweep(folder: str | Path) -> Sweep | None:
    """The results in ``folder``, or None when it does not exist or holds no configuration yet. Runs
    come in :data:`ABLATION_PLAN`'s order, then any others by name; a run without a recorded
    configuration takes the settings of its README.md command (:func:`command_config`).

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
        config = command_config(commands[run.name]) if not run.config and run.name in commands else None
        if config:  # a bare history: its settings are those of its recorded command
            run.config, run.recipe, run.planned_steps = config, config["recipe"], config["max_steps"]
        runs[run.name] = run
    planned = [name for name, _, _ in ABLATION_PLAN]
    in_plan_order = sorted(runs, key=lambda name: planned.index(name) if name in planned else len(planned))
    return Sweep(folder, readme, commands, {name: runs[name] for name in in_plan_order})


def sweep_rows(sweep: Sweep, target: float = 0.99, accuracy: float = ACCURACY_THRESHOLD) -> list[dict]:
    """One row per configuration: what it varies and against which configuration (for those of
    :data:`ABLATION_PLAN`), its settings (from its recorded configuration, where there is one), how far
    it ran, its final validation exact match and per-digit accuracy (``c0`` … ``c7``, and their mean over
    the middle digits SFT never learns, :data:`MIDDLE_COLUMN`; ``off chance``, the digits whose final
    accuracy beats :data:`~longmul.dynamics.NEAR_CHANCE`), the step at which
    exact match first reached ``target``, the step at which each digit's accuracy first reached
    ``accuracy`` (``steps to c0 ≥ 95%`` …: configurations separate on these even when none reaches
    ``target``), and the command that made it with where that is recorded (:meth:`Sweep.command_of`).
    A step is None where it has not been reached."""
    planned = {name: what for name, what, _ in ABLATION_PLAN}
    out = []
    for name, run in sweep.runs.items():
        latest = run.latest_eval
        aux = run.recipe == "aux"
        row = {
            "configuration": name,
            "varies": planned.get(name),
            "compared with": baseline_of(name) if name in planned else None,
            "status": run.status,
            "recipe": run.recipe,
            "aux site": run.config.get("aux_site") if aux else None,
            "aux heads": (",".join(map(str, run.config.get("aux_heads") or [])) or None) if aux else None,
            "aux weight": run.config.get("aux_weight") if aux else None,
            "aux target": run.config.get("aux_target") if aux else None,
            "seed": run.config.get("seed"),
            "steps": run.last_step,
            "examples": run.examples,
            "final val exact match": latest["val_exact_match"] if latest else None,
            f"steps to {target:.0%} exact match": steps_to_exact_match(run, target),
        }
        for k, acc in enumerate(latest["val_per_digit"] if latest else [None] * N_C):
            row[f"c{k}"] = acc
        row[MIDDLE_COLUMN] = float(np.mean([row[f"c{k}"] for k in MIDDLE_DIGITS])) if latest else None
        row["off chance"] = [k for k in range(N_C) if row[f"c{k}"] > NEAR_CHANCE] if latest else None
        reached = learned_steps(run, by="accuracy", threshold=accuracy)
        for k in range(N_C):
            row[f"steps to c{k} ≥ {accuracy:.0%}"] = reached.get(k)
        row["command"], row["command recorded in"] = sweep.command_of(name)
        out.append(row)
    return out


def target_kind(run: RunHistory) -> str:
    """What a configuration's auxiliary loss regresses: :data:`TARGET_KINDS`' names."""
    if run.recipe != "aux":
        return TARGET_KINDS[0]
    return TARGET_KINDS[2] if run.config.get("aux_target") == "shuffled" else TARGET_KINDS[1]


def comparison_rows(sweep: Sweep) -> list[dict]:
    """Validation accuracy over training of every configuration, to compare them on one digit at a
    time: ``run``, ``target`` (:func:`target_kind`), ``step``, ``digit`` (``c0`` … ``c7``, and
    :data:`MIDDLE_NAME` for the mean of the middle digits), ``accuracy``."""
    out = []
    for name, run in sweep.runs.items():
        kind = target_kind(run)
        for r in run.evals:
            accuracies = [float(a) for a in r["val_per_digit"]]
            named = [(f"c{k}", a) for k, a in enumerate(accuracies)]
            named.append((MIDDLE_NAME, float(np.mean([accuracies[k] for k in MIDDLE_DIGITS]))))
            out += [{"run": name, "target": kind, "step": r["step"], "digit": d, "accuracy": a} for d, a in named]
    return out


def control_rows(sweep: Sweep) -> list[dict]:
    """The rows of :func:`sweep_rows` that ask "is it the running sum?", with a ``role`` column: each
    control (a shuffled target) followed by the runs that regress the true running sum with the same
    probe site, heads, weight and seed (a replicate with another seed is set beside its own), then the
    runs without an aux loss. Empty when no control was run."""
    rows = sweep_rows(sweep)

    def probe(row: dict) -> tuple:
        return row["aux site"], row["aux heads"], row["aux weight"], row["seed"]

    controls = [r for r in rows if r["aux target"] == "shuffled"]
    if not controls:
        return []
    out = []
    for control in controls:
        out.append({**control, "role": f"control: ĉ_k shuffled, λ = {control['aux weight']:g}"})
        out += [
            {**r, "role": f"running sum, λ = {r['aux weight']:g}"}
            for r in rows
            if r["aux target"] == "running_sum" and probe(r) == probe(control)
        ]
    out += [{**r, "role": "no aux loss"} for r in rows if r["recipe"] == "sft"]
    return out


def shuffled_target_floor(aux_scale: float, n_digits: int = 4, n_problems: int = 20_000, seed: int = 0) -> float:
    """The lowest aux loss a shuffled target allows: the target is another problem's ĉ_k, independent
    of the input, so no reading beats its mean, and the loss (the MSE of ĉ_k / ``aux_scale``, averaged
    over the positions k) cannot go below the variance of ĉ_k / ``aux_scale``² averaged over k; the true
    target's can approach 0. Estimated on ``n_problems`` uniform random problems."""
    sums = np.array([p.running_sums for p in random_problems(n_problems, seed, n_digits)], dtype=float)  # (N, n_c)
    return float((sums / aux_scale).var(axis=0).mean())


# The configurations issue 8 asks for, as `longmul train` commands to run outside the book. A plan, not
# a result: read_sweep reads what was actually run. Each configuration differs in one setting from
# the configuration baseline_of names: the reference, or for the second control, the run at its weight.
REFERENCE = "site_layer2_attn"
ABLATION_PLAN: tuple[tuple[str, str, str], ...] = (
    ("none", "no aux loss (SFT)", "--recipe sft"),
    ("site_layer1", "probe after layer 1", "--recipe aux --aux-site blocks.0.hook_resid_post"),
    ("site_layer2_attn", "probe after layer-2 attention", "--recipe aux --aux-site blocks.1.hook_resid_mid"),
    ("site_heads", "probe on the layer-2 heads' outputs", "--recipe aux --aux-site blocks.1.attn.hook_z --aux-heads 0,1,2,3"),
    ("weight_0.1", "weight λ = 0.1", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 0.1"),
    ("weight_10", "weight λ = 10", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 10"),
    ("weight_100", "weight λ = 100", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 100"),
    ("control_shuffled", "control: ĉ_k shuffled across the batch", "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-target shuffled"),
    (
        "control_shuffled_weight_0.1",
        "control: ĉ_k shuffled across the batch, at weight λ = 0.1",
        "--recipe aux --aux-site blocks.1.hook_resid_mid --aux-weight 0.1 --aux-target shuffled",
    ),
)
# The shuffled target's loss cannot fall below a floor (shuffled_target_floor) that the true target's
# can: at weight 0.1 the control's extra loss weighs ten times less, so a failing control at weight 1
# can be told apart from a large noisy loss swamping training.
BASELINES = {"control_shuffled_weight_0.1": "weight_0.1"}


def baseline_of(name: str) -> str | None:
    """The configuration of :data:`ABLATION_PLAN` that ``name`` differs from in one setting (None for
    the reference itself)."""
    return None if name == REFERENCE else BASELINES.get(name, REFERENCE)


def ablation_commands(folder: str = "results/aux_ablation", max_steps: int = 50_000, seed: int = 0) -> list[dict]:
    """The planned sweep (:data:`ABLATION_PLAN`) as full commands with shared settings: ``configuration``,
    ``varies``, ``compared with`` (:func:`baseline_of`), ``command``."""
    shared = f"--preset cpu --seed {seed} --threads 1 --max-steps {max_steps} --eval-every 1000 --checkpoint-minutes 4"
    return [
        {
            "configuration": name,
            "varies": what,
            "compared with": baseline_of(name),
            "command": f"longmul train {args} {shared} --out {folder}/{name}",
        }
        for name, what, args in ABLATION_PLAN
    ]
