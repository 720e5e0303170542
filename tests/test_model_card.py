"""longmul.model_card: the card names the model's own path, marks snapshots, and its plain-`transformers`
code decodes exactly what longmul's own greedy decoding writes, for a plain and an ICoT-format model."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from longmul.evaluate import predict
from longmul.model_card import model_card
from longmul.saved import load_model
from longmul.shipped import shipped_dir
from longmul.task import problem_from_strings

MODELS = Path(__file__).resolve().parents[1] / "models"


def _card(directory: Path) -> str:
    training = json.loads((directory / "training.json").read_text())
    metrics = json.loads((directory / "metrics.json").read_text())
    return model_card(directory, training, metrics)


def _plain_transformers_code(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    code = next(b for b in blocks if "GPT2LMHeadModel.from_pretrained" in b)
    assert "longmul" not in code.replace("longmul_position_skip", "")  # the point: no longmul needed
    return code


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<model card>", "exec"), {})  # noqa: S102 - running the documented code is the test
    return out.getvalue().strip()


def _expected(directory: Path) -> list[str]:
    return predict(load_model(directory).model, problem_from_strings("2365", "4347")).tokens


def test_the_card_names_the_path_and_marks_a_snapshot(tiny_sft_model):
    training = json.loads((tiny_sft_model / "training.json").read_text())
    metrics = json.loads((tiny_sft_model / "metrics.json").read_text())
    card = model_card(Path("models") / "sft" / "snapshot", {**training, "snapshot_of_unfinished_run": True}, metrics)
    assert card.startswith("# longmul model `models/sft/snapshot`")
    assert "A snapshot of a run still in training" in card
    assert "load_model('models/sft/snapshot')" in card
    assert "snapshot" not in model_card(Path("models/sft"), training, metrics).split("##")[0]


def test_the_card_says_what_a_model_still_writing_its_chain_of_thought_generates(tiny_sft_model):
    training = json.loads((tiny_sft_model / "training.json").read_text())
    metrics = json.loads((tiny_sft_model / "metrics.json").read_text())
    writing = model_card(Path("models/icot/snapshot"), training, metrics, cot_tokens=14).split("## Scores")[0]
    assert "generates the last 14 tokens of the chain of thought" in writing and "then `#### c0 c1" in writing
    assert "the model\ngenerates `#### c0 c1 … c7 <eos>`." in model_card(Path("models/sft"), training, metrics)


def test_plain_transformers_code_decodes_as_longmul_does(tiny_sft_model):
    printed = _run(_plain_transformers_code(_card(tiny_sft_model))).split(" ")
    expected = _expected(tiny_sft_model)
    # longmul stops after the answer's length; the card's loop runs on to <eos> or the last position
    assert printed[: len(expected)] == expected


@pytest.mark.parametrize("name", ["icot", "aux"])
def test_plain_transformers_code_runs_on_the_shipped_models(name):
    directory = shipped_dir(MODELS, name)
    if directory is None:
        pytest.skip(f"models/{name} is not shipped yet")
    printed = _run(_plain_transformers_code(_card(directory))).split(" ")
    assert printed == _expected(directory)  # a trained model stops at <eos>
    assert "####" in printed and printed[-1] == "<eos>"


def test_the_card_says_where_the_model_trained(tiny_sft_model):
    training = json.loads((tiny_sft_model / "training.json").read_text())
    metrics = json.loads((tiny_sft_model / "metrics.json").read_text())
    assert "- trained on: CPU 0.0 h (" in model_card(tiny_sft_model, training, metrics)
    gpu = {"device": "cuda", "gpu": "NVIDIA H200"}
    resumed = {**training, "sessions": [*training["sessions"], {"wall_time_s": 720.0, "hardware": gpu}]}
    assert "- trained on: CPU 0.0 h, NVIDIA H200 0.2 h (" in model_card(tiny_sft_model, resumed, metrics)



def test_a_resumed_run_s_card_gives_its_first_command_and_each_schedule_change(tmp_path):
    from conftest import tiny_config
    from longmul.train import train

    out = train(tiny_config(max_steps=6, warmup_steps=0), tmp_path / "run", command="longmul train --max-steps 6")
    last = "longmul train --max-steps 12 --lr 0.0001 --resume"
    train(tiny_config(max_steps=12, warmup_steps=0, lr=1e-4, threads=2), out, resume=True, command=last)
    training = json.loads((out / "training.json").read_text())
    # threads and max_steps changed too, but they do not alter the model
    assert training["schedule_changes"] == [{"step": 6, "changed": {"lr": [1e-3, 1e-4]}}]
    card = model_card(out, training, {})
    assert "- first command: `longmul train --max-steps 6`" in card
    assert "- resumed at step 6 with lr 0.001 → 0.0001" in card
    assert f"- last command: `{last}`" in card
    assert "- command:" not in card
    # A run trained in one go gives its one command.
    one_go = {**training, "sessions": training["sessions"][-1:], "schedule_changes": []}
    assert f"- command: `{last}`" in model_card(out, one_go, {})
