"""longmul.provenance: hours per kind of machine from a run's session records."""

from hypothesis import given
from hypothesis import strategies as st

from longmul.provenance import hours_by_machine

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
