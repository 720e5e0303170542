"""The book's chapters as nbmake tests: one test per chapter, run as the book build runs them.

nbmake executes ``.ipynb`` files; the chapters are MyST-markdown jupytext notebooks. So:

    python tests/nbmake_chapters.py OUT_DIR      # every chapter of book/ as OUT_DIR/<chapter>.ipynb
    PYTHONPATH=tests pytest -p nbmake_chapters --nbmake --nbmake-timeout 1200 --overwrite OUT_DIR

(``scripts/test.sh`` does both, into a temporary folder, together with the unit tests.)

Each converted chapter starts with one added cell that makes its kernel run in the chapter's own
folder (the chapters read ``../models`` and the like) and sets ``LONGMUL_FAST=1`` (the chapters'
CI-cheap variants) unless ``LONGMUL_FAST`` is already set; the chapter's own cells follow unchanged.

Loaded as a pytest plugin (``-p nbmake_chapters``), this module also fails a chapter that wrote to
stderr, which the book build (``stderr_output: warn`` with ``-W``) would turn into a failure as well:
nbmake writes the executed notebook back (``--overwrite``, which the plugin requires; it only ever
rewrites the temporary copies) and the plugin reads its stderr streams. The added cell refuses to run
without the plugin, so the stderr check cannot be left out by accident.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
HANDSHAKE = "LONGMUL_CHAPTER_CHECKS"  # set by the plugin; the added cell checks it
SETUP_TAG = "longmul-nbmake-setup"  # the added cell's tag


def is_notebook(path: Path) -> bool:
    """A book page is a notebook when its front matter names a kernel."""
    text = path.read_text()
    if not text.startswith("---"):
        return False
    front_matter = text.split("---", 2)[1]
    return "kernelspec:" in front_matter


def chapters(book: Path = BOOK) -> list[Path]:
    return sorted(p for p in book.glob("*.md") if is_notebook(p))


def setup_source(chapter_dir: Path) -> str:
    # A function, deleted after use, so that the chapter finds no name it did not define itself.
    return "\n".join(
        [
            "# Added by tests/nbmake_chapters.py: run in the chapter's folder, FAST unless LONGMUL_FAST is set.",
            "def _longmul_nbmake_setup():",
            "    import os",
            (
                f"    assert os.environ.get({HANDSHAKE!r}) == '1', 'run the chapters with pytest -p nbmake_chapters "
                "(scripts/test.sh does): it fails a chapter that writes to stderr'"
            ),
            f"    os.chdir({str(chapter_dir)!r})",
            "    os.environ.setdefault('LONGMUL_FAST', '1')",
            "_longmul_nbmake_setup()",
            "del _longmul_nbmake_setup",
        ]
    )


def convert(chapter: Path, out_dir: Path) -> Path:
    """Write ``chapter`` (MyST markdown) as ``out_dir/<stem>.ipynb`` with the setup cell first."""
    notebook = jupytext.read(chapter)
    setup = nbformat.v4.new_code_cell(setup_source(chapter.resolve().parent), metadata={"tags": [SETUP_TAG]})
    notebook.cells.insert(0, setup)
    out = out_dir / f"{chapter.stem}.ipynb"
    nbformat.write(notebook, out)
    return out


def convert_book(book: Path, out_dir: Path) -> list[Path]:
    found = chapters(book)
    if not found:
        raise SystemExit(
            f"nbmake_chapters: no notebook chapters (a .md whose front matter names a kernelspec) in {book}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return [convert(chapter, out_dir) for chapter in found]


def stderr_outputs(notebook) -> list[tuple[int, str]]:
    """``(cell, text)`` for every stderr stream of an executed converted chapter; ``cell`` counts the
    chapter's own cells (markdown included) from 0, as in the chapter, the added cell left out."""
    cells = [c for c in notebook.cells if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    return [
        (index, output.get("text", ""))
        for index, cell in enumerate(cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


# --------------------------------------------------------------------------- pytest plugin


def pytest_configure(config):
    if getattr(config.option, "nbmake", False):
        if not config.option.overwrite:
            raise pytest.UsageError(
                "nbmake_chapters reads the executed notebooks: run with --overwrite (it rewrites the temporary copies only)"
            )
        os.environ[HANDSHAKE] = "1"  # inherited by the kernels nbmake starts


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and report.passed and getattr(item, "nbmake", False):
        path = Path(item.config.rootpath) / item.filename
        found = stderr_outputs(nbformat.read(path, as_version=4))
        if found:
            report.outcome = "failed"
            report.longrepr = f"{path.stem}.md wrote to stderr: " + "; ".join(
                f"cell {i}: {t[:300]!r}" for i, t in found
            )
    return report


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/nbmake_chapters.py OUT_DIR")
    for path in convert_book(BOOK, Path(sys.argv[1])):
        print(path)
