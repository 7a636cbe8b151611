"""The problem-set settings every stage that solves problems shares (annotate, solve, rerank).

Declared once so a new task option (or a new stage that solves problems) is one field here, with one
flag, one YAML key and one help text everywhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.tasks.arith import ArithConfig
from stepjudge.tasks.base import DEFAULT_SOURCE, PromptStyle

__all__ = ["ProblemSetConfig"]


class ProblemSetConfig(BaseModel):
    """Which problems a stage works on, how the policy is prompted for them and how answers are graded."""

    model_config = ConfigDict(extra="forbid")

    problems: str = Field(DEFAULT_SOURCE, description="arith | gsm8k[:split] | math500 | math-test | path | hub id")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=32, steps=2),
                               description="the generated arith problems (used when problems is arith)")
    limit: int | None = Field(None, ge=1, description="first N problems")
    prompt_style: PromptStyle = Field(
        "fewshot", description="fewshot: worked examples continued as raw text (stops at a blank line); chat: "
                               "the StepWiser solver prompt (Table 11) through the chat template")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    data_root: str | None = Field(
        None, description="folder with the bundled datasets (gsm8k/, math500/, ...); None: $STEPJUDGE_DATA, "
                          "else shared/data in the working directory or a folder above it")

    @property
    def stop(self) -> tuple[str, ...]:
        """Where a whole-solution sample ends: in the few-shot prompt a blank line starts a new problem."""
        return ("\n\n",) if self.prompt_style == "fewshot" else ()
