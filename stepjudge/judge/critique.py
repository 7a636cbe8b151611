"""Critique-RL's formats (spec §3(c)): the actor's solve and refine prompts, the critic's prompt and its
required output, and the parsers of the critic's verdicts.

The loop is x -> actor response y -> critic critique c -> actor refinement y' = actor(x, y, c). Every
stage that shows a model one of these texts (data building, RL rewards, the ``refine`` loop) builds it
here, so training and inference cannot drift apart. The wording is ours; the structure follows the
released code: the actor ends with "The answer is ..." and its answer turn is pre-filled; the critic
writes one ``Step sentence:`` / ``Correctness of the step:`` / ``Explanation:`` block per step, then
``Correctness of the final answer:`` / ``Explanation:``; the refine turn quotes the critique from its first
``Step sentence:`` on.

A step is one sentence of the solution (:func:`solution_steps`), as the critic prompt tells the critic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from stepjudge.engines.base import ChatMessages

__all__ = ["CRITIC_INSTRUCTION", "REFINE_INSTRUCTION", "REFINE_PREFILL", "SOLVE_INSTRUCTION", "SOLVE_PREFILL",
           "StepVerdict", "actor_solution", "critic_messages", "format_critique", "parse_final_verdict",
           "parse_step_verdicts", "refine_messages", "solution_steps", "solve_messages", "trim_critique"]

SOLVE_PREFILL = "Let's break it down step by step:\n\n"
REFINE_PREFILL = "Let's break it down step by step, strictly following the critique:\n\n"

SOLVE_INSTRUCTION = ('Solve the problem step by step, one sentence per step. Finish with the sentence '
                     '"The answer is [your answer]."')

CRITIC_INSTRUCTION = """\
Below are a question and a solution to it. The solution is written step by step, each sentence being one \
step, and it may contain mistakes. Check the solution step by step. For each step, repeat its sentence, say \
whether the step is correct, and explain why. Then judge the final answer. Write your critique in exactly \
this format:

Step sentence: [the sentence of the step]
Correctness of the step: [Correct/Wrong]
Explanation: [why the step is correct or wrong]
(one such block for every step)
Correctness of the final answer: [Correct/Wrong]
Explanation: [why the final answer is correct or wrong]

Question: {question}

Solution: {solution}"""

REFINE_INSTRUCTION = """\
A teacher checked your solution step by step and wrote the critique below. Read it carefully and follow its \
guidance strictly: keep the steps it finds correct and fix the steps it finds wrong. Then write a new, \
detailed step-by-step solution, one sentence per step, finishing with the sentence "The answer is [your \
answer]."

Critique:
{critique}"""

_STEP_HEAD = "Step sentence:"
_VERDICT_WORD = r"[\[(*\s]*(correct|wrong|incorrect)\b(?!\s*/)"  # "[Correct/Wrong]" (the template) is no verdict
_FINAL_RE = re.compile(r"correctness\s+of\s+the\s+final\s+answer\s*[*]*\s*:" + _VERDICT_WORD, re.IGNORECASE)
_STEP_VERDICT_RE = re.compile(r"correctness\s+of\s+the\s+step\s*[*]*\s*:" + _VERDICT_WORD, re.IGNORECASE)
_STEP_HEAD_RE = re.compile(r"step\s+sentence\s*[*]*\s*:", re.IGNORECASE)
_FINAL_HEAD_RE = re.compile(r"correctness\s+of\s+the\s+final\s+answer", re.IGNORECASE)
_EXPLANATION_RE = re.compile(r"explanation\s*[*]*\s*:", re.IGNORECASE)
_STEP_FIELD_RE = re.compile(r"correctness\s+of\s+the\s+step|explanation\s*[*]*\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_LIST_MARKER = re.compile(r"\(?\d{1,3}[.)]|Step\s+\d{1,3}[.:)]", re.IGNORECASE)


def solution_steps(text: str) -> list[str]:
    """The steps of a solution: its sentences, line by line (a period inside ``3.5`` ends nothing)."""
    steps: list[str] = []
    for line in text.splitlines():
        marker = ""
        for part in (s.strip() for s in _SENTENCE_END.split(line.strip())):
            if _LIST_MARKER.fullmatch(part):  # "1." of a numbered list starts a step, it is not one
                marker += part + " "
            elif part:
                steps.append(marker + part)
                marker = ""
        if marker:
            steps.append(marker.strip())
    return steps


def actor_solution(steps: Sequence[str], answer: str) -> str:
    """A solution in the actor's format: one step per line, then "The answer is <answer>."."""
    return "\n".join([*steps, f"The answer is {answer}."])


def solve_messages(question: str) -> ChatMessages:
    """The actor's solve turn; its answer turn starts with :data:`SOLVE_PREFILL`."""
    return [{"role": "user", "content": f"{question}\n\n{SOLVE_INSTRUCTION}"}]


def critic_messages(question: str, response: str) -> ChatMessages:
    """The critic's prompt for (x, y); ``response`` is the actor's text after the pre-fill."""
    solution = response.removeprefix(SOLVE_PREFILL).strip()
    return [{"role": "user", "content": CRITIC_INSTRUCTION.format(question=question.strip(), solution=solution)}]


def trim_critique(critique: str) -> str:
    """The critique from its first ``Step sentence:`` on (the released code drops any preamble); a critique
    without one is kept whole."""
    m = _STEP_HEAD_RE.search(critique)
    return (critique[m.start():] if m else critique).strip()


def refine_messages(question: str, response: str, critique: str) -> ChatMessages:
    """The actor's refine conversation: its solve turn and answer, then the critique; the next answer
    turn starts with :data:`REFINE_PREFILL`."""
    answer = SOLVE_PREFILL + response.removeprefix(SOLVE_PREFILL)
    return [*solve_messages(question), {"role": "assistant", "content": answer},
            {"role": "user", "content": REFINE_INSTRUCTION.format(critique=trim_critique(critique))}]


@dataclass(frozen=True)
class StepVerdict:
    """One step block of a critique: the repeated sentence, the verdict (None: unreadable), the reason."""

    sentence: str
    correct: bool | None
    explanation: str


def _verdict(word: str) -> bool:
    return word.lower() == "correct"


def parse_final_verdict(text: str) -> bool | None:
    """True for a "Correct" final-answer verdict, False for "Wrong" (or "Incorrect"), None when there is none.

    Case, square brackets, markdown bold and spaces around the word are tolerated; when the critique states
    the final verdict more than once, the last statement counts.
    """
    found = _FINAL_RE.findall(text)
    return _verdict(found[-1]) if found else None


def parse_step_verdicts(text: str) -> list[StepVerdict]:
    """The step blocks of a critique, in order, up to its final-answer verdict."""
    end = _FINAL_HEAD_RE.search(text)
    body = text[:end.start()] if end else text
    heads = list(_STEP_HEAD_RE.finditer(body))
    out = []
    for i, head in enumerate(heads):
        block = body[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(body)]
        verdict = _STEP_VERDICT_RE.search(block)
        explanation = _EXPLANATION_RE.search(block, verdict.end() if verdict else 0)
        field = _STEP_FIELD_RE.search(block)
        sentence = block[:field.start()] if field else block
        out.append(StepVerdict(sentence=sentence.strip(), correct=_verdict(verdict.group(1)) if verdict else None,
                               explanation=block[explanation.end():].strip() if explanation else ""))
    return out


def format_critique(steps: Sequence[StepVerdict], final_correct: bool, final_explanation: str) -> str:
    """A critique in the required format (what :func:`parse_step_verdicts` and :func:`parse_final_verdict`
    read back)."""
    blocks = [f"{_STEP_HEAD} {s.sentence}\nCorrectness of the step: {'Correct' if s.correct else 'Wrong'}\n"
              f"Explanation: {s.explanation}" for s in steps]
    blocks.append(f"Correctness of the final answer: {'Correct' if final_correct else 'Wrong'}\n"
                  f"Explanation: {final_explanation}")
    return "\n\n".join(blocks)
