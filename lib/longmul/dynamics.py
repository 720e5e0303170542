"""Training dynamics from the runs' histories: which output digit is learned when, whether a digit's
loss has gone flat, and how much gradient each digit's loss still sends into the model.

Every run written by ``longmul train`` logs to ``<run>/history.jsonl`` (see :mod:`longmul.train`), one
JSON object a line:

* ``kind = "train"`` every ``log_every`` steps: ``step``, ``examples``, ``elapsed_s``, ``lr``, ``loss``,
  ``digit_loss`` (the loss of each output digit c_0 … c_7 on that step's batch), ``digit_grad_norm``
  (‖∂ loss(c_k) / ∂θ‖ over the model's parameters, before clipping), ``grad_norm``; ``aux_loss`` for the
  aux recipe, ``removed`` (chain-of-thought tokens removed so far) for ICoT;
* ``kind = "eval"`` every ``eval_every`` steps: ``val_exact_match``, ``val_per_digit``;
* ``kind = "stage"`` (ICoT): the step at which the removal count grew to ``removed``.

:func:`load_run` reads a run directory whether training has finished (a saved model directory:
``training.json`` and the model files beside ``history.jsonl``) or is still going (only
``checkpoint/`` and ``history.jsonl``, which may end in a half-written line: the trainer's writes are
buffered). The module imports neither pandas nor, at import time, torch (only :func:`cot_length` and
:func:`run_settings` do, lazily): tables are lists of dicts, statistics are numbers;
:mod:`longmul.charts.dynamics` turns them into charts.

Sweeps of many runs (a folder of results with the commands that made them) are read by
:mod:`longmul.sweeps`.

The paper's own description of its runs is kept apart, in :data:`PAPER_SFT` and :data:`PAPER_AUX`:
approximate values read from its text and training-dynamics figure, never measurements of ours.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longmul.files import read_json_object, read_jsonl
from longmul.provenance import hours_by_machine
from longmul.run_state import check_record, check_row, check_state

LN10 = math.log(10)  # loss of a uniform guess among ten digits, in nats
N_C = 8  # output digits of a 4x4 product

# Files that make a directory a saved model (the same list as longmul.saved.REQUIRED, which imports
# transformers; a test checks they agree).
MODEL_FILES = ("config.json", "model.safetensors", "training.json", "manifest.json")

# Defaults of the "learned" criteria (see learned_steps).
LOSS_THRESHOLD = 0.1  # nats: the digit's batch loss below this …
LOSS_PATIENCE = 3  # … on this many consecutive logged steps
ACCURACY_THRESHOLD = 0.95  # validation accuracy of the digit at least this …
ACCURACY_PATIENCE = 1  # … at this many consecutive evaluations
FLAT_TOLERANCE = 0.02  # |fitted relative change| at most 2% over the window counts as flat
# A verdict on flatness needs a window at least this long: a loss that takes tens of thousands of steps
# to start falling (the aux run's middle digits did) looks flat over a few thousand.
FLAT_MIN_WINDOW_STEPS = 20_000
FLAT_MIN_POINTS = 10  # … and at least this many logged steps in it
MIDDLE_DIGITS = (3, 4, 5)
NEAR_CHANCE = 0.15  # a digit whose validation accuracy never beat this (chance: 10%) stayed near chance
ROUNDING_ERROR = 0.5  # ĉ units: a probe reading closer than this to ĉ_k rounds to it
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.old")  # where a run's resumable state is, as longmul.checkpoint.find_checkpoint
OPTIMISER_SETTINGS = ("batch_size", "lr", "lr_schedule", "warmup_steps", "weight_decay", "beta1", "beta2", "grad_clip", "ema_decay")


# --------------------------------------------------------------------------- the paper's description

PAPER_SOURCE = (
    "Bai et al. (2025), 'Why Can't Transformers Learn Multiplication?', arXiv:2510.00184: the "
    "training-dynamics figure (per-digit gradient norms and losses, SFT vs. auxiliary loss) and its text"
)


@dataclass(frozen=True)
class PaperRun:
    """What the paper reports about one of its training runs. Steps are approximate ("≈"), as read from
    its text and figure; they come from the paper's GPU runs (width 768), not from this project."""

    label: str
    steps_logged: int
    learned_by: Mapping[int, int]  # digit k -> step by which the paper says c_k was learned
    never_learned: tuple[int, ...]
    order: tuple[int, ...]  # order of learning, as the paper gives it
    final_loss: tuple[float, ...] | None
    middle_grad_norm: float | None  # the gradient norm the paper's heatmap shows for c3-c5
    source: str = PAPER_SOURCE


PAPER_SFT = PaperRun(
    label="paper: SFT",
    steps_logged=624_500,
    learned_by={0: 500, 1: 500, 7: 16_000, 2: 66_000},  # c0, c1 "within 500 steps"
    never_learned=(3, 4, 5),  # their loss stays at ln 10 ≈ 2.30 for the whole run
    order=(0, 1, 7, 2),
    final_loss=(0.0, 0.0, 0.0004, 2.30, 2.30, 2.22, 1.56, 0.0001),
    middle_grad_norm=1.0,  # "≈ 1" while the loss stays flat
)

PAPER_AUX = PaperRun(
    label="paper: SFT + aux loss",
    steps_logged=1_107_500,
    learned_by={5: 370_000},  # c5 last, at ≈ 370k steps
    never_learned=(),
    order=(0, 1, 7, 2, 3, 6, 4, 5),
    final_loss=None,  # "every digit goes to ≈ 0"
    middle_grad_norm=None,
)


# --------------------------------------------------------------------------- reading runs

@dataclass
class RunHistory:
    """One run's history and what is known about the run.

    ``status``: ``"finished"`` (``training.json`` written at the end of training), ``"snapshot"``
    (a model saved from an unfinished run by ``longmul snapshot``), ``"in progress"`` (a checkpoint and
    a history, no final model yet: a run still training, or stopped before its end) or ``"missing"``.
    """

    name: str
    path: Path
    status: str
    recipe: str | None = None
    config: dict = field(default_factory=dict)
    command: str | None = None
    train: list[dict] = field(default_factory=list)  # kind == "train", by step
    evals: list[dict] = field(default_factory=list)  # kind == "eval", by step
    stages: list[dict] = field(default_factory=list)  # kind == "stage", by step
    resumes: list[dict] = field(default_factory=list)  # kind == "resume": settings changed on resuming
    checkpoint_step: int | None = None
    planned_steps: int | None = None  # max_steps of the run's configuration
    partial_last_line: bool = False  # the history ended in a line still being written
    recorded_wall_s: float | None = None  # training time in training.json or the checkpoint (corrections included)
    sessions: list[dict] = field(default_factory=list)  # one record per process that trained it (command, hardware, time)

    @property
    def last_step(self) -> int:
        return max([r["step"] for r in self.train + self.evals] or [0])

    @property
    def examples(self) -> int:
        return max([r.get("examples", 0) for r in self.train + self.evals] or [0])

    @property
    def elapsed_s(self) -> float:
        """Training time: as recorded with the model or the latest checkpoint (which carry any
        correction, e.g. for a paused process), else the latest time in the history."""
        if self.recorded_wall_s is not None:
            return self.recorded_wall_s
        return max([r.get("elapsed_s", 0.0) for r in self.train + self.evals] or [0.0])

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def latest_eval(self) -> dict | None:
        return self.evals[-1] if self.evals else None

    @property
    def trained_on(self) -> str:
        """Training time per kind of machine (:func:`longmul.provenance.hours_by_machine`)."""
        return hours_by_machine(self.sessions)

    def recent_rate(self, rows: int = 20) -> float | None:
        """Training steps per second over the last ``rows`` logged training rows of the latest
        session (a run resumed on a faster or slower machine is timed on the new one alone); None
        with fewer than two such rows. ``elapsed_s`` is training time carried across resumes."""
        recent = self.train[-rows:]
        latest = self.sessions[-1] if self.sessions else None
        if latest and self.recorded_wall_s is not None and "wall_time_s" in latest:
            session_start = self.recorded_wall_s - latest["wall_time_s"]  # both from the same save
            recent = [r for r in recent if r.get("elapsed_s", 0.0) >= session_start]
        if len(recent) < 2:
            return None
        steps = recent[-1]["step"] - recent[0]["step"]
        seconds = recent[-1].get("elapsed_s", 0.0) - recent[0].get("elapsed_s", 0.0)
        return steps / seconds if steps > 0 and seconds > 0 else None


def read_history_file(path: str | Path) -> tuple[list[dict], bool]:
    """The rows of a ``history.jsonl`` and whether its last line was cut off.

    A run in progress appends to the file while it is read: a last line that is not valid JSON is left
    out (and reported); a bad line anywhere else, or a row that is not a history row
    (:func:`longmul.run_state.check_row`), is an error naming the line. Rows logged twice for the same kind and
    step (a run resumed from a checkpoint logs them again) keep the later copy.
    """
    rows, partial = read_jsonl(path, check_row)
    latest: dict[tuple, dict] = {}
    for row in rows:
        latest[(row.get("kind"), row.get("step"))] = row
    return sorted(latest.values(), key=lambda r: (r.get("step", 0), str(r.get("kind")))), partial


def _read_json(path: Path) -> dict | None:
    """A JSON file, or None if it is absent (or renamed away by a save right now); ``ValueError``
    naming it if it is damaged (records are written whole and renamed into place, never torn)."""
    try:
        return read_json_object(path)
    except ValueError:
        if not path.is_file():
            return None
        raise


def _checkpoint_state(run_dir: Path) -> dict | None:
    for candidate in CHECKPOINT_DIRS:
        path = run_dir / candidate / "state.json"
        state = _read_json(path)
        if state is not None:
            check_state(state, path, complete=False)
            return state
    return None


def load_run(path: str | Path, name: str | None = None) -> RunHistory:
    """Read a run directory (finished or in progress) or a bare history file (``*.jsonl``)."""
    path = Path(path)
    name = name or (path.stem if path.suffix == ".jsonl" else path.name)
    if path.suffix == ".jsonl":
        rows, partial = read_history_file(path)
        run = RunHistory(name, path, "in progress" if rows else "missing", partial_last_line=partial)
        _split_rows(run, rows)
        recipe = "icot" if run.stages or any("removed" in r for r in run.train) else None
        run.recipe = recipe or ("aux" if any("aux_loss" in r for r in run.train) else None)
        return run
    rows, partial = read_history_file(path / "history.jsonl")
    training = _read_json(path / "training.json")
    if training is not None:
        check_record(training, path / "training.json")
    state = _checkpoint_state(path)
    if training is not None:
        status = "snapshot" if training.get("snapshot_of_unfinished_run") else "finished"
        if status == "finished" and state is not None and state.get("step", 0) > training.get("steps", 0):
            status = "in progress"  # resumed past a saved model
    elif state is not None or rows:
        status = "in progress"
    else:
        status = "missing"
    record = training if training is not None and status != "in progress" else None
    config = (record or {}).get("config") or (state or {}).get("config") or {}
    command = (record or {}).get("command")
    if command is None and state and state.get("sessions"):
        command = state["sessions"][-1].get("command")
    run = RunHistory(
        name=name,
        path=path,
        status=status,
        recipe=config.get("recipe"),
        config=config,
        command=command,
        checkpoint_step=state.get("step") if state else None,
        planned_steps=config.get("max_steps"),
        partial_last_line=partial,
        recorded_wall_s=(record or {}).get("wall_time_s", (state or {}).get("elapsed_s")),
        sessions=(record or state or {}).get("sessions", []),
    )
    _split_rows(run, rows)
    return run


def _split_rows(run: RunHistory, rows: list[dict]) -> None:
    run.train = [r for r in rows if r.get("kind") == "train"]
    run.evals = [r for r in rows if r.get("kind") == "eval"]
    run.stages = [r for r in rows if r.get("kind") == "stage"]
    run.resumes = [r for r in rows if r.get("kind") == "resume"]


def load_runs(models_dir: str | Path, names: Mapping[str, str] | Sequence[str]) -> dict[str, RunHistory]:
    """``{label: run}`` for the run directories ``models_dir/<name>``; ``names`` maps name -> label."""
    labels = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
    return {label: load_run(Path(models_dir) / name, name=label) for name, label in labels.items()}


def discover_runs(folder: str | Path) -> dict[str, RunHistory]:
    """Every run directory directly under ``folder`` (one with a ``history.jsonl``), by folder name;
    empty when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: load_run(p) for p in sorted(folder.iterdir()) if (p / "history.jsonl").is_file()}


def _resume_changes(resume: dict, names: set[str]) -> str:
    """The settings among ``names`` that a resume row changed: "lr 0.001 → 0.0001, ema_decay 0 → 0.999"."""
    changed = sorted((n, v) for n, v in resume.get("changed", {}).items() if n in names)
    return ", ".join(f"{name} {old:g} → {new:g}" for name, (old, new) in changed)


def schedule_changes(run: RunHistory) -> str:
    """Training settings a resume changed part-way (:data:`longmul.config.RESUME_SCHEDULE`):
    "lr 0.001 → 0.0001 at step 176,012"; empty if none."""
    from longmul.config import RESUME_SCHEDULE  # no torch

    return "; ".join(
        f"{text} at step {r['step']:,}" for r in run.resumes if (text := _resume_changes(r, RESUME_SCHEDULE))
    )


def tried_row(run: RunHistory) -> dict:
    """One row of the table of everything trained: the run's recipe settings, how far it got, and its
    latest validation scores (exact match, and accuracy of each digit c0 … c7)."""
    latest = run.latest_eval
    return {
        "run": run.name,
        "recipe": run.recipe,
        "recipe settings": run_settings(run)["recipe settings"],
        "changed on resume": schedule_changes(run),
        "status": run.status,
        "steps": run.last_step,
        "examples": run.examples,
        "wall-clock hours": round(run.elapsed_s / 3600, 2),
        "trained on": run.trained_on,
        "val exact match": latest["val_exact_match"] if latest else None,
        "val accuracy c0 … c7": " ".join(f"{a:.2f}" for a in latest["val_per_digit"]) if latest else "",
    }


def replaced_values(run: RunHistory, name: str) -> list[tuple]:
    """``[(old value, step)]``: each value of setting ``name`` that a resume replaced, and the step of
    that resume, earliest first (the configuration holds the value after the last)."""
    return [(r["changed"][name][0], r["step"]) for r in run.resumes if name in r.get("changed", {})]


def model_width(run: RunHistory) -> int:
    """The run's ``d_model``: its override, else its preset's."""
    from longmul.config import TrainConfig  # no torch

    return TrainConfig.from_dict(run.config).model_config().d_model  # imports torch


def run_settings(run: RunHistory) -> dict[str, str]:
    """The run's configuration in four readable groups: model, optimiser, logging, recipe settings."""
    config = run.config
    if not config:
        return {"model": "", "optimiser": "", "logging": "", "recipe settings": ""}

    def earlier(name: str) -> str:
        """Values a resume replaced: " (0.001 until step 176,012)"."""
        spans = replaced_values(run, name)
        return f" ({', '.join(f'{old} until step {step:,}' for old, step in spans)})" if spans else ""

    def pick(*names: str) -> str:
        return ", ".join(f"{n} = {config[n]}{earlier(n)}" for n in names if n in config)

    from longmul.config import TrainConfig  # no torch

    try:
        model = TrainConfig.from_dict(config).model_config()  # imports torch
        model_text = f"{model.n_layers} layers, {model.n_heads} heads, width {model.d_model} (preset {config.get('preset')})"
    except (ValueError, TypeError):
        model_text = pick("preset", "d_model", "n_layers", "n_heads")
    recipe = {
        "aux": pick("aux_site", "aux_heads", "aux_weight", "aux_scale", "aux_target"),
        "icot": pick("icot_tokens_per_stage", "icot_stage_examples", "icot_gate", "icot_smoothing", "icot_keep_position"),
    }.get(run.recipe or "", "")
    return {
        "model": model_text,
        "optimiser": pick(*OPTIMISER_SETTINGS),
        "logging": pick("log_every", "eval_every", "n_val"),
        "recipe settings": recipe,
    }


def optimiser_at_start(run: RunHistory) -> dict:
    """The optimiser settings the run started with: its configuration with each value a resume
    replaced set back to the first one; a setting its configuration predates takes
    :class:`longmul.config.TrainConfig`'s default (what the run trained with). Empty without a
    recorded configuration."""
    if not run.config:
        return {}
    from longmul.config import TrainConfig  # no torch

    defaults = TrainConfig()
    settings = {name: run.config.get(name, getattr(defaults, name)) for name in OPTIMISER_SETTINGS}
    for resume in reversed(run.resumes):  # the earliest resume's old value wins
        for name, (old, _new) in resume.get("changed", {}).items():
            if name in settings:
                settings[name] = old
    return settings


def common_settings(settings: Mapping[str, Mapping]) -> tuple[dict, dict[str, dict]]:
    """``(usual, own)`` for ``{label: {setting: value}}``: the most common value of each setting (on a
    tie, the first label's), and per label the settings whose value differs from it (labels with none
    are left out)."""
    names = list(dict.fromkeys(n for table in settings.values() for n in table))
    usual = {}
    for name in names:
        values = [table[name] for table in settings.values() if name in table]
        usual[name] = max(values, key=values.count)  # max keeps the first of equally common values
    own = {label: {n: v for n, v in table.items() if usual[n] != v} for label, table in settings.items()}
    return usual, {label: rest for label, rest in own.items() if rest}


def digit_names(digits: Iterable[int]) -> str:
    """``"c0, c7"`` (or ``"none"``)."""
    names = [f"c{k}" for k in digits]
    return ", ".join(names) if names else "none"


# --------------------------------------------------------------------------- tidy tables

def _chunks(n: int, max_points: int | None) -> list[tuple[int, int]]:
    size = 1 if not max_points or n <= max_points else math.ceil(n / max_points)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def digit_rows(runs: Mapping[str, RunHistory] | Iterable[RunHistory], max_points: int | None = None) -> list[dict]:
    """Per-digit loss and gradient norm over training, one row per (run, logged step or bin, digit).

    With ``max_points``, consecutive logged steps are pooled into at most that many bins per run: the
    loss is their mean, the gradient norm their geometric mean (charts draw it on a log scale). Each row:
    ``run``, ``step`` (last step of the bin), ``step_from`` (end of the previous bin, 0 for the first),
    ``examples``, ``k``, ``digit`` ("c0" …), ``loss``, ``grad_norm``, ``n_logs`` (rows pooled) and, for
    ICoT, ``removed``.
    """
    out = []
    for run in _as_runs(runs):
        rows = [r for r in run.train if "digit_loss" in r]
        previous = 0
        for start, stop in _chunks(len(rows), max_points):
            chunk = rows[start:stop]
            losses = np.array([r["digit_loss"] for r in chunk], dtype=float)
            has_grad = all("digit_grad_norm" in r for r in chunk)
            grads = np.array([r["digit_grad_norm"] for r in chunk], dtype=float) if has_grad else None
            last = chunk[-1]
            for k in range(losses.shape[1]):
                row = {
                    "run": run.name,
                    "step": last["step"],
                    "step_from": previous,
                    "examples": last.get("examples"),
                    "k": k,
                    "digit": f"c{k}",
                    "loss": float(losses[:, k].mean()),
                    "grad_norm": float(np.exp(np.log(np.maximum(grads[:, k], 1e-12)).mean())) if grads is not None else None,
                    "n_logs": len(chunk),
                }
                if "removed" in last:
                    row["removed"] = last["removed"]
                out.append(row)
            previous = last["step"]
    return out


def eval_rows(runs: Mapping[str, RunHistory] | Iterable[RunHistory]) -> list[dict]:
    """Validation accuracy per digit over training: ``run``, ``step``, ``examples``, ``k``, ``digit``,
    ``accuracy``, ``exact_match`` (of the whole answer, repeated on each digit's row)."""
    out = []
    for run in _as_runs(runs):
        for r in run.evals:
            for k, acc in enumerate(r["val_per_digit"]):
                out.append(
                    {
                        "run": run.name,
                        "step": r["step"],
                        "examples": r.get("examples"),
                        "k": k,
                        "digit": f"c{k}",
                        "accuracy": float(acc),
                        "exact_match": float(r["val_exact_match"]),
                    }
                )
    return out


def stage_rows(runs: Mapping[str, RunHistory] | Iterable[RunHistory]) -> list[dict]:
    """ICoT removal stages: ``run``, ``step``, ``removed`` (chain-of-thought tokens removed from then on)."""
    return [{"run": run.name, "step": s["step"], "removed": s["removed"]} for run in _as_runs(runs) for s in run.stages]


def aux_error_rows(runs: Mapping[str, RunHistory] | Iterable[RunHistory], max_points: int | None = None) -> list[dict]:
    """The auxiliary loss over training, as the probe's root-mean-square error in units of ĉ:
    ``sqrt(aux MSE) × aux_scale`` (the loss regresses ĉ_k / aux_scale; the error is pooled over the
    n_c positions). One row per (run, logged step or bin of at most ``max_points`` per run): ``run``,
    ``step``, ``examples``, ``rms_error``. Runs without an aux loss give no rows."""
    out = []
    for run in _as_runs(runs):
        scale = float(run.config.get("aux_scale", 1.0))
        rows = [r for r in run.train if r.get("aux_loss") is not None]
        for start, stop in _chunks(len(rows), max_points):
            chunk = rows[start:stop]
            mse = float(np.mean([r["aux_loss"] for r in chunk]))
            last = chunk[-1]
            out.append({"run": run.name, "step": last["step"], "examples": last.get("examples"), "rms_error": math.sqrt(mse) * scale})
    return out


def stage_table(run: RunHistory) -> list[dict]:
    """ICoT: one row per removal stage: ``removed`` (chain-of-thought tokens gone in it), ``from_step``,
    ``to_step`` (the next stage's start, or the last logged step), ``steps``, ``current`` (the stage the
    run was in at its last logged step), ``best_val_exact_match`` (over the evaluations in the
    stage, None if none) and ``gate`` (the accuracy gate passed to enter it, None where not recorded).
    The full chain of thought before the first removal is stage 0."""
    starts = [{"step": 0, "removed": 0}] + [s for s in run.stages if s["step"] > 0 or s["removed"] > 0]
    out = []
    for i, stage in enumerate(starts):
        last = i == len(starts) - 1
        end = run.last_step if last else starts[i + 1]["step"]
        scores = [e["val_exact_match"] for e in _stage_evals(run, stage["step"], end, stage["removed"])]
        out.append(
            {
                "removed": stage["removed"],
                "from_step": stage["step"],
                "to_step": end,
                "steps": end - stage["step"],
                "current": last,
                "best_val_exact_match": max(scores) if scores else None,
                "gate": stage.get("gate"),
            }
        )
    return out


def _stage_evals(run: RunHistory, from_step: int, to_step: int, removed: int) -> list[dict]:
    """The evaluations of an ICoT stage: after its first step, up to its last, in its format."""
    return [e for e in run.evals if from_step < e["step"] <= to_step and e.get("removed", removed) == removed]


def grad_norm_matrix(run: RunHistory, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, matrix)``: the gradient norm of each digit's loss (rows c_0 … c_7) at each logged step
    (columns; pooled by geometric mean into at most ``max_points`` bins, ``steps`` = each bin's last
    step). Empty arrays when the history logged no gradient norms."""
    rows = [r for r in digit_rows([run], max_points) if r["grad_norm"] is not None]
    if not rows:
        return np.zeros(0, dtype=int), np.zeros((0, 0))
    steps = sorted({r["step"] for r in rows})
    n_c = max(r["k"] for r in rows) + 1
    column = {s: i for i, s in enumerate(steps)}
    matrix = np.full((n_c, len(steps)), np.nan)
    for r in rows:
        matrix[r["k"], column[r["step"]]] = r["grad_norm"]
    return np.array(steps), matrix


def _as_runs(runs: Mapping[str, RunHistory] | Iterable[RunHistory]) -> list[RunHistory]:
    return list(runs.values()) if isinstance(runs, Mapping) else list(runs)


# --------------------------------------------------------------------------- statistics

def _first_sustained(steps: Sequence[int], ok: Sequence[bool], patience: int) -> int | None:
    """The first step from which ``ok`` holds on ``patience`` consecutive entries (None if never)."""
    run_length = 0
    for i, good in enumerate(ok):
        run_length = run_length + 1 if good else 0
        if run_length >= patience:
            return steps[i - patience + 1]
    return None


def learned_steps(
    run: RunHistory,
    by: str = "loss",
    threshold: float | None = None,
    patience: int | None = None,
    after_step: int = 0,
) -> dict[int, int | None]:
    """For each digit k, the step at which c_k counts as learned, or None if it has not been (yet).

    ``by="loss"``: the digit's batch loss stays below ``threshold`` (default 0.1 nats) on ``patience``
    (default 3) consecutive logged steps; the step given is the first of them. ``by="accuracy"``: its
    validation accuracy is at least ``threshold`` (default 0.95) at ``patience`` (default 1) consecutive
    evaluations. Only rows after ``after_step`` count (e.g. ICoT once its chain of thought is gone).
    """
    if by == "loss":
        threshold = LOSS_THRESHOLD if threshold is None else threshold
        patience = LOSS_PATIENCE if patience is None else patience
        rows = [r for r in run.train if "digit_loss" in r and r["step"] > after_step]
        values = [r["digit_loss"] for r in rows]
        better = lambda v: v < threshold
    elif by == "accuracy":
        threshold = ACCURACY_THRESHOLD if threshold is None else threshold
        patience = ACCURACY_PATIENCE if patience is None else patience
        rows = [r for r in run.evals if r["step"] > after_step]
        values = [r["val_per_digit"] for r in rows]
        better = lambda v: v >= threshold
    else:
        raise ValueError(f"by must be 'loss' or 'accuracy', got {by!r}")
    if patience < 1:
        raise ValueError("patience must be at least 1")
    n_c = len(values[0]) if values else N_C
    steps = [r["step"] for r in rows]
    return {k: _first_sustained(steps, [better(v[k]) for v in values], patience) for k in range(n_c)}


def probe_error_below(
    run: RunHistory, threshold: float = ROUNDING_ERROR, patience: int = LOSS_PATIENCE
) -> int | None:
    """Aux runs: the first logged step from which the probe's RMS error (in units of ĉ, as in
    :func:`aux_error_rows`) stays below ``threshold`` on ``patience`` consecutive logged steps; None if
    it has not (yet) or the run logged no aux loss."""
    scale = float(run.config.get("aux_scale", 1.0))
    rows = [r for r in run.train if r.get("aux_loss") is not None]
    below = [math.sqrt(r["aux_loss"]) * scale < threshold for r in rows]
    return _first_sustained([r["step"] for r in rows], below, patience)


def learning_order(learned: Mapping[int, int | None]) -> list[int]:
    """The digits that were learned, earliest first (ties: lower digit first)."""
    return sorted((k for k, s in learned.items() if s is not None), key=lambda k: (learned[k], k))


def cot_length(n_digits: int = 4) -> int:
    """Tokens in the full chain of thought of an n×n problem (:attr:`longmul.sequences.Layout.cot_len`)."""
    from longmul.sequences import Layout  # imports torch: only needed for ICoT runs

    return Layout(n_digits, n_digits).cot_len


def cot_gone_step(run: RunHistory) -> int | None:
    """ICoT: the step at which the whole chain of thought had been removed (None if not yet)."""
    if run.recipe != "icot":
        return None
    cot_len = cot_length(int(run.config.get("n_digits", 4)))
    return next((s["step"] for s in run.stages if s["removed"] >= cot_len), None)


# the chain of thought's separator tokens, as a sentence names them
_SEPARATOR_NAMES = {"(": "an opening bracket", ")": "a closing bracket", "+": "a plus sign"}


def describe_cot_span(start: int, stop: int, n_digits: int = 4) -> str:
    """The chain-of-thought tokens ``start`` … ``stop - 1`` by role, runs of digits of one number
    grouped and separators named in words: ``"running total 0–2, digits 3–6; a closing bracket; a
    plus sign; partial product 3, digits 0–1"``."""
    from longmul.task import chain_of_thought_roles

    parts: list[tuple[str, list[int]]] = []  # (number or separator, its digits in the span)
    for role in chain_of_thought_roles(n_digits, n_digits)[start:stop]:
        number, _, digit = role.partition(", digit ")
        if digit and parts and parts[-1][0] == number:
            parts[-1][1].append(int(digit))
        else:
            parts.append((number, [int(digit)] if digit else []))

    def text(number: str, digits: list[int]) -> str:
        if not digits:
            return _SEPARATOR_NAMES.get(number, number)
        if len(digits) == 1:
            return f"{number}, digit {digits[0]}"
        return f"{number}, digits {digits[0]}–{digits[-1]}"

    return "; ".join(text(number, digits) for number, digits in parts)


def icot_progress(run: RunHistory) -> dict | None:
    """ICoT: chain-of-thought tokens removed by the last logged step, out of how many, and when the
    last one went (None for other recipes)."""
    if run.recipe != "icot":
        return None
    removed = max([s["removed"] for s in run.stages] + [r.get("removed", 0) for r in run.train + run.evals] or [0])
    return {
        "removed": removed,
        "cot_len": cot_length(int(run.config.get("n_digits", 4))),
        "stages": len(run.stages),
        "cot_gone_step": cot_gone_step(run),
    }


def furthest_stage(run: RunHistory, near_chance: float = NEAR_CHANCE) -> dict | None:
    """ICoT: the stage with the most chain-of-thought tokens removed that the run was evaluated in (None
    for other recipes or before any evaluation): ``removed``, ``entered_from`` (tokens removed in the
    stage before it: entering it removed tokens ``entered_from`` … ``removed - 1``), ``cot_len``, ``from_step``, ``steps`` (in
    it, to its end or the last logged step), ``current``, ``evals`` (evaluations in it), ``first``,
    ``best`` and ``latest`` (per-digit validation accuracy: at its first evaluation, the best of each
    digit over them, at its last), ``best_val_exact_match``, and ``at_chance``: the digits whose best
    accuracy in the stage is at most ``near_chance``, i.e. that never moved off chance there."""
    progress = icot_progress(run)
    if progress is None:
        return None
    stages = stage_table(run)
    for stage in sorted(stages, key=lambda r: -r["removed"]):
        evals = _stage_evals(run, stage["from_step"], stage["to_step"], stage["removed"])
        if not evals:
            continue
        per_digit = np.array([e["val_per_digit"] for e in evals])  # (evals, n_c)
        best = per_digit.max(0)
        return {
            "removed": stage["removed"],
            "entered_from": max([r["removed"] for r in stages if r["removed"] < stage["removed"]], default=0),
            "cot_len": progress["cot_len"],
            "from_step": stage["from_step"],
            "steps": stage["steps"],
            "current": stage["current"],
            "evals": len(evals),
            "first": per_digit[0].tolist(),
            "best": best.tolist(),
            "latest": per_digit[-1].tolist(),
            "best_val_exact_match": stage["best_val_exact_match"],
            "at_chance": [k for k, a in enumerate(best) if a <= near_chance],
        }
    return None


@dataclass(frozen=True)
class Flatness:
    """A straight-line fit of the mean loss of ``digits`` over a window of training.

    ``relative_change`` is the fitted change over the window divided by the fitted value at its start;
    the window counts as ``flat`` when that is within ± ``tolerance`` (None: too short to tell, i.e.
    fewer than ``min_window_steps`` steps or ``min_points`` logged steps).
    """

    digits: tuple[int, ...]
    start_step: int
    end_step: int
    n_points: int
    mean_loss: float
    slope_per_1k_steps: float
    fitted_start: float
    fitted_end: float
    relative_change: float
    tolerance: float
    min_window_steps: int
    min_points: int
    flat: bool | None

    @property
    def window_steps(self) -> int:
        return self.end_step - self.start_step

    @property
    def gap_to_chance(self) -> float:
        """ln 10 minus the mean loss: 0 means no better than a uniform guess."""
        return LN10 - self.mean_loss

    @property
    def verdict(self) -> str:
        return "too short to tell" if self.flat is None else "flat" if self.flat else "not flat"


def flatness(
    run: RunHistory,
    digits: Sequence[int] = MIDDLE_DIGITS,
    start_fraction: float = 0.5,
    tolerance: float = FLAT_TOLERANCE,
    min_window_steps: int = FLAT_MIN_WINDOW_STEPS,
    min_points: int = FLAT_MIN_POINTS,
) -> Flatness | None:
    """Is the mean loss of ``digits`` flat over the last ``1 - start_fraction`` of the steps logged so
    far (by default the second half)? A straight line is fitted to it there; flat when the fitted
    change is within ± ``tolerance`` of the fitted start, and no verdict (``flat`` None) over a window
    shorter than ``min_window_steps`` steps or ``min_points`` logged steps. None when the run has
    logged no per-digit loss."""
    rows = [r for r in run.train if "digit_loss" in r]
    if not rows:
        return None
    start = start_fraction * rows[-1]["step"]
    window = [r for r in rows if r["step"] >= start]
    steps = np.array([r["step"] for r in window], dtype=float)
    y = np.array([np.mean([r["digit_loss"][k] for k in digits]) for r in window])
    if len(window) >= 2 and steps[-1] > steps[0]:
        slope, intercept = np.polyfit(steps, y, 1)
    else:
        slope, intercept = 0.0, float(y.mean())
    fitted_start = float(intercept + slope * steps[0])
    fitted_end = float(intercept + slope * steps[-1])
    relative = (fitted_end - fitted_start) / fitted_start if fitted_start else float("nan")
    enough = len(window) >= min_points and steps[-1] - steps[0] >= min_window_steps
    return Flatness(
        digits=tuple(digits),
        start_step=int(steps[0]),
        end_step=int(steps[-1]),
        n_points=len(window),
        mean_loss=float(y.mean()),
        slope_per_1k_steps=float(slope * 1000),
        fitted_start=fitted_start,
        fitted_end=fitted_end,
        relative_change=float(relative),
        tolerance=tolerance,
        min_window_steps=min_window_steps,
        min_points=min_points,
        flat=bool(abs(relative) <= tolerance) if enough else None,
    )


def window_stats(run: RunHistory, start_fraction: float = 0.5) -> list[dict]:
    """Per digit, over the last ``1 - start_fraction`` of the steps logged so far: the mean loss and the
    median, 10th and 90th percentile of its gradient norm. Rows ``k``, ``digit``, ``mean_loss``,
    ``median_grad_norm``, ``p10_grad_norm``, ``p90_grad_norm``, ``from_step``, ``to_step``, ``n_logs``."""
    rows = [r for r in run.train if "digit_loss" in r]
    if not rows:
        return []
    window = [r for r in rows if r["step"] >= start_fraction * rows[-1]["step"]]
    losses = np.array([r["digit_loss"] for r in window], dtype=float)
    grads = np.array([r["digit_grad_norm"] for r in window], dtype=float) if all("digit_grad_norm" in r for r in window) else None
    out = []
    for k in range(losses.shape[1]):
        g = grads[:, k] if grads is not None else None
        out.append(
            {
                "k": k,
                "digit": f"c{k}",
                "mean_loss": float(losses[:, k].mean()),
                "median_grad_norm": float(np.median(g)) if g is not None else None,
                "p10_grad_norm": float(np.percentile(g, 10)) if g is not None else None,
                "p90_grad_norm": float(np.percentile(g, 90)) if g is not None else None,
                "from_step": window[0]["step"],
                "to_step": window[-1]["step"],
                "n_logs": len(window),
            }
        )
    return out


def training_changes(run: RunHistory, window: int = 10) -> list[dict]:
    """Each resume that changed how the run trains (the learning rate or the weight average, not the
    ICoT gate, whose effect is the next stage's start), with validation exact match in the ``window``
    evaluations before it and the ``window`` after it (only those in the same ICoT format, i.e. with
    as many chain-of-thought tokens removed as at the change). Rows: ``step``, ``changes`` (e.g.
    ``"lr 0.001 → 0.0001"``), ``before`` and ``after`` (lists of exact match), ``after_to_step`` (the
    last evaluation counted)."""
    from longmul.config import RESUME_SCHEDULE  # no torch

    out = []
    for resume in run.resumes:
        changes = _resume_changes(resume, RESUME_SCHEDULE - {"icot_gate"})
        if not changes:
            continue
        step = resume["step"]
        earlier = [e for e in run.evals if e["step"] <= step][-window:]
        removed = earlier[-1].get("removed") if earlier else None
        later = []
        for e in run.evals:
            if e["step"] <= step:
                continue
            if e.get("removed") != removed or len(later) == window:
                break
            later.append(e)
        out.append(
            {
                "step": step,
                "changes": changes,
                "before": [e["val_exact_match"] for e in earlier],
                "after": [e["val_exact_match"] for e in later],
                "after_to_step": later[-1]["step"] if later else None,
            }
        )
    return out


def steps_to_exact_match(run: RunHistory, target: float = 0.99) -> int | None:
    """The first evaluation step at which validation exact match reached ``target`` (None if never)."""
    return next((r["step"] for r in run.evals if r["val_exact_match"] >= target), None)


__all__ = [
    "CHECKPOINT_DIRS",
    "FLAT_MIN_POINTS",
    "FLAT_MIN_WINDOW_STEPS",
    "LN10",
    "MIDDLE_DIGITS",
    "OPTIMISER_SETTINGS",
    "PAPER_AUX",
    "PAPER_SFT",
    "ROUNDING_ERROR",
    "Flatness",
    "PaperRun",
    "RunHistory",
    "common_settings",
    "cot_gone_step",
    "cot_length",
    "digit_names",
    "digit_rows",
    "discover_runs",
    "eval_rows",
    "flatness",
    "grad_norm_matrix",
    "icot_progress",
    "learned_steps",
    "learning_order",
    "load_run",
    "load_runs",
    "optimiser_at_start",
    "probe_error_below",
    "read_history_file",
    "replaced_values",
    "run_settings",
    "stage_rows",
    "steps_to_exact_match",
    "tried_row",
    "window_stats",
]
