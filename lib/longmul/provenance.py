"""Where a run trained, from the records its sessions leave (each process that trained it, resumed or
not, records its command, wall time and hardware)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .config import RESUME_SCHEDULE


def hours_by_machine(sessions: Iterable[dict]) -> str:
    """Training time per kind of machine: "CPU 10.4 h, NVIDIA H200 0.2 h" (a GPU by its name, in the
    order first used); empty where no session recorded its hardware."""
    hours: dict[str, float] = {}
    for session in sessions:
        hardware = session.get("hardware")
        if hardware:
            label = hardware.get("gpu") or "CPU"
            hours[label] = hours.get(label, 0.0) + session.get("wall_time_s", 0.0) / 3600
    return ", ".join(f"{label} {h:.1f} h" for label, h in hours.items())


def schedule_changes(history_path: str | Path) -> list[dict]:
    """The resumes of a run that changed what it trains (learning rate, weight average, ICoT gate or
    stage size), in order: ``[{"step": 93154, "changed": {"lr": [0.001, 0.0001]}}, ...]``. Bookkeeping
    changes (threads, max_steps, ...) are left out: they do not alter the model."""
    changes = []
    for line in Path(history_path).read_text().splitlines():
        # Parse resume rows only: the history of a run still training may end in a half-written row.
        if '"resume"' not in line:
            continue
        row = json.loads(line)
        if row.get("kind") != "resume":
            continue
        changed = {name: values for name, values in row["changed"].items() if name in RESUME_SCHEDULE}
        if changed:
            changes.append({"step": row["step"], "changed": changed})
    return changes
