"""tests/nbmake_chapters.py: chapters become notebooks that nbmake runs in the chapter's folder with
LONGMUL_FAST=1 by default, and a chapter that writes to stderr fails (run on small stand-in chapters;
the real ones run in scripts/test.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

import nbmake_chapters as nc

TESTS = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the kernel colours its tracebacks
FRONT = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"


def chapter(book: Path, name: str, *cells: str) -> Path:
    path = book / f"{name}.md"
    body = "".join(f"\n```{{code-cell}} ipython3\n{code}\n```\n" for code in cells)
    path.write_text(f"{FRONT}\n# {name}\n{body}")
    return path


def test_only_pages_with_a_kernel_are_chapters(tmp_path):
    chapter(tmp_path, "b_one", "1")
    (tmp_path / "a_glossary.md").write_text("# words\n")
    (tmp_path / "c_front.md").write_text("---\ntitle: x\n---\n# no kernel\n")
    assert [p.name for p in nc.chapters(tmp_path)] == ["b_one.md"]
    with pytest.raises(SystemExit, match="no notebook chapters"):
        nc.convert_book(tmp_path / "c_front.md", tmp_path / "out")


def test_the_book_has_chapters():
    assert nc.chapters(), f"no notebook chapters found in {nc.BOOK}"


def test_conversion_adds_one_cell_and_keeps_the_chapter(tmp_path):
    source = chapter(tmp_path, "ch", "x = 1", "print(x)")
    out = nc.convert(source, tmp_path)
    converted, original = nbformat.read(out, as_version=4), jupytext.read(source)
    assert nc.SETUP_TAG in converted.cells[0].metadata["tags"]
    assert [(c.cell_type, c.source) for c in converted.cells[1:]] == [(c.cell_type, c.source) for c in original.cells]
    assert converted.metadata.kernelspec.name == "python3"


def test_stderr_is_found_and_numbered_as_in_the_chapter(tmp_path):
    notebook = nbformat.read(nc.convert(chapter(tmp_path, "ch", "a", "b"), tmp_path), as_version=4)
    notebook.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text="from the setup cell")]
    notebook.cells[3].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="fine"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful"),
    ]
    # chapter cells: 0 markdown, 1 code "a", 2 code "b" (the converted notebook's cell 3)
    assert nc.stderr_outputs(notebook) == [(2, "UserWarning: careful")]


def run_nbmake(tmp_path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    book = tmp_path / "book"
    out = tmp_path / "notebooks"
    nc.convert_book(book, out)
    environment = {k: v for k, v in os.environ.items() if k not in ("LONGMUL_FAST", nc.HANDSHAKE)}
    environment.update(env or {}, PYTHONPATH=str(TESTS))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "--nbmake",
            "--nbmake-timeout",
            "120",
            *extra,
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )


@pytest.fixture
def book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "models").mkdir()  # a chapter reads ../models: it must run in its own folder
    return tmp_path / "book"


def test_a_clean_chapter_passes_in_its_folder_with_fast_by_default_and_stderr_or_an_error_fails(tmp_path, book):
    chapter(
        book,
        "clean",
        "import os\nfrom pathlib import Path",
        "assert Path('../models').is_dir()",
        "assert os.environ['LONGMUL_FAST'] == '1'",
        "assert '_longmul_nbmake_setup' not in dir()",
    )
    chapter(book, "noisy", "x = 1", "import sys\nprint('careful', file=sys.stderr)")
    chapter(book, "broken", "raise ValueError('chapter broke')")
    done = run_nbmake(tmp_path, "-p", "nbmake_chapters", "--overwrite", "-rA")
    out = ANSI.sub("", done.stdout)
    assert done.returncode == 1 and "2 failed, 1 passed" in out, out + done.stderr
    assert re.search(r"^PASSED \S*notebooks/clean\.ipynb::clean\.ipynb$", out, re.MULTILINE), out
    assert "noisy.md wrote to stderr: cell 2: 'careful\\n'" in out
    assert "ValueError: chapter broke" in out


def test_longmul_fast_set_outside_is_kept(tmp_path, book):
    chapter(book, "full", "import os\nassert os.environ['LONGMUL_FAST'] == '0'")
    done = run_nbmake(tmp_path, "-p", "nbmake_chapters", "--overwrite", env={"LONGMUL_FAST": "0"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_the_plugin_a_chapter_refuses_to_run(tmp_path, book):
    chapter(book, "clean", "x = 1")
    done = run_nbmake(tmp_path, "--overwrite")
    assert done.returncode == 1 and "run the chapters with pytest -p nbmake_chapters" in done.stdout


def test_the_plugin_needs_overwrite(tmp_path, book):
    chapter(book, "clean", "x = 1")
    done = run_nbmake(tmp_path, "-p", "nbmake_chapters")
    assert done.returncode == 4 and "run with --overwrite" in done.stderr
