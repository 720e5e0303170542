"""The README's commands: every `longmul ...` line in its bash blocks parses, and the recipe it gives
for each shipped model trains as that model's run was started."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from longmul.cli import build_parser
from longmul.config import RESUME_BOOKKEEPING
from longmul.dynamics import load_run
from longmul.shipped import MODEL_LABELS
from longmul.sweeps import command_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE)


def longmul_commands(markdown: str) -> list[list[str]]:
    """Every command line in the bash blocks that runs `longmul`, continuation lines joined and
    comments dropped, split as the shell would."""
    commands = []
    for block in bash_blocks(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "longmul":
                commands.append(words)
    return commands


def test_the_helpers_join_continuations_and_drop_comments():
    markdown = "text\n```bash\nlongmul eval m \\\n    --json   # a comment\nls\n```\n```python\nlongmul = 1\n```\n"
    assert longmul_commands(markdown) == [["longmul", "eval", "m", "--json"]]


def test_the_readme_shows_longmul_commands():
    commands = longmul_commands(README.read_text())
    assert {words[1] for words in commands} >= {"train", "predict", "eval", "data"}


@pytest.mark.parametrize("words", longmul_commands(README.read_text()), ids=lambda words: " ".join(words[1:3]))
def test_every_readme_command_parses(words):
    build_parser().parse_args(words[1:])  # argparse exits (SystemExit) on a command it cannot parse


def _train_command_for(out: str) -> list[str]:
    recipes = [w for w in longmul_commands(README.read_text()) if w[1] == "train" and w[w.index("--out") + 1] == out]
    assert len(recipes) == 1, f"the README should give one recipe with --out {out}, found {len(recipes)}"
    return recipes[0]


def _what_trains(command: str) -> dict:
    """The settings of a ``longmul train`` command that change its training steps: its configuration
    without the bookkeeping a resume may change (how far it runs, when it stops, checkpoints, threads)."""
    config = command_config(command)
    assert config is not None, f"not a longmul train command: {command}"
    return {name: value for name, value in config.items() if name not in RESUME_BOOKKEEPING}


@pytest.mark.parametrize("name", list(MODEL_LABELS))
def test_each_recipe_trains_as_its_run_was_started(name):
    """The README's recipe may differ from the first session's command only in ``--out`` and in
    bookkeeping (the aux model's first session ran as a sweep configuration, in another folder)."""
    run_dir = ROOT / "models" / name
    if not run_dir.is_dir():
        pytest.skip(f"models/{name} is not shipped")
    sessions = load_run(run_dir).sessions
    assert sessions, f"models/{name} records no training session"
    recipe = shlex.join(_train_command_for(f"models/{name}"))
    assert _what_trains(recipe) == _what_trains(sessions[0]["command"])


def test_a_recipe_that_trains_otherwise_is_told_apart():
    started = "longmul train --recipe aux --aux-weight 10 --max-steps 6000 --out results/aux_ablation/weight_10"
    same = "longmul train --recipe aux --out models/aux --max-steps 400000 --stop-exact-match 0.998 --aux-weight 10"
    assert _what_trains(same) == _what_trains(started)
    assert _what_trains(same.replace("--aux-weight 10", "--aux-weight 1")) != _what_trains(started)
    assert _what_trains(same + " --lr 0.0001") != _what_trains(started)
