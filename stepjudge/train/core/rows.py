"""Reading training rows: every trainer checks its JSONL before any model loads, naming file:line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from stepjudge.errors import DataError

__all__ = ["read_rows"]


def read_rows(path: str | os.PathLike, parse: Callable[[dict, int], dict], *,
              missing: str = "training data file not found", empty: str = "no training rows") -> list[dict]:
    """``parse(record, line)`` of every JSONL record (it raises :class:`DataError` naming the field);
    a missing file or a file without rows is a :class:`DataError` too."""
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError(missing, path=str(path))
    rows = [parse(rec, line) for line, rec in iter_jsonl(path)]
    if not rows:
        raise DataError(empty, path=str(path))
    return rows
