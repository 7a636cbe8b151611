"""One annotation work unit: the settings, a group's seed, and the work on one group of problems.

It is the part of annotation that both a single process (:mod:`stepjudge.annotate.pipeline`) and a
Ray worker (:mod:`stepjudge.annotate.distributed`) run, so each imports it and neither the other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.annotate.labels import Scheme, all_labels, prefixes_needing_rollouts
from stepjudge.data.records import Problem
from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.grading import Grader
from stepjudge.tasks import get_task
from stepjudge.tasks.config import ProblemSetConfig

__all__ = ["RESUME_KEYS", "AdaptiveRollouts", "AnnotateConfig", "annotate_group", "annotation_key", "flatten", "group_seed",
           "load_annotation_problems"]


class AdaptiveRollouts(BaseModel):
    """Sequential stopping of the Monte-Carlo rollouts: each prefix draws its rollouts in rounds and stops
    once the labels it decides under ``scheme`` cannot change whatever its remaining rollouts give
    (:func:`stepjudge.annotate.labels.prefixes_needing_rollouts`). Those labels are then exactly the ones
    some completion of the M rollouts gives; the other schemes' labels use the same, shorter Q̂ estimates."""

    model_config = ConfigDict(extra="forbid")

    scheme: Scheme = Field("rel-effective", description="the label scheme whose labels decide when a prefix stops")
    round: int = Field(2, ge=1, description="rollouts per still-undecided prefix per round")
    first_round: int | None = Field(None, ge=1, description="rollouts of every prefix in the first round (None: "
                                                             "round); = rollouts gives the fixed-M annotation")
    stop_after_negative: bool = Field(False, description="skip a solution's chunks after its first chunk that is "
                                                         "certainly Negative: they are cut from the record "
                                                         "(for judge data that ends at the first error)")


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
    adaptive: AdaptiveRollouts | None = Field(
        None, description="None: all M rollouts for every prefix (the paper); set (YAML adaptive: {}, or any "
                          "--adaptive.* flag) to stop a prefix's rollouts once its labels are certain")
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
                "rollout_max_tokens", "gamma", "alpha", "best_of_n", "group_size", "seed", "num_shards", "adaptive")


def annotation_key(cfg: AnnotateConfig) -> str:
    """Content address of an annotation: a hash of exactly the settings that change its records
    (:data:`RESUME_KEYS`), so later runs can reuse a cached annotation; the run folder, thread count or
    engine batch size never force a re-run, any record-changing setting does."""
    import hashlib
    import json

    dumped = cfg.model_dump(mode="json")
    # a fixed-M annotation keeps the key it had before adaptive rollouts existed
    blob = json.dumps({k: dumped[k] for k in RESUME_KEYS if k != "adaptive" or dumped[k] is not None},
                      sort_keys=True)
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

    by_problem = {e["problem_id"]: e for e in out_problems}
    if cfg.adaptive is None:
        rollout_tokens, rollouts = _fixed_rollouts(jobs, prompts, bases, problems, by_problem, engine, grader,
                                                   task, cfg, seed)
    else:
        rollout_tokens, rollouts = _adaptive_rollouts(jobs, prompts, bases, problems, by_problem, engine, grader,
                                                      task, cfg, seed)
    for p, entry in zip(problems, out_problems, strict=True):  # exact truth, where the task knows it
        for sol in entry["solutions"]:
            if sol.get("status") == "annotated":
                truth = task.step_truth(p, sol["chunks"])
                if truth is not None:
                    sol["truth"] = {"first_error": truth.first_error, "reason": truth.reason}
    return {"group": group, "problems": out_problems,
            "stats": {"seconds": round(time.perf_counter() - t0, 3), "sample_tokens": sample_tokens,
                      "rollout_tokens": rollout_tokens, "rollouts": rollouts,
                      "rollout_prompts": len(prompts)}}


def _fixed_rollouts(jobs, prompts, bases, problems, by_problem, engine, grader, task, cfg, seed) -> tuple[int, int]:
    """All M rollouts of every prefix in one engine call (the paper's annotation); fills each solution's
    Q̂ and labels; returns (rollout tokens, rollouts)."""
    if not prompts:
        return 0, 0
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
    for (pi, si), wins in successes.items():
        sol = by_problem[problems[pi].id]["solutions"][si]
        m = cfg.rollouts
        sol["rollout_successes"] = wins  # [from the bare problem, after chunk 1, ..., after chunk H]
        sol["q_init"] = wins[0] / m
        sol["q"] = [w / m for w in wins[1:]]
        sol["rollouts"] = m * len(wins)
        sol["labels"] = all_labels(sol["q"], q_init=sol["q_init"], gamma=cfg.gamma, alpha=cfg.alpha,
                                   n=cfg.best_of_n)
    return rollout_tokens, len(prompts) * cfg.rollouts


def _adaptive_rollouts(jobs, prompts, bases, problems, by_problem, engine, grader, task, cfg,
                       seed) -> tuple[int, int]:
    """Rollouts in rounds (:class:`AdaptiveRollouts`): round r samples every still-open prefix with seed
    ``seed + 1 + r`` (round 0 is the fixed annotation's call when ``first_round`` = M), then closes the
    prefixes whose labels are decided; returns (rollout tokens, rollouts)."""
    ad, m = cfg.adaptive, cfg.rollouts
    wins, drawn, closed = [0] * len(jobs), [0] * len(jobs), [False] * len(jobs)
    per_solution: dict[tuple[int, int], list[int]] = {}
    for j, (pi, si, _i) in enumerate(jobs):
        per_solution.setdefault((pi, si), []).append(j)
    rollout_tokens = rollouts = 0
    r = 0
    while True:
        live = [j for j in range(len(jobs)) if not closed[j]]
        if not live:
            break
        assert len({drawn[j] for j in live}) == 1  # a prefix stays open only by taking every round
        size = min((ad.first_round or ad.round) if r == 0 else ad.round, m - drawn[live[0]])
        results = engine.generate([prompts[j] for j in live], SamplingParams(
            n=size, temperature=cfg.rollout_temperature, max_tokens=cfg.rollout_max_tokens, stop=cfg.stop,
            seed=seed + 1 + r))
        rollout_tokens += sum(c.num_tokens for res in results for c in res.completions)
        rollouts += size * len(live)
        pairs = [(prompts[j][len(bases[jobs[j][0]]):] + c.text, problems[jobs[j][0]])
                 for j, res in zip(live, results, strict=True) for c in res.completions]
        rgrades = task.grade(grader, pairs)
        for k, j in enumerate(live):
            wins[j] += sum(x.correct for x in rgrades[k * size:(k + 1) * size])
            drawn[j] += size
        for idx in per_solution.values():
            need = prefixes_needing_rollouts([wins[j] for j in idx], [drawn[j] for j in idx], m,
                                             closed=[closed[j] for j in idx], scheme=ad.scheme, gamma=cfg.gamma,
                                             alpha=cfg.alpha, n=cfg.best_of_n,
                                             stop_after_negative=ad.stop_after_negative)
            for j, nd in zip(idx, need, strict=True):
                closed[j] = closed[j] or not nd
        r += 1
    for (pi, si), idx in per_solution.items():
        sol = by_problem[problems[pi].id]["solutions"][si]
        w, d = [wins[j] for j in idx], [drawn[j] for j in idx]
        if ad.stop_after_negative:
            keep = _labelled_prefixes(w, d, cfg)
            if keep < len(idx):  # chunks after the first certain Negative: no labels, cut from the record
                sol["chunks_cut"] = sol["chunks"][keep - 1:]
                sol["chunks"], sol["answer_text"] = sol["chunks"][:keep - 1], None
                w, d = w[:keep], d[:keep]
        sol["rollout_successes"] = w  # [from the bare problem, after chunk 1, ..., after chunk H]
        sol["rollouts_used"] = d
        sol["q_init"] = w[0] / d[0]
        sol["q"] = [a / b for a, b in zip(w[1:], d[1:], strict=True)]
        sol["rollouts"] = sum(d)
        sol["labels"] = all_labels(sol["q"], q_init=sol["q_init"], gamma=cfg.gamma, alpha=cfg.alpha,
                                   n=cfg.best_of_n)
    return rollout_tokens, rollouts


def _labelled_prefixes(wins: list[int], drawn: list[int], cfg: AnnotateConfig) -> int:
    """Prefixes kept when the chunks after the first Negative one (under the stopping scheme) are cut:
    the bare problem and the prefixes up to that chunk's. Its label and those before it were certain when
    their prefixes stopped, so reading them from the final Q̂ finds the same chunk the stopping rule did."""
    from stepjudge.annotate.labels import assign_labels, first_negative

    q = [w / d for w, d in zip(wins, drawn, strict=True)]
    labels = assign_labels(q[1:], q_init=q[0], scheme=cfg.adaptive.scheme, gamma=cfg.gamma, alpha=cfg.alpha,
                           n=cfg.best_of_n)
    first = first_negative(labels)
    return len(wins) if first < 0 else first + 2


def flatten(group_lines: Sequence[dict], cfg: AnnotateConfig) -> list[dict]:
    """Group lines -> one record per solution, in problem order (the published annotations format)."""
    meta = {"policy": cfg.policy, "prompt_style": cfg.prompt_style,
            "sampling": {"temperature": cfg.sample_temperature, "max_tokens": cfg.sample_max_tokens,
                         "samples_per_problem": cfg.samples_per_problem},
            "rollout": {"m": cfg.rollouts, "temperature": cfg.rollout_temperature,
                        "max_tokens": cfg.rollout_max_tokens,
                        "adaptive": False if cfg.adaptive is None else cfg.adaptive.model_dump(mode="json")},
            "label_params": {"gamma": cfg.gamma, "alpha": cfg.alpha, "n": cfg.best_of_n}}
    records = []
    for line in sorted(group_lines, key=lambda g: g["group"]):
        for prob in line["problems"]:
            for sol in prob["solutions"]:
                records.append({"problem_id": prob["problem_id"], "problem": prob["problem"],
                                "answer": prob["answer"], "pass_rate": prob["pass_rate"], **sol, **meta})
    return records
