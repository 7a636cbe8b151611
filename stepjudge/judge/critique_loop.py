"""The Critique-RL loop's three model calls and its grading, batched, for any engines.

Data building (``critique-data``), the Stage-II reward and the ``refine`` verb all solve, critique and refine
through these functions, so the three use one prompt layout (:mod:`stepjudge.judge.critique`) and one way of
grading (the problem's own task). Each call sends every prompt of a batch to the engine at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepjudge.data.records import Problem
from stepjudge.engines.base import Capability, Engine, SamplingParams
from stepjudge.judge.critique import (
    REFINE_PREFILL,
    SOLVE_PREFILL,
    critic_messages,
    refine_messages,
    solve_messages,
)

__all__ = ["critique", "grade_results", "grade_texts", "refine", "solve"]


def _prefilled(engine: Engine, messages: list[dict], prefill: str) -> str:
    engine.require(Capability.CHAT_RENDERING, needed_for="the actor's pre-filled answer turn (for an openai "
                                                         "engine, give engine.tokenizer)")
    return engine.render(messages) + prefill


def solve(actor: Engine, problems: Sequence[Problem], *, n: int = 1, temperature: float = 0.0,
          max_tokens: int = 512, seed: int | None = None) -> list[list[str]]:
    """``n`` actor responses per problem (the text after :data:`SOLVE_PREFILL`)."""
    prompts = [_prefilled(actor, solve_messages(p.problem), SOLVE_PREFILL) for p in problems]
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    return [r.texts for r in actor.generate(prompts, params)]


def critique(critic: Engine, problems: Sequence[Problem], responses: Sequence[str], *, n: int = 1,
             temperature: float = 0.0, max_tokens: int = 1536, seed: int | None = None) -> list[list[str]]:
    """``n`` critiques of each (problem, response); chat prompts, so any engine (rendered or served) works."""
    prompts = [critic_messages(p.problem, y) for p, y in zip(problems, responses, strict=True)]
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    return [r.texts for r in critic.generate(prompts, params)]


def refine(actor: Engine, problems: Sequence[Problem], responses: Sequence[str], critiques: Sequence[str], *,
           max_tokens: int = 1024, temperature: float = 0.0, seed: int | None = None) -> list[str]:
    """The actor's refinement of each (problem, response, critique) (the text after the pre-fill); greedy
    by default, sampled at ``temperature`` for MV@K / Pass@K (``eval critique``)."""
    prompts = [_prefilled(actor, refine_messages(p.problem, y, c), REFINE_PREFILL)
               for p, y, c in zip(problems, responses, critiques, strict=True)]
    params = SamplingParams(n=1, temperature=temperature, max_tokens=max_tokens, seed=seed)
    return [r.completions[0].text for r in actor.generate(prompts, params)]


def grade_results(grader: Any, problems: Sequence[Problem], texts: Sequence[str]) -> list[Any]:
    """Each text's :class:`~stepjudge.grading.GradeResult` (correctness and extracted answer), graded by the
    problem's task (one batch per task)."""
    from stepjudge.tasks import task_of

    groups: dict[str, tuple[Any, list[int]]] = {}
    for i, p in enumerate(problems):
        task = task_of(p)
        groups.setdefault(task.source, (task, []))[1].append(i)
    out: list[Any] = [None] * len(problems)
    for task, idx in groups.values():
        for i, g in zip(idx, task.grade(grader, [(texts[i], problems[i]) for i in idx]), strict=True):
            out[i] = g
    return out


def grade_texts(grader: Any, problems: Sequence[Problem], texts: Sequence[str]) -> list[bool]:
    """Whether each text answers its problem, graded by the problem's task (one batch per task)."""
    return [g.correct for g in grade_results(grader, problems, texts)]
