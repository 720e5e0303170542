import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

from longmul.saved import load_model, save_model


def test_saved_model_has_the_hugging_face_layout_and_records(tiny_sft_model):
    names = {p.name for p in tiny_sft_model.iterdir()}
    for required in ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "training.json", "metrics.json", "history.jsonl", "manifest.json", "README.md"]:
        assert required in names
    assert not any(p.suffix in {".bin", ".pt", ".pkl", ".pth"} for p in tiny_sft_model.rglob("*"))
    training = json.loads((tiny_sft_model / "training.json").read_text())
    for key in ["recipe", "config", "seed", "command", "steps", "examples", "wall_time_s", "sessions", "library_version"]:
        assert key in training
    assert "hardware" in training["sessions"][-1]
    metrics = json.loads((tiny_sft_model / "metrics.json").read_text())
    assert set(metrics) == {"icot_test", "icot_test2", "random"} and metrics["icot_test"]["n"] == 1000


def test_plain_transformers_can_load_it(tiny_sft_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_sft_model)
    model = GPT2LMHeadModel.from_pretrained(tiny_sft_model)
    ids = tokenizer("5 6 3 2 * 7 4 3 4||", return_tensors="pt").input_ids
    assert ids.shape == (1, 10)
    loaded = load_model(tiny_sft_model)
    torch.testing.assert_close(model(ids).logits, loaded.model(ids).logits)  # sdpa vs eager: float noise


def test_load_round_trip_and_records(tiny_sft_model):
    loaded = load_model(tiny_sft_model)
    assert loaded.training["recipe"] == "sft" and loaded.metrics["random"]["n"] == 20
    assert loaded.history and loaded.history[0]["kind"] == "train"


def test_tampering_is_detected(tiny_sft_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_sft_model, copy)
    (copy / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="metrics.json does not match its sha256"):
        load_model(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ValueError, match="missing manifest.json"):
        load_model(copy)


def test_saving_into_a_run_directory_leaves_its_other_files_out_of_the_manifest(tiny_sft_model, tmp_path):
    """A finished run is saved into its own directory, beside its scratch files (e.g. the aux probe's
    temporary file, deleted right after): those must not be in the manifest."""
    loaded = load_model(tiny_sft_model)
    run = tmp_path / "run"
    run.mkdir()
    (run / "scratch.tmp").write_text("deleted after saving")
    save_model(run, loaded.model, loaded.training, loaded.metrics)
    assert "scratch.tmp" not in json.loads((run / "manifest.json").read_text())
    (run / "scratch.tmp").unlink()
    assert load_model(run).training == loaded.training


def test_missing_and_foreign_directories(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a longmul model directory"):
        load_model(tmp_path / "empty")


def test_a_run_still_in_training_points_to_its_snapshot(tiny_sft_model, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"run still in training.*`longmul snapshot .*run` saves its latest checkpoint"):
        load_model(run)
    shutil.copytree(tiny_sft_model, run / "snapshot")
    with pytest.raises(ValueError, match=r"load its snapshot .*run/snapshot"):
        load_model(run)


@pytest.mark.parametrize(
    "manifest, message",
    [
        ([], "manifest.json does not hold a JSON object"),
        ({}, "manifest.json lists no files: it verifies nothing"),
        ({"../config.json": "0" * 64}, "is not a file in the folder"),
        ({"config.json": 3}, "is not a file in the folder and its sha256"),
        ({"metrics.json": "0" * 64}, "manifest.json does not cover config.json, model.safetensors, training.json"),
    ],
)
def test_a_manifest_must_cover_what_loading_reads(tiny_sft_model, tmp_path, manifest, message):
    copy = shutil.copytree(tiny_sft_model, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        load_model(copy)


def test_a_config_edited_away_from_the_training_record_is_refused(tiny_sft_model, tmp_path):
    from longmul.saved import write_manifest

    copy = shutil.copytree(tiny_sft_model, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "n_head": 8}))  # same weights, other heads
    (copy / "manifest.json").unlink()
    write_manifest(copy)
    with pytest.raises(ValueError, match="training.json records the model .* but config.json describes"):
        load_model(copy)


def test_saving_with_replace_replaces_the_whole_folder(tiny_sft_model, tmp_path):
    loaded = load_model(tiny_sft_model)
    for replace, kept in ((False, True), (True, False)):
        target = tmp_path / f"replace_{replace}"
        target.mkdir()
        (target / "other.txt").write_text("x")
        save_model(target, loaded.model, loaded.training, replace=replace)
        assert (target / "other.txt").exists() == kept
        assert load_model(target).training == loaded.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replace_False", "replace_True"]
