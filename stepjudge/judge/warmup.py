"""Warm-up SFT data for a stepwise judge: teach its own output format, with both verdicts, before RL.

Why: an untrained small judge answers Positive almost always, so GRPO groups on Negative-labelled
chunks all agree, carry no gradient, and RL collapses onto one verdict (docs/judge_training.md).
Every paper in this family starts RL from an SFT'd or warmed-up judge; this module builds that data
from the judge rows of :func:`stepjudge.judge.dataset.build_judge_datasets` (or the examples of
:func:`~stepjudge.judge.dataset.chunk_examples`), as TRL prompt-completion SFT rows.

Variants (``WarmupConfig.variant``):

* ``verdict``: the completion is ``\\boxed{Positive}`` / ``\\boxed{Negative}`` (the no-CoT judge).
* ``recompute``: a short CoT that re-computes each ``a op b = c`` claim of the chunk, then the verdict::

      Check: 13 + 3 = 16. The step says 26.
      Verdict: \\boxed{Negative}

  The check lines come from the chunk *text* by a regex parser and exact :class:`~fractions.Fraction`
  arithmetic (never ``eval``); a chunk with no such claim gets a neutral line. The verdict is the
  row's Monte-Carlo label, not the exact truth: the warm-up teaches the format and the habit of
  computing; comparing (and spotting a right sum on the wrong operand) is left to RL on the labels.
* ``reference``: the task writes what the step *should* compute, from the problem text alone, and the
  step's own claim beside it (:meth:`stepjudge.tasks.base.Task.reference_check`; arith)::

      Expected: 3 + 1 = 4, 4 + 9 = 13.
      The step says: 5 + 9 = 14.
      Match: no.
      Verdict: \\boxed{Negative}

  This is a teacher-written analysis (the CPU analogue of the stronger-model rationales judge papers
  distil); it shows a wrong operand, which ``recompute`` cannot. The verdict is still the label.
* ``rejection-sampling`` (StepWiser's RS-FT baseline): given the judge's own sampled completions per
  row, keep those whose parsed verdict equals the label, verbatim.

Every variant balances the classes 50/50 (seeded down-sampling of the majority, as the RL prompts are
balanced) and refuses (or, if configured, filters) rows of held-out problems, so a warm-up can never
leak the problems the judge is later scored on.

Prompts (``WarmupConfig.prompt``): ``full`` = the StepWiser prompt (``verdict`` uses the repo's
verdict-only variant of it), ``compact`` = :data:`COMPACT_JUDGE_TEMPLATE` /
:data:`COMPACT_VERDICT_ONLY_TEMPLATE`, ``keep`` = the row's own prompt. The compact prompt is shorter
(CPU training cost grows with prompt tokens): for a one-line arith chunk with SmolLM2's chat template,
148 tokens instead of 241 (verdict-only: 120 instead of 184). It drops: the validator role sentence, the
"taking the problem and earlier reasoning as given" framing, the two-part "1. Analysis (state the
chunk's goal, check logic / method / calculations, explain the error) / 2. Final Judgment" structure
and the long section titles; it keeps the three inputs, the "no computation is fine" rule and the
boxed verdict vocabulary, and (CoT form) asks for exactly the check-line format above. The RL stage
must use the same prompt as the warm-up: :func:`warmup_prompt` gives it for any row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.base import ChatMessages
from stepjudge.errors import DataError
from stepjudge.grading.extract import extract_verdict
from stepjudge.judge.dataset import (
    NEGATIVE,
    POSITIVE,
    balance_classes,
    class_counts,
    stepwise_verdict_only_messages,
)
from stepjudge.judge.prompts import NO_HISTORY, stepwise_judge_messages

log = logging.getLogger(__name__)

__all__ = ["COMPACT_JUDGE_TEMPLATE", "COMPACT_REFERENCE_TEMPLATE", "COMPACT_VERDICT_ONLY_TEMPLATE", "NO_CHECK_LINE",
           "Equation", "WarmupConfig", "build_warmup_rows", "check_line", "compact_judge_messages", "find_equations",
           "judge_fields", "recompute_completion", "reference_completion", "terse_judge_messages", "verdict_completion",
           "warmup_prompt",
           "with_warmup_prompts"]

Variant = Literal["verdict", "recompute", "reference", "rejection-sampling"]
PromptStyle = Literal["full", "compact", "terse", "keep"]


class WarmupConfig(BaseModel):
    """Every knob of the warm-up builder (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    variant: Variant = Field("recompute",
                             description="verdict | recompute | reference (task-written check) | rejection-sampling")
    task: str = Field("arith", description="reference: the task whose reference_check writes the analysis "
                                           "(rows it cannot check fall back to recompute lines)")
    prompt: PromptStyle = Field("compact", description="full (StepWiser) | compact | terse (one-line system "
                                                       "instruction, no format lines: ~half compact's tokens) | "
                                                       "keep (the row's prompt)")
    balance: bool = Field(True, description="down-sample the majority class to 50/50")
    seed: int = Field(0, description="seed of the balancing draw")
    max_checks: int = Field(3, ge=1, description="recompute: at most this many check lines per chunk")
    samples_per_prompt: int = Field(1, ge=1, description="rejection-sampling: accepted samples kept per row")
    on_heldout: Literal["error", "filter"] = Field(
        "error", description="rows of held-out problems: error (refuse to build) | filter (drop them)")


# ------------------------------------------------------------------------------- arithmetic checks

_NUM = r"-?\d+(?:\.\d+)?"
_OP = r"\\times|\\cdot|\\div|[+\-*/×xX·÷]"
_EQUATION = re.compile(rf"(?P<a>{_NUM})\s*(?P<op>{_OP})\s*(?P<b>{_NUM})\s*=\s*(?P<c>{_NUM})")
_CANONICAL_OP = {"+": "+", "-": "-", "*": "*", "×": "*", "x": "*", "X": "*", "·": "*", "\\times": "*",
                 "\\cdot": "*", "/": "/", "÷": "/", "\\div": "/"}
# An operator right before ``a`` or right after ``c``: the match is a fragment of a longer expression.
_OP_BEFORE = re.compile(r"(?:[+\-*/×·÷^=]|\\times|\\cdot|\\div|(?:^|[\s\d])[xX])$")
_OP_AFTER = re.compile(r"^(?:[+*/×·÷^=]|-(?=\s*\d)|\\times|\\cdot|\\div|[xX](?=\s*\d))")
NO_CHECK_LINE = "Check: nothing to re-compute in this step."


@dataclass(frozen=True)
class Equation:
    """One ``a op b = c`` claim as written (strings) and its exact value."""

    a: str
    op: str  # canonical: + - * /
    b: str
    claimed: str
    value: Fraction

    @property
    def correct(self) -> bool:
        return Fraction(self.claimed) == self.value


def _longer_expression(text: str, start: int, end: int) -> bool:
    before = text[:start]
    if before and (before[-1].isalnum() or before[-1] in "._"):
        return True  # glued to a word or number
    return bool(_OP_BEFORE.search(before.rstrip()) or _OP_AFTER.match(text[end:].lstrip()))


def find_equations(text: str) -> list[Equation]:
    """Every binary ``a op b = c`` claim in ``text``, left to right, computed exactly (no ``eval``).

    Operators: ``+ - * / × x · ÷ \\times \\cdot \\div``; numbers: integers or decimals, maybe negative.
    A match that is part of a longer expression (``2 * 13 + 3 = 29``, ``13 + 3 = 16 + 1``) is skipped,
    since re-computing one fragment of it would contradict a correct step. Division by zero is skipped.
    """
    out: list[Equation] = []
    text = text.replace("\u2212", "-")
    for m in _EQUATION.finditer(text):
        if _longer_expression(text, m.start(), m.end()):
            continue
        a, b, op = Fraction(m["a"]), Fraction(m["b"]), _CANONICAL_OP[m["op"]]
        if op == "/" and b == 0:
            continue
        value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
        out.append(Equation(m["a"], op, m["b"], m["c"], value))
    return out


def _fmt(x: Fraction) -> str:
    """Integers exactly; other values to at most 4 decimals, trailing zeros dropped."""
    if x.denominator == 1:
        return str(x.numerator)
    s = f"{float(x):.4f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def check_line(eq: Equation) -> str:
    """``Check: 13 + 3 = 16. The step says 26.`` (the judge's own result, then the step's claim)."""
    return f"Check: {eq.a} {eq.op} {eq.b} = {_fmt(eq.value)}. The step says {eq.claimed}."


def verdict_completion(verdict: str) -> str:
    """The no-CoT judge's whole answer."""
    return f"\\boxed{{{verdict}}}"


def recompute_completion(chunk: str, verdict: str, max_checks: int = 3) -> str:
    """Check lines for the chunk's first ``max_checks`` claims (or :data:`NO_CHECK_LINE`), then the verdict."""
    lines = [check_line(eq) for eq in find_equations(chunk)[:max_checks]] or [NO_CHECK_LINE]
    return "\n".join([*lines, f"Verdict: {verdict_completion(verdict)}"])


def reference_completion(problem: str, history: Sequence[str], chunk: str, verdict: str, task: str = "arith",
                         max_checks: int = 3) -> str:
    """The task's reference check (what the step should compute, from the problem), then the verdict.

    Falls back to :func:`recompute_completion` where the task cannot write one (see
    :meth:`stepjudge.tasks.base.Task.reference_check`).
    """
    from stepjudge.tasks import get_task

    check = get_task(task).reference_check(problem, history, chunk)
    if check is None:
        return recompute_completion(chunk, verdict, max_checks)
    return f"{check}\nVerdict: {verdict_completion(verdict)}"


# ----------------------------------------------------------------------------------------- prompts

COMPACT_JUDGE_TEMPLATE = (
    "Check the new step of a math solution. A step with no calculation is right.\n"
    "For each calculation write: Check: <calculation> = <your result>. The step says <its result>.\n"
    "Then write: Verdict: \\boxed{{Positive}} if the step is right, \\boxed{{Negative}} if it has a mistake.\n\n"
    "Problem: {problem}\nEarlier steps: {history}\nNew step: {chunk}")
COMPACT_REFERENCE_TEMPLATE = (
    "Check the new step of a math solution. A step with no calculation is right.\n"
    "Write: Expected: <the problem's calculations up to the one the new step should do>.\n"
    "Then write: The step says: <its calculation>.\n"
    "Then write: Match: yes if they are the same, no if not.\n"
    "Then write: Verdict: \\boxed{{Positive}} if the step is right, \\boxed{{Negative}} if it has a mistake.\n\n"
    "Problem: {problem}\nEarlier steps: {history}\nNew step: {chunk}")
COMPACT_VERDICT_ONLY_TEMPLATE = (
    "Check the new step of a math solution. A step with no calculation is right.\n"
    "Answer only \\boxed{{Positive}} if the step is right or \\boxed{{Negative}} if it has a mistake.\n\n"
    "Problem: {problem}\nEarlier steps: {history}\nNew step: {chunk}")


# The terse prompt: one system line (it replaces the chat template's default system prompt, ~20 tokens)
# and the three inputs; the check-line format itself is left to the warm-up to teach.
TERSE_SYSTEM = {
    "recompute": "Check the new step's calculations, then answer \\boxed{Positive} or \\boxed{Negative}.",
    "reference": "Compare the new step with the problem's expected calculation, then answer \\boxed{Positive} "
                 "or \\boxed{Negative}.",
    "verdict": "Answer \\boxed{Positive} if the new step is right, \\boxed{Negative} if it has a mistake.",
}
TERSE_USER_TEMPLATE = "Problem: {problem}\nEarlier steps: {history}\nNew step: {chunk}"


def terse_judge_messages(problem: str, history: Sequence[str], chunk: str, variant: str) -> ChatMessages:
    """The terse judge prompt: the cheapest to train on CPU (a one-line arith chunk: 75 tokens with
    SmolLM2's template, compact 165). It drops compact's format lines and the default system prompt;
    an untrained judge therefore does not know the format, which the warm-up teaches."""
    hist = "\n".join(history) if history else "(none)"
    system = TERSE_SYSTEM["verdict" if variant == "verdict" else
                          "reference" if variant == "reference" else "recompute"]
    return [{"role": "system", "content": system},
            {"role": "user", "content": TERSE_USER_TEMPLATE.format(problem=problem, history=hist, chunk=chunk)}]


def compact_judge_messages(problem: str, history: Sequence[str], chunk: str, verdict_only: bool = False,
                           reference: bool = False) -> ChatMessages:
    """The compact judge prompt (CoT check-line form, reference-check form, or verdict only) for CPU training."""
    template = (COMPACT_VERDICT_ONLY_TEMPLATE if verdict_only else
                COMPACT_REFERENCE_TEMPLATE if reference else COMPACT_JUDGE_TEMPLATE)
    hist = "\n".join(history) if history else "(none)"
    return [{"role": "user", "content": template.format(problem=problem, history=hist, chunk=chunk)}]


_FULL_LAYOUT = re.compile(r"Mathematical Problem:\n(?P<problem>.*?)\n\nHistorical Reasoning Path:\n"
                          r"(?P<history>.*)\n\nNew Reasoning Chunk:\n(?P<chunk>.*)\Z", re.DOTALL)


def judge_fields(row: dict) -> tuple[str, list[str], str]:
    """(problem, history chunks, chunk) of a judge row: its own fields, else parsed from its prompt.

    Rows of ``build_judge_datasets`` carry only the prompt, laid out by the StepWiser (or verdict-only)
    template; a history parsed back from a prompt is one string (its chunks were joined).
    """
    if all(k in row for k in ("problem", "history", "chunk")):
        return row["problem"], list(row["history"]), row["chunk"]
    prompt = row.get("prompt")
    content = prompt[-1].get("content") if isinstance(prompt, list) and prompt else None
    m = _FULL_LAYOUT.search(content) if isinstance(content, str) else None
    if m is None:
        raise DataError("judge row has no problem/history/chunk fields and its prompt is not in the "
                        "StepWiser layout", field="prompt")
    history = m["history"]
    return m["problem"], ([] if history == NO_HISTORY else [history]), m["chunk"]


def warmup_prompt(row: dict, config: WarmupConfig) -> ChatMessages:
    """The prompt a row is warmed up (and must later be RL-trained and sampled) with."""
    if config.prompt == "keep":
        return row["prompt"]
    problem, history, chunk = judge_fields(row)
    verdict_only = config.variant == "verdict"
    if config.prompt == "compact":
        return compact_judge_messages(problem, history, chunk, verdict_only, config.variant == "reference")
    if config.prompt == "terse":
        return terse_judge_messages(problem, history, chunk, config.variant)
    if verdict_only:
        return stepwise_verdict_only_messages(problem, history, chunk)
    return stepwise_judge_messages(problem, history, chunk)


def with_warmup_prompts(rows: Iterable[dict], config: WarmupConfig | dict | None) -> list[dict]:
    """``rows`` with each prompt rewritten as :func:`warmup_prompt` gives it (``None``: unchanged), so
    RL, sampling and held-out scoring ask the judge exactly as its warm-up did."""
    if config is None:
        return list(rows)
    config = config if isinstance(config, WarmupConfig) else WarmupConfig(**config)
    return [{**row, "prompt": warmup_prompt(row, config)} for row in rows]


# ------------------------------------------------------------------------------------------ build


def _verdict(row: dict) -> str:
    label = row.get("label")
    if isinstance(label, str) and label.strip().lower() in ("positive", "negative", "+", "-"):
        return POSITIVE if label.strip().lower() in ("positive", "+") else NEGATIVE
    if isinstance(label, (bool, int)) and label in (0, 1):
        return POSITIVE if label else NEGATIVE
    raise DataError(f"judge row label must be Positive/Negative or 1/0, got {label!r}", field="label")


def _heldout_ids(heldout: Iterable[Any]) -> set:
    return {h["problem_id"] if isinstance(h, dict) else h for h in heldout}


def build_warmup_rows(rows: Sequence[dict], config: WarmupConfig | dict, *, heldout: Iterable[Any],
                      samples: Sequence[Sequence[str]] | None = None) -> dict:
    """{"rows": TRL prompt-completion SFT rows, "stats": {...}} for the configured variant.

    ``heldout`` (required, may be empty) lists held-out problem ids or held-out rows; rows of those
    problems raise :class:`DataError` (``on_heldout="error"``) or are dropped (``"filter"``).
    ``samples`` (rejection-sampling only) holds, per input row, the judge's sampled completions for
    that row's :func:`warmup_prompt`. Output rows keep ``label``, ``problem_id``, ``sample_index``
    and ``chunk_index`` beside ``prompt`` / ``completion`` so splits stay checkable.
    """
    cfg = config if isinstance(config, WarmupConfig) else WarmupConfig(**config)
    if (samples is None) == (cfg.variant == "rejection-sampling"):
        raise ValueError("samples are needed for, and only for, variant 'rejection-sampling'")
    if samples is not None and len(samples) != len(rows):
        raise ValueError(f"{len(samples)} sample lists for {len(rows)} rows (need one list per row)")
    held = _heldout_ids(heldout)
    if any("problem_id" not in r for r in rows):
        raise DataError("every judge row needs a problem_id (the held-out check splits by problem)",
                        field="problem_id")
    leaked = sorted({str(r["problem_id"]) for r in rows if r["problem_id"] in held})
    if leaked and cfg.on_heldout == "error":
        raise DataError(f"{len(leaked)} held-out problems in the warm-up rows (first: {', '.join(leaked[:5])})",
                        field="problem_id")
    pairs = [(r, samples[i] if samples is not None else None) for i, r in enumerate(rows)
             if r["problem_id"] not in held]
    if leaked:
        log.info("warm-up: dropped the rows of %d held-out problems", len(leaked))
    stats: dict[str, Any] = {"variant": cfg.variant, "prompt": cfg.prompt, "seed": cfg.seed,
                             "input_rows": len(rows), "heldout_rows_dropped": len(rows) - len(pairs)}
    out: list[dict] = []
    accepted = wrong = unparsed = 0
    for row, row_samples in pairs:
        verdict = _verdict(row)
        base = {"prompt": warmup_prompt(row, cfg), "label": verdict, "problem_id": row["problem_id"],
                "sample_index": row.get("sample_index", 0), "chunk_index": row.get("chunk_index", 0)}
        if cfg.variant == "verdict":
            texts = [verdict_completion(verdict)]
        elif cfg.variant == "recompute":
            texts = [recompute_completion(judge_fields(row)[2], verdict, cfg.max_checks)]
        elif cfg.variant == "reference":
            texts = [reference_completion(*judge_fields(row), verdict, cfg.task, cfg.max_checks)]
        else:
            texts = []
            for text in row_samples or ():
                parsed = extract_verdict(text)
                unparsed += parsed is None
                wrong += parsed is not None and parsed != verdict
                if parsed == verdict and len(texts) < cfg.samples_per_prompt:
                    texts.append(text)
            accepted += len(texts)
        out += [{**base, "completion": [{"role": "assistant", "content": t}]} for t in texts]
    if samples is not None:
        stats["samples"] = {"total": sum(len(s or ()) for _, s in pairs), "kept": accepted,
                            "wrong_verdict": wrong, "unparsed": unparsed}
    stats["before_balance"] = class_counts(out)
    final = balance_classes(out, cfg.seed) if cfg.balance else out
    stats["after_balance"] = class_counts(final)
    stats["problems"] = len({r["problem_id"] for r in final})
    return {"rows": final, "stats": stats}
