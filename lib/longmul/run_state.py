"""What a run's records must hold before anything reads them (no torch: the run listing uses it).

* :func:`check_state`: a checkpoint's ``state.json`` (every entry that resuming reads, with its type;
  a listing of runs takes what is there, each entry with its type).
* :func:`check_record`: a saved model's ``training.json`` (the entries a listing of runs reads).
* :func:`check_row`: one row of a ``history.jsonl`` (its kind, step and the values of its kind).

Both raise ``ValueError`` naming the file, so a damaged record is reported as such instead of showing
up as a run of unknown recipe or a ``KeyError`` deep inside a resume.
"""

from __future__ import annotations

from pathlib import Path

STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "step": int,
    "examples": int,
    "removed": int,
    "stage_start_step": int,
    "stages": list,
    "elapsed_s": (int, float),
    "sessions": list,
    "data_rng": dict,
    "smoothing_rng": dict,
    "optimizer": dict,
}
RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "command": str,
    "steps": int,
    "wall_time_s": (int, float),
    "sessions": list,
}


NUMBER = (int, float)
ROW_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {  # entry: type, for each kind of row
    "train": {"loss": NUMBER, "lr": NUMBER, "grad_norm": NUMBER, "aux_loss": NUMBER, "removed": int},
    "eval": {"val_exact_match": NUMBER, "val_per_digit": list, "removed": int},
    "stage": {"removed": int, "gate": NUMBER},
    "resume": {"changed": dict},
}
ROW_REQUIRED = {
    "train": (),
    "eval": ("val_exact_match", "val_per_digit"),
    "stage": ("removed",),
    "resume": ("changed",),
}
NUMBER_LISTS = ("digit_loss", "digit_grad_norm", "val_per_digit")


def _check_types(record: dict, types: dict, path: Path, required: tuple[str, ...]) -> None:
    for key, kind in types.items():
        if key not in record:
            if key in required:
                raise ValueError(f"{path} is damaged: it has no {key!r}")
            continue
        value = record[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{path} is damaged: {key!r} is {value!r}")  # noqa: TRY004 (one error type for bad input)
        if kind is int and value < 0:
            raise ValueError(f"{path} is damaged: {key!r} is negative ({value})")
    if not all(isinstance(item, dict) for key in ("sessions", "stages") for item in record.get(key, [])):
        raise ValueError(f"{path} is damaged: its sessions and stages must be JSON objects")


def check_state(state: dict, path: str | Path, complete: bool = True) -> None:
    """``ValueError`` naming ``path`` (a ``state.json``) unless it holds every entry (only when
    ``complete``) and each entry it holds has the right type."""
    _check_types(state, STATE_TYPES, Path(path), required=tuple(STATE_TYPES) if complete else ())


def check_record(training: dict, path: str | Path) -> None:
    """``ValueError`` naming ``path`` (a ``training.json``) if an entry a listing reads has the wrong type."""
    _check_types(training, RECORD_TYPES, Path(path), required=())


def check_row(row: dict, where: str) -> None:
    """``ValueError`` naming ``where`` (a file and line) unless ``row`` is a history row: a known kind,
    a step, and the entries of its kind with their types."""
    kind = row.get("kind")
    if kind not in ROW_TYPES:
        raise ValueError(f"{where}: unknown kind of row {kind!r} (expected one of {sorted(ROW_TYPES)})")
    types = {"step": int, "examples": int, "elapsed_s": NUMBER, **ROW_TYPES[kind]}
    _check_types(row, types, Path(where), required=("step", *ROW_REQUIRED[kind]))
    for key in NUMBER_LISTS:
        values = row.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{where}: {key!r} must be a list of numbers, got {values!r}")
