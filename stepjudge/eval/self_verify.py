"""LaSeR's test-time use of the self-reward: self-verification and self-reward-weighted voting.

Pure metric functions here (percent where the paper reports percent): :func:`self_verification_f1`
(the released ``calculate_self_rewarding_scores.py`` metric), :func:`weighted_majority_vote`,
:func:`expected_calibration_error`, :func:`vote_curves`. The ``stepjudge eval self-verify`` run that
samples, scores and plots is :mod:`stepjudge.eval.self_verify_run`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from stepjudge.eval.metrics import harmonic_f1

__all__ = ["calibration_bins", "expected_calibration_error", "self_verification_f1", "vote_curves",
           "weighted_majority_vote"]


def self_verification_f1(scores: Sequence[float], correct: Sequence[bool], threshold: float = 0.5) -> dict:
    """Accuracy on truly correct / incorrect responses and their harmonic mean, in percent.

    A response is predicted correct iff ``score > threshold``. ``acc_correct`` (the paper's acc_T) is
    the share of correct responses predicted correct, ``acc_incorrect`` (acc_F) the share of incorrect
    ones predicted incorrect, ``f1 = 2 acc_T acc_F / (acc_T + acc_F)``. A class with no response has
    accuracy None and so has F1.
    """
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} labels")
    pos = [s > threshold for s, c in zip(scores, correct, strict=True) if c]
    neg = [s <= threshold for s, c in zip(scores, correct, strict=True) if not c]
    acc_c = 100.0 * sum(pos) / len(pos) if pos else None
    acc_i = 100.0 * sum(neg) / len(neg) if neg else None
    return {"acc_correct": acc_c, "acc_incorrect": acc_i, "f1": harmonic_f1(acc_c, acc_i),
            "n_correct": len(pos), "n_incorrect": len(neg)}


def weighted_majority_vote(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer with the largest sum of scores clipped to [0, 1]; ``None`` answers are ignored.

    Ties break to the tied answer that appears first in ``answers`` (so equal self-rewards fall back to
    sample order, as plain majority voting does). ``None`` when no sample has an answer. Answers are
    compared as given: normalise them first (e.g. :func:`stepjudge.grading.verify.normalize_answer`).
    """
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")
    totals: dict[str, float] = {}  # insertion order = first appearance
    for a, s in zip(answers, scores, strict=True):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + min(1.0, max(0.0, float(s)))
    best, best_total = None, -math.inf
    for a, total in totals.items():
        if total > best_total:  # strict: a tie keeps the earlier answer
            best, best_total = a, total
    return best


def calibration_bins(scores: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> list[dict]:
    """Equal-width bins of scores clipped to [0, 1]: count, mean score and accuracy per non-empty bin.

    Bin k holds scores in ``[k/n, (k+1)/n)``; a score of exactly 1 goes to the last bin.
    """
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for s, c in zip(scores, correct, strict=True):
        p = min(1.0, max(0.0, float(s)))
        bins[min(n_bins - 1, int(p * n_bins))].append((p, bool(c)))
    return [{"lo": k / n_bins, "hi": (k + 1) / n_bins, "n": len(b), "confidence": sum(p for p, _ in b) / len(b),
             "accuracy": sum(c for _, c in b) / len(b)} for k, b in enumerate(bins) if b]


def expected_calibration_error(scores: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float | None:
    """ECE: the count-weighted mean over bins of |accuracy - mean confidence| (0..1); None if empty."""
    bins = calibration_bins(scores, correct, n_bins)
    n = sum(b["n"] for b in bins)
    return sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / n if n else None


def vote_curves(groups: Sequence[dict], ks: Sequence[int], *, draws: int = 32, seed: int = 0) -> dict[str, list]:
    """Accuracy (percent) of weighted vote, majority vote and pass@1 with k samples per problem.

    Each group is ``{"answers": [...], "scores": [...], "correct": [...]}`` over one problem's n
    samples, where ``correct[j]`` says whether answer j is right (the voted answer is right iff some
    sample with that answer is). For k < n the accuracy is averaged over ``draws`` random k-subsets
    (seeded); for k = n the whole set is used. pass@1 is the mean correctness of single samples.
    """
    rng = random.Random(seed)
    out: dict[str, list] = {"k": list(ks), "weighted": [], "majority": [], "pass@1": []}
    for k in ks:
        w_hits = m_hits = total = 0.0
        for g in groups:
            n = len(g["answers"])
            subsets = [list(range(n))] if k >= n else [rng.sample(range(n), k) for _ in range(draws)]
            right = {a for a, c in zip(g["answers"], g["correct"], strict=True) if c and a is not None}
            for idx in subsets:
                answers = [g["answers"][j] for j in idx]
                w_hits += weighted_majority_vote(answers, [g["scores"][j] for j in idx]) in right
                m_hits += weighted_majority_vote(answers, [1.0] * len(idx)) in right
                total += 1
        out["weighted"].append(100.0 * w_hits / total if total else None)
        out["majority"].append(100.0 * m_hits / total if total else None)
    p1 = [c for g in groups for c in g["correct"]]
    out["pass@1"] = [100.0 * sum(p1) / len(p1) if p1 else None] * len(ks)
    return out
