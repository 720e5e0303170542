"""Each defect of issue 28 (bad input that gave a traceback, was accepted silently, or lost data),
driven through the command line as a user meets it: one line ``longmul: error: …`` naming the flag or
file, exit status 2, and nothing overwritten or left behind."""

import json
import shutil

import pytest
import torch

from conftest import tiny_config
from longmul import cli
from longmul.cli import main
from longmul.evaluate import predict
from longmul.saved import load_model, write_manifest
from longmul.task import Problem
from longmul.train import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 2x2 run with its checkpoint: a model directory and something to snapshot."""
    return train(
        tiny_config(max_steps=4, final_eval_random=16), tmp_path_factory.mktemp("runs") / "run", command="pytest"
    )


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def fails(args, capsys, *fragments):
    """Run ``longmul args``; it must exit 2 with one ``longmul: error:`` line holding every fragment."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def regenerate_manifest(directory):
    (directory / "manifest.json").unlink()
    write_manifest(directory)


# --------------------------------------------------------------------------- nothing overwritten


def test_snapshot_refuses_a_folder_with_other_files_and_force_replaces_it_whole(run_copy, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "data.csv").write_text("1,2")
    fails(["snapshot", run_copy, "--out", out, "--n-random", "4"], capsys, "not empty", "--force")
    assert (out / "README.md").read_text() == "my notes" and (out / "data.csv").read_text() == "1,2"
    assert main(["snapshot", str(run_copy), "--out", str(out), "--n-random", "4", "--force"]) == 0
    assert not (out / "data.csv").exists() and "my notes" not in (out / "README.md").read_text()  # replaced whole
    assert load_model(out).training["snapshot_of_unfinished_run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run"]  # no *.saving or *.old left


def test_an_earlier_snapshot_is_replaced_without_force(run_copy, capsys):
    assert main(["snapshot", str(run_copy), "--n-random", "4"]) == 0
    (run_copy / "snapshot" / "metrics.json").write_text("{}")  # any change: the new snapshot replaces it
    assert main(["snapshot", str(run_copy), "--n-random", "4"]) == 0
    assert load_model(run_copy / "snapshot").metrics["random"]["n"] == 4


@pytest.mark.parametrize("where", ["file", "parent"])
def test_snapshot_never_writes_over_a_file_or_the_run_itself(run_copy, tmp_path, capsys, where):
    target = tmp_path / "file.txt" if where == "file" else tmp_path
    (tmp_path / "file.txt").write_text("keep")
    message = "is a file" if where == "file" else "holds the run"
    fails(["snapshot", run_copy, "--out", target, "--force"], capsys, message)
    assert (tmp_path / "file.txt").read_text() == "keep" and (run_copy / "checkpoint").is_dir()
    assert not list(tmp_path.glob("*.saving"))


def test_data_into_a_folder_is_refused_and_leaves_no_temporary_file(tmp_path, capsys):
    fails(["data", "--out", tmp_path, "--n", "3"], capsys, "is a folder")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- wrong answers


def test_predict_checks_operand_sizes(tiny_sft_model, capsys):
    model = load_model(tiny_sft_model).model
    with pytest.raises(ValueError, match="trained on 4x4 problems, got 5x5"):
        predict(model, Problem(15000, 15000, 5, 5))
    fails(["predict", tiny_sft_model, "15000", "15000"], capsys, "must be a 4-digit number")


def test_predict_reads_the_operand_size_of_the_model(tiny_run, capsys):
    assert main(["predict", str(tiny_run), "12", "34"]) == 0
    assert "12 × 34 = 408" in capsys.readouterr().out
    fails(["predict", tiny_run, "1234", "5678"], capsys, "must be a 2-digit number")


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["eval", "{model}", "--problems", "random", "--n", "1000000000000"], ["--n", "1,000,000"]),
        (["data", "--out", "{tmp}/p.txt", "--n", "1000000000000"], ["--n", "must be from 1 to 1,000,000"]),
        (["data", "--out", "{tmp}/p.txt", "--n", "0"], ["--n", "must be from 1"]),
        (["data", "--out", "{tmp}/p.txt", "--n", "3", "--seed", "-1"], ["--seed", "must be from 0"]),
        (["data", "--out", "{tmp}/p.txt", "--n", "3", "--digits", "-3"], ["--digits", "from 1 to 9, got -3"]),
        (["data", "--out", "{tmp}/p.txt", "--n", "3", "--digits", "30"], ["--digits", "from 1 to 9, got 30"]),
        (["eval", "{model}", "--seed", "-1"], ["--seed"]),
        (["snapshot", "{model}", "--n-random", "-5"], ["--n-random", "must be from 0"]),
        (
            ["train", "--recipe", "sft", "--out", "{tmp}/x", "--device", "bogus"],
            ["--device", "'bogus' is not a device"],
        ),
        (["train", "--recipe", "sft", "--out", "{tmp}/x", "--seed", "-1"], ["--seed", "seed must be from 0"]),
        (["train", "--recipe", "sft", "--out", "{tmp}/x", "--n-digits", "30"], ["--n-digits", "from 1 to 9"]),
        (["train", "--recipe", "sft", "--out", "{tmp}/x", "--lr", "nan"], ["--lr", "finite"]),
        (["train", "--recipe", "sft", "--out", "{tmp}/x", "--beta2", "1.5"], ["--beta2", "[0, 1)"]),
        (["train", "--recipe", "icot", "--out", "{tmp}/x", "--icot-gate-every", "0"], ["--icot-gate-every"]),
    ],
)
def test_bad_flags_are_named(args, fragments, tiny_sft_model, tmp_path, capsys):
    args = [a.format(model=tiny_sft_model, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "x").exists() and not (tmp_path / "p.txt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda(tmp_path, capsys):
    fails(["train", "--recipe", "sft", "--out", tmp_path / "x", "--device", "cuda"], capsys, "--device", "no CUDA GPU")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize(
    "content, message", [("[]", "does not hold a JSON object"), ("{}", "lists no files"), ("{", "not valid JSON")]
)
def test_a_bad_manifest_is_an_error(tiny_run, tmp_path, capsys, content, message):
    copy = shutil.copytree(tiny_run, tmp_path / "m")
    (copy / "manifest.json").write_text(content)
    fails(["predict", copy, "12", "34"], capsys, "manifest.json", message)


def test_a_manifest_that_skips_the_weights_is_an_error(tiny_run, tmp_path, capsys):
    copy = shutil.copytree(tiny_run, tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["model.safetensors"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    fails(["predict", copy, "12", "34"], capsys, "manifest.json does not cover model.safetensors")


@pytest.mark.parametrize(
    "edit, fragments",
    [
        ({"n_embd": 64}, ["model.safetensors does not fit its config.json"]),
        ({"n_layer": 3}, ["model.safetensors does not fit its config.json", "missing ['transformer.h.2"]),
        ({"n_head": 8}, ["training.json records the model", "config.json describes"]),
    ],
)
def test_a_config_edited_away_from_its_weights_is_an_error(tiny_run, tmp_path, capsys, edit, fragments):
    copy = shutil.copytree(tiny_run, tmp_path / "m")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **edit}))
    regenerate_manifest(copy)
    fails(["predict", copy, "12", "34"], capsys, *fragments)


def test_truncated_weights_with_a_regenerated_manifest(tiny_run, tmp_path, capsys):
    copy = shutil.copytree(tiny_run, tmp_path / "m")
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    regenerate_manifest(copy)
    fails(["eval", copy, "--problems", "random", "--n", "4"], capsys, "model.safetensors is unreadable")


def test_a_binary_problem_file_is_named(tiny_run, tmp_path, capsys):
    (tmp_path / "problems.bin").write_bytes(bytes(range(256)))
    fails(["eval", tiny_run, "--problems", tmp_path / "problems.bin"], capsys, "problems.bin is not a text file")


@pytest.mark.parametrize(
    "state, fragments",
    [
        (None, ["state.json is not valid JSON"]),
        ("without config", ["state.json is damaged: it has no 'config'"]),
        ("step as text", ["state.json is damaged: 'step' is 'four'"]),
    ],
)
def test_snapshot_and_runs_name_a_damaged_state(run_copy, capsys, state, fragments):
    path = run_copy / "checkpoint" / "state.json"
    saved = json.loads(path.read_text())
    if state is None:
        path.write_text('{"config": {"recipe": "sf')
    elif state == "without config":
        path.write_text(json.dumps({k: v for k, v in saved.items() if k != "config"}))
    else:
        path.write_text(json.dumps({**saved, "step": "four"}))
    fails(["snapshot", run_copy, "--n-random", "4"], capsys, *fragments)
    if state != "without config":  # a listing shows a state without a configuration as of unknown recipe
        fails(["runs", run_copy], capsys, *fragments)
    assert not (run_copy / "snapshot").exists()


def test_a_checkpoint_whose_weights_miss_a_layer_is_refused(run_copy, capsys):
    from safetensors.torch import load_file, save_file

    weights = run_copy / "checkpoint" / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("transformer.h.1.")}
    save_file(tensors, weights)
    fails(["snapshot", run_copy, "--n-random", "4"], capsys, "does not fit this run", "missing ['transformer.h.1.")


# --------------------------------------------------------------------------- nothing stuck


def test_a_torn_last_history_line_is_dropped_on_resume_with_a_warning(run_copy, capsys):
    history = run_copy / "history.jsonl"
    rows = history.read_text().splitlines()
    history.write_text("\n".join(rows) + '\n{"kind": "train", "step": 5, "lo')
    args = ["train", "--resume", "--out", str(run_copy), *tiny_cli_flags(), "--max-steps", "6"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"longmul: warning: {history}: dropped its last line" in err
    resumed = [json.loads(line) for line in history.read_text().splitlines()]
    assert [json.loads(r) for r in rows] == resumed[: len(rows)]
    assert resumed[-1]["step"] == 6


def tiny_cli_flags() -> list[str]:
    """The command-line flags of :func:`tiny_config` (as the fixture's run was trained)."""
    config = tiny_config(max_steps=4, final_eval_random=16)
    return [
        f"--{name.replace('_', '-')}={value}"
        for name, value in config.to_dict().items()
        if name not in ("d_model", "n_layers", "n_heads", "dropout", "aux_heads", "max_steps")
    ]


def test_checkpoint_files_are_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    from longmul import checkpoint

    flushed = []
    monkeypatch.setattr(checkpoint, "fsync_file", lambda path: flushed.append(path))
    train(tiny_config(max_steps=2), tmp_path / "run", command="pytest")
    names = {"model.safetensors", "optimizer.safetensors", "extra.safetensors", "state.json"}
    assert {p.name for p in flushed} == names and all(p.parent.name == "checkpoint.tmp" for p in flushed)


# --------------------------------------------------------------------------- the error boundary


def test_a_bug_gives_one_line_and_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setitem(cli.COMMANDS, "runs", boom)
    with pytest.raises(SystemExit) as exit_info:
        main(["runs"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err == "longmul: internal error: RuntimeError: something broke (rerun with --debug for the traceback)\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "runs"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("Traceback") and "in boom" in err
    assert err.endswith("longmul: internal error: RuntimeError: something broke\n")
