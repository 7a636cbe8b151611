"""Crash-safe file helpers shared by every long job.

Rules: whole files are replaced atomically (write a temp file, fsync, rename); append-only JSONL
logs are flushed and fsynced per record, and a torn last line left by a crash is dropped on resume
instead of corrupting the file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stepjudge.errors import DataError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; blank lines are skipped, bad lines raise DataError."""
    path = Path(path)
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path=str(path),
                                line=lineno) from None
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__}", path=str(path),
                                line=lineno)
            yield lineno, rec


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path)]


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class JsonlAppender:
    """Append-only JSONL log that survives crashes: one fsynced line per record.

    On open, a torn last line (a crash mid-write) is cut off so the file again holds only whole
    records; a malformed line *before* the end is real corruption and raises DataError.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = self._recover()
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _recover(self) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[dict] = []
        good_end = 0
        pos = 0
        lineno = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl + 1
            lineno += 1
            chunk = data[pos:end]
            if chunk.strip():
                try:
                    rec = json.loads(chunk)
                    if not isinstance(rec, dict):
                        raise ValueError("not an object")
                except ValueError:
                    if nl < 0 or not data[end:].strip():  # torn tail from a crash
                        break
                    raise DataError("malformed record in the middle of an append log",
                                    path=str(self.path), line=lineno) from None
                if nl < 0:  # whole JSON but no newline: keep it, add the newline below
                    records.append(rec)
                    good_end = end
                    break
                records.append(rec)
            good_end = end
            pos = end
        if good_end < len(data) or (data and not data[:good_end].endswith(b"\n") and good_end):
            body = data[:good_end]
            if body and not body.endswith(b"\n"):
                body += b"\n"
            atomic_write_text(self.path, body.decode("utf-8"))
        return records

    def append(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.records.append(record)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
