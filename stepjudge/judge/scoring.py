"""A judge's probability of ``Positive`` read from its verdict token, without sampling.

When the judge's answer is pre-filled up to the verdict (``response_prefix="\\boxed{"``, the
verdict-only judge), the next token decides the verdict, so

    P(Positive) = p(first token of "Positive") / (p(... "Positive") + p(... "Negative"))

is read from one forward pass. It is renormalised over the two verdicts because probability mass on
other tokens (a malformed answer) says nothing about which verdict the judge prefers. This score is
what threshold-free metrics (AUROC) and judge-scored best-of-N need: a greedy verdict is a 0/1 cut of
it, and an always-Positive judge can still rank chunks well.

A judge that reasons first has no fixed place for the verdict: either score it with vote fractions
(:func:`stepjudge.eval.judge_heldout.evaluate_judge_rows` with ``votes > 1``), or let it reason greedily
up to its ``\\boxed{`` and read the verdict token there (:func:`reasoned_positive_probabilities`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stepjudge.engines.base import Capability, Engine, Prompt

__all__ = ["prefill_answer", "verdict_token_ids", "positive_probabilities", "reasoned_positive_probabilities",
           "two_way_probabilities",
           "calibrate_threshold", "TOKEN_PROB_NEEDS"]

# What reading P(Positive) from the verdict token asks of an engine.
TOKEN_PROB_NEEDS = (Capability.NEXT_TOKEN_LOGPROBS, Capability.CHAT_RENDERING, Capability.TOKENIZER)


def prefill_answer(engine: Engine, prompts: Sequence[Prompt], response_prefix: str) -> list[Prompt]:
    """Prompts whose assistant answer starts with ``response_prefix``: each chat is rendered with the
    model's template (the engine needs chat rendering) and the prefix appended as text.
    An empty prefix returns the prompts unchanged."""
    if not response_prefix:
        return list(prompts)
    engine.require(Capability.CHAT_RENDERING, needed_for="a pre-filled judge answer (response_prefix)")
    return [engine.render(p) + response_prefix for p in prompts]


def _first_new_token(tokenizer: Any, context: str, word: str) -> int:
    base = tokenizer(context, add_special_tokens=False).input_ids
    full = tokenizer(context + word, add_special_tokens=False).input_ids
    if full[:len(base)] != base or len(full) == len(base):
        raise ValueError(f"cannot isolate the first token of {word!r} after {context!r}: the tokenizer merges "
                         "it with the prefix; end the response prefix at a token boundary (e.g. '\\boxed{')")
    return full[len(base)]


def verdict_token_ids(tokenizer: Any, response_prefix: str = "\\boxed{") -> tuple[int, int]:
    """Token ids that start "Positive" and "Negative" right after ``response_prefix``."""
    pos = _first_new_token(tokenizer, response_prefix, "Positive")
    neg = _first_new_token(tokenizer, response_prefix, "Negative")
    if pos == neg:
        raise ValueError("Positive and Negative start with the same token here; their probabilities cannot "
                         "be told apart from one step")
    return pos, neg


def positive_probabilities(engine: Engine, prompts: Sequence[Prompt],
                           response_prefix: str = "\\boxed{") -> list[float]:
    """P(Positive) per judge prompt (chat messages or rendered text), answer pre-filled with the prefix.

    Needs chat rendering, the tokenizer and next-token log-probs (:data:`TOKEN_PROB_NEEDS`; the
    in-process ``hf`` engine has them); one batched prefill per ``max_batch_rows`` prompts.
    """
    engine.require(*TOKEN_PROB_NEEDS, needed_for="P(Positive) from the verdict token; use the hf engine or "
                                                 "score with sampled votes")
    pos, neg = verdict_token_ids(engine.tokenizer, response_prefix)
    return two_way_probabilities(engine, prefill_answer(engine, prompts, response_prefix), pos, neg)


def two_way_probabilities(engine: Engine, prompts: Sequence[Prompt], yes_id: int, no_id: int) -> list[float]:
    """p(yes) / (p(yes) + p(no)) of the next token after each prompt: one batched prefill. Mass on
    other tokens is dropped, since it says nothing about which of the two answers the model prefers."""
    out = []
    for lp_yes, lp_no in engine.next_token_logprobs(prompts, [yes_id, no_id]):
        m = max(lp_yes, lp_no)
        a, b = math.exp(lp_yes - m), math.exp(lp_no - m)
        out.append(a / (a + b))
    return out


def reasoned_positive_probabilities(engine: Engine, prompts: Sequence[Prompt], *, max_tokens: int,
                                    response_prefix: str = "", verdict_prefix: str = "\\boxed{",
                                    seed: int | None = 0) -> tuple[list[float], list[str], list[int]]:
    """P(Positive) of a judge that reasons first: its reasoning is decoded greedily up to
    ``verdict_prefix`` (or ``max_tokens``), then the verdict token is read after reasoning +
    ``verdict_prefix`` as :func:`positive_probabilities` does. Returns (probabilities, reasonings,
    reasoning tokens per prompt).

    Why: a reasoning judge's sampled verdict is a 0/1 score, too coarse to rank best-of-N candidates
    or to weight votes; the verdict token's probability after its own analysis keeps that analysis
    and gives a graded score, deterministically, for one decode plus one prefill per chunk.
    """
    from stepjudge.engines.base import SamplingParams

    engine.require(*TOKEN_PROB_NEEDS, needed_for="P(Positive) after the judge's reasoning; use score 'votes'")
    pos, neg = verdict_token_ids(engine.tokenizer, verdict_prefix)
    rendered = [engine.render(p) + response_prefix if not isinstance(p, str) else p + response_prefix
                for p in prompts]
    results = engine.generate(rendered, SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens,
                                                       stop=(verdict_prefix,), seed=seed))
    reasonings = [r.completions[0].text for r in results]
    tokens = [r.completions[0].num_tokens for r in results]
    texts = [t + text + verdict_prefix for t, text in zip(rendered, reasonings, strict=True)]
    return two_way_probabilities(engine, texts, pos, neg), reasonings, tokens


def calibrate_threshold(probs: Sequence[float], positive: Sequence[bool]) -> float:
    """The P(Positive) cut that maximises balanced accuracy (mean of the two per-class accuracies).

    Meant for the judge's *training* split: a judge whose probabilities are all shifted towards
    Positive (a 135M verdict-only judge says Positive with p ~ 0.9 for nearly every chunk) can still
    rank chunks, and a cut placed where the training chunks separate turns that ranking into
    verdicts. Candidates are midpoints between consecutive distinct probabilities (plus 0 and 1);
    among equally good cuts the one nearest 0.5 wins, and the default 0.5 itself wins any tie, so an
    uninformative judge keeps it.
    """
    if len(probs) != len(positive):
        raise ValueError(f"{len(probs)} probabilities but {len(positive)} labels")
    n_pos = sum(bool(y) for y in positive)
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        raise ValueError("calibration needs chunks of both classes")
    values = sorted(set(probs))
    cuts = [0.5, 0.0, *((a + b) / 2 for a, b in zip(values, values[1:], strict=False)), 1.0 + 1e-12]
    best, best_score = 0.5, -1.0
    for t in cuts:
        tp = sum(p >= t and y for p, y in zip(probs, positive, strict=True))
        tn = sum(p < t and not y for p, y in zip(probs, positive, strict=True))
        score = (tp / n_pos + tn / n_neg) / 2
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = t, score
    return min(best, 1.0)
