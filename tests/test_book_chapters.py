"""Execute every chapter of the book (the MyST-markdown jupytext notebooks in book/), one test each.

Each chapter runs in a fresh kernel with its own folder as working directory, as in the book build.
``LONGMUL_FAST`` defaults to 1 here (the chapters' CI-cheap variants); export ``LONGMUL_FAST=0`` to
run the full versions. A chapter fails on an error and also on any output to stderr, which the
book build (``stderr_output: warn`` with ``-W``) would turn into a failure as well.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbclient
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CELL_TIMEOUT_S = 1200


def is_notebook(path: Path) -> bool:
    """A book page is a notebook when its front matter names a kernel."""
    text = path.read_text()
    if not text.startswith("---"):
        return False
    front_matter = text.split("---", 2)[1]
    return "kernelspec:" in front_matter


CHAPTERS = sorted(p for p in BOOK.glob("*.md") if is_notebook(p))


def test_the_book_has_chapters():
    assert CHAPTERS, f"no notebook chapters found in {BOOK}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_executes(chapter: Path):
    notebook = jupytext.read(chapter)
    env = dict(os.environ)
    env.setdefault("LONGMUL_FAST", "1")
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=notebook.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    client.execute(env=env)  # raises CellExecutionError naming the failing cell
    stderr = [
        (index, output.get("text", ""))
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]
    assert not stderr, f"{chapter.name} wrote to stderr: " + "; ".join(f"cell {i}: {t[:300]!r}" for i, t in stderr)
