"""Typed records shared by the whole toolkit.

Every stage (annotation, judge training, evaluation, critique) passes these around instead of raw
dicts, so a bad input is caught once, at load time, with a message naming the file, line and field,
rather than as a KeyError deep inside a training loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stepjudge.errors import DataError

__all__ = ["Problem", "Solution", "ProcessBenchCase", "check_chat_messages"]

_MISSING = object()


class _Reader:
    """Typed field access on one raw dict; every failure names where the record came from."""

    def __init__(self, d: Any, kind: str, path: str | None, line: int | None):
        self.path, self.line, self.kind = path, line, kind
        if not isinstance(d, Mapping):
            raise self.fail(f"expected a JSON object for a {kind}, got {type(d).__name__}")
        self.d = d

    def fail(self, message: str, fld: str | None = None) -> DataError:
        err = DataError(message, path=self.path, line=self.line, field=fld)
        err.reason = message  # the bare message, so a loader can re-locate it (e.g. "record N")
        return err

    def _get(self, key: str, default: Any) -> Any:
        value = self.d.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                keys = ", ".join(map(str, self.d)) or "none"
                raise self.fail(f"missing required field of a {self.kind} (the record has: {keys})", key)
            return default
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"expected a string, got {type(value).__name__}", key)
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"expected a string or null, got {type(value).__name__}", key)
        return value

    def text_list(self, key: str) -> list[str]:
        value = self._get(key, _MISSING)
        if not isinstance(value, list):
            raise self.fail(f"expected a list of strings, got {type(value).__name__}", key)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"item {i} is {type(item).__name__}, expected a string", key)
        return list(value)

    def integer(self, key: str) -> int:
        value = self._get(key, _MISSING)
        # bool is an int subclass; a true/false label is almost surely a mixed-up column.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, got {type(value).__name__}", key)
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key, _MISSING)
        if not isinstance(value, bool):
            raise self.fail(f"expected true/false, got {type(value).__name__}", key)
        return value

    def mapping(self, key: str) -> dict:
        value = self._get(key, None)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(f"expected an object, got {type(value).__name__}", key)
        return dict(value)


@dataclass
class Problem:
    """A question with its reference final answer (None when the source has none, e.g. RL prompts)."""

    id: str
    problem: str
    answer: str | None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "problem": self.problem, "answer": self.answer, "source": self.source,
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | None = None,
                  line: int | None = None) -> Problem:
        r = _Reader(d, "problem", path, line)
        return cls(id=r.text("id"), problem=r.text("problem"), answer=r.opt_text("answer"),
                   source=r.text("source", ""), meta=r.mapping("meta"))


@dataclass
class Solution:
    """A step-split solution to one problem; steps are the unit a stepwise judge scores."""

    problem_id: str
    steps: list[str]
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The solution as one text; blank lines between steps so it can be split back losslessly."""
        return "\n\n".join(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"problem_id": self.problem_id, "steps": list(self.steps), "answer": self.answer,
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | None = None,
                  line: int | None = None) -> Solution:
        r = _Reader(d, "solution", path, line)
        return cls(problem_id=r.text("problem_id"), steps=r.text_list("steps"), answer=r.opt_text("answer"),
                   meta=r.mapping("meta"))


def _check_label(label: int, n_steps: int, fail) -> None:
    if not -1 <= label < n_steps:
        raise fail(f"label {label} is not -1 (no error) or a 0-based step index in [0, {n_steps - 1}] "
                   f"({n_steps} steps)", "label")


@dataclass
class ProcessBenchCase:
    """One ProcessBench item: ``label`` is the 0-based index of the earliest wrong step, -1 if none."""

    id: str
    subset: str
    generator: str
    problem: str
    steps: list[str]
    label: int
    final_answer_correct: bool

    def __post_init__(self) -> None:
        # Direct construction gets the same invariant as from_dict, so scoring code can trust label.
        if not self.steps:
            raise DataError(f"case {self.id!r} has no steps", field="steps")
        _check_label(self.label, len(self.steps), lambda m, f: DataError(f"case {self.id!r}: {m}", field=f))

    @property
    def has_error(self) -> bool:
        return self.label != -1

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "subset": self.subset, "generator": self.generator, "problem": self.problem,
                "steps": list(self.steps), "label": self.label,
                "final_answer_correct": self.final_answer_correct}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | None = None,
                  line: int | None = None) -> ProcessBenchCase:
        r = _Reader(d, "ProcessBench case", path, line)
        steps = r.text_list("steps")
        if not steps:
            raise r.fail("a ProcessBench case needs at least one step", "steps")
        label = r.integer("label")
        _check_label(label, len(steps), r.fail)
        return cls(id=r.text("id"), subset=r.text("subset"), generator=r.text("generator"),
                   problem=r.text("problem"), steps=steps, label=label,
                   final_answer_correct=r.flag("final_answer_correct"))


def check_chat_messages(value: Any, *, path: str, line: int, field: str) -> list[dict]:
    """``value`` as a non-empty list of ``{"role": str, "content": str}``, else a DataError naming
    file:line and the field (``prompt[2]``) - shared by every reader of chat-format training rows."""
    if not isinstance(value, list) or not value:
        raise DataError("expected a non-empty list of chat messages", path=path, line=line, field=field)
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise DataError('each message must be {"role": str, "content": str}', path=path, line=line,
                            field=f"{field}[{i}]")
    return value
