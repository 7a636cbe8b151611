"""Tasks over existing problem sets: the bundled GSM8K, MATH-500 and MATH test, and a user's own file.

They read problems through :mod:`stepjudge.data.loaders` (which knows the file layouts) and keep the
base :class:`~stepjudge.tasks.base.Task` prompt and grading. None has exact step truth, and "new
problems of the same kind" for a downstream stage is the same source.
"""

from __future__ import annotations

from typing import Any

from stepjudge.data.loaders import load_gsm8k, load_math500, load_math_test, load_problems
from stepjudge.data.records import Problem
from stepjudge.tasks.base import Task, register_task

__all__ = ["FileTask", "Gsm8kTask", "Math500Task", "MathTestTask"]


@register_task
class Gsm8kTask(Task):
    """``gsm8k[:split]``: the bundled GSM8K split (test by default; train, test_socratic)."""

    name = "gsm8k"
    problem_sources = ("gsm8k",)
    takes_option = True

    def read_problems(self, settings: Any = None, *, data_root: str | None = None) -> list[Problem]:
        return load_gsm8k(self.option or "test", data_root=data_root)


@register_task
class Math500Task(Task):
    """``math500``: MATH-500, the PRM800K test split of MATH."""

    name = "math500"
    aliases = ("math-500",)
    problem_sources = ("math500",)

    def read_problems(self, settings: Any = None, *, data_root: str | None = None) -> list[Problem]:
        return load_math500(data_root=data_root)


@register_task
class MathTestTask(Task):
    """``math-test``: the full MATH test split (5,000 problems)."""

    name = "math-test"
    aliases = ("math_test", "math_test5000")
    problem_sources = ("math",)

    def read_problems(self, settings: Any = None, *, data_root: str | None = None) -> list[Problem]:
        return load_math_test(data_root=data_root)


@register_task(fallback=True)
class FileTask(Task):
    """A user's problems: a .json/.jsonl[.gz]/.parquet file, a folder with ``train.*``, or a hub id.

    The whole ``problems:`` string is the path (a ``:`` in it is part of the path, not an option).
    """

    name = "file"

    def __init__(self, source: str | None = None):
        self.source = source if source is not None else self.name
        self.option = None

    def read_problems(self, settings: Any = None, *, data_root: str | None = None) -> list[Problem]:
        return load_problems(self.source)
