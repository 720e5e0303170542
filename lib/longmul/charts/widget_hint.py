"""The line under each kernel widget that says what it needs.

On the book's static site an ipywidgets widget is drawn as it was when its chapter executed, and no
kernel runs its callbacks: typing in it does nothing. The hint says so in the widget itself, before the
reader tries, and says what to do in Jupyter."""

from __future__ import annotations

import html

import ipywidgets as widgets

STATIC_PAGE = (
    "Needs a running kernel: open this chapter as a notebook in Jupyter. "
    "On the book's web page it shows the problem it was executed with and does not respond."
)


def kernel_hint(action: str) -> widgets.HTML:
    """A small-print line: ``action`` (what to do in Jupyter, one sentence) and :data:`STATIC_PAGE`."""
    action = action.strip()
    if not action:
        raise ValueError("a widget hint needs the action it asks of the reader")
    return widgets.HTML(f"<small>{html.escape(action)} <em>{html.escape(STATIC_PAGE)}</em></small>")
