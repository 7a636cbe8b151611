"""Critique-RL's formats: the prompts every stage shows the actor and the critic, and the verdict parsers."""

import pytest

from stepjudge.judge.critique import (
    REFINE_PREFILL,
    SOLVE_PREFILL,
    StepVerdict,
    actor_solution,
    critic_messages,
    format_critique,
    parse_final_verdict,
    parse_step_verdicts,
    refine_messages,
    solution_steps,
    solve_messages,
    trim_critique,
)

CRITIQUE = """Let me check.
Step sentence: 4 + 3 = 7.
Correctness of the step: Correct
Explanation: 4 plus 3 is 7.

Step sentence: 7 - 5 = 3.
Correctness of the step: Wrong
Explanation: 7 minus 5 is 2, not 3.

Correctness of the final answer: Wrong
Explanation: the answer should be 2."""


@pytest.mark.parametrize("text, expected", [
    ("Correctness of the final answer: Correct", True),
    ("Correctness of the final answer: Wrong", False),
    ("correctness of the final answer:wrong", False),
    ("CORRECTNESS OF THE FINAL ANSWER:   [ Correct ]  ", True),
    ("Correctness of the final answer: [Wrong]\nExplanation: x", False),
    ("**Correctness of the final answer:** **Correct**", True),
    ("Correctness of the final answer: Incorrect", False),
    ("Correctness  of the final\nanswer : (correct)", True),
    ("Correctness of the final answer: [Correct/Wrong]", None),  # the template echoed, no verdict
    ("Correctness of the final answer: unclear", None),
    ("Correctness of the step: Wrong", None),  # a step verdict is not the final one
    ("The final answer is correct.", None),
    ("", None),
    ("Correctness of the final answer: Correct\n...\nCorrectness of the final answer: Wrong", False),  # last counts
    ("Correctness of the final answer: Wrong\nCorrectness of the final answer: [Correct/Wrong]", False),
    (CRITIQUE, False),
])
def test_parse_final_verdict(text, expected):
    assert parse_final_verdict(text) is expected


def test_parse_step_verdicts_reads_each_block_up_to_the_final_verdict():
    assert parse_step_verdicts(CRITIQUE) == [
        StepVerdict("4 + 3 = 7.", True, "4 plus 3 is 7."),
        StepVerdict("7 - 5 = 3.", False, "7 minus 5 is 2, not 3."),
    ]
    assert parse_step_verdicts("Step sentence: a\ncorrectness of the step: [wrong]\nexplanation: b") == [
        StepVerdict("a", False, "b")]
    assert parse_step_verdicts("Step sentence: a\nExplanation: no verdict given") == [
        StepVerdict("a", None, "no verdict given")]
    assert parse_step_verdicts("Correctness of the final answer: Correct") == []


def test_format_critique_reads_back_exactly():
    steps = [StepVerdict("2 + 5 = 7.", True, "Right."), StepVerdict("7 + 1 = 9.", False, "7 + 1 is 8.")]
    text = format_critique(steps, False, "The answer should be 8.")
    assert text == ("Step sentence: 2 + 5 = 7.\nCorrectness of the step: Correct\nExplanation: Right.\n\n"
                    "Step sentence: 7 + 1 = 9.\nCorrectness of the step: Wrong\nExplanation: 7 + 1 is 8.\n\n"
                    "Correctness of the final answer: Wrong\nExplanation: The answer should be 8.")
    assert parse_step_verdicts(text) == steps and parse_final_verdict(text) is False


def test_solution_steps_are_sentences_line_by_line():
    assert solution_steps("Start with 4. 4 + 3 = 7.\n\n7 - 5 = 2!  The answer is 2.") == [
        "Start with 4.", "4 + 3 = 7.", "7 - 5 = 2!", "The answer is 2."]
    assert solution_steps("Half of 7 is 3.5 so x = 3.5.") == ["Half of 7 is 3.5 so x = 3.5."]
    assert solution_steps("  \n") == []
    assert solution_steps("1. Add 5: 7 + 5 = 12.\n2. 12 + 7 = 19. So 19.\n3.") == [
        "1. Add 5: 7 + 5 = 12.", "2. 12 + 7 = 19.", "So 19.", "3."]
    assert actor_solution(["4 + 3 = 7.", "7 - 5 = 2."], "2") == "4 + 3 = 7.\n7 - 5 = 2.\nThe answer is 2."


def test_prompts_have_the_released_structure():
    solve = solve_messages("Start with 4. Add 3.")
    assert [m["role"] for m in solve] == ["user"]
    assert solve[0]["content"].startswith("Start with 4. Add 3.\n\n")
    assert solve[0]["content"].endswith('"The answer is [your answer]."')
    assert SOLVE_PREFILL == "Let's break it down step by step:\n\n"
    assert REFINE_PREFILL == "Let's break it down step by step, strictly following the critique:\n\n"

    critic = critic_messages("Start with 4. Add 3.", SOLVE_PREFILL + "4 + 3 = 7.\nThe answer is 7.")
    text = critic[0]["content"]
    assert [m["role"] for m in critic] == ["user"]
    assert text.endswith("Question: Start with 4. Add 3.\n\nSolution: 4 + 3 = 7.\nThe answer is 7.")  # pre-fill cut
    for field in ("Step sentence:", "Correctness of the step: [Correct/Wrong]", "Explanation:",
                  "Correctness of the final answer: [Correct/Wrong]"):
        assert field in text
    assert parse_final_verdict(text) is None  # the prompt itself states no verdict

    refine = refine_messages("Start with 4. Add 3.", "4 + 3 = 8.\nThe answer is 8.", CRITIQUE)
    assert [m["role"] for m in refine] == ["user", "assistant", "user"]
    assert refine[0] == solve[0]
    assert refine[1]["content"] == SOLVE_PREFILL + "4 + 3 = 8.\nThe answer is 8."
    assert refine[2]["content"].endswith("Critique:\n" + CRITIQUE[CRITIQUE.index("Step sentence:"):])
    assert trim_critique("no blocks at all ") == "no blocks at all"
