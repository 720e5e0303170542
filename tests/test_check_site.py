"""The pure parts of scripts/check_site.py: dead internal links, raw math, the layout table.

The browser part runs in tests/test_book_site.py on the built site."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("playwright", reason="scripts/check_site.py needs the playwright package")

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
check_site = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_site)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text('<h1 id="welcome">Hi</h1>', encoding="utf-8")
    (tmp_path / "book" / "01_puzzle.html").write_text('<section id="the-puzzle"></section>', encoding="utf-8")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "style.css").write_text("", encoding="utf-8")
    return tmp_path


def test_links_to_pages_and_anchors_that_exist_are_alive(site):
    hrefs = ["01_puzzle.html", "01_puzzle.html#the-puzzle", "#welcome", "../_static/style.css", "intro.html"]
    assert check_site.dead_links(site, "book/intro.html", hrefs) == []


def test_a_markdown_link_and_a_missing_anchor_are_dead(site):
    dead = check_site.dead_links(site, "book/intro.html", ["05_dynamics.md", "01_puzzle.html#nowhere"])
    assert dead == ["05_dynamics.md (no such file)", "01_puzzle.html#nowhere (no anchor #nowhere)"]


def test_off_site_and_non_http_links_are_not_judged(site):
    hrefs = ["https://arxiv.org/abs/2510.00184", "mailto:a@b.c", "javascript:void(0)"]
    assert check_site.dead_links(site, "book/intro.html", hrefs) == []


@pytest.mark.parametrize("text", ["$\\ln 10 \\approx 2.30$", "the sum \\hat{c}_k", "$c_0$ and", "a \\frac{1}{2}"])
def test_untypeset_math_is_found(text):
    assert check_site.RAW_MATH.search(text)


@given(st.text(alphabet=st.characters(blacklist_characters="$\\"), max_size=200))
def test_prose_without_dollars_or_backslashes_is_never_raw_math(text):
    assert check_site.RAW_MATH.search(text) is None


def test_the_layout_table_has_one_row_per_page():
    found = {"screens": 12.34, "charts": 2, "math": 5, "widgets": 1, "explorables": 2, "wide": 1, "raw_math": 0}
    table = check_site.layout_table([("book/a.html", found), ("book/b.html", found | {"screens": 3.0})])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2] == "| book/a.html | 12.3 | 2 | 5 | 1 | 2 | 1 | 0 |"
    assert lines[3].startswith("| book/b.html | 3.0 |")
