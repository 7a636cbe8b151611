"""One annotation work unit: the settings, a group's seed, and the work on one group of problems.

It is the part of annotation that both a single process (:mod:`stepjudge.annotate.pipeline`) and a
Ray worker (:mod:`stepjudge.annotate.distributed`) run, so each imports it and neither the other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import ConfigDict, Field

from stepjudge.annotate.labels import all_labels
from stepjudge.data.records import Problem
from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.grading import Grader
from stepjudge.tasks import get_task
from stepjudge.tasks.config import ProblemSetConfig

__all__ = ["RESUME_KEYS", "AnnotateConfig", "annotate_group", "annotation_key", "flatten", "group_seed",
           "load_annotation_problems"]


class AnnotateConfig(ProblemSetConfig):
    """Every knob of ``stepjudge annotate`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field("smollm2-135m", description="the model whose solutions are annotated")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="the policy's engine (its model is `policy`)")
    samples_per_problem: int = Field(4, ge=1, description="K solutions sampled per problem")
    sample_temperature: float = Field(1.0, ge=0, description="sampling temperature of the K solutions")
    sample_max_tokens: int = Field(128, ge=1, description="tokens per sampled solution")
    prefilter: bool = Field(False, description="drop problems whose K samples are all right or all wrong")
    rollouts: int = Field(16, ge=1, description="M continuations per chunk prefix (paper: 16)")
    rollout_temperature: float = Field(1.0, ge=0, description="sampling temperature of the rollouts (paper: 1.0)")
    rollout_max_tokens: int = Field(128, ge=1, description="tokens per rollout continuation")
    gamma: float = Field(0.7, description="Rel-Ratio threshold")
    alpha: float = Field(0.8, description="Rel-Effective weight")
    best_of_n: int = Field(4, ge=1, description="Rel-Effective's n (best-of-n policy)")
    group_size: int = Field(8, ge=1, description="problems per work unit (batched together, one output line)")
    seed: int = Field(0, description="sampling seed; each group derives its own from it")
    num_shards: int = Field(1, ge=1, description="groups are dealt to shards round-robin")
    shard: int | None = Field(None, ge=0, description="process only this shard (None: all, in this process)")
    ray: bool = Field(False, description="spread shards over a Ray cluster, one engine per worker")
    ray_address: str | None = Field(None, description="Ray cluster address (None: start a local one)")
    ray_workers: int = Field(2, ge=1, description="Ray actors, each with its own engine")
    ray_max_retries: int = Field(3, ge=0, description="times Ray restarts a dead worker (killed, out of memory, "
                                                      "node lost) and re-runs its group")
    worker_base_urls: list[str] = Field(default_factory=list,
                                        description="with ray + engine.kind=openai: one server URL per worker")
    out: str = Field("runs/annotate", description="run folder (resumable)")


# Settings that change the records: resuming a folder with other values is refused.
RESUME_KEYS = ("problems", "arith", "limit", "policy", "prompt_style", "samples_per_problem",
                "sample_temperature", "sample_max_tokens", "prefilter", "rollouts", "rollout_temperature",
                "rollout_max_tokens", "gamma", "alpha", "best_of_n", "group_size", "seed", "num_shards")


def annotation_key(cfg: AnnotateConfig) -> str:
    """Content address of an annotation: a hash of exactly the settings that change its records
    (:data:`RESUME_KEYS`), so later runs can reuse a cached annotation; the run folder, thread count or
    engine batch size never force a re-run, any record-changing setting does."""
    import hashlib
    import json

    dumped = cfg.model_dump(mode="json")
    blob = json.dumps({k: dumped[k] for k in RESUME_KEYS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_annotation_problems(cfg: AnnotateConfig) -> list[Problem]:
    """The configured problems, through their task (each needs a reference answer)."""
    return get_task(cfg.problems).load(cfg.arith, limit=cfg.limit, data_root=cfg.data_root)


def group_seed(seed: int, group: int) -> int:
    return (seed * 1_000_003 + group * 7919) % (2**31 - 1)


def annotate_group(problems: Sequence[Problem], engine: Engine, grader: Grader, cfg: AnnotateConfig,
                   group: int) -> dict:
    """Sample, chunk, roll out, grade and label one group of problems; returns its output line."""
    from stepjudge.segment.chunks import ChunkFormatError, parse_chunks, prefix_text

    t0 = time.perf_counter()
    seed = group_seed(cfg.seed, group)
    # A group must compute the same numbers whichever worker runs it and whatever ran before, so no KV
    # is carried in from earlier groups (reuse inside the group, where it matters, is unaffected).
    engine.clear_prefix_cache()
    task = get_task(cfg.problems)
    bases = [task.solver_prompt(p, cfg.prompt_style, engine) for p in problems]
    samples = engine.generate(bases, SamplingParams(
        n=cfg.samples_per_problem, temperature=cfg.sample_temperature, max_tokens=cfg.sample_max_tokens,
        stop=cfg.stop, seed=seed))
    sample_tokens = sum(c.num_tokens for r in samples for c in r.completions)
    grades = task.grade(grader, [(c.text, p) for p, r in zip(problems, samples, strict=True)
                                 for c in r.completions])

    out_problems: list[dict] = []
    jobs: list[tuple[int, int, int]] = []  # (problem idx, solution idx, prefix length) per rollout prompt
    prompts: list[str] = []
    k = cfg.samples_per_problem
    for pi, (p, res) in enumerate(zip(problems, samples, strict=True)):
        g = grades[pi * k:(pi + 1) * k]
        n_right = sum(x.correct for x in g)
        entry = {"problem_id": p.id, "problem": p.problem, "answer": p.answer, "pass_rate": n_right / k,
                 "status": "annotated", "solutions": []}
        if cfg.prefilter and n_right in (0, k):
            entry["status"] = "filtered: all correct" if n_right else "filtered: all wrong"
            out_problems.append(entry)
            continue
        for si, (c, grade) in enumerate(zip(res.completions, g, strict=True)):
            sol = {"sample_index": si, "solution": c.text, "correct": grade.correct, "grade": grade.status,
                   "solution_tokens": c.num_tokens, "finish_reason": c.finish_reason}
            try:
                parsed = parse_chunks(c.text)
            except ChunkFormatError as e:
                sol.update(status="skipped", reason=f"chunk format: {e}")
                entry["solutions"].append(sol)
                continue
            sol.update(status="annotated", chunks=parsed.chunks, answer_text=parsed.answer_text)
            entry["solutions"].append(sol)
            for i in range(len(parsed.chunks) + 1):
                jobs.append((pi, si, i))
                prompts.append(bases[pi] + prefix_text(parsed.chunks, i))
        out_problems.append(entry)

    rollout_tokens = 0
    if prompts:
        results = engine.generate(prompts, SamplingParams(
            n=cfg.rollouts, temperature=cfg.rollout_temperature, max_tokens=cfg.rollout_max_tokens,
            stop=cfg.stop, seed=seed + 1))
        rollout_tokens = sum(c.num_tokens for r in results for c in r.completions)
        # Grade prefix + continuation: the answer is in the continuation, earlier chunks give context.
        pairs = [(prompt[len(bases[pi]):] + c.text, problems[pi])
                 for (pi, _, _), prompt, r in zip(jobs, prompts, results, strict=True) for c in r.completions]
        rgrades = task.grade(grader, pairs)
        successes: dict[tuple[int, int], list[int]] = {}
        for j, (pi, si, _i) in enumerate(jobs):
            wins = sum(x.correct for x in rgrades[j * cfg.rollouts:(j + 1) * cfg.rollouts])
            successes.setdefault((pi, si), []).append(wins)
        by_problem = {e["problem_id"]: e for e in out_problems}
        for (pi, si), wins in successes.items():
            sol = by_problem[problems[pi].id]["solutions"][si]
            m = cfg.rollouts
            sol["rollout_successes"] = wins  # [from the bare problem, after chunk 1, ..., after chunk H]
            sol["q_init"] = wins[0] / m
            sol["q"] = [w / m for w in wins[1:]]
            sol["rollouts"] = m * len(wins)
            sol["labels"] = all_labels(sol["q"], q_init=sol["q_init"], gamma=cfg.gamma, alpha=cfg.alpha,
                                       n=cfg.best_of_n)
    for p, entry in zip(problems, out_problems, strict=True):  # exact truth, where the task knows it
        for sol in entry["solutions"]:
            if sol.get("status") == "annotated":
                truth = task.step_truth(p, sol["chunks"])
                if truth is not None:
                    sol["truth"] = {"first_error": truth.first_error, "reason": truth.reason}
    return {"group": group, "problems": out_problems,
            "stats": {"seconds": round(time.perf_counter() - t0, 3), "sample_tokens": sample_tokens,
                      "rollout_tokens": rollout_tokens, "rollouts": len(prompts) * cfg.rollouts,
                      "rollout_prompts": len(prompts)}}


def flatten(group_lines: Sequence[dict], cfg: AnnotateConfig) -> list[dict]:
    """Group lines -> one record per solution, in problem order (the published annotations format)."""
    meta = {"policy": cfg.policy, "prompt_style": cfg.prompt_style,
            "sampling": {"temperature": cfg.sample_temperature, "max_tokens": cfg.sample_max_tokens,
                         "samples_per_problem": cfg.samples_per_problem},
            "rollout": {"m": cfg.rollouts, "temperature": cfg.rollout_temperature,
                        "max_tokens": cfg.rollout_max_tokens, "adaptive": False},
            "label_params": {"gamma": cfg.gamma, "alpha": cfg.alpha, "n": cfg.best_of_n}}
    records = []
    for line in sorted(group_lines, key=lambda g: g["group"]):
        for prob in line["problems"]:
            for sol in prob["solutions"]:
                records.append({"problem_id": prob["problem_id"], "problem": prob["problem"],
                                "answer": prob["answer"], "pass_rate": prob["pass_rate"], **sol, **meta})
    return records
