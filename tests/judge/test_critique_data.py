"""`critique-data`: the actor pool, critiques from exact step truth, teacher critiques with the refinement
filter, actor SFT rows and critic RL rows, on the tiny random model."""

import json

import pytest

from stepjudge.judge.critique import (
    REFINE_PREFILL,
    SOLVE_PREFILL,
    critic_messages,
    parse_final_verdict,
    parse_step_verdicts,
)
from stepjudge.judge.critique_data import CritiqueDataConfig, build_critique_data, truth_critique
from stepjudge.tasks import get_task
from stepjudge.tasks.arith import OPS, generate_problems
from stepjudge.train.core import read_prompt_completion_rows
from stepjudge.train.critic import load_critic_rows
from stepjudge.utils.io import read_jsonl


def test_arith_worked_steps_and_truth_critiques_are_exact():
    task = get_task("arith")
    p = generate_problems(n=1, steps=2, seed=0)[0]
    v, (op1, b1), (op2, b2) = p.meta["values"], *p.meta["ops"]
    steps = task.worked_steps(p)
    assert steps == [f"{v[0]} {OPS[op1][1]} {b1} = {v[1]}.", f"{v[1]} {OPS[op2][1]} {b2} = {v[2]}."]

    right = "\n".join([*steps, f"The answer is {p.answer}."])
    text = truth_critique(task, p, right, True)
    assert [s.correct for s in parse_step_verdicts(text)] == [True, True, True]
    assert [s.sentence for s in parse_step_verdicts(text)] == [*steps, f"The answer is {p.answer}."]
    assert parse_final_verdict(text) is True

    bad_value = v[1] + 1
    wrong = f"{steps[0][:-len(f'{v[1]}.')]}{bad_value}.\nThe answer is {bad_value}."
    text = truth_critique(task, p, wrong, False)
    blocks = parse_step_verdicts(text)
    assert [(b.correct, b.explanation) for b in blocks] == [
        (False, "This step is wrong (wrong arithmetic); the steps after it build on this mistake.")]
    assert parse_final_verdict(text) is False
    assert text.endswith("Explanation: The final answer is wrong: the solution goes wrong at step 1.")

    short = f"{steps[0]}\nThe answer is {v[1]}."  # right so far, stops early
    text = truth_critique(task, p, short, False)
    assert [b.correct for b in parse_step_verdicts(text)] == [True, True]
    assert text.endswith("(incomplete).")
    assert truth_critique(get_task("gsm8k"), p, right, True) is None  # no step truth, no critique


def _cfg(tmp_path, **kw):
    return CritiqueDataConfig(**{"out": str(tmp_path / "cd"), "arith": {"n": 5, "steps": 2, "seed": 1},
                                 "actor": {"model": "tiny-random"}, "samples": 2, "max_tokens": 6,
                                 "heldout_fraction": 0.4, **kw})


def test_build_writes_every_set_and_keeps_heldout_questions_out_of_training(tmp_path):
    stats = build_critique_data(_cfg(tmp_path, teacher={"model": "tiny-random"}, critique_max_tokens=6,
                                     refine_max_tokens=6))
    out = tmp_path / "cd"
    pool = read_jsonl(out / "pool.jsonl")
    assert len(pool) == 5 and all(len(r["responses"]) == 2 for r in pool)
    heldout = {r["problem"]["id"] for r in pool if r["split"] == "heldout"}
    assert len(heldout) == 2 and stats["heldout_questions"] == 2
    rl = load_critic_rows(str(out / "rl_rows.jsonl"))
    assert len(rl) == stats["responses"] == 6
    assert {r["problem_id"] for r in read_jsonl(out / "rl_rows.jsonl")}.isdisjoint(heldout)
    assert len(read_jsonl(out / "heldout_rows.jsonl")) == 4
    first = next(r for r in pool if r["split"] == "train")
    row = read_jsonl(out / "rl_rows.jsonl")[0]
    assert row["prompt"] == critic_messages(first["problem"]["problem"], first["responses"][0]["text"])
    assert row["truth"] is first["responses"][0]["correct"] and json.loads(row["problem_json"]) == first["problem"]

    critic_sft = read_prompt_completion_rows(out / "critic_sft.jsonl", "chat")
    assert stats["truth_critiques"] == 6 and stats["teacher_critiques"] == 6
    assert len(critic_sft) == 6 + stats["teacher_kept"]
    teacher = read_jsonl(out / "teacher.jsonl")
    assert all(c["kept"] == (c["refined_correct"] and c["verdict"] == bool(
        pool_by_id(pool)[t["problem_id"]]["responses"][t["response_index"]]["correct"])) for t in teacher
        for c in t["critiques"])

    actor = read_jsonl(out / "actor_sft.jsonl")
    solve = [r for r in actor if r["kind"] == "solve"]
    refine = [r for r in actor if r["kind"] == "refine"]
    assert len(solve) == stats["actor_solve_rows"] >= 3
    assert len(refine) == stats["actor_refine_rows"] == 6 + stats["teacher_kept"]
    assert {r["problem_id"] for r in actor}.isdisjoint(heldout)
    assert all(r["completion"][0]["content"].startswith(SOLVE_PREFILL) for r in solve)
    assert all(r["completion"][0]["content"].startswith(REFINE_PREFILL) and len(r["prompt"]) == 3 for r in refine)
    p0 = first["problem"]
    assert solve[0]["completion"][0]["content"].endswith(f"The answer is {p0['answer']}.")  # the worked solution


def pool_by_id(pool):
    return {r["problem"]["id"]: r for r in pool}


def test_the_pool_resumes_instead_of_being_sampled_again(tmp_path):
    cfg = _cfg(tmp_path, arith={"n": 3, "steps": 2, "seed": 2}, heldout_fraction=0.0)
    build_critique_data(cfg)
    pool_file = tmp_path / "cd" / "pool.jsonl"
    lines = pool_file.read_text().splitlines()
    pool_file.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # a crash mid-write of the third question
    stats = build_critique_data(cfg)
    again = pool_file.read_text().splitlines()
    assert again[:2] == lines[:2] and len(again) == 3 and stats["questions"] == 3


@pytest.mark.parametrize("bad", [{"samples": 0}, {"heldout_fraction": 1.0}, {"solve_sft": "all"}, {"nope": 1}])
def test_bad_settings_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        _cfg(tmp_path, **bad)
