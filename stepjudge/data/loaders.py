"""Load benchmark and user datasets into typed records.

Everything reads local files first (this toolkit must work offline, on the bundled ``shared/data``);
Hugging Face hub ids are a fallback for machines with network access. Every error names the file,
the line (JSONL) or record/row number (JSON arrays, parquet, hub) and the field, so a user can fix
their data without reading this code.

Where the bundled data lives is a setting, never a fixed path: the ``data_root`` argument of the
loaders (a stage config's ``data_root``), else the ``STEPJUDGE_DATA`` environment variable, else the
default ``shared/data`` found from the working directory upwards (see :func:`find_data_root`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepjudge.data.records import Problem, ProcessBenchCase
from stepjudge.errors import DataError
from stepjudge.utils.io import iter_jsonl

__all__ = [
    "ANSWER_FIELDS",
    "DATA_ENV",
    "DEFAULT_DATA_DIR",
    "PROBLEM_FIELDS",
    "PROCESSBENCH_SUBSETS",
    "find_data_root",
    "load_processbench",
    "load_gsm8k",
    "load_math500",
    "load_math_test",
    "load_problems",
]

PROCESSBENCH_SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")

PROBLEM_FIELDS = ("problem", "question", "prompt", "instruction")
ANSWER_FIELDS = ("answer", "final_answer", "gt", "solution")

# Longest first, so "x.jsonl.gz" is recognised before ".gz" alone.
_FILE_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".parquet")
# "owner/name": what datasets.load_dataset accepts as a hub id (a bare path never gets this far).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MISSING = object()

# The data folder setting: the environment variable, and the default looked for when neither it nor an
# explicit ``data_root`` is given (relative: searched from the working directory upwards).
DATA_ENV = "STEPJUDGE_DATA"
DEFAULT_DATA_DIR = Path("shared") / "data"


# ---------------------------------------------------------------------------------------------
# locating data


def find_data_root(data_root: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the bundled datasets (``processbench/``, ``gsm8k/``, ``math500/``, ...).

    Resolution order: the ``data_root`` argument (a stage config's ``data_root``), else the
    :data:`DATA_ENV` environment variable (``STEPJUDGE_DATA``), else the default
    :data:`DEFAULT_DATA_DIR` (``shared/data``) in the working directory or the nearest folder above
    it, then likewise above this package's files (so a clone with ``shared/`` beside it works from
    anywhere inside it). An explicit folder that does not exist is an error; None means no default
    was found.
    """
    for value, what in ((data_root, "data_root"), (os.environ.get(DATA_ENV), DATA_ENV)):
        if value:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise DataError(f"{what}={str(value)!r} is not an existing directory; point it at the folder "
                                "holding processbench/, gsm8k/, math500/ ... or unset it")
            return root.resolve()
    starts: list[Path] = []
    with contextlib.suppress(FileNotFoundError):  # the working directory may have been deleted
        starts.append(Path.cwd().resolve())
    starts.append(Path(__file__).resolve().parent)
    for start in starts:
        for d in (start, *start.parents):
            cand = d / DEFAULT_DATA_DIR
            if cand.is_dir():
                return cand
    return None


def _require_root(what: str, data_root: str | os.PathLike | None = None) -> Path:
    root = find_data_root(data_root)
    if root is None:
        raise DataError(f"cannot find the data folder for {what}: set data_root (or the {DATA_ENV} environment "
                        "variable) to the folder holding processbench/, gsm8k/, math500/ and math_test5000/, "
                        "or pass source=<path>")
    return root


def _builtin_file(source: str | os.PathLike | None, subdir: str, filename: str, what: str,
                  data_root: str | os.PathLike | None = None) -> Path:
    """Resolve a bundled dataset file from ``source`` (None: under the data root; its folder, the data
    root, or the file itself)."""
    if Path(filename).name != filename or filename.startswith("."):  # e.g. gsm8k:../../etc/passwd
        raise DataError(f"{what}: {filename!r} is not a plain file name; a split names a file inside the "
                        f"{subdir}/ data folder (no '/', '..' or leading '.')")
    if source is None:
        path = _require_root(what, data_root) / subdir / filename
    else:
        base = Path(source).expanduser()
        if base.is_file():
            return base
        if not base.exists():
            raise DataError(f"{what}: no such file or directory", path=str(base))
        path = base / filename
        if not path.exists() and (base / subdir / filename).exists():  # given the data root itself
            path = base / subdir / filename
    if not path.is_file():
        have = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        listing = f" (that folder has: {', '.join(have)})" if have else ""
        raise DataError(f"{what}: file not found{listing}", path=str(path))
    return path


def _looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.lower().endswith(_FILE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# reading records, with a way to name each one in error messages


@dataclass
class _Rows:
    """Records from one file or hub split; ``unit`` is how a record number reads in messages."""

    where: str  # file path or hub id
    unit: str  # "line" (JSONL: a real line number), "record" (JSON array), "row" (parquet, hub)
    name: str  # short name: default id prefix and Problem.source
    rows: Iterable[tuple[int, Any]]

    def error(self, n: int, message: str, field: str | None = None) -> DataError:
        if self.unit != "line":
            message = f"{self.unit} {n}: {message}"
        return DataError(message, path=self.where, line=n, field=field)

    def relocate(self, err: DataError, n: int) -> DataError:
        """Re-raise a records.from_dict error so it says "record N" rather than pretending N is a line."""
        if self.unit == "line":
            return err
        return self.error(n, getattr(err, "reason", str(err)), err.field)


def _strip_suffix(name: str) -> str:
    for suffix in _FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _read_json_records(path: Path) -> list[Any]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path=str(path),
                        line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read file: {e}", path=str(path)) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return data["data"]
    if not isinstance(data, list):
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"expected a JSON array of records or an object with a 'data' array, got {keys}",
                        path=str(path))
    return data


def _read_parquet_records(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except ImportError:
        raise DataError("reading parquet needs pyarrow (pip install pyarrow)", path=str(path)) from None
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"cannot read parquet file: {type(e).__name__}: {e}", path=str(path)) from None


def _file_rows(path: Path) -> _Rows:
    lower = path.name.lower()
    name = _strip_suffix(path.name)
    if lower.endswith((".jsonl", ".jsonl.gz")):
        return _Rows(str(path), "line", name, iter_jsonl(path))
    if lower.endswith((".json", ".json.gz")):
        return _Rows(str(path), "record", name, enumerate(_read_json_records(path), start=1))
    if lower.endswith(".parquet"):
        return _Rows(str(path), "row", name, enumerate(_read_parquet_records(path), start=1))
    raise DataError("unsupported file type; use .json (array, or {\"data\": [...]}), .jsonl, .jsonl.gz or "
                    ".parquet", path=str(path))


def _hub_rows(hub_id: str, split: str, hint: str) -> _Rows:
    """Load a hub split through ``datasets``; any failure becomes one actionable DataError."""
    advice = (f"this machine may be offline or the id/split may be wrong. {hint} "
              "or set STEPJUDGE_DATA to the folder with the bundled data")
    try:
        import datasets
    except ImportError:
        raise DataError(f"could not load hub dataset {hub_id!r}: the 'datasets' package is not installed; "
                        f"{hint}") from None
    try:
        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # network, auth, missing split...: all need the same user action
        raise DataError(f"could not load hub dataset {hub_id!r} (split {split!r}): {type(e).__name__}: {e}; "
                        f"{advice}") from e
    return _Rows(hub_id, "row", hub_id.rsplit("/", 1)[-1], enumerate(ds, start=1))


def _records(rows: _Rows, kind: str) -> Iterator[tuple[int, dict]]:
    for n, rec in rows.rows:
        if not isinstance(rec, dict):
            raise rows.error(n, f"expected a JSON object for a {kind}, got {type(rec).__name__}")
        yield n, rec


def _field(rows: _Rows, n: int, rec: dict, key: str, types: type | tuple[type, ...]) -> Any:
    value = rec.get(key, _MISSING)
    if value is _MISSING:
        raise rows.error(n, f"missing field (the record has: {', '.join(map(str, rec)) or 'none'})", key)
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise rows.error(n, f"expected {_type_names(types)}, got bool", key)
    if not isinstance(value, types):
        raise rows.error(n, f"expected {_type_names(types)}, got {type(value).__name__}", key)
    return value


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def _check_unique(rows: _Rows, n: int, pid: str, seen: dict[str, int], field: str) -> None:
    if pid in seen:
        raise rows.error(n, f"duplicate id {pid!r} (first used at {rows.unit} {seen[pid]}); ids must be "
                            "unique because results are keyed by them", field)
    seen[pid] = n


# ---------------------------------------------------------------------------------------------
# answers


def _after_hashes(text: str) -> str:
    """GSM8K's final answer: what follows the last ``####``, without thousands separators."""
    tail = text.rsplit("####", 1)[1].strip()
    return (tail.splitlines()[0] if tail else "").replace(",", "").strip()


def _last_boxed(text: str) -> str | None:
    from stepjudge.grading.extract import extract_boxed  # lazy: grading is optional for plain loading

    return extract_boxed(text)


# ---------------------------------------------------------------------------------------------
# ProcessBench


def _check_subsets(subsets: str | Sequence[str] | None) -> list[str]:
    if subsets is None:
        return list(PROCESSBENCH_SUBSETS)
    chosen = [subsets] if isinstance(subsets, str) else list(subsets)
    for s in chosen:
        if s not in PROCESSBENCH_SUBSETS:
            valid = ", ".join(PROCESSBENCH_SUBSETS)
            raise DataError(f"unknown ProcessBench subset {s!r}; valid subsets: {valid}")
    return chosen


def _processbench_file(folder: Path, subset: str) -> Path:
    for base in (folder, folder / "processbench"):  # the processbench folder or the data root
        for ext in (".json", ".jsonl", ".jsonl.gz", ".json.gz"):
            if (base / f"{subset}{ext}").is_file():
                return base / f"{subset}{ext}"
    raise DataError(f"ProcessBench subset {subset!r} not found: expected {subset}.json (a JSON array) or "
                    f"{subset}.jsonl in this folder", path=str(folder))


def load_processbench(subsets: str | Sequence[str] | None = None, source: str | os.PathLike | None = None,
                      limit: int | None = None, *,
                      data_root: str | os.PathLike | None = None) -> list[ProcessBenchCase]:
    """ProcessBench cases, subset by subset in file order (``limit`` = first N of each subset).

    ``source``: None (bundled ``processbench/``), a folder with ``{subset}.json``/``.jsonl``, a single
    file in that format (its stem names the subset), or a hub id such as ``Qwen/ProcessBench``.
    ``data_root``: where the bundled data is (see :func:`find_data_root`).
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    jobs: list[tuple[str, _Rows | None, Path | None]] = []  # (subset, hub rows, local file)
    if source is None:
        folder = _require_root("ProcessBench", data_root) / "processbench"
        jobs = [(s, None, _processbench_file(folder, s)) for s in _check_subsets(subsets)]
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            jobs = [(s, None, _processbench_file(path, s)) for s in _check_subsets(subsets)]
        elif path.is_file():
            names = [subsets] if isinstance(subsets, str) else list(subsets or [])
            if len(names) > 1:
                raise DataError("a single ProcessBench file holds one subset; pass a folder for several",
                                path=str(path))
            jobs = [(names[0] if names else _strip_suffix(path.name), None, path)]
        elif _looks_like_hub_id(str(source)):
            hint = "Pass a local folder with {subset}.json files (source=...)"
            jobs = [(s, _hub_rows(str(source), s, hint), None) for s in _check_subsets(subsets)]
        else:
            raise DataError("ProcessBench source not found (expected a folder, a .json/.jsonl file or a "
                            "hub id like 'Qwen/ProcessBench')", path=str(source))

    cases: list[ProcessBenchCase] = []
    for subset, hub, file in jobs:
        rows = hub if hub is not None else _file_rows(file)
        seen: dict[str, int] = {}
        for i, (n, rec) in enumerate(_records(rows, "ProcessBench case")):
            if limit is not None and i >= limit:
                break
            try:
                case = ProcessBenchCase.from_dict({**rec, "subset": subset}, path=rows.where, line=n)
            except DataError as e:
                raise rows.relocate(e, n) from None
            _check_unique(rows, n, case.id, seen, "id")
            cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------
# bundled problem sets


def load_gsm8k(split: str = "test", source: str | os.PathLike | None = None, limit: int | None = None, *,
               data_root: str | os.PathLike | None = None) -> list[Problem]:
    """GSM8K ``{split}.jsonl`` (test, train, test_socratic); the answer is the number after ``####``.

    ``split`` is a plain name (letters, digits, ``_``, ``-``): it can never reach outside the data folder."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split or ""):
        raise DataError(f"GSM8K split {split!r} is not a split name (letters, digits, '_' or '-', e.g. test, train, "
                        "test_socratic); a split cannot be a path")
    rows = _file_rows(_builtin_file(source, "gsm8k", f"{split}.jsonl", f"GSM8K split {split!r}", data_root))
    out: list[Problem] = []
    for i, (n, rec) in enumerate(_records(rows, "GSM8K problem")):
        if limit is not None and i >= limit:
            break
        question = _field(rows, n, rec, "question", str)
        solution = _field(rows, n, rec, "answer", str)
        if "####" not in solution:
            raise rows.error(n, "GSM8K answer has no '#### <final answer>' line", "answer")
        out.append(Problem(id=f"gsm8k-{split}-{i}", problem=question, answer=_after_hashes(solution),
                           source="gsm8k", meta={"split": split, "solution": solution}))
    return out


def load_math500(source: str | os.PathLike | None = None, limit: int | None = None, *,
                 data_root: str | os.PathLike | None = None) -> list[Problem]:
    """MATH-500 (the PRM800K test split of MATH); ids are the original ``unique_id`` paths."""
    rows = _file_rows(_builtin_file(source, "math500", "test.jsonl", "MATH-500", data_root))
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for i, (n, rec) in enumerate(_records(rows, "MATH-500 problem")):
        if limit is not None and i >= limit:
            break
        pid = _field(rows, n, rec, "unique_id", str)
        _check_unique(rows, n, pid, seen, "unique_id")
        out.append(Problem(
            id=pid, problem=_field(rows, n, rec, "problem", str), answer=_field(rows, n, rec, "answer", str),
            source="math500",
            meta={"subject": _field(rows, n, rec, "subject", str),
                  "level": _field(rows, n, rec, "level", int), "solution": rec.get("solution")}))
    return out


def load_math_test(source: str | os.PathLike | None = None, limit: int | None = None, *,
                   data_root: str | os.PathLike | None = None) -> list[Problem]:
    """The full MATH test split (5,000); the answer is the last ``\\boxed{}`` of the reference solution.

    A solution without a box gives ``answer=None`` rather than an error: the problem is still usable
    as a prompt, and graders skip problems with no reference answer.
    """
    rows = _file_rows(_builtin_file(source, "math_test5000", "test.jsonl", "MATH test", data_root))
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for i, (n, rec) in enumerate(_records(rows, "MATH problem")):
        if limit is not None and i >= limit:
            break
        pid = f"math-{_field(rows, n, rec, 'idx', int)}"
        _check_unique(rows, n, pid, seen, "idx")
        solution = _field(rows, n, rec, "solution", str)
        answer = _last_boxed(solution)
        out.append(Problem(
            id=pid, problem=_field(rows, n, rec, "problem", str),
            answer=answer.strip() if answer and answer.strip() else None, source="math",
            meta={"level": _field(rows, n, rec, "level", str), "type": _field(rows, n, rec, "type", str),
                  "solution": solution}))
    return out


# ---------------------------------------------------------------------------------------------
# user datasets


def _open_source(source: str | os.PathLike, split: str) -> _Rows:
    path = Path(source).expanduser()
    if path.is_file():
        return _file_rows(path)
    if path.is_dir():
        for ext in _FILE_SUFFIXES:
            if (path / f"{split}{ext}").is_file():
                return _file_rows(path / f"{split}{ext}")
        raise DataError(f"no {split}.jsonl / .json / .parquet in this folder", path=str(path))
    if _looks_like_hub_id(str(source)):
        return _hub_rows(str(source), split, "Pass a local .json/.jsonl/.parquet file instead (source=...)")
    raise DataError("no such file (or hub id like 'owner/name')", path=str(source))


def _answer_text(rows: _Rows, n: int, key: str, value: Any) -> str | None:
    """Normalise one raw answer value to a string, extracting it from worked solutions."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ", ".join(value)  # e.g. OlympiadBench's final_answer: ["$3$"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise rows.error(n, f"expected a string or number, got {type(value).__name__}", key)
    if isinstance(value, float):
        value = str(int(value)) if value.is_integer() else repr(value)
    value = str(value)
    if key == "solution":
        value = _last_boxed(value) or ""
    elif "####" in value:
        value = _after_hashes(value)
    return value.strip() or None


def load_problems(source: str | os.PathLike, *, problem_field: str | None = None,
                  answer_field: str | None = None, id_field: str | None = None, split: str = "train",
                  limit: int | None = None) -> list[Problem]:
    """Problems from a user's own file (.json, .jsonl[.gz], .parquet), folder or hub id.

    Field names are auto-detected unless given (problem: problem|question|prompt|instruction;
    answer: answer|final_answer|gt|solution, the last via its final ``\\boxed{}``). A record with
    no answer gets ``answer=None``, unless ``answer_field`` was given explicitly: then it is an error,
    because the user told us the answers are there. ``meta`` keeps the record's other fields.
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    rows = _open_source(source, split)
    out: list[Problem] = []
    seen: dict[str, int] = {}
    pfield = problem_field
    for i, (n, rec) in enumerate(_records(rows, "problem")):
        if limit is not None and i >= limit:
            break
        keys = ", ".join(map(str, rec)) or "none"
        if pfield is None:
            pfield = next((k for k in PROBLEM_FIELDS if k in rec), None)
            if pfield is None:
                raise rows.error(n, f"no problem text field found (tried {', '.join(PROBLEM_FIELDS)}); the "
                                    f"record has: {keys}; pass problem_field=...", "problem")
        text = rec.get(pfield, _MISSING)
        if text is _MISSING:
            raise rows.error(n, f"missing problem field (the record has: {keys})", pfield)
        if not isinstance(text, str) or not text.strip():
            raise rows.error(n, f"problem text must be a non-empty string, got {text!r:.60}", pfield)

        if answer_field is not None:
            if rec.get(answer_field) is None:
                what = "missing" if answer_field not in rec else "null"
                raise rows.error(n, f"answer field is {what} (the record has: {keys})", answer_field)
            akey: str | None = answer_field
        else:
            akey = next((k for k in ANSWER_FIELDS if rec.get(k) not in (None, "")), None)
        answer = _answer_text(rows, n, akey, rec[akey]) if akey is not None else None

        if id_field is not None:
            raw_id = _field(rows, n, rec, id_field, (str, int))
            pid = str(raw_id)
        else:
            pid = f"{rows.name}-{i}"
        _check_unique(rows, n, pid, seen, id_field or "id")

        # Keep extracted-from text (a worked solution) in meta; drop fields copied verbatim.
        verbatim = akey is not None and answer == str(rec[akey]).strip()
        drop = {pfield, id_field, akey if verbatim else None}
        meta = {k: v for k, v in rec.items() if k not in drop}
        out.append(Problem(id=pid, problem=text, answer=answer, source=rows.name, meta=meta))
    return out
