"""The shipped ICoT evaluation sets (``data/icot/``, MIT licence, from Deng et al.'s release).

``valid`` and ``test`` are the stepwise-internalization release's 4×4 sets; ``test2`` is the different
test set of the earlier implicit-CoT release (the paper does not say which it used; we report both).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from .task import Problem, read_problems

ICOT_SETS = ("valid", "test", "test2")


def data_dir() -> Path:
    """``$LONGMUL_DATA`` if set, else the repository's ``data/`` folder."""
    env = os.environ.get("LONGMUL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def icot_path(name: str) -> Path:
    if name not in ICOT_SETS:
        raise ValueError(f"unknown ICoT set {name!r}; choose one of {list(ICOT_SETS)}")
    path = data_dir() / "icot" / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"ICoT data file missing: {path} (set LONGMUL_DATA to the folder holding icot/)")
    return path


@cache
def _icot_cached(name: str) -> tuple[Problem, ...]:
    return tuple(read_problems(icot_path(name)))


def icot_problems(name: str) -> list[Problem]:
    """The 1,000 problems of an ICoT 4×4 set."""
    return list(_icot_cached(name))


def evaluation_problems() -> list[Problem]:
    """Every problem of every shipped set: training data never includes these."""
    return [p for name in ICOT_SETS for p in icot_problems(name)]
