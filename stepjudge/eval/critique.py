"""Critique-RL's evaluation metrics (spec §3(e)), as the released code computes them.

Every response is critiqued and refined (no oracle decides which). Δc→i and Δi→c are counts divided by
the *whole* set, so Δ = Δi→c − Δc→i; Acc@Dis counts only critiques with a parseable final verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["refinement_metrics"]


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
