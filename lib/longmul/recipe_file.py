"""Recipe files: a whole training plan in one TOML file (``recipes/*.toml``), run by
``longmul train RECIPE_FILE --out DIR``.

A recipe file holds the settings a run starts with, as top-level keys named like the fields of
:class:`~longmul.config.TrainConfig` (the ``--flags`` of ``longmul train`` with ``_`` for ``-``), and a
schedule of changes, each a ``[[change]]`` table with the ``step`` it takes effect after and the
settings it changes::

    description = "what this plan trains"
    recipe = "aux"
    preset = "cpu"
    seed = 0
    max_steps = 123148          # where the plan ends
    lr = 1e-3
    threads = 1

    [[change]]
    step = 43477                # after step 43,477: the weight average is switched on
    ema_decay = 0.999

A change applies to the steps after ``step``, exactly as if the run had been stopped there with a
checkpoint and resumed with the new settings (that is how the trainer applies it), so only the
settings a resume may change can be scheduled: :data:`CHANGEABLE`. Settings left out take the
library's defaults; ``training.json`` records every one. TOML rather than JSON or YAML: comments
(a plan says where each change comes from), no indentation rules, and a reader in the standard
library (``tomllib``).

:func:`read_recipe_file` checks everything before a run starts; a bad file is a ``ValueError`` on one
line naming the file and the key. :func:`check_against_records` compares a plan with a trained
model's records (its ``training.json`` and the ``resume`` rows of its history);
:func:`attach_recipe_file` names a recipe file in a model folder trained before recipe files existed.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .config import RESUME_SCHEDULE, OptionError, TrainConfig

# What a [[change]] may set: the schedule settings a resume may change, and the machine settings the
# runs changed between sessions (the thread count and the device alter the float rounding, so a plan
# that replays a run names them too).
CHANGEABLE = frozenset(RESUME_SCHEDULE | {"threads", "device", "stop_exact_match"})
# Settings of the command line that a recipe file does not hold: how a run is displayed.
NOT_IN_FILE = frozenset({"progress"})
FIELDS = {f.name: f for f in fields(TrainConfig)}
TOP_LEVEL = frozenset(FIELDS) - NOT_IN_FILE | {"description", "change"}
REQUIRED = ("recipe", "seed", "max_steps")


@dataclass(frozen=True)
class Change:
    """The settings that change after ``step`` (a dict of :class:`TrainConfig` field: new value)."""

    step: int
    settings: dict


@dataclass(frozen=True)
class RecipeFile:
    """A parsed, checked recipe file: the starting settings and the changes in order of step."""

    path: Path
    sha256: str
    description: str
    start: TrainConfig
    changes: tuple[Change, ...]

    @property
    def max_steps(self) -> int:
        return self.start.max_steps

    def record(self) -> dict:
        """How a run names its recipe file (``training.json``, each session's record)."""
        return {"path": self.path.as_posix(), "sha256": self.sha256}

    def config_at(self, step: int) -> TrainConfig:
        """The settings the steps after ``step`` run with."""
        config = self.start
        for change in self.changes:
            if change.step <= step:
                config = replace(config, **change.settings)
        return config

    def check_devices(self, after: int = 0, until: int | None = None) -> None:
        """``ValueError`` naming the file and the key if a stretch that runs steps after ``after`` (and
        before ``until``) asks for a device this machine lacks."""
        from .model import pick_device

        key = "device"
        for number, (first, last, config) in enumerate(self.stretches()):
            if number and "device" in self.changes[number - 1].settings:
                key = f"change {number}.device"
            if last <= after or (until is not None and first >= until):
                continue
            try:
                pick_device(config.device)
            except ValueError as err:
                raise _bad(self.path, key, f"{err}; the plan runs there after step {first:,}") from None

    def stretches(self) -> list[tuple[int, int, TrainConfig]]:
        """``(first step, last step, settings)`` for each stretch between changes; the last ends at
        ``max_steps``. A stretch runs the steps ``first + 1 … last``."""
        bounds = [0, *(c.step for c in self.changes), self.max_steps]
        return [(a, b, self.config_at(a)) for a, b in itertools.pairwise(bounds)]


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _bad(path: Path, where: str, message: str) -> ValueError:
    return ValueError(f"{path}: {where}: {message}")


def _check_value(path: Path, where: str, name: str, value) -> object:
    """``value`` as the field ``name`` takes it (TOML integers for floats, arrays for tuples)."""
    kind = FIELDS[name].type
    if name == "aux_heads":
        if not isinstance(value, list):
            raise _bad(path, where, f"{name} must be an array of head indices, got {value!r}")
        value = tuple(value)
    elif "float" in kind and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, where, f"{name} must be a finite number, got {value}")
    return value


def _settings(path: Path, table: dict, where: str) -> dict:
    return {name: _check_value(path, f"{where}{name}", name, value) for name, value in table.items()}


def read_recipe_file(path: str | Path) -> RecipeFile:
    """Parse and check a recipe file; ``ValueError`` naming the file and the key at fault."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read recipe file {path}: {err.strerror or err}") from None
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (not UTF-8)") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML ({err})") from None
    unknown = sorted(set(table) - TOP_LEVEL)
    if unknown:
        hint = " (set on the command line, not in a recipe file)" if set(unknown) <= NOT_IN_FILE else ""
        raise _bad(path, unknown[0], f"unknown key{hint}; a recipe file holds {sorted(TOP_LEVEL)}")
    for name in REQUIRED:
        if name not in table:
            raise _bad(path, name, "missing: every recipe file names its recipe, seed and max_steps")
    description = table.pop("description", "")
    if not isinstance(description, str):
        raise _bad(path, "description", f"must be a string, got {description!r}")
    raw_changes = table.pop("change", [])
    if not isinstance(raw_changes, list) or not all(isinstance(c, dict) for c in raw_changes):
        raise _bad(path, "change", "must be an array of tables ([[change]] sections)")
    start = _config(path, "", _settings(path, table, ""))
    changes: list[Change] = []
    config, previous = start, 0
    for number, raw in enumerate(raw_changes, 1):
        where = f"change {number}"
        raw = dict(raw)
        step = raw.pop("step", None)
        if not isinstance(step, int) or isinstance(step, bool):
            raise _bad(path, f"{where}.step", f"every change needs an integer step, got {step!r}")
        if not previous < step < start.max_steps:
            raise _bad(
                path,
                f"{where}.step",
                f"step {step:,} is out of order: each change comes after the previous one ({previous:,}) "
                f"and before max_steps ({start.max_steps:,})",
            )
        if not raw:
            raise _bad(path, where, "changes nothing")
        for name in raw:
            if name not in CHANGEABLE:
                what = "unknown key" if name not in FIELDS else "cannot change during a run"
                raise _bad(path, f"{where}.{name}", f"{what}; a change may set {sorted(CHANGEABLE)}")
        settings = _settings(path, raw, f"{where}.")
        same = sorted(name for name, value in settings.items() if getattr(config, name) == value)
        if same:
            raise _bad(path, f"{where}.{same[0]}", f"already {getattr(config, same[0])!r} before step {step:,}")
        if "icot_tokens_per_stage" in settings and config.icot_stage_examples > 0:
            raise _bad(
                path,
                f"{where}.icot_tokens_per_stage",
                f"a run at a fixed pace (icot_stage_examples = {config.icot_stage_examples}) cannot change it",
            )
        config = _config(path, f"{where}.", {**_fields_of(config), **settings})
        changes.append(Change(step, settings))
        previous = step
    return RecipeFile(path, hashlib.sha256(data).hexdigest(), description, start, tuple(changes))


def _fields_of(config: TrainConfig) -> dict:
    return {name: getattr(config, name) for name in FIELDS}


DEVICE_NAMES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _config(path: Path, where: str, settings: dict) -> TrainConfig:
    """A checked :class:`TrainConfig`; its own error names the option, ours names the file too. The
    device is checked by name only: a plan with a GPU stretch is a valid file on a machine without one
    (:meth:`RecipeFile.check_devices` tells before a run starts)."""
    config = TrainConfig(**{**settings, "progress": True})
    if not isinstance(config.device, str) or not DEVICE_NAMES.fullmatch(config.device):
        raise _bad(path, f"{where}device", f"{config.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    try:
        replace(config, device="cpu").validate()
    except OptionError as err:
        raise _bad(path, f"{where}{err.option}", str(err)) from None
    return config


# ---------------------------------------------------------------------------- against the records
# Settings that do not alter what is trained, compared with training.json's config by neither side:
# how often to checkpoint, the display, and the device (recorded as the flag the run was given,
# "auto"; the machine each session ran on is in its hardware record, compared below).
NOT_COMPARED = frozenset({"checkpoint_minutes", "progress", "device"})


def _device_kind(hardware: dict) -> str:
    return "cuda" if hardware.get("gpu") or str(hardware.get("device", "")).startswith("cuda") else "cpu"


def _runs_of(values: list) -> list:
    """``values`` with repeats in a row collapsed: [a, a, b, a] -> [a, b, a]."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def check_against_records(plan: RecipeFile, training: dict, history: list[dict]) -> None:
    """``ValueError`` unless ``plan`` is how the model with these records was trained:

    * its settings at the end are ``training.json``'s (every field but :data:`NOT_COMPARED`), and it ends
      at the model's step;
    * each ``resume`` row of the history that changed a setting of :data:`CHANGEABLE` is a change of the
      plan at that step, from the old value to the new one, and each change of the plan that is not a
      ``threads``/``device`` change is such a row (early sessions did not record their machine
      settings in a resume row);
    * the thread count and device of its stretches, in order, are those of the sessions' hardware
      records (sessions on the same machine settings in a row counted once).
    """
    name = plan.path.as_posix()
    if plan.max_steps != training["steps"]:
        raise ValueError(f"{name}: max_steps {plan.max_steps:,}, but the model trained {training['steps']:,} steps")
    end = plan.config_at(plan.max_steps)
    recorded = TrainConfig.from_dict(training["config"])
    for field_name in sorted(set(FIELDS) - NOT_COMPARED):
        if getattr(end, field_name) != getattr(recorded, field_name):
            raise ValueError(
                f"{name}: {field_name} is {getattr(end, field_name)!r} at the end, "
                f"training.json records {getattr(recorded, field_name)!r}"
            )
    planned = {(c.step, k): v for c in plan.changes for k, v in c.settings.items()}
    logged = set()
    for row in history:
        if row.get("kind") != "resume":
            continue
        for key, (old, new) in row["changed"].items():
            if key not in CHANGEABLE:
                continue
            step = row["step"]
            logged.add((step, key))
            if (step, key) not in planned:
                raise ValueError(
                    f"{name}: the history changes {key} {old!r} -> {new!r} at step {step:,}; the plan does not"
                )
            before = getattr(plan.config_at(step - 1) if step > 0 else plan.start, key)
            if (before, planned[(step, key)]) != (old, new):
                raise ValueError(
                    f"{name}: at step {step:,} the plan changes {key} {before!r} -> {planned[(step, key)]!r}, "
                    f"the history {old!r} -> {new!r}"
                )
    for step, key in sorted(set(planned) - logged):
        if key not in ("threads", "device"):
            raise ValueError(f"{name}: change at step {step:,} sets {key}, but no resume row of the history does")
    machines = _runs_of(
        [
            (_device_kind(s.get("hardware", {})), s.get("hardware", {}).get("torch_threads"))
            for s in training["sessions"]
        ]
    )
    stretches = _runs_of([(c.device if c.device != "auto" else "cpu", c.threads) for _, _, c in plan.stretches()])
    if machines != stretches:
        raise ValueError(f"{name}: its stretches run on {stretches} (device, threads), the sessions ran on {machines}")


def attach_recipe_file(model_dir: str | Path, recipe_path: str | Path, root: str | Path) -> dict:
    """Name ``recipe_path`` in the ``training.json`` and card of a model trained before recipe files
    existed, once :func:`check_against_records` agrees with the model's records. Only those two files
    change, and their entries in the manifest (rewritten by the library's manifest writer); the
    weights are not touched. ``root``: the repository root, from which the card and the record name
    both paths (``recipes/aux.toml``, ``models/aux``). Returns the record written."""
    from .files import read_json_object
    from .model_card import model_card
    from .saved import MANIFEST, read_history, verify_manifest, write_json, write_manifest_subset

    model_dir, root = Path(model_dir), Path(root)
    verify_manifest(model_dir)
    plan = replace(read_recipe_file(recipe_path), path=Path(recipe_path).resolve().relative_to(root.resolve()))
    training = read_json_object(model_dir / "training.json")
    check_against_records(plan, training, read_history(model_dir / "history.jsonl"))
    record = {**plan.record(), "written_after_training": True}
    training["recipe_file"] = record
    write_json(model_dir / "training.json", training)
    metrics = read_json_object(model_dir / "metrics.json")
    cot_tokens = read_json_object(model_dir / "config.json").get("longmul_cot_tokens", 0)
    shown = model_dir.resolve().relative_to(root.resolve())
    (model_dir / "README.md").write_text(model_card(shown, training, metrics, cot_tokens))
    write_manifest_subset(model_dir, list(read_json_object(model_dir / MANIFEST)))
    verify_manifest(model_dir)
    return record
