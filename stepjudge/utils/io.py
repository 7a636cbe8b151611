"""Crash-safe file helpers shared by every long job, and the one reader of the records a verb takes in.

Rules: whole files are replaced atomically (write a temp file, fsync, rename), with the mode the user's
umask gives a new file; append-only JSONL logs are flushed and fsynced per write, and a torn last line
left by a crash is cut off on resume (:func:`repair_jsonl_tail`, with a warning) instead of corrupting
the file. Every input error is a :class:`~stepjudge.errors.DataError` naming the file, the line and the
field: a missing file, a folder, bytes that are not UTF-8, a malformed line, an empty file where records
are needed. A run folder is held by one process at a time (:class:`RunFolderLock`). A folder such as a
trained ``final/`` is replaced by swapping a finished sibling in (:func:`replace_dir`), never deleted first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stepjudge.errors import DataError, RunFolderError

log = logging.getLogger(__name__)

__all__ = ["atomic_write_text", "atomic_write_json", "iter_jsonl", "read_jsonl", "read_json",
           "write_jsonl_atomic", "repair_jsonl_tail", "JsonlAppender", "RunFolderLock", "current_umask",
           "exchange_paths", "replace_dir", "recover_replaced_dir"]


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but only where /proc is missing)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see either the old or the new file, never half.

    ``mkstemp`` creates its file 0600; it is set to what ``open()`` would have given (0666 minus the
    umask), so a result written here is as readable as any other file the user makes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``): every reader sees
    either the old or the new entry under each name, never none. False where the kernel, the C
    library or the file system cannot (then nothing was changed); any other failure is an OSError."""
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _displaced(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.old")


def recover_replaced_dir(dest: str | os.PathLike) -> None:
    """Finish a :func:`replace_dir` that a crash interrupted on a system without an atomic swap: the
    old folder left aside is put back if ``dest`` is missing, and removed if ``dest`` is in place."""
    dest = Path(dest)
    old = _displaced(dest)
    if not old.is_dir():
        return
    if dest.exists():
        shutil.rmtree(old)
    else:
        log.warning("%s was missing after an interrupted replace: restoring the previous one from %s", dest, old)
        os.replace(old, dest)


def replace_dir(new: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Publish the finished folder ``new`` as ``dest`` (a sibling) so that ``dest`` is never missing.

    With an atomic swap (Linux) ``new`` and ``dest`` trade places in one step and the old folder, now
    at ``new``, is deleted. Elsewhere the old folder is first renamed aside to ``.NAME.old`` and
    deleted only once ``new`` is in place: a crash between the two renames leaves the old model there,
    and :func:`recover_replaced_dir` (run here first, and by the next training run) puts it back.
    """
    new, dest = Path(new), Path(dest)
    recover_replaced_dir(dest)
    if not dest.exists():
        os.replace(new, dest)
    elif exchange_paths(new, dest):
        shutil.rmtree(new)  # the old folder, swapped out
    else:
        old = _displaced(dest)
        os.replace(dest, old)
        os.replace(new, dest)
        shutil.rmtree(old)


def _check_readable(path: Path, what: str) -> None:
    if path.is_dir():
        raise DataError(f"{what}: a file is expected, this is a folder", path=str(path))
    if not path.exists():
        raise DataError(f"{what}: no such file", path=str(path))


def _open_binary(path: Path, what: str):
    _check_readable(path, what)
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"{what}: cannot read ({e.strerror or e})", path=str(path)) from None


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save the file "
                        "as UTF-8", path=str(path), line=lineno) from None


def iter_jsonl(path: str | os.PathLike, *, what: str = "JSONL file") -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; blank lines are skipped; a missing file, a folder, a line that
    is not UTF-8, not JSON or not an object raises DataError naming the file and line."""
    path = Path(path)
    with _open_binary(path, what) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError) as e:  # a corrupt .gz
                raise DataError(f"{what}: cannot read ({e})", path=str(path), line=lineno + 1) from None
            if not raw:
                return
            lineno += 1
            line = _decode_line(raw, path, lineno)
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


def read_jsonl(path: str | os.PathLike, *, allow_empty: bool = False, what: str = "JSONL file") -> list[dict]:
    """Every record of a JSONL file. A file without a record is an error unless ``allow_empty``: an
    empty input would otherwise become an empty result that replaces a good one."""
    records = [rec for _, rec in iter_jsonl(path, what=what)]
    if not records and not allow_empty:
        raise DataError(f"{what}: the file holds no records (expected one JSON object per line)", path=str(path))
    return records


def read_json(path: str | os.PathLike, *, what: str = "JSON file", expect: type = dict) -> Any:
    """A whole JSON file (a config, ``run.json``, a summary), checked to be an ``expect``; every
    failure is a DataError naming the file (and line)."""
    path = Path(path)
    _check_readable(path, what)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{what}: cannot read ({e.strerror or e})", path=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{what}: not UTF-8 text (byte 0x{raw[e.start]:02x})", path=str(path), line=line) from None
    if not text.strip():
        raise DataError(f"{what}: the file is empty", path=str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{what}: malformed JSON ({e.msg} at column {e.colno})", path=str(path),
                        line=e.lineno) from None
    if not isinstance(data, expect):
        raise DataError(f"{what}: expected a JSON {expect.__name__}, got {type(data).__name__}", path=str(path))
    return data


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def repair_jsonl_tail(path: str | os.PathLike) -> list[dict]:
    """The whole records of an append log; a torn last line (a crash mid-write) is cut off, with a warning.

    Every resumable writer opens its log through this (via :class:`JsonlAppender`). A bad line *before*
    the last one is real corruption, not a crash: DataError naming the line. A last record without its
    newline is kept and the newline added.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict] = []
    pos = good_end = lineno = 0
    torn = False
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
            except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if nl < 0 or not data[end:].strip():  # the last line: torn by a crash
                    torn = True
                    break
                raise DataError("malformed record in the middle of an append log (not a crash: the file was "
                                "edited or is corrupt)", path=str(path), line=lineno) from None
            records.append(rec)
        good_end = end
        pos = end
    if good_end < len(data) or (data[:good_end] and not data[:good_end].endswith(b"\n")):
        body = data[:good_end]
        if body and not body.endswith(b"\n"):
            body += b"\n"
        if torn:
            log.warning("%s: line %d was cut off by a crash (%d bytes); dropped it, %d whole records kept",
                        path, lineno, len(data) - good_end, len(records))
        atomic_write_text(path, body.decode("utf-8"))
    return records


class JsonlAppender:
    """Append-only JSONL log that survives crashes: one fsynced write per record (or per batch).

    On open the log is repaired by :func:`repair_jsonl_tail` and its records are in ``records``.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = repair_jsonl_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, record: dict) -> None:
        self.extend([record])

    def extend(self, records: Iterable[dict]) -> None:
        """Append several records with one write and one fsync: a crash leaves whole records and at
        most one torn last line, which the next open cuts off."""
        records = list(records)
        if not records:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.records.extend(records)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunFolderLock:
    """One writer per run folder: an exclusive ``fcntl.flock`` on ``<folder>/.lock``, which holds the
    holder's ``pid host``.

    A second process is refused with a RunFolderError naming the holder. The kernel drops the lock when
    its process dies, so a lock left by a crash or ``kill -9`` is simply taken over (with a warning naming
    the dead pid). The file is never deleted (deleting it would let two processes lock two different
    files); a clean release empties it. ``name`` lets jobs that share a folder on purpose (annotation
    shards) each lock their own part.
    """

    def __init__(self, folder: str | os.PathLike, name: str = ".lock"):
        self.folder = Path(folder)
        self.path = self.folder / name
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        import fcntl

        if self._fd is not None:
            raise RunFolderError(f"{self.folder} is already held by this lock")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"pid {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") if holder else "another process"
            raise RunFolderError(f"{self.folder} is in use by another stepjudge process ({who}); wait for it to "
                                 "finish or use another --out") from None
        previous = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        if previous:
            log.warning("%s: taking over the run folder lock of pid %s, which is gone (crashed or killed)",
                        self.folder, previous[0])
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
