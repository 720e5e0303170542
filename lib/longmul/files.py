"""Reading and writing the project's small files so that a bad one gives a ``ValueError`` naming it.

* :func:`read_text` and :func:`read_json_object`: a missing, unreadable, non-UTF-8 or malformed file is
  a ``ValueError`` that names the file (never a bare ``'utf-8' codec can't decode…``).
* :func:`read_jsonl`: the rows of a JSON-lines file (a run's ``history.jsonl``). A run appends one
  whole line per row, so a last line that is not valid JSON was cut off by a kill mid-write: it is
  left out and reported; a bad line anywhere else is an error naming the file and line.
* :class:`FileWarning`: something in a file was left out (the torn line above); the message names it.
* :func:`fsync_file` and :func:`fsync_dir`: flush a file, or the renames in a folder, to the disk, so
  that an atomic rename never publishes a file whose contents are still only in the page cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


class FileWarning(UserWarning):
    """Part of a file was left out or repaired; the message names the file (``longmul: warning: …``)."""


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file; ``ValueError`` naming the file if it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (not UTF-8)") from None
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None


def read_json_object(path: str | Path) -> dict:
    """A file holding one JSON object; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object (found {type(value).__name__})")  # noqa: TRY004 (one error type for bad input)
    return value


def read_jsonl(path: str | Path, check: Callable[[dict, str], None] | None = None) -> tuple[list[dict], bool]:
    """The rows (JSON objects) of a JSON-lines file and whether its last line was torn and left out.

    An absent file has no rows. Blank lines are skipped. ``check(row, "PATH, line N")``, if given, may
    refuse a row by raising ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        return [], False
    lines = read_text(path).split("\n")  # lines as written (splitlines would also break at \x1c, \u2028, …)
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    rows: list[dict] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == last:
                return rows, True
            raise ValueError(f"{path}, line {number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")  # noqa: TRY004 (one error type for bad input)
        if check is not None:
            check(row, f"{path}, line {number}")
        rows.append(row)
    return rows, False


def fsync_file(path: str | Path) -> None:
    """Flush a written file's contents to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (files created or renamed in it) to the disk, where the system allows."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a system that cannot open folders (Windows): renames are durable there without it
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)
