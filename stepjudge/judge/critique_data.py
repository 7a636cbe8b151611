"""``stepjudge critique-data``: every data set Critique-RL needs, from one problem set and an actor (§3(a), §3(d)).

1. **Actor response pool** (``pool.jsonl``): ``samples`` responses per question at T = 0.7 from the actor,
   graded by the task; correct and incorrect are both kept (the RL prompts of the released code). One fsynced
   line per question, so an interrupted run resumes where it stopped. Questions are split by id into train and
   held-out (``heldout_fraction``); nothing of a held-out question reaches a training file.
2. **Critic SFT data** (``critic_sft.jsonl``): on tasks with exact step truth (arith) a critique written from
   the truth for every train response (:func:`truth_critique`: the CPU stand-in for the paper's teacher
   critiques); with a ``teacher`` engine, the teacher's critiques, each kept only when the actor's greedy
   refinement with it ends correct (the paper's filter) and, by default, its final verdict is right.
   Teacher results are logged per response in ``teacher.jsonl`` (resumable too).
3. **Actor SFT data** (``actor_sft.jsonl``): solve rows (the task's worked solution and/or correct pool
   responses) and refine rows (a response + a critique -> a correct solution; a correct response + a
   "Correct" critique -> itself), so the actor learns to solve and to refine (§3(a)1).
4. **Critic RL rows** (``rl_rows.jsonl``, ``heldout_rows.jsonl``) for ``stepjudge train critic`` and
   ``stepjudge refine``: critic prompt, ``truth``, ``response``, ``problem_json``.

SFT files are chat prompt-completion rows (train them with ``stepjudge train segment --data <file>``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.data.records import Problem
from stepjudge.engines.factory import EngineConfig
from stepjudge.judge.critique import (
    REFINE_PREFILL,
    SOLVE_PREFILL,
    StepVerdict,
    actor_solution,
    critic_messages,
    format_critique,
    parse_final_verdict,
    refine_messages,
    solution_steps,
    solve_messages,
)
from stepjudge.tasks.arith import ArithConfig
from stepjudge.tasks.base import DEFAULT_SOURCE, Task

log = logging.getLogger(__name__)

__all__ = ["CritiqueDataConfig", "build_critique_data", "critic_rl_row", "truth_critique"]


class CritiqueDataConfig(BaseModel):
    """Every knob of ``stepjudge critique-data``."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field(description="output folder: pool.jsonl, rl_rows.jsonl, heldout_rows.jsonl, critic_sft.jsonl, "
                                 "actor_sft.jsonl, teacher.jsonl, stats.json")
    problems: str = Field(DEFAULT_SOURCE, description="arith | gsm8k[:split] | math500 | math-test | path | hub id")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=64, steps=2),
                               description="the generated arith problems (used when problems is arith)")
    limit: int | None = Field(None, ge=1, description="first N problems")
    data_root: str | None = Field(None, description="folder with the bundled datasets; None: $STEPJUDGE_DATA, "
                                                    "else shared/data found upwards")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    actor: EngineConfig = Field(default_factory=EngineConfig, description="the actor that writes the response pool "
                                                                          "and the teacher filter's refinements")
    samples: int = Field(10, ge=1, description="actor responses per question (paper 10)")
    temperature: float = Field(0.7, ge=0, description="actor sampling temperature of the pool (paper 0.7)")
    max_tokens: int = Field(512, ge=1, description="tokens per actor response")
    batch_questions: int = Field(8, ge=1, description="questions per engine call (and per resume step)")
    seed: int = Field(0, description="seed of the sampling and of the train/held-out split")
    heldout_fraction: float = Field(0.2, ge=0, lt=1, description="share of questions held out (by id) for "
                                                                 "evaluation; none of their rows is trained on")
    truth_critiques: bool = Field(True, description="write critiques from exact step truth where the task has it")
    teacher: EngineConfig | None = Field(None, description="teacher critic engine (any kind); None = no teacher "
                                                           "critiques")
    teacher_critiques: int = Field(1, ge=1, description="teacher critiques sampled per train response")
    teacher_temperature: float = Field(0.7, ge=0, description="teacher sampling temperature")
    critique_max_tokens: int = Field(1536, ge=1, description="tokens per teacher critique (paper 1536)")
    teacher_require_verdict: bool = Field(True, description="keep a teacher critique only if its final verdict is "
                                                            "also right (besides the refinement ending correct)")
    refine_max_tokens: int = Field(1024, ge=1, description="tokens of each greedy refinement (teacher filter)")
    solve_sft: Literal["reference", "pool", "both"] = Field(
        "both", description="actor solve targets: the task's worked solution, correct pool responses, or both")
    refine_keep_correct: bool = Field(True, description="also teach the actor to keep a correct response when "
                                                        "the critique says Correct")


def truth_critique(task: Task, problem: Problem, response: str, correct: bool) -> str | None:
    """A critique of ``response`` written from the task's exact step truth; None when the task has none.

    Steps up to the first wrong one are judged (the ones after it build on the mistake); the final-answer
    verdict is the response's graded correctness.
    """
    steps = solution_steps(response)
    truth = task.step_truth(problem, steps)
    if truth is None:
        return None
    blocks = []
    for i, sentence in enumerate(steps):
        wrong = i == truth.first_error
        blocks.append(StepVerdict(sentence, not wrong, f"This step is wrong ({truth.reason}); the steps after it "
                                  "build on this mistake." if wrong else "This step is right: it follows from the "
                                  "question and the steps before it."))
        if wrong:
            break
    if correct:
        final = "The final answer is right: it is the result of correct steps."
    elif truth.first_error >= 0:
        final = f"The final answer is wrong: the solution goes wrong at step {truth.first_error + 1}."
    else:
        final = f"The final answer is wrong: it is not the result of the question's operations ({truth.reason})."
    return format_critique(blocks, correct, final)


def critic_rl_row(problem: Problem, response: str, truth: bool) -> dict[str, Any]:
    """One critic RL row (what ``train critic`` and ``refine`` read)."""
    return {"prompt": critic_messages(problem.problem, response), "truth": truth, "response": response,
            "problem_json": json.dumps(problem.to_dict()), "problem_id": problem.id}


def _chat_row(prompt: list[dict], completion: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}], **extra}


def _pool(cfg: CritiqueDataConfig, task: Task, problems: list[Problem], heldout: set[str], grader: Any) -> list[dict]:
    """The graded response pool, one record per question, resumed from ``pool.jsonl``."""
    from stepjudge.engines.factory import make_engine
    from stepjudge.judge.critique_loop import grade_texts, solve
    from stepjudge.utils.io import JsonlAppender

    with JsonlAppender(Path(cfg.out) / "pool.jsonl") as pool:
        done = {r["problem"]["id"] for r in pool.records}
        todo = [p for p in problems if p.id not in done]
        if todo:
            with make_engine(cfg.actor) as actor:
                for b in range(0, len(todo), cfg.batch_questions):
                    batch = todo[b:b + cfg.batch_questions]
                    texts = solve(actor, batch, n=cfg.samples, temperature=cfg.temperature,
                                  max_tokens=cfg.max_tokens, seed=cfg.seed + len(done) + b)
                    flat = [(p, t) for p, ts in zip(batch, texts, strict=True) for t in ts]
                    grades = iter(grade_texts(grader, [p for p, _ in flat], [t for _, t in flat]))
                    for p, ts in zip(batch, texts, strict=True):
                        pool.append({"problem": p.to_dict(), "split": "heldout" if p.id in heldout else "train",
                                     "responses": [{"text": t, "correct": next(grades)} for t in ts]})
        return list(pool.records)


def _teacher(cfg: CritiqueDataConfig, pool: list[dict], grader: Any) -> list[dict]:
    """Teacher critiques of every train response, each with the actor's refinement and whether it is kept."""
    from stepjudge.engines.factory import make_engine
    from stepjudge.judge.critique_loop import critique, grade_texts, refine
    from stepjudge.utils.io import JsonlAppender

    assert cfg.teacher is not None
    items = [(Problem.from_dict(r["problem"]), k, y) for r in pool if r["split"] == "train"
             for k, y in enumerate(r["responses"])]
    with JsonlAppender(Path(cfg.out) / "teacher.jsonl") as logf:
        done = {(r["problem_id"], r["response_index"]) for r in logf.records}
        todo = [it for it in items if (it[0].id, it[1]) not in done]
        if todo:
            with make_engine(cfg.teacher) as teacher, make_engine(cfg.actor) as actor:
                for b in range(0, len(todo), cfg.batch_questions):
                    batch = todo[b:b + cfg.batch_questions]
                    texts = critique(teacher, [p for p, _, _ in batch], [y["text"] for _, _, y in batch],
                                     n=cfg.teacher_critiques, temperature=cfg.teacher_temperature,
                                     max_tokens=cfg.critique_max_tokens, seed=cfg.seed + b)
                    flat = [(p, y, c) for (p, _, y), cs in zip(batch, texts, strict=True) for c in cs]
                    refined = refine(actor, [p for p, _, _ in flat], [y["text"] for _, y, _ in flat],
                                     [c for _, _, c in flat], max_tokens=cfg.refine_max_tokens, seed=cfg.seed)
                    ok = iter(grade_texts(grader, [p for p, _, _ in flat], refined))
                    refined_it = iter(refined)
                    for (p, k, y), cs in zip(batch, texts, strict=True):
                        entries = []
                        for c in cs:
                            verdict, good = parse_final_verdict(c), next(ok)
                            keep = good and (verdict == y["correct"] or not cfg.teacher_require_verdict)
                            entries.append({"text": c, "verdict": verdict, "refinement": next(refined_it),
                                            "refined_correct": good, "kept": keep})
                        logf.append({"problem_id": p.id, "response_index": k, "critiques": entries})
        return list(logf.records)


def build_critique_data(config: CritiqueDataConfig | dict) -> dict[str, Any]:
    """Build every file of ``config.out`` (see the module doc); returns the counts written to ``stats.json``."""
    from stepjudge.grading import Grader
    from stepjudge.tasks import get_task
    from stepjudge.utils.io import atomic_write_json, write_jsonl_atomic

    cfg = config if isinstance(config, CritiqueDataConfig) else CritiqueDataConfig(**config)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.problems)
    problems = task.load(cfg.arith, limit=cfg.limit, data_root=cfg.data_root)
    ids = sorted(p.id for p in problems)
    random.Random(cfg.seed).shuffle(ids)
    heldout = set(ids[:round(cfg.heldout_fraction * len(ids))])
    with Grader(timeout_s=cfg.grade_timeout_s) as grader:
        pool = _pool(cfg, task, problems, heldout, grader)
        teacher = _teacher(cfg, pool, grader) if cfg.teacher is not None else []
    kept_teacher = {(r["problem_id"], r["response_index"]): [c["text"] for c in r["critiques"] if c["kept"]]
                    for r in teacher}

    rl_rows, heldout_rows, critic_sft, actor_sft = [], [], [], []
    stats = {"questions": len(pool), "heldout_questions": 0, "responses": 0, "correct_responses": 0,
             "truth_critiques": 0, "teacher_critiques": sum(len(r["critiques"]) for r in teacher),
             "teacher_kept": sum(map(len, kept_teacher.values())), "actor_solve_rows": 0, "actor_refine_rows": 0}
    for rec in pool:
        p = Problem.from_dict(rec["problem"])
        responses = rec["responses"]
        if rec["split"] == "heldout":
            stats["heldout_questions"] += 1
            heldout_rows += [critic_rl_row(p, y["text"], y["correct"]) for y in responses]
            continue
        stats["responses"] += len(responses)
        stats["correct_responses"] += sum(y["correct"] for y in responses)
        rl_rows += [critic_rl_row(p, y["text"], y["correct"]) for y in responses]
        worked = task.worked_steps(p)
        reference = actor_solution(worked, p.answer or "") if worked else None
        correct = list(dict.fromkeys(y["text"] for y in responses if y["correct"]))
        targets = ([reference] if reference and cfg.solve_sft != "pool" else []) + (
            correct if cfg.solve_sft != "reference" else [])
        actor_sft += [_chat_row(solve_messages(p.problem), SOLVE_PREFILL + t, problem_id=p.id, kind="solve")
                      for t in targets]
        stats["actor_solve_rows"] += len(targets)
        fix = reference or (correct[0] if correct else None)
        for k, y in enumerate(responses):
            critiques = list(kept_teacher.get((p.id, k), []))
            if cfg.truth_critiques and (c := truth_critique(task, p, y["text"], y["correct"])) is not None:
                critiques.append(c)
                stats["truth_critiques"] += 1
            critic_sft += [_chat_row(critic_messages(p.problem, y["text"]), c, problem_id=p.id) for c in critiques]
            target = y["text"] if y["correct"] else fix
            if target is None or (y["correct"] and not cfg.refine_keep_correct):
                continue
            for c in critiques:
                actor_sft.append(_chat_row(refine_messages(p.problem, y["text"], c), REFINE_PREFILL + target,
                                           problem_id=p.id, kind="refine"))
                stats["actor_refine_rows"] += 1
    for name, rows in (("rl_rows", rl_rows), ("heldout_rows", heldout_rows), ("critic_sft", critic_sft),
                       ("actor_sft", actor_sft)):
        write_jsonl_atomic(out / f"{name}.jsonl", rows)
    atomic_write_json(out / "stats.json", stats)
    return stats
