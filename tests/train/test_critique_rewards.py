"""Critique-RL's rewards: the pure functions (exact values from §3(b)) and the TRL callables around them."""

import json

import pytest

from stepjudge.engines.hf import HFEngine
from stepjudge.grading import Grader
from stepjudge.judge.critique import SOLVE_PREFILL, critic_messages
from stepjudge.tasks.arith import generate_problems
from stepjudge.train.critique_rl import (
    STAGE2_REWARDS,
    RefinementReward,
    correction_reward,
    critique_discrimination,
    delta_reward,
    discrimination_reward,
    refine_only_reward,
    refinement_reward,
    rollout_stats,
    transition,
)
from stepjudge.train.rewards import resolve_reward

RIGHT = "Step sentence: 4 + 3 = 7.\nCorrectness of the step: Correct\nExplanation: ok\n\n" \
        "Correctness of the final answer: Correct\nExplanation: ok"
WRONG = RIGHT.replace("final answer: Correct", "final answer: Wrong")
NONE = "I am not sure."


@pytest.mark.parametrize("verdict, truth, expected", [
    (True, True, 1.0), (False, False, 1.0), (True, False, -1.0), (False, True, -1.0), (None, True, -1.0),
    (None, False, -1.0)])
def test_discrimination_reward(verdict, truth, expected):
    assert discrimination_reward(verdict, truth) == expected


@pytest.mark.parametrize("verdict, truth, refined, expected", [
    (True, True, True, 1.2), (True, True, False, 0.2), (False, False, True, 1.2), (False, False, False, 0.2),
    (True, False, True, -1.0), (False, True, True, -1.0), (None, True, True, -1.0), (None, False, False, -1.0)])
def test_refinement_reward(verdict, truth, refined, expected):
    assert refinement_reward(verdict, truth, refined) == pytest.approx(expected)
    assert refinement_reward(verdict, truth, refined, bonus=0.0) == (expected if expected < 0 else float(refined))


@pytest.mark.parametrize("truth, refined, r_refine, r_delta, r_correction, name", [
    (True, True, 1.0, 0.0, 0.2, "c2c"), (True, False, 0.0, -1.0, 0.0, "c2i"),
    (False, True, 1.0, 1.0, 1.0, "i2c"), (False, False, 0.0, 0.0, 0.0, "i2i")])
def test_indirect_rewards_and_transitions(truth, refined, r_refine, r_delta, r_correction, name):
    assert refine_only_reward(refined) == r_refine
    assert delta_reward(truth, refined) == r_delta
    assert correction_reward(truth, refined) == r_correction
    assert transition(truth, refined) == name
    for verdict in (True, False, None):  # the indirect rewards ignore the verdict
        assert STAGE2_REWARDS["refine"](verdict, truth, refined, 0.2) == r_refine
        assert STAGE2_REWARDS["delta"](verdict, truth, refined, 0.2) == r_delta
        assert STAGE2_REWARDS["correction"](verdict, truth, refined, 0.2) == r_correction
        assert STAGE2_REWARDS["critique_rl"](verdict, truth, refined, 0.2) == refinement_reward(verdict, truth, refined)


def test_rollout_stats_are_shares_and_acc_dis_counts_parseable_verdicts_only():
    stats = rollout_stats([True, False, None, True], [True, True, False, False], [10, 20, 30, 40],
                          refined=[True, False, True, False])
    assert stats == {"critique/verdict_correct_share": 0.5, "critique/verdict_wrong_share": 0.25,
                     "critique/verdict_missing_share": 0.25, "critique/length": 25.0,
                     "critique/acc_dis": 1 / 3, "critique/c2c": 0.25, "critique/c2i": 0.25,
                     "critique/i2c": 0.25, "critique/i2i": 0.25, "critique/acc_refine": 0.5}
    assert "critique/acc_dis" not in rollout_stats([None], [True], [3])


def test_stage1_callable_is_registered_and_logs_the_rollout():
    assert resolve_reward("critique_dis") is critique_discrimination
    logged = {}
    conversational = [[{"role": "assistant", "content": RIGHT}]]
    rewards = critique_discrimination(prompts=["p"] * 4, completions=[RIGHT, WRONG, NONE, *conversational],
                                      truth=[True, True, False, False], completion_ids=[[1] * 5, [1], [1, 1], [1] * 4],
                                      log_metric=logged.__setitem__)
    assert rewards == [1.0, -1.0, -1.0, -1.0]
    assert logged["critique/acc_dis"] == pytest.approx(1 / 3) and logged["critique/length"] == 3.0
    assert logged["critique/verdict_missing_share"] == 0.25


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=5.0) as g:
        yield g


def test_refinements_are_graded_by_the_problems_task(grader):
    p = generate_problems(n=2, steps=2, seed=3)
    reward = RefinementReward(HFEngine("tiny-random"), grader)
    texts = [f"x\nThe answer is {p[0].answer}.", f"The answer is {int(p[1].answer) + 1}."]
    assert reward.grade(p, texts) == [True, False]


def test_stage2_callable_refines_with_the_actor_and_pays_what_the_function_says(grader):
    problems = generate_problems(n=2, steps=2, seed=5)
    engine = HFEngine("tiny-random")
    reward = RefinementReward(engine, grader, kind="critique_rl", bonus=0.2, max_tokens=8)
    assert reward.__name__ == "refine_critique_rl"
    responses = [f"{p.answer} + 0 = {p.answer}.\nThe answer is {p.answer}." for p in problems]
    logged, extra = {}, {}
    critiques = [RIGHT, WRONG, NONE, RIGHT]
    truth = [True, True, False, False]
    rows = [problems[0], problems[0], problems[1], problems[1]]
    rewards = reward(prompts=[critic_messages(p.problem, SOLVE_PREFILL + y) for p, y in zip(rows, responses * 2,
                                                                                             strict=True)],
                     completions=critiques, truth=truth, response=[responses[0]] * 2 + [responses[1]] * 2,
                     problem_json=[json.dumps(p.to_dict()) for p in rows], log_metric=logged.__setitem__,
                     log_extra=extra.__setitem__)
    refined = reward.grade(rows, extra["refinement"])
    assert extra["refined_correct"] == refined
    assert rewards == [pytest.approx(refinement_reward(v, t, r)) for v, t, r in
                       zip([True, False, None, True], truth, refined, strict=True)]
    assert rewards[1:3] == [-1.0, -1.0]
    # greedy: the same refine prompt gives the same refinement
    assert extra["refinement"] == reward.refine(rows, [responses[0]] * 2 + [responses[1]] * 2, critiques)
    assert logged["critique/acc_refine"] == sum(refined) / 4
    with pytest.raises(ValueError, match="unknown Stage-II reward 'nope'"):
        RefinementReward(engine, grader, kind="nope")
