"""Every kernel widget says, in itself, that it needs a kernel (longmul.charts.widget_hint)."""

from __future__ import annotations

import html

import pytest

pytest.importorskip("altair", reason="needs the 'book' extra: pip install -e '.[book]'")
pytest.importorskip("ipywidgets", reason="needs the 'book' extra: pip install -e '.[book]'")

from hypothesis import given
from hypothesis import strategies as st

from longmul.charts.widget_hint import STATIC_PAGE, kernel_hint


def test_the_hint_says_what_to_do_and_what_the_static_page_does():
    hint = kernel_hint("Type two 4-digit numbers & press Enter.")
    assert "Type two 4-digit numbers &amp; press Enter." in hint.value
    assert "Needs a running kernel" in hint.value and "does not respond" in hint.value


@given(st.text(max_size=80).filter(str.strip))
def test_any_action_is_escaped_and_kept(action):
    value = kernel_hint(action).value
    assert f"<small>{html.escape(action.strip())} <em>" in value
    assert value.endswith(f"<em>{html.escape(STATIC_PAGE)}</em></small>")


@pytest.mark.parametrize("action", ["", "   "])
def test_an_empty_action_is_refused(action):
    with pytest.raises(ValueError, match="needs the action"):
        kernel_hint(action)
