"""arith: deterministic generation, reference solutions and the exact step checker."""

import pytest

from stepjudge.tasks.arith import (
    ArithConfig,
    check_steps,
    fewshot_prompt,
    generate_problems,
    reference_solution,
)


def _problem():
    (p,) = generate_problems(n=1, steps=3, seed=0)
    return p


def test_generation_is_deterministic_and_consistent():
    a = generate_problems(ArithConfig(n=20, steps=3, ops=["add", "subtract"], seed=7))
    b = generate_problems(n=20, steps=3, ops=["add", "subtract"], seed=7)
    assert [p.problem for p in a] == [p.problem for p in b]
    for p in a:
        assert p.problem.count(".") == 4 and int(p.answer) == p.meta["values"][-1] >= 0
    assert generate_problems(n=3, seed=1)[0].id == "arith-s1-0"
    with pytest.raises(ValueError, match="unknown arith ops"):
        generate_problems(n=1, ops=["divide"])


def test_reference_solution_is_all_correct():
    for p in generate_problems(n=30, steps=4, ops=["add", "subtract", "multiply"], seed=3):
        sol = reference_solution(p)
        chunks = [c.split("</chunk>")[0] for c in sol.split("<chunk>")[1:]]
        assert check_steps(p, chunks).first_error == -1
        assert sol.endswith(f"\\boxed{{{p.answer}}}")


def test_check_steps_finds_the_exact_first_error():
    p = _problem()
    v, ops = p.meta["values"], p.meta["ops"]
    sym = {"add": "+", "subtract": "-", "multiply": "*"}
    good = [f"{v[i]} {sym[o]} {b} = {v[i + 1]}" for i, (o, b) in enumerate(ops)]
    assert check_steps(p, good).first_error == -1
    wrong_arith = [good[0], f"{v[1]} {sym[ops[1][0]]} {ops[1][1]} = {v[2] + 10}", good[2]]
    truth = check_steps(p, wrong_arith)
    assert (truth.first_error, truth.reason) == (1, "wrong arithmetic")
    wrong_operand = [f"{v[0] + 1} + {ops[0][1]} = {v[0] + 1 + ops[0][1]}", *good[1:]]
    assert check_steps(p, wrong_operand).first_error == 0
    assert (check_steps(p, good[:2]).first_error, check_steps(p, good[:2]).reason) == (-1, "incomplete")
    # A chunk without computation is neutral; the error index counts it.
    assert check_steps(p, ["Let us add step by step.", good[0], "13 + 3 = 26"]).first_error == 2
    assert check_steps(p, [*good, "1 + 1 = 2"]).reason == "extra operation"


def test_truth_chunk_labels():
    from stepjudge.tasks.arith import StepTruth

    assert StepTruth(1, "x").chunk_labels(4) == [1, 0, None, None]
    assert StepTruth(-1, "ok").chunk_labels(2) == [1, 1]


def test_fewshot_prompt_layout():
    text = fewshot_prompt("Start with 4. Add 3. Add 5.")
    assert text.endswith("\n\nStart with 4. Add 3. Add 5.\n") and text.count("\\boxed{") == 2


def test_parse_problem_reads_back_every_generated_problem():
    from stepjudge.tasks.arith import parse_problem

    for p in generate_problems(ArithConfig(n=30, steps=3, ops=["add", "subtract", "multiply"], seed=3)):
        assert parse_problem(p.problem) == (p.meta["ops"], p.meta["values"])
    assert parse_problem("Natalia sold 48 clips in April.") is None


def test_reference_check_writes_the_expected_step_from_the_problem():
    from stepjudge.tasks import get_task
    from stepjudge.tasks.arith import reference_check

    problem = "Start with 3. Add 1. Add 9."
    assert reference_check(problem, [], "3 + 1 = 4") == "Expected: 3 + 1 = 4.\nThe step says: 3 + 1 = 4.\nMatch: yes."
    # a wrong operand carried over from a wrong first step shows against the problem's own running value
    assert reference_check(problem, ["3 + 2 = 5"], "<chunk>5 + 9 = 14</chunk>") == (
        "Expected: 3 + 1 = 4, 4 + 9 = 13.\nThe step says: 5 + 9 = 14.\nMatch: no.")
    # two claims in one chunk are checked against two operations
    assert reference_check(problem, [], "3 + 1 = 4 and 4 + 9 = 13") == (
        "Expected: 3 + 1 = 4, 4 + 9 = 13.\nThe step says: 3 + 1 = 4, 4 + 9 = 13.\nMatch: yes.")
    assert reference_check(problem, ["3 + 1 = 4", "4 + 9 = 13"], "13 + 1 = 14") == (
        "Expected: no calculation is left.\nThe step says: 13 + 1 = 14.\nMatch: no.")
    # the answer segment is checked against the whole calculation: a premature answer does not match
    assert reference_check(problem, ["3 + 1 = 4"], "\\boxed{4}") == (
        "Expected: 3 + 1 = 4, 4 + 9 = 13, answer 13.\nThe step says: answer 4.\nMatch: no.")
    assert reference_check(problem, ["3 + 1 = 4", "4 + 9 = 13"], "\\boxed{13}") == (
        "Expected: 3 + 1 = 4, 4 + 9 = 13, answer 13.\nThe step says: answer 13.\nMatch: yes.")
    assert reference_check(problem, ["3 + 1 = 4"], "4 + 9 = 13\n\\boxed{13}") == (
        "Expected: 3 + 1 = 4, 4 + 9 = 13, answer 13.\nThe step says: 4 + 9 = 13, answer 13.\nMatch: yes.")
    assert reference_check(problem, ["3 + 1 = 4"], "4 + 9 = 12\n\\boxed{13}").endswith("Match: no.")
    assert reference_check(problem, [], "So we add them.") is None          # nothing to check
    assert reference_check("What is 2 + 2?", [], "2 + 2 = 4") is None       # not an arith problem
    assert get_task("arith").reference_check(problem, [], "3 + 1 = 4") == reference_check(problem, [], "3 + 1 = 4")
    assert get_task("gsm8k").reference_check(problem, [], "3 + 1 = 4") is None
