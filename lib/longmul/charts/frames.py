"""Data frames as the charts embed them."""

from __future__ import annotations

import pandas as pd


def round_floats(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A copy with every float column cut to ``digits`` significant digits: a chart's data is embedded
    in the page, and full precision only makes the page heavier."""
    out = df.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: float(f"{v:.{digits}g}") if pd.notna(v) else v)
    return out
