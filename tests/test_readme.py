"""The README's commands: every `longmul ...` line in its bash blocks parses, and the recipe it gives
for each shipped model is the command that model's run was started with."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from longmul.cli import build_parser
from longmul.dynamics import load_run
from longmul.shipped import MODEL_LABELS

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


@pytest.mark.parametrize("name", list(MODEL_LABELS))
def test_each_recipe_is_the_command_its_run_was_started_with(name):
    run_dir = ROOT / "models" / name
    if not run_dir.is_dir():
        pytest.skip(f"models/{name} is not shipped")
    sessions = load_run(run_dir).sessions
    assert sessions, f"models/{name} records no training session"
    first = shlex.split(sessions[0]["command"])
    assert _train_command_for(f"models/{name}") == first
