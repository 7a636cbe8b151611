"""``arith``: multi-step arithmetic word problems whose every solution step can be checked exactly.

A problem reads ``Start with 4. Add 3. Subtract 5.``; the intended solution has one chunk per
operation (``<chunk>4 + 3 = 7</chunk>``) and ends with ``\\boxed{2}``. Because each operation is known,
the true first wrong chunk of *any* solution can be computed, which gives a ground truth to measure
label schemes (Abs-Q, Rel-Ratio, Rel-Effective) and judges against. Difficulty is set by the number of
operations, the operand range and the operation mix; the embedded 135M model solves the 2-3-step
additive variant a fair share of the time with a short few-shot prompt (see
:func:`stepjudge.policy.prompts.fewshot_prompt`, re-exported here).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.data.records import Problem
from stepjudge.policy.prompts import FEWSHOT_EXAMPLES, fewshot_prompt
from stepjudge.tasks.base import StepTruth, Task, register_task

__all__ = ["FEWSHOT_EXAMPLES", "NEW_PROBLEMS_SEED_OFFSET", "OPS", "ArithConfig", "ArithTask", "StepTruth",
           "check_steps", "fewshot_prompt", "generate_problems", "parse_problem", "reference_check",
           "reference_solution"]

OPS = {"add": ("Add", "+"), "subtract": ("Subtract", "-"), "multiply": ("Multiply by", "*")}
_SYMBOL_TO_OP = {"+": "add", "-": "subtract", "*": "multiply", "x": "multiply", "×": "multiply"}
# "a + b = c", tolerant of spaces, unicode minus/times; integers may be negative.
_EQUATION = re.compile(r"(-?\d+)\s*([+\-*x×−])\s*(-?\d+)\s*=\s*(-?\d+)")


class ArithConfig(BaseModel):
    """How hard the generated problems are."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(100, ge=1, description="number of problems")
    steps: int = Field(2, ge=1, description="operations per problem")
    min_steps: int | None = Field(None, ge=1, description="if set, steps are drawn from [min_steps, steps]")
    max_start: int = Field(9, ge=1, description="largest starting number")
    max_operand: int = Field(9, ge=1, description="largest operand of an operation")
    ops: list[str] = Field(default_factory=lambda: ["add"], description="subset of add, subtract, multiply")
    allow_negative: bool = Field(False, description="if false, subtractions never go below zero")
    seed: int = Field(0, description="seed of the generated problems")


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "add" else a - b if op == "subtract" else a * b


def generate_problems(config: ArithConfig | dict | None = None, **kw) -> list[Problem]:
    """Deterministic (by seed) list of arith problems; ``meta`` holds the operations and the values."""
    cfg = ArithConfig(**{**(config.model_dump() if isinstance(config, ArithConfig) else config or {}), **kw})
    bad = [o for o in cfg.ops if o not in OPS]
    if bad:
        raise ValueError(f"unknown arith ops {bad}; choose from {list(OPS)}")
    rng = random.Random(cfg.seed)
    problems = []
    for i in range(cfg.n):
        k = rng.randint(cfg.min_steps or cfg.steps, cfg.steps)
        value = rng.randint(1, cfg.max_start)
        values, ops, words = [value], [], [f"Start with {value}."]
        for _ in range(k):
            op = rng.choice(cfg.ops)
            operand = rng.randint(1, cfg.max_operand)
            if op == "subtract" and not cfg.allow_negative and operand > value:
                operand = rng.randint(0, value) if value > 0 else 0
            value = _apply(op, value, operand)
            ops.append([op, operand])
            values.append(value)
            words.append(f"{OPS[op][0]} {operand}.")
        problems.append(Problem(id=f"arith-s{cfg.seed}-{i}", problem=" ".join(words), answer=str(value),
                                source="arith", meta={"ops": ops, "values": values}))
    return problems


def reference_solution(problem: Problem) -> str:
    """The intended chunked solution (used for few-shot examples and SFT)."""
    ops, values = problem.meta["ops"], problem.meta["values"]
    chunks = [f"<chunk>{values[i]} {OPS[op][1]} {b} = {values[i + 1]}</chunk>" for i, (op, b) in enumerate(ops)]
    return "\n".join(chunks) + f"\n\\boxed{{{values[-1]}}}"


def check_steps(problem: Problem, chunks: Sequence[str]) -> StepTruth:
    """Exact first wrong chunk of a solution to an arith problem.

    A chunk with an equation ``x op y = z`` must carry on from the correct running value with the next
    operation of the problem and compute it correctly; a chunk with no equation is neutral (it computes
    nothing, as StepWiser's judge rules allow). A solution whose chunks are all right but that stops
    before the last operation has no wrong chunk (``first_error == -1``, reason "incomplete"): its
    mistake is the missing work, which no chunk label can point at.
    """
    ops, values = problem.meta["ops"], problem.meta["values"]
    k = 0  # operations done so far
    for i, chunk in enumerate(chunks):
        eqs = _EQUATION.findall(chunk.replace("−", "-"))
        if not eqs:
            continue
        for x, sym, y, z in eqs:
            if k >= len(ops):
                return StepTruth(i, "extra operation")
            op, operand = ops[k]
            x, y, z = int(x), int(y), int(z)
            if x != values[k]:
                return StepTruth(i, "wrong operand")
            if _SYMBOL_TO_OP.get(sym) != op or y != operand:
                return StepTruth(i, "wrong operation")
            if z != _apply(op, x, y):
                return StepTruth(i, "wrong arithmetic")
            k += 1
    return StepTruth(-1, "ok" if k == len(ops) else "incomplete")


_PROBLEM_START = re.compile(r"Start with (-?\d+)\.")
_PROBLEM_OP = re.compile(r"(Add|Subtract|Multiply by) (-?\d+)\.")
_WORD_TO_OP = {words: op for op, (words, _) in OPS.items()}


def parse_problem(text: str) -> tuple[list[list[Any]], list[int]] | None:
    """(operations, running values) of an arith problem read back from its text; None if not arith."""
    start = _PROBLEM_START.match(text.strip())
    if start is None:
        return None
    values, ops = [int(start[1])], []
    for words, operand in _PROBLEM_OP.findall(text[start.end():]):
        op = _WORD_TO_OP[words]
        ops.append([op, int(operand)])
        values.append(_apply(op, values[-1], int(operand)))
    return (ops, values) if ops else None


def reference_check(problem: str, history: Sequence[str], chunk: str) -> str | None:
    """``Expected: 3 + 1 = 4, 4 + 9 = 13.`` -- the problem's own calculations up to the one the chunk
    should do (operations done = equations in the earlier steps), then ``The step says: ...`` and
    ``Match: yes|no`` (are the step's calculations, as written, the expected ones?).

    Why the explicit ``Match`` line: a small judge taught only the two lines copies them well and then
    still answers from the label prior -- it computes but does not compare. The comparison is exact
    (it needs no label), so it is taught noise-free; the verdict after it still comes from the label.

    A step with a ``\\boxed{}`` answer (the answer segment after the last chunk) is checked against the
    whole calculation: ``Expected: 3 + 1 = 4, 4 + 9 = 13, answer 13.`` / ``The step says: answer 4.``,
    and it matches only when its own calculations match and its answer is the final value -- so an
    answer given before every operation is done does not match.

    None when the text is not an arith problem or the chunk computes and answers nothing.
    """
    from stepjudge.grading.extract import extract_boxed

    parsed = parse_problem(problem)
    claims = [" ".join(m) for m in (_EQUATION.findall(chunk.replace("−", "-")))]
    answer = extract_boxed(chunk)
    if parsed is None or not (claims or answer is not None):
        return None
    ops, values = parsed
    done = sum(len(_EQUATION.findall(h.replace("−", "-"))) for h in history)
    upto = len(ops) if answer is not None else min(done + len(claims), len(ops))
    expected = [f"{values[i]} {OPS[op][1]} {b} = {values[i + 1]}" for i, (op, b) in enumerate(ops[:upto])]
    said = [f"{x} {sym} {y} = {z}" for x, sym, y, z in _EQUATION.findall(chunk.replace("−", "-"))]
    # the step's claims against the expected calculations of the same operations, as written
    match = done + len(said) <= len(ops) and said == expected[done:done + len(said)]
    if answer is not None:
        expected.append(f"answer {values[-1]}")
        said.append(f"answer {answer.strip()}")
        match = match and answer.strip() == str(values[-1])
        first = f"Expected: {', '.join(expected)}."
    else:
        first = f"Expected: {', '.join(expected)}." if done < len(ops) else "Expected: no calculation is left."
    return f"{first}\nThe step says: {', '.join(said)}.\nMatch: {'yes' if match else 'no'}."


# Downstream stages (Chunk-Reset, best-of-N) draw their problems with this much added to the seed,
# so they are new problems of the same difficulty rather than the annotated ones.
NEW_PROBLEMS_SEED_OFFSET = 1000


@register_task
class ArithTask(Task):
    """Generated arith problems (settings: the stage's ``arith:`` section), with exact step truth."""

    name = "arith"
    problem_sources = ("arith",)
    settings_key = "arith"

    def read_problems(self, settings: ArithConfig | dict | None = None, *,
                      data_root: str | None = None) -> list[Problem]:
        return generate_problems(settings)

    @classmethod
    def claims(cls, problem: Problem) -> bool:
        return problem.source in cls.problem_sources and "ops" in problem.meta

    def step_truth(self, problem: Problem, chunks: Sequence[str]) -> StepTruth | None:
        return check_steps(problem, chunks) if self.claims(problem) else None

    def reference_check(self, problem: str, history: Sequence[str], chunk: str) -> str | None:
        return reference_check(problem, history, chunk)

    def worked_steps(self, problem: Problem) -> list[str] | None:
        """One sentence per operation: ``4 + 3 = 7.``"""
        if not self.claims(problem):
            return None
        ops, values = problem.meta["ops"], problem.meta["values"]
        return [f"{values[i]} {OPS[op][1]} {b} = {values[i + 1]}." for i, (op, b) in enumerate(ops)]

    def new_problems_options(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Same settings, seed + :data:`NEW_PROBLEMS_SEED_OFFSET` (only if the section sets ``arith``)."""
        out = super().new_problems_options(section)
        if "arith" in section:
            arith = section["arith"]
            arith = arith.model_dump() if isinstance(arith, BaseModel) else dict(arith)
            out["arith"] = {**arith, "seed": int(arith.get("seed", 0)) + NEW_PROBLEMS_SEED_OFFSET}
        return out
