"""``arith``: multi-step arithmetic word problems whose every solution step can be checked exactly.

A problem reads ``Start with 4. Add 3. Subtract 5.``; the intended solution has one chunk per
operation (``<chunk>4 + 3 = 7</chunk>``) and ends with ``\\boxed{2}``. Because each operation is known,
the true first wrong chunk of *any* solution can be computed, which gives a ground truth to measure
label schemes (Abs-Q, Rel-Ratio, Rel-Effective) and judges against. Difficulty is set by the number of
operations, the operand range and the operation mix; the embedded 135M model solves the 2-3-step
additive variant a fair share of the time with a short few-shot prompt (see ``fewshot_prompt``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.data.records import Problem

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


FEWSHOT_EXAMPLES = (
    "Start with 2. Add 5. Add 1.\n<chunk>2 + 5 = 7</chunk>\n<chunk>7 + 1 = 8</chunk>\n\\boxed{8}",
    "Start with 6. Add 2. Add 3.\n<chunk>6 + 2 = 8</chunk>\n<chunk>8 + 3 = 11</chunk>\n\\boxed{11}",
)


def fewshot_prompt(problem: str | Problem, examples: Sequence[str] = FEWSHOT_EXAMPLES) -> str:
    """Raw text for a base-style continuation: worked examples, then the problem on its own line.

    Stop generation at ``"\\n\\n"``: a blank line means the model is starting a new problem.
    """
    text = problem.problem if isinstance(problem, Problem) else problem
    return "\n\n".join([*examples, text]) + "\n"


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
