"""The built site, opened in headless Chromium the way a reader with no network sees it.

Runs ``scripts/check_site.py`` on ``_build/html`` (build it first: ``bash scripts/build_book.sh``).
Skipped when there is no built site or no Chromium, unless ``LONGMUL_REQUIRE_SITE_CHECK=1`` (set by
``.ci/run``), which turns those into failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"


def _unavailable() -> str | None:
    if not (SITE / "index.html").is_file():
        return f"no built site at {SITE} (run: bash scripts/build_book.sh)"
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        return "no Chromium (Debian: apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def test_site_in_headless_chromium():
    reason = _unavailable()
    if reason:
        if os.environ.get("LONGMUL_REQUIRE_SITE_CHECK") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_site.py"), "--site", str(SITE)],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
