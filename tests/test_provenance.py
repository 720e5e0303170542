"""longmul.provenance: hours per kind of machine, and the schedule changes of resumed runs."""

import json

from hypothesis import given
from hypothesis import strategies as st

from longmul.provenance import hours_by_machine, schedule_changes

CPU = {"device": "cpu"}
H200 = {"device": "cuda", "gpu": "NVIDIA H200"}


def test_hours_per_machine_in_the_order_first_used():
    sessions = [
        {"wall_time_s": 3600.0, "hardware": CPU},
        {"wall_time_s": 720.0, "hardware": H200},
        {"wall_time_s": 5400.0, "hardware": CPU},
        {"wall_time_s": 99.0},  # a record without hardware is not counted
    ]
    assert hours_by_machine(sessions) == "CPU 2.5 h, NVIDIA H200 0.2 h"
    assert hours_by_machine([]) == ""


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1e6)), max_size=20))
def test_each_machine_gets_the_sum_of_its_sessions(sessions):
    records = [{"wall_time_s": s, "hardware": H200 if on_gpu else CPU} for on_gpu, s in sessions]
    summary = dict(part.rsplit(" ", 2)[0:2] for part in hours_by_machine(records).split(", ") if part)
    for label, on_gpu in (("CPU", False), ("NVIDIA H200", True)):
        used = [s for g, s in sessions if g == on_gpu]
        assert (label in summary) == bool(used)
        if used:
            assert float(summary[label]) == round(sum(used) / 3600, 1)


def test_schedule_changes_keep_only_resumes_that_change_what_is_trained(tmp_path):
    rows = [
        {"kind": "train", "step": 100, "lr": 1e-3},
        {"kind": "resume", "step": 200, "changed": {"threads": [1, 2]}},
        {"kind": "resume", "step": 300, "changed": {"lr": [1e-3, 1e-4], "max_steps": [400, 800]}},
        {"kind": "resume", "step": 500, "changed": {"icot_tokens_per_stage": [8, 1], "ema_decay": [0.0, 0.999]}},
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"kind": "train", "ste')  # a half-written row
    assert schedule_changes(history) == [
        {"step": 300, "changed": {"lr": [1e-3, 1e-4]}},
        {"step": 500, "changed": {"icot_tokens_per_stage": [8, 1], "ema_decay": [0.0, 0.999]}},
    ]
