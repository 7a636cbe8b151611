"""Critique-RL's evaluation metrics (spec §3(e)), as the released code computes them.

Every response is critiqued and refined (no oracle decides which). Δc→i and Δi→c are counts divided by
the *whole* set, so Δ = Δi→c − Δc→i; Acc@Dis counts only critiques with a parseable final verdict.

MV@K and Pass@K compare refinement with parallel sampling (``stepjudge eval critique``). Each problem is a
list of (answer, correct) samples; a curve over K takes the first K samples of each list (so a larger K
only adds samples and every point is exact, with no random subsets). Answers are compared as given, so
callers normalise them (``stepjudge.grading.normalize_answer``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["majority_answer", "mv_at_k", "pass_at_k", "refinement_metrics"]


def refinement_metrics(before: Sequence[bool], after: Sequence[bool],
                       verdicts: Sequence[bool | None]) -> dict[str, float | None]:
    """Percentages: ``acc`` (the responses), ``acc_refine`` (the refinements), ``delta``, ``delta_c2i``,
    ``delta_i2c`` and ``acc_dis`` (verdict vs. the response's correctness; None when no verdict parsed)."""
    n = len(before)
    if n == 0 or len(after) != n or len(verdicts) != n:
        raise ValueError(f"need equally long, non-empty lists (got {n}, {len(after)}, {len(verdicts)})")
    acc = 100 * sum(before) / n
    acc_refine = 100 * sum(after) / n
    parsed = [(v, b) for v, b in zip(verdicts, before, strict=True) if v is not None]
    return {"acc": acc, "acc_refine": acc_refine, "delta": acc_refine - acc,
            "delta_c2i": 100 * sum(b and not a for b, a in zip(before, after, strict=True)) / n,
            "delta_i2c": 100 * sum(a and not b for b, a in zip(before, after, strict=True)) / n,
            "acc_dis": 100 * sum(v == b for v, b in parsed) / len(parsed) if parsed else None}


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; a tie goes to the tied answer that appears first; None when no
    sample has an answer. The same vote as best-of-N's (:func:`stepjudge.infer.best_of_n.majority_vote`)."""
    from stepjudge.infer.best_of_n import majority_vote

    return majority_vote(answers)


def _first(samples: Sequence[tuple[str | None, bool]], k: int) -> Sequence[tuple[str | None, bool]]:
    if not 1 <= k <= len(samples):
        raise ValueError(f"k={k} needs 1 <= k <= the {len(samples)} samples of a problem")
    return samples[:k]


def mv_at_k(groups: Sequence[Sequence[tuple[str | None, bool]]], k: int) -> float:
    """MV@K in percent: the share of problems whose :func:`majority_answer` over their *first* ``k``
    (answer, correct) samples is right, i.e. some of those k samples with that answer is graded correct.
    A problem whose k samples have no answer at all counts as wrong."""
    if not groups:
        raise ValueError("no problems")
    hits = 0
    for samples in groups:
        first = _first(samples, k)
        voted = majority_answer([a for a, _ in first])
        hits += voted is not None and any(a == voted and ok for a, ok in first)
    return 100 * hits / len(groups)


def pass_at_k(groups: Sequence[Sequence[tuple[str | None, bool]]], k: int) -> float:
    """Pass@K in percent: the share of problems with at least one correct sample among their first ``k``."""
    if not groups:
        raise ValueError("no problems")
    return 100 * sum(any(ok for _, ok in _first(samples, k)) for samples in groups) / len(groups)
