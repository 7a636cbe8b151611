"""Turning sampled judge outputs into one decision (pure functions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["Positive", "Negative"]


def majority_verdict(verdicts: Sequence[Verdict | None], *, unparsed_as: Verdict = "Positive",
                     tie: Verdict = "Negative") -> Verdict:
    """Majority over parsed verdicts.

    Unparseable samples are dropped; if none parsed, ``unparsed_as`` decides (default Positive: only
    an explicit Negative flags an error, so a judge that cannot follow the format predicts "no error").
    Ties go to ``tie`` (default Negative: a split judge is treated as doubting the step).
    """
    parsed = [v for v in verdicts if v is not None]
    if not parsed:
        return unparsed_as
    pos = sum(v == "Positive" for v in parsed)
    neg = len(parsed) - pos
    if pos == neg:
        return tie
    return "Positive" if pos > neg else "Negative"


def majority_index(indices: Sequence[int | None]) -> int | None:
    """Majority over parsed integers (ProcessBench critic voting); ties go to the value seen first,
    as in the benchmark's ``Counter.most_common``; None if nothing parsed."""
    parsed = [i for i in indices if i is not None]
    if not parsed:
        return None
    return Counter(parsed).most_common(1)[0][0]


def parse_prm_verdict(text: str) -> Literal["+", "-"] | None:
    """First non-space character of a PRM's answer: "+" or "-" (anything else: None)."""
    s = text.strip()
    if s.startswith("+"):
        return "+"
    if s.startswith("-"):
        return "-"
    return None
