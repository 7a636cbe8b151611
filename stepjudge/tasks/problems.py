"""The problem sets every stage draws from (annotation, Chunk-Reset, best-of-N): one loader for all."""

from __future__ import annotations

from stepjudge.data.records import Problem
from stepjudge.tasks.arith import ArithConfig
from stepjudge.tasks.base import get_task

__all__ = ["load_problem_set"]


def load_problem_set(source: str, arith: ArithConfig | dict | None = None, limit: int | None = None, *,
                     need_answers: bool = True, data_root: str | None = None) -> list[Problem]:
    """The problems of ``source`` (a task name such as ``arith`` or ``gsm8k:train``, a file or a hub id),
    first ``limit``; ``arith`` holds the settings of tasks that generate problems. With ``need_answers``
    every problem must carry a reference answer to grade against."""
    return get_task(source).load(arith, limit=limit, need_answers=need_answers, data_root=data_root)
