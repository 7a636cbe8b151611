"""The problem sets every stage draws from (annotation, Chunk-Reset, best-of-N): one loader for all."""

from __future__ import annotations

from stepjudge.data.records import Problem
from stepjudge.errors import DataError
from stepjudge.tasks.arith import ArithConfig

__all__ = ["load_problem_set"]


def load_problem_set(source: str, arith: ArithConfig | dict | None = None, limit: int | None = None, *,
                  need_answers: bool = True) -> list[Problem]:
    """``source`` = ``arith`` (generated from ``arith``), a dataset name, a file or a hub id; first
    ``limit``. With ``need_answers`` every problem must carry a reference answer to grade against."""
    if source == "arith":
        from stepjudge.tasks.arith import generate_problems

        problems = generate_problems(arith)
    else:
        from stepjudge.data.loaders import load_dataset_by_name

        problems = load_dataset_by_name(source)
    problems = problems[:limit] if limit else problems
    missing = [p.id for p in problems if not p.answer]
    if need_answers and missing:
        raise DataError(f"{len(missing)} problems have no reference answer to grade solutions against, "
                        f"e.g. {missing[:3]}", path=source, field="answer")
    return problems
