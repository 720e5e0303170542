"""Where a run trained, from the records its sessions leave (each process that trained it, resumed or
not, records its command, wall time and hardware)."""

from __future__ import annotations

from collections.abc import Iterable


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
