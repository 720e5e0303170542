"""The test suite collects without the optional 'book' extra: modules that need it skip, saying why.

The tests need the 'dev' extra (pytest, hypothesis, onnx, …). The 'book' extra (altair, pandas,
ipywidgets, vl-convert, matplotlib, jupyter-book, …) is optional: a module that imports one of its
packages, directly or through the longmul module it tests, starts with

    pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")

before that import. Checked by collecting the suite in a subprocess where every package that only the
book extra brings in (its requirements and theirs, less those of the core and 'dev' dependencies,
read from the installed packages' metadata) cannot be imported, as after `pip install -e '.[dev]'`.
Where the book extra is not installed there is nothing to hide, and the suite collects as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
SKIPPED = re.compile(r"^SKIPPED \[\d+\] (\S+?):\d+: (.*)$", re.MULTILINE)
SAYS_WHY = re.compile(r"needs the '([\w-]+)' extra: pip install -e '\.\[([\w-]+)\]'")

# Run pytest with the hidden packages unimportable: the path finder does not find them, so that an
# import fails and importlib.util.find_spec returns None, as for a package that is not installed
# (transformers probes optional packages that way).
RUNNER = """
import sys
from importlib.machinery import PathFinder

HIDDEN = set(sys.argv[1].split(","))


class HidingPathFinder(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[sys.meta_path.index(PathFinder)] = HidingPathFinder
import pytest

sys.exit(pytest.main(sys.argv[2:]))
"""


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions ``requirements`` bring in, with theirs (markers evaluated as for no extra)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            todo += [Requirement(r) for r in metadata.requires(name) or []]
        except metadata.PackageNotFoundError:
            continue  # not installed: nothing to hide
        seen.add(name)
    return seen


def book_only_modules() -> set[str]:
    """Top-level modules installed only because of the 'book' extra."""
    book_only = _closure(EXTRAS["book"]) - _closure(PROJECT["dependencies"] + EXTRAS["dev"])
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if {canonicalize_name(d) for d in dists} <= book_only
    }


def collect(folder: Path, hidden: set[str], tmp_path: Path) -> subprocess.CompletedProcess:
    runner = tmp_path / "collect_without.py"
    runner.write_text(RUNNER)
    args = ["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", str(folder)]
    return subprocess.run(
        [sys.executable, str(runner), ",".join(sorted(hidden)), *args],
        cwd=folder.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_book_extra_is_declared_and_hidden_packages_are_its_own():
    assert "book" in EXTRAS and "dev" in EXTRAS
    hidden = book_only_modules()
    for module in ("torch", "numpy", "pytest", "hypothesis", "yaml", "jupytext"):
        assert module not in hidden  # core and dev packages stay importable
    installed = {m for m in ("altair", "pandas", "vl_convert", "ipywidgets", "matplotlib") if find_spec(m)}
    assert installed <= hidden  # where the book extra is installed, its packages are found to hide


def test_the_suite_collects_without_the_book_extra_and_says_why_it_skips(tmp_path):
    run = collect(ROOT / "tests", book_only_modules(), tmp_path)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"collection failed without the book extra:\n{report[-4000:]}"
    skipped = dict(SKIPPED.findall(run.stdout))
    assert skipped, "no test module skipped without the book extra"
    for module, reason in skipped.items():
        # pytest.importorskip without a reason says "could not import 'x': ..."
        assert not reason.startswith("could not import"), (
            f"{module} skips without saying which extra it needs: {reason}"
        )
        says = SAYS_WHY.search(reason)
        if says:
            assert says[1] == says[2] and says[1] in EXTRAS, f"{module} names an extra pyproject.toml lacks: {reason}"
    assert any("needs the 'book' extra" in r for r in skipped.values())


def test_a_module_that_forgets_the_skip_is_caught(tmp_path):
    """The check above fails for a test module that imports a chart without pytest.importorskip."""
    folder = tmp_path / "tests"
    folder.mkdir()
    (folder / "test_forgot.py").write_text(
        "from longmul.charts.render import chart_html\n\n\ndef test_x():\n    pass\n"
    )
    (folder / "test_skips.py").write_text(
        "import pytest\n\n"
        "pytest.importorskip(\"altair\", reason=\"needs the 'book' extra: pip install -e '.[book]'\")\n\n"
        "import altair\n\n\ndef test_y():\n    pass\n"
    )
    run = collect(folder, book_only_modules() | {"altair"}, tmp_path)
    assert run.returncode != 0
    assert "ERROR" in run.stdout and "test_forgot.py" in run.stdout and "altair" in run.stdout
    assert "tests/test_skips.py" in dict(SKIPPED.findall(run.stdout))
