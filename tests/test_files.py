import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longmul.files import fsync_dir, fsync_file, read_json_object, read_jsonl, read_text


def test_read_text_names_a_binary_or_missing_file(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"binary.txt is not a text file"):
        read_text(tmp_path / "binary.txt")
    with pytest.raises(ValueError, match=r"cannot read .*missing.txt"):
        read_text(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "does not hold a JSON object \\(found list\\)"),
        ("{", "is not valid JSON"),
        ('"x"', "does not hold a JSON object \\(found str\\)"),
    ],
)
def test_read_json_object_names_the_file(tmp_path, content, message):
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(ValueError, match=f"state.json {message}"):
        read_json_object(tmp_path / "state.json")


def test_read_json_object_reads_an_object(tmp_path):
    (tmp_path / "a.json").write_text('{"step": 3}')
    assert read_json_object(tmp_path / "a.json") == {"step": 3}


def test_a_torn_last_line_is_left_out_and_reported(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\n\n{"step": 2}\n{"kind": "train", "st')
    assert read_jsonl(path) == ([{"step": 1}, {"step": 2}], True)
    path.write_text('{"step": 1}\n{"step": 2}\n\n')
    assert read_jsonl(path) == ([{"step": 1}, {"step": 2}], False)
    assert read_jsonl(tmp_path / "absent.jsonl") == ([], False)


@pytest.mark.parametrize("bad", ["not json", "[1, 2]"])
def test_a_bad_line_before_the_end_names_file_and_line(tmp_path, bad):
    path = tmp_path / "history.jsonl"
    path.write_text(f'{{"step": 1}}\n{bad}\n{{"step": 2}}\n')
    with pytest.raises(ValueError, match=r"history.jsonl, line 2: not a JSON object"):
        read_jsonl(path)


def test_a_last_line_that_is_json_but_not_an_object_is_an_error(tmp_path):
    """Only a torn line (invalid JSON) is forgiven: a whole line that is not a row is damage."""
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\n3\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


@given(rows=st.lists(st.fixed_dictionaries({"step": st.integers(0, 10**6)}), max_size=5), cut=st.integers(1, 40))
def test_any_cut_of_the_last_row_keeps_every_whole_row(tmp_path_factory, rows, cut):
    path = tmp_path_factory.mktemp("h") / "history.jsonl"
    last = json.dumps({"kind": "train", "step": 7, "loss": 0.25})
    cut = min(cut, len(last) - 1)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + last[:cut])
    assert read_jsonl(path) == (rows, True)


def test_fsync_a_file_and_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    fsync_file(tmp_path / "f")
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_file(tmp_path / "missing")


def test_a_check_refuses_a_row_by_file_and_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\n\n{"stop": 2}\n{"st')

    def needs_a_step(row, where):
        if "step" not in row:
            raise ValueError(f"{where}: no step")

    with pytest.raises(ValueError, match=r"history.jsonl, line 3: no step"):
        read_jsonl(path, needs_a_step)
    path.write_text('{"step": 1}\n{"st')
    assert read_jsonl(path, needs_a_step) == ([{"step": 1}], True)  # a torn last line is not checked
