"""Step labels from Monte-Carlo Q estimates (StepWiser §3.2). Pure functions; 1 = positive, 0 = negative.

``q[i]`` is Q̂ after chunk i (the success rate of rollouts continued from the prefix that ends with
chunk i); ``q_init`` is Q̂ before chunk 1 (rollouts from the bare problem). The value "before" chunk i is
``q[i-1]``, or ``q_init`` for the first chunk.

Choices the paper leaves open, made here:
* **Abs-Q**: positive iff Q̂_i > 0 (the chunk still allows a correct finish).
* **Rel-Ratio**: positive iff Q̂_i / Q̂_{i-1} > γ. When the "before" value is 0 the ratio is undefined;
  we call the chunk positive iff Q̂_i > 0 (it recovered from a hopeless prefix) and negative otherwise
  (0 → 0 made no progress).
* **Rel-Effective** (after Setlur et al. 2024): with the best-of-n policy's value Qμ = 1 − (1 − Q)^n,
  positive iff Q̂_i + α·(Qμ_i − Qμ_{i-1}) > 0. The paper writes the negative case as "= 0" although the
  quantity can be negative; we read it as "≤ 0".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Scheme = Literal["abs-q", "rel-ratio", "rel-effective"]
SCHEMES: tuple[str, ...] = ("abs-q", "rel-ratio", "rel-effective")


def best_of_n_value(q: float, n: int) -> float:
    """Success probability of the best of ``n`` independent tries that each succeed with ``q``."""
    return 1.0 - (1.0 - q) ** n


def assign_labels(q: Sequence[float], *, q_init: float, scheme: str, gamma: float = 0.7, alpha: float = 0.8,
                  n: int = 4) -> list[int]:
    """Binary label per chunk (1 = positive) from the Q̂ after each chunk and the Q̂ before chunk 1."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    for name, v in [("q_init", q_init), *((f"q[{i}]", x) for i, x in enumerate(q))]:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} = {v} is not a probability in [0, 1]")
    before = [q_init, *q[:-1]] if len(q) else []
    labels: list[int] = []
    for prev, cur in zip(before, q, strict=True):
        if scheme == "abs-q":
            positive = cur > 0
        elif scheme == "rel-ratio":
            positive = cur > 0 if prev == 0 else cur / prev > gamma
        else:
            effective = cur + alpha * (best_of_n_value(cur, n) - best_of_n_value(prev, n))
            positive = effective > 0
        labels.append(int(positive))
    return labels


def all_labels(q: Sequence[float], *, q_init: float, gamma: float = 0.7, alpha: float = 0.8,
               n: int = 4) -> dict[str, list[int]]:
    """Labels under every scheme, keyed by scheme name (what an annotation record stores)."""
    return {s: assign_labels(q, q_init=q_init, scheme=s, gamma=gamma, alpha=alpha, n=n) for s in SCHEMES}


def first_negative(labels: Sequence[int]) -> int:
    """Index of the first negative chunk, or -1: a label sequence read as a first-error prediction."""
    return next((i for i, y in enumerate(labels) if y == 0), -1)


# ------------------------------------------------------------------ adaptive rollouts (sequential stopping)
#
# A prefix's Q̂ is w/d after d of its M rollouts with w successes. Whatever the remaining M - d give, and
# wherever the prefix stops later (w'/d' with d <= d' <= M), its final Q̂ lies in [w/M, (w + M - d)/M]. Each
# scheme's label rises with Q̂ after the chunk and falls with Q̂ before it (for gamma >= 0 and alpha >= 0),
# so a chunk's label is certain when it is the same at the two extreme corners of that box. A prefix may
# stop once every label it enters (its own chunk as "after", the next chunk as "before") is certain: the
# labels computed from the stopped Q̂ are then those any completion of its rollouts would have given.


def q_bounds(wins: int, drawn: int, m: int, *, closed: bool = False) -> tuple[float, float]:
    """The values a prefix's final Q̂ can still take: the point ``wins/drawn`` once it is closed (no more
    rollouts), else ``[wins/m, (wins + m - drawn)/m]``, which also holds every later early-stop value."""
    if not 0 <= wins <= drawn <= m or m < 1:
        raise ValueError(f"need 0 <= wins <= drawn <= m and m >= 1 (wins={wins}, drawn={drawn}, m={m})")
    if closed or drawn == m:
        if drawn == 0:
            raise ValueError("a closed prefix needs at least one rollout")
        return wins / drawn, wins / drawn
    return wins / m, (wins + m - drawn) / m


def certain_label(after: tuple[float, float], before: tuple[float, float] | float, *, scheme: str,
                  gamma: float = 0.7, alpha: float = 0.8, n: int = 4) -> int | None:
    """The chunk's label if it is the same for every Q̂ after in ``after`` and Q̂ before in ``before``
    (intervals, or a known value before); None while it can still change.

    With a negative ``gamma`` (Rel-Ratio) or ``alpha`` (Rel-Effective) the label is not monotone, so only
    point intervals are decided.
    """
    lo_b, hi_b = (before, before) if isinstance(before, (int, float)) else before
    lo_a, hi_a = after
    monotone = {"rel-ratio": gamma >= 0, "rel-effective": alpha >= 0}.get(scheme, True)
    if not monotone and (lo_a != hi_a or lo_b != hi_b):
        return None

    def label(a: float, b: float) -> int:
        return assign_labels([a], q_init=b, scheme=scheme, gamma=gamma, alpha=alpha, n=n)[0]

    low, high = label(lo_a, hi_b), label(hi_a, lo_b)
    return low if low == high else None


def prefixes_needing_rollouts(wins: Sequence[int], drawn: Sequence[int], m: int, *, closed: Sequence[bool],
                              scheme: str, gamma: float = 0.7, alpha: float = 0.8, n: int = 4,
                              stop_after_negative: bool = False) -> list[bool]:
    """Which prefixes of one solution still need rollouts (prefix 0 = the bare problem, prefix j = after
    chunk j; chunk j's label reads prefix j-1 as "before" and prefix j as "after").

    A prefix is done when it has all ``m`` rollouts, is already ``closed``, or every label it enters is
    certain (:func:`certain_label`); under Abs-Q the bare problem's prefix is never needed. With ``stop_after_negative`` the chunks after the first certainly
    Negative one are not needed (nor are their prefixes), so data that stops at the first error stays exact.
    """
    h = len(wins) - 1  # chunks
    if not (len(drawn) == len(closed) == h + 1 and h >= 0):
        raise ValueError("wins, drawn and closed need one entry per prefix")
    bounds = [q_bounds(w, d, m, closed=c) for w, d, c in zip(wins, drawn, closed, strict=True)]
    labels = [None] + [certain_label(bounds[j], bounds[j - 1], scheme=scheme, gamma=gamma, alpha=alpha, n=n)
                       for j in range(1, h + 1)]
    last = h  # the last chunk whose label is wanted
    if stop_after_negative:
        last = next((j for j in range(1, h + 1) if labels[j] == 0), h)
    need = []
    for j in range(h + 1):
        if closed[j] or drawn[j] >= m or j > last:
            need.append(False)
            continue
        own = j >= 1 and labels[j] is None
        # Abs-Q never reads the value before a chunk, so no prefix is ever needed as one
        as_before = scheme != "abs-q" and j < last and labels[j + 1] is None
        need.append(own or as_before)
    return need
