"""What a problem source is: the :class:`Task` interface and the one registry of tasks.

Every stage (annotation, Chunk-Reset, best-of-N, the pipeline) asks a task for what differs between
problem sources -- how problems are made or read, how the policy is prompted, how an answer is
graded, whether a step's truth is known exactly, and what "new problems of the same kind" means --
so no stage branches on a task's name. A ``problems:`` setting such as ``gsm8k:train`` names a task
(``gsm8k``) and its option (``train``); a string no task claims is a user's file, folder or hub id.

Adding a task is one class::

    @register_task
    class Countdown(Task):
        name = "countdown"

        def read_problems(self, settings=None, *, data_root=None):
            return [Problem(id="cd-0", problem="Reach 10 from 3 and 7.", answer="10", source="countdown")]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from stepjudge.data.records import Problem
from stepjudge.engines.base import Capability, Engine
from stepjudge.errors import DataError
from stepjudge.grading import Grader, GradeResult
from stepjudge.policy.prompts import FEWSHOT_EXAMPLES, chunked_solver_messages, fewshot_prompt

__all__ = ["DEFAULT_SOURCE", "PromptStyle", "StepTruth", "Task", "get_task", "new_problems_options",
           "register_task", "registered_tasks", "task_of", "unregister_task"]

PromptStyle = Literal["fewshot", "chat"]

# The ``problems:`` value every stage config defaults to.
DEFAULT_SOURCE = "arith"


@dataclass(frozen=True)
class StepTruth:
    """Where a solution first goes wrong: ``first_error`` is a chunk index, or -1 if none does."""

    first_error: int
    reason: str  # "ok" | "wrong operand" | "wrong operation" | "wrong arithmetic" | "incomplete" | ...

    def chunk_labels(self, n_chunks: int) -> list[int | None]:
        """1 before the first error, 0 at it, None after it (undefined once the path is wrong)."""
        if self.first_error < 0:
            return [1] * n_chunks
        return [1] * self.first_error + [0] + [None] * (n_chunks - self.first_error - 1)


class Task(ABC):
    """One problem source. An instance is bound to one ``problems:`` string (``source``).

    Class attributes a subclass sets: ``name`` (the registry key, the part before ``:``),
    ``aliases`` (other keys), ``problem_sources`` (the ``Problem.source`` values its problems carry,
    so :func:`task_of` finds the task of a loose problem), ``settings_key`` (the stage-config field
    holding its settings, e.g. ``arith``) and ``takes_option`` (whether ``name:<option>`` is valid).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    problem_sources: ClassVar[tuple[str, ...]] = ()
    settings_key: ClassVar[str | None] = None
    takes_option: ClassVar[bool] = False
    fewshot_examples: ClassVar[Sequence[str]] = FEWSHOT_EXAMPLES

    def __init__(self, source: str | None = None):
        self.source = source if source is not None else self.name
        _, sep, option = str(self.source).partition(":")
        if sep and not self.takes_option:
            raise DataError(f"dataset {self.source.partition(':')[0]!r} takes no ':<option>' (got {self.source!r})")
        self.option: str | None = option if sep else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"

    # -- problems ------------------------------------------------------------------------------

    @abstractmethod
    def read_problems(self, settings: Any = None, *, data_root: str | None = None) -> list[Problem]:
        """Every problem of this source, in a fixed order (generated from ``settings`` or read)."""

    def load(self, settings: Any = None, *, limit: int | None = None, need_answers: bool = True,
             data_root: str | None = None) -> list[Problem]:
        """The first ``limit`` problems; with ``need_answers`` each must have a reference answer. An empty
        source is an error."""
        problems = self.read_problems(settings, data_root=data_root)
        if not problems:  # an empty input must not become an empty result that replaces a good one
            raise DataError("no problems: the source holds no records", path=self.source)
        problems = problems[:limit] if limit else problems
        missing = [p.id for p in problems if not p.answer]
        if need_answers and missing:
            raise DataError(f"{len(missing)} problems have no reference answer to grade solutions against, "
                            f"e.g. {missing[:3]}", path=self.source, field="answer")
        return problems

    @classmethod
    def claims(cls, problem: Problem) -> bool:
        """Is ``problem`` one of this task's? (Used by :func:`task_of` for problems without a config.)"""
        return problem.source in cls.problem_sources

    def new_problems_options(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Stage-config keys that give downstream stages *new* problems of the same kind.

        ``section`` is the annotation stage's settings as the user wrote them; only keys present
        there are returned (a missing key keeps the downstream stage's default). A dataset gives the
        same source: its problems are not resampled.
        """
        return {"problems": section["problems"]} if "problems" in section else {}

    # -- prompting, grading, step truth ---------------------------------------------------------

    def solver_prompt(self, problem: Problem, style: PromptStyle, engine: Engine) -> str:
        """Raw text every sample, rollout or chunk try of ``problem`` continues.

        ``fewshot``: worked examples continued as raw text (any engine); ``chat``: the chunked solver
        prompt through the model's chat template, rendered locally (needs the hf engine).
        """
        if style == "fewshot":
            return fewshot_prompt(problem, self.fewshot_examples)
        engine.require(Capability.CHAT_RENDERING, needed_for="prompt_style 'chat', which continues the rendered "
                                                             "chat prompt; use prompt_style 'fewshot' with this engine")
        return engine.render(chunked_solver_messages(problem.problem))

    def grade(self, grader: Grader, pairs: Sequence[tuple[str, Problem]]) -> list[GradeResult]:
        """Grade (solution text, problem) pairs in order: the final answer against the reference."""
        return grader.grade_many([(text, p.answer if p.answer is not None else "") for text, p in pairs])

    def step_truth(self, problem: Problem, chunks: Sequence[str]) -> StepTruth | None:
        """The exact first wrong chunk, for tasks whose steps can be checked; None when unknowable."""
        return None

    def reference_check(self, problem: str, history: Sequence[str], chunk: str) -> str | None:
        """What the new ``chunk`` should compute, worked out from the problem text alone, as a judge would
        write it before comparing (e.g. ``Expected: 3 + 1 = 4, 4 + 9 = 13.``); None when the task
        cannot say. Judge warm-ups use it as a teacher's rationale (the verdict still comes from the
        label), the CPU analogue of the teacher-written analyses that judge papers distil.
        """
        return None

    def worked_steps(self, problem: Problem) -> list[str] | None:
        """A correct solution as plain sentences, one per step, for tasks that can write one (SFT targets
        of an actor that solves and refines); None when the task has no worked solution."""
        return None


# ---------------------------------------------------------------------------------------------
# the registry

_TASKS: dict[str, type[Task]] = {}
_FALLBACK: list[type[Task]] = []  # the task of a string no registered name claims (a file / hub id)


def register_task(cls: type[Task] | None = None, *, fallback: bool = False) -> Any:
    """Class decorator: make ``cls`` reachable by its ``name`` and ``aliases`` (case-insensitive).

    ``fallback=True`` makes it the task of any ``problems:`` string no other task names (one only).
    A name already taken by another class is an error, so two tasks never shadow each other.
    """

    def add(c: type[Task]) -> type[Task]:
        if fallback:  # reached by exclusion only, never by its name
            if _FALLBACK and _FALLBACK[0] is not c:
                raise ValueError(f"{_FALLBACK[0].__name__} is already the fallback task")
            _FALLBACK[:] = [c]
            return c
        for key in (c.name, *c.aliases):
            key = key.lower()
            if key in _TASKS and _TASKS[key] is not c:
                raise ValueError(f"task name {key!r} is already registered by {_TASKS[key].__name__}")
            _TASKS[key] = c
        return c

    return add(cls) if cls is not None else add


def unregister_task(cls: type[Task]) -> None:
    """Remove ``cls`` (and its aliases) from the registry; for tests and interactive sessions."""
    for key in [k for k, v in _TASKS.items() if v is cls]:
        del _TASKS[key]


def registered_tasks() -> dict[str, type[Task]]:
    """Registry key -> task class (aliases included), a copy."""
    return dict(_TASKS)


def get_task(source: str) -> Task:
    """The task of a ``problems:`` string: ``arith``, ``gsm8k[:split]``, ``math500``, ``math-test``, any
    registered name, else a user's file, folder or hub id."""
    head = str(source).partition(":")[0].strip().lower()
    cls = _TASKS.get(head)
    if cls is None:
        if not _FALLBACK:
            raise DataError(f"no task is registered for {source!r}; known: {', '.join(sorted(_TASKS))}")
        cls = _FALLBACK[0]
    return cls(str(source))


def task_of(problem: Problem) -> Task:
    """The task a loose :class:`Problem` belongs to (by its ``source`` and contents)."""
    for cls in dict.fromkeys(_TASKS.values()):
        if cls.claims(problem):
            return cls(cls.name)
    if not _FALLBACK:
        raise DataError(f"no task claims problem {problem.id!r} (source {problem.source!r})")
    return _FALLBACK[0](problem.source)


def new_problems_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """Keys for downstream stage configs that ask for new problems like the annotated ones.

    ``section`` is the annotation stage's settings as written (``problems`` defaults to
    :data:`DEFAULT_SOURCE`); see :meth:`Task.new_problems_options`.
    """
    return get_task(section.get("problems", DEFAULT_SOURCE)).new_problems_options(section)
