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
