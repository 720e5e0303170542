import pytest

from longmul.run_state import STATE_TYPES, check_record, check_row, check_state

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


@pytest.mark.parametrize(
    "row, message",
    [
        ({"kind": "train", "stdp": 5}, "line 3 is damaged: it has no 'step'"),  # a flipped byte in a key
        ({"kind": "trbin", "step": 5}, "line 3: unknown kind of row 'trbin'"),
        ({"kind": "eval", "step": 5, "val_per_digit": [1.0]}, "it has no 'val_exact_match'"),
        ({"kind": "eval", "step": 5, "val_exact_match": 0.5, "val_per_digit": ["x"]}, "'val_per_digit' must be"),
        ({"kind": "stage", "step": 5, "removed": -8}, "'removed' is negative"),
        ({"kind": "resume", "step": 5, "changed": []}, "'changed' is \\[\\]"),
    ],
)
def test_history_rows_are_checked_by_kind(row, message):
    with pytest.raises(ValueError, match=message):
        check_row(row, "run/history.jsonl, line 3")


def test_history_rows_that_pass():
    check_row({"kind": "train", "step": 1, "loss": float("nan"), "digit_loss": [0.5, 1]}, "h")
    check_row({"kind": "eval", "step": 1, "val_exact_match": 1, "val_per_digit": []}, "h")
    check_row({"kind": "resume", "step": 1, "changed": {"lr": [0.001, 0.0001]}}, "h")
