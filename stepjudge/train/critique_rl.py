"""Critique-RL's rewards (spec §3(b)): pure functions for the maths, and TRL reward callables around them.

* Stage I, :func:`discrimination_reward`: +1 when the critic's final-answer verdict equals the response's
  true correctness, -1 when it does not *or is missing* (the released code; the paper's r_dis is 0/1, and
  a 0 for a missing verdict would pay the critic for dodging).
* Stage II, :func:`refinement_reward`: -1 when the verdict is wrong or missing (overriding the refinement),
  else r_refine + bonus (bonus 0.2 = the paper's beta_1 of §5.1 and the code's value), where r_refine is
  1 when the frozen actor's refinement y' = actor(x, y, c) is graded correct.
* The indirect-reward baselines of the ablation: r_refine alone (:func:`refine_only_reward`), r_delta =
  r(y') - r(y) (:func:`delta_reward`) and r_correction (:func:`correction_reward`: 1 wrong->right, 0.2
  right->right, 0 when y' is wrong).

TRL side: :func:`critique_discrimination` (registered as ``critique_dis``) is the Stage-I reward; Stage II
is a :class:`RefinementReward` object, because it holds an engine for the frozen actor (the pattern of
trl#4707): each call renders every refine prompt of the rollout, generates all refinements greedily in
one batched engine call, grades them with the problem's task, and scores them with the chosen function
(``critique_rl``, ``refine``, ``delta`` or ``correction``). Both log, through TRL's ``log_metric``, the
rollout's Acc@Dis (parseable verdicts only), verdict shares, critique length and, in Stage II, the
c->c / c->i / i->c / i->i shares and Acc@Refine.

Dataset columns the rewards read (``stepjudge critique-data`` writes them): ``truth`` (is y correct),
``response`` (y, after the pre-fill) and ``problem_json`` (the :class:`~stepjudge.data.records.Problem`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

from stepjudge.judge.critique import parse_final_verdict
from stepjudge.judge.critique_loop import grade_texts, refine
from stepjudge.train.rewards import completion_text, register_reward

__all__ = ["STAGE2_REWARDS", "RefinementReward", "Stage2Reward", "correction_reward", "critique_discrimination",
           "delta_reward", "discrimination_reward", "refine_only_reward", "refinement_reward", "rollout_stats",
           "transition"]

Stage2Reward = Literal["critique_rl", "refine", "delta", "correction"]


def discrimination_reward(verdict: bool | None, truth: bool) -> float:
    """Stage I: +1 when the final-answer verdict equals the truth, -1 when it differs or is missing."""
    return 1.0 if verdict is not None and verdict == truth else -1.0


def refinement_reward(verdict: bool | None, truth: bool, refined_correct: bool, bonus: float = 0.2) -> float:
    """Stage II: -1 for a wrong or missing verdict, else r_refine (1 if y' is correct) + ``bonus``."""
    if verdict is None or verdict != truth:
        return -1.0
    return float(refined_correct) + bonus


def refine_only_reward(refined_correct: bool) -> float:
    """Indirect baseline r_refine: 1 when the refinement is correct."""
    return float(refined_correct)


def delta_reward(truth: bool, refined_correct: bool) -> float:
    """Indirect baseline r_delta = r(y') - r(y), in {-1, 0, 1}."""
    return float(refined_correct) - float(truth)


def correction_reward(truth: bool, refined_correct: bool) -> float:
    """Indirect baseline r_correction: 1 for wrong -> right, 0.2 for right -> right, 0 when y' is wrong."""
    if not refined_correct:
        return 0.0
    return 0.2 if truth else 1.0


def transition(truth: bool, refined_correct: bool) -> str:
    """``c2c``, ``c2i``, ``i2c`` or ``i2i``: correct/incorrect before and after the refinement."""
    return ("c" if truth else "i") + "2" + ("c" if refined_correct else "i")


# name -> score(verdict, truth, refined_correct, bonus): the Stage-II rewards a config may choose.
STAGE2_REWARDS: dict[str, Callable[[bool | None, bool, bool, float], float]] = {
    "critique_rl": refinement_reward,
    "refine": lambda verdict, truth, refined, bonus: refine_only_reward(refined),
    "delta": lambda verdict, truth, refined, bonus: delta_reward(truth, refined),
    "correction": lambda verdict, truth, refined, bonus: correction_reward(truth, refined),
}


def rollout_stats(verdicts: Sequence[bool | None], truths: Sequence[bool], lengths: Sequence[int],
                  refined: Sequence[bool] | None = None) -> dict[str, float]:
    """What a rollout says about the critic, as shares of the rollout (Acc@Dis over parseable verdicts).

    ``lengths`` are critique lengths in tokens; ``refined`` (Stage II) adds Acc@Refine and the four
    transition shares.
    """
    n = len(verdicts)
    parsed = [(v, t) for v, t in zip(verdicts, truths, strict=True) if v is not None]
    stats = {"critique/verdict_correct_share": sum(v is True for v in verdicts) / n,
             "critique/verdict_wrong_share": sum(v is False for v in verdicts) / n,
             "critique/verdict_missing_share": sum(v is None for v in verdicts) / n,
             "critique/length": sum(lengths) / n}
    if parsed:
        stats["critique/acc_dis"] = sum(v == t for v, t in parsed) / len(parsed)
    if refined is not None:
        counts = Counter(transition(t, r) for t, r in zip(truths, refined, strict=True))
        stats.update({f"critique/{k}": counts[k] / n for k in ("c2c", "c2i", "i2c", "i2i")})
        stats["critique/acc_refine"] = sum(refined) / n
    return stats


def _lengths(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None) -> list[int]:
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c)) for c in completions]


def _log(log_metric: Callable[[str, float], None] | None, stats: dict[str, float]) -> None:
    if log_metric is not None:
        for name, value in stats.items():
            log_metric(name, value)


@register_reward("critique_dis")
def critique_discrimination(prompts: Sequence[Any], completions: Sequence[Any], truth: Sequence[bool],
                            completion_ids: Sequence[Sequence[int]] | None = None,
                            log_metric: Callable[[str, float], None] | None = None, **kwargs: Any) -> list[float]:
    """Stage-I reward of every critique (:func:`discrimination_reward` of its final-answer verdict)."""
    verdicts = [parse_final_verdict(completion_text(c)) for c in completions]
    truths = [bool(t) for t in truth]
    _log(log_metric, rollout_stats(verdicts, truths, _lengths(completions, completion_ids)))
    return [discrimination_reward(v, t) for v, t in zip(verdicts, truths, strict=True)]


class RefinementReward:
    """Stage-II reward: the frozen actor refines (x, y) with each critique, greedily, in one batched call.

    ``actor`` is any engine that renders chat prompts (the refine prompt ends in a pre-filled answer turn);
    ``grader`` a :class:`~stepjudge.grading.Grader`. ``kind`` names the score in :data:`STAGE2_REWARDS`.
    The refinements and their grades are logged per completion through TRL's ``log_extra``
    (``refinement``, ``refined_correct``), so the completions table shows what each reward was paid for.
    """

    def __init__(self, actor: Any, grader: Any, *, kind: Stage2Reward = "critique_rl", bonus: float = 0.2,
                 max_tokens: int = 1024, seed: int = 0):
        from stepjudge.engines.base import Capability

        actor.require(Capability.CHAT_RENDERING, needed_for="the refine prompt's pre-filled answer turn")
        if kind not in STAGE2_REWARDS:
            raise ValueError(f"unknown Stage-II reward {kind!r}; choose from {sorted(STAGE2_REWARDS)}")
        self.actor, self.grader, self.kind, self.bonus = actor, grader, kind, bonus
        self.max_tokens, self.seed = max_tokens, seed
        self.__name__ = f"refine_{kind}"  # TRL names the reward's log keys after it

    def refine(self, problems: Sequence[Any], responses: Sequence[str], critiques: Sequence[str]) -> list[str]:
        """The actor's greedy refinement of each (problem, response, critique), in one engine call."""
        return refine(self.actor, problems, responses, critiques, max_tokens=self.max_tokens, seed=self.seed)

    def grade(self, problems: Sequence[Any], texts: Sequence[str]) -> list[bool]:
        """Whether each text answers its problem correctly, graded by the problem's own task."""
        return grade_texts(self.grader, problems, texts)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], truth: Sequence[bool],
                 response: Sequence[str], problem_json: Sequence[str],
                 completion_ids: Sequence[Sequence[int]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 log_extra: Callable[[str, list], None] | None = None, **kwargs: Any) -> list[float]:
        from stepjudge.data.records import Problem

        critiques = [completion_text(c) for c in completions]
        problems = [Problem.from_dict(json.loads(p)) for p in problem_json]
        refinements = self.refine(problems, response, critiques)
        refined = self.grade(problems, refinements)
        verdicts = [parse_final_verdict(c) for c in critiques]
        truths = [bool(t) for t in truth]
        _log(log_metric, rollout_stats(verdicts, truths, _lengths(completions, completion_ids), refined))
        if log_extra is not None:
            log_extra("refinement", refinements)
            log_extra("refined_correct", refined)
        score = STAGE2_REWARDS[self.kind]
        return [score(v, t, r, self.bonus) for v, t, r in zip(verdicts, truths, refined, strict=True)]
