"""Finding the book's models: a finished run wins over its snapshot; a missing one is reported."""

import shutil

from conftest import tiny_config, train_until_killed
from longmul.cli import main
from longmul.shipped import SNAPSHOT_DIR, load_shipped, shipped_dir
from longmul.train import train


def test_missing_models_are_named(tmp_path):
    shipped = load_shipped(tmp_path, {"icot": "ICoT", "sft": "SFT"})
    assert shipped.models == {} and shipped.missing == ["icot", "sft"]
    assert "`models/icot`" in shipped.status_markdown() and "`models/sft`" in shipped.status_markdown()


def test_finished_model_is_found(tiny_sft_model, tmp_path):
    shutil.copytree(tiny_sft_model, tmp_path / "sft")
    assert shipped_dir(tmp_path, "sft") == tmp_path / "sft"
    shipped = load_shipped(tmp_path, {"sft": "SFT"})
    assert list(shipped.models) == ["SFT"] and shipped.unfinished == [] and shipped.missing == []
    assert shipped.status_markdown() == "All models are finished runs."


def test_snapshot_stands_in_until_the_run_finishes(tmp_path, monkeypatch, capsys):
    config = tiny_config(checkpoint_minutes=0.0, max_steps=8)
    train_until_killed(config, tmp_path / "sft", 5, monkeypatch)
    assert shipped_dir(tmp_path, "sft") is None  # a checkpoint alone is not a model

    assert main(["snapshot", str(tmp_path / "sft"), "--n-random", "8"]) == 0
    assert shipped_dir(tmp_path, "sft") == tmp_path / "sft" / SNAPSHOT_DIR
    shipped = load_shipped(tmp_path, {"sft": "SFT"})
    assert shipped.unfinished == ["SFT"]
    assert "SFT (step 5)" in shipped.status_markdown()

    train(config, tmp_path / "sft", resume=True, command="pytest")
    assert shipped_dir(tmp_path, "sft") == tmp_path / "sft"
    assert not (tmp_path / "sft" / SNAPSHOT_DIR).exists()  # superseded by the finished model
    assert load_shipped(tmp_path, {"sft": "SFT"}).models["SFT"].training["steps"] == 8


def test_overview_describes_each_model(tiny_sft_model, tmp_path):
    shutil.copytree(tiny_sft_model, tmp_path / "sft")
    row = load_shipped(tmp_path, {"sft": "SFT"}).overview()["SFT"]
    assert row == {
        "recipe": "sft",
        "training steps": "4",
        "finished run": "yes",
        "chain-of-thought tokens it writes": 0,
    }


def test_the_scoreboard_gives_each_model_s_recorded_scores_beside_the_paper_s(tiny_sft_model, tmp_path):
    shutil.copytree(tiny_sft_model, tmp_path / "sft")
    rows = {row["model"]: row for row in load_shipped(tmp_path).scoreboard()}
    assert list(rows) == ["ICoT", "SFT", "SFT + aux loss"]  # every book model, shipped or not
    sft = rows["SFT"]
    metrics = load_shipped(tmp_path).models["SFT"].metrics
    assert sft["ICoT test: ours"] == f"{metrics['icot_test']['exact_match']:.1%} (n=1,000)"
    assert sft["fresh random: ours"] == f"{metrics['random']['exact_match']:.1%} (n={metrics['random']['n']:,})"
    assert sft["the paper reports"] == "< 1%" and sft["training"] == "finished, 4 steps"
    assert sft["chain-of-thought tokens it writes"] == 0
    assert rows["ICoT"]["training"] == "not shipped yet" and rows["ICoT"]["ICoT test: ours"] == "not available"
    assert rows["ICoT"]["the paper reports"] == "100%"
