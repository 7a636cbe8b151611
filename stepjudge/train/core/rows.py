"""Reading training rows: every trainer checks its JSONL before any model loads, naming file:line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from stepjudge.errors import DataError

__all__ = ["read_prompt_completion_rows", "read_rows"]


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


def read_prompt_completion_rows(path: str | os.PathLike, kind: Literal["text", "chat"], *,
                                empty: str = "no training rows") -> list[dict]:
    """TRL prompt-completion SFT rows, checked: ``text`` rows hold strings, ``chat`` rows chat messages
    whose completion ends with a non-empty assistant turn; an empty completion is an error either way."""
    from stepjudge.data.records import check_chat_messages

    def parse(rec: dict, line: int) -> dict:
        for key in ("prompt", "completion"):
            if kind == "chat":
                check_chat_messages(rec.get(key), path=str(path), line=line, field=key)
            elif not isinstance(rec.get(key), str):
                raise DataError("expected a string (text prompt-completion rows)", path=str(path), line=line,
                                field=key)
        last = rec["completion"][-1] if kind == "chat" else {"role": "assistant", "content": rec["completion"]}
        if last["role"] != "assistant" or not last["content"].strip():
            raise DataError("the completion must end with a non-empty assistant message" if kind == "chat"
                            else "empty completion", path=str(path), line=line, field="completion")
        return {"prompt": rec["prompt"], "completion": rec["completion"]}

    return read_rows(path, parse, empty=empty)
