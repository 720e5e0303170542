import pytest

from longmul.run_state import STATE_TYPES, check_record, check_state

STATE = {
    "config": {"recipe": "sft"},
    "step": 5,
    "examples": 80,
    "removed": 0,
    "stage_start_step": 0,
    "stages": [],
    "elapsed_s": 1.5,
    "sessions": [{"command": "longmul train"}],
    "data_rng": {},
    "smoothing_rng": {},
    "optimizer": {},
}


def test_a_complete_state_passes():
    check_state(STATE, "state.json")


@pytest.mark.parametrize("key", sorted(STATE_TYPES))
def test_each_missing_entry_is_named(key):
    state = {k: v for k, v in STATE.items() if k != key}
    with pytest.raises(ValueError, match=f"run/state.json is damaged: it has no '{key}'"):
        check_state(state, "run/state.json")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("step", "5", "'step' is '5'"),
        ("step", True, "'step' is True"),
        ("examples", -1, "'examples' is negative"),
        ("config", None, "'config' is None"),
        ("sessions", ["x"], "sessions and stages must be JSON objects"),
    ],
)
def test_wrong_types_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        check_state({**STATE, key: value}, "state.json")


def test_a_listing_takes_what_is_there_with_its_type():
    check_state({"config": {}, "step": 3}, "state.json", complete=False)
    check_state({}, "state.json", complete=False)
    with pytest.raises(ValueError, match="'step' is 'x'"):
        check_state({"config": {}, "step": "x"}, "state.json", complete=False)


def test_training_record_entries_are_optional_but_typed():
    check_record({}, "training.json")
    check_record({"config": {}, "steps": 4, "wall_time_s": 2, "sessions": [{}], "command": "c"}, "training.json")
    with pytest.raises(ValueError, match="training.json is damaged: 'config' is 'sft'"):
        check_record({"config": "sft"}, "m/training.json")
