"""Charts for the book: an offline-friendly altair renderer and the chart builders the chapters use.

Chapters call :func:`enable` once (in their imports cell); every altair chart they display then draws
from the vega bundle the book's site serves itself (see :mod:`longmul.charts.render`).
"""

from longmul.charts.render import chart_html, enable

__all__ = ["chart_html", "enable"]
