"""``stepjudge annotate``: problems in, step-labelled chunked solutions out.

For each problem: sample K solutions from the policy, split each into chunks, run M rollouts from every
chunk prefix (and from the bare problem, for Q̂ before chunk 1), grade them, and label each chunk under
all three schemes (:mod:`stepjudge.annotate.labels`). On ``arith`` the true first wrong chunk is added.

Work is cut into **groups** of consecutive problems (``group_size``); a group is processed with one
sampling call and one rollout call to the engine (so all its prefixes and samples are batched, every
prompt's prefill is shared by its M rollouts, and prefixes reuse each other's KV), and is written as one
line of a shard file. That line is the unit of crash safety (a killed run loses at most the groups in
flight and never writes half a group) and of determinism: a group's seed depends only on its index, so
a sharded or Ray run produces the same records as a single process with the same engine settings.

Run folder: ``run.json``, ``shards/shard-IIIII-of-NNNNN.jsonl`` (one line per group), and once every
group is done ``annotations.jsonl`` (one line per solution, in problem order), ``report.md``,
``report.json`` and ``q_trajectories.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.annotate.labels import all_labels
from stepjudge.data.records import Problem
from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.errors import RunFolderError
from stepjudge.tasks.arith import ArithConfig
from stepjudge.utils.io import JsonlAppender, write_jsonl_atomic
from stepjudge.utils.runfolder import check_or_write_run_json

log = logging.getLogger(__name__)


class AnnotateConfig(BaseModel):
    """Every knob of ``stepjudge annotate`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    problems: str = Field("arith", description="arith | gsm8k[:split] | math500 | math-test | path | hub id")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=32, steps=2), description="the generated arith problems (used when problems is arith)")
    limit: int | None = Field(None, ge=1, description="first N problems")
    policy: str = Field("smollm2-135m", description="the model whose solutions are annotated")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="the policy's engine (its model is `policy`)")
    prompt_style: Literal["fewshot", "chat"] = Field(
        "fewshot", description="fewshot: arith worked examples continued as raw text; chat: the StepWiser "
                               "solver prompt (Table 11) through the chat template")
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
    worker_base_urls: list[str] = Field(default_factory=list,
                                        description="with ray + engine.kind=openai: one server URL per worker")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    out: str = Field("runs/annotate", description="run folder (resumable)")

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\n",) if self.prompt_style == "fewshot" else ()


# Settings that change the records: resuming a folder with other values is refused.
_RESUME_KEYS = ("problems", "arith", "limit", "policy", "prompt_style", "samples_per_problem",
                "sample_temperature", "sample_max_tokens", "prefilter", "rollouts", "rollout_temperature",
                "rollout_max_tokens", "gamma", "alpha", "best_of_n", "group_size", "seed", "num_shards")


def load_annotation_problems(cfg: AnnotateConfig) -> list[Problem]:
    from stepjudge.tasks.problems import load_problem_set

    return load_problem_set(cfg.problems, cfg.arith, cfg.limit)


def group_seed(seed: int, group: int) -> int:
    return (seed * 1_000_003 + group * 7919) % (2**31 - 1)


def _base_prompt(engine: Engine, problem: Problem, style: str) -> str:
    """Raw text every sample and rollout of ``problem`` continues (see :func:`policy.prompts.base_prompt`)."""
    from stepjudge.policy.prompts import base_prompt

    return base_prompt(engine, problem, style)


def annotate_group(problems: Sequence[Problem], engine: Engine, grader, cfg: AnnotateConfig,
                   group: int) -> dict:
    """Sample, chunk, roll out, grade and label one group of problems; returns its output line."""
    from stepjudge.segment.chunks import ChunkFormatError, parse_chunks, prefix_text

    t0 = time.perf_counter()
    seed = group_seed(cfg.seed, group)
    # A group must compute the same numbers whichever worker runs it and whatever ran before, so no KV
    # is carried in from earlier groups (reuse inside the group, where it matters, is unaffected).
    prefix_cache = getattr(engine, "prefix_cache", None)
    if prefix_cache is not None:
        prefix_cache.clear()
    bases = [_base_prompt(engine, p, cfg.prompt_style) for p in problems]
    samples = engine.generate(bases, SamplingParams(
        n=cfg.samples_per_problem, temperature=cfg.sample_temperature, max_tokens=cfg.sample_max_tokens,
        stop=cfg.stop, seed=seed))
    sample_tokens = sum(c.num_tokens for r in samples for c in r.completions)
    grades = grader.grade_many([(c.text, p.answer) for p, r in zip(problems, samples, strict=True)
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
        pairs = [(prompt[len(bases[pi]):] + c.text, problems[pi].answer)
                 for (pi, _, _), prompt, r in zip(jobs, prompts, results, strict=True) for c in r.completions]
        rgrades = grader.grade_many(pairs)
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
    if problems and problems[0].source == "arith":
        from stepjudge.tasks.arith import check_steps

        for p, entry in zip(problems, out_problems, strict=True):
            for sol in entry["solutions"]:
                if sol.get("status") == "annotated":
                    truth = check_steps(p, sol["chunks"])
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


class AnnotationRun:
    """A resumable annotation job in one run folder."""

    def __init__(self, config: AnnotateConfig, engine: Engine | None = None, progress: bool = True):
        self.config = config.model_copy(update={"engine": config.engine.model_copy(update={"model": config.policy})})
        self.out = Path(self.config.out)
        self._engine = engine
        self.progress = progress

    def shard_path(self, shard: int) -> Path:
        n = self.config.num_shards
        return self.out / "shards" / f"shard-{shard:05d}-of-{n:05d}.jsonl"

    def groups(self, problems: Sequence[Problem]) -> list[list[Problem]]:
        g = self.config.group_size
        return [list(problems[i:i + g]) for i in range(0, len(problems), g)]

    def _check_run_json(self) -> None:
        check_or_write_run_json(self.out, "annotate", self.config.model_dump(mode="json"), _RESUME_KEYS)

    def run(self) -> dict | None:
        """Process the missing groups of this process's shards; merge and report when all are done."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_run_json()
        problems = load_annotation_problems(cfg)
        groups = self.groups(problems)
        shards = [cfg.shard] if cfg.shard is not None else list(range(cfg.num_shards))
        if cfg.ray:
            from stepjudge.annotate.distributed import run_on_ray

            run_on_ray(self, groups, shards)
        else:
            for shard in shards:
                self._run_shard(shard, groups)
        return self.merge_if_complete(len(groups))

    def todo(self, shard: int, groups: Sequence[Sequence[Problem]]) -> list[int]:
        done = set()
        path = self.shard_path(shard)
        if path.exists():
            with JsonlAppender(path) as f:  # also cuts a torn last line
                done = {r["group"] for r in f.records}
        return [g for g in range(len(groups)) if g % self.config.num_shards == shard and g not in done]

    def _run_shard(self, shard: int, groups: Sequence[Sequence[Problem]]) -> None:
        from tqdm.auto import tqdm

        from stepjudge.grading import Grader

        todo = self.todo(shard, groups)
        if not todo:
            return
        engine = self.engine
        total = sum(len(groups[g]) for g in todo)
        bar = tqdm(total=total, unit="problem", desc=f"annotate shard {shard}", disable=not self.progress)
        rollouts, t0 = 0, time.perf_counter()
        with Grader(timeout_s=self.config.grade_timeout_s) as grader, JsonlAppender(self.shard_path(shard)) as f:
            for g in todo:
                line = annotate_group(groups[g], engine, grader, self.config, g)
                f.append(line)
                rollouts += line["stats"]["rollouts"]
                bar.update(len(groups[g]))
                bar.set_postfix(rollouts_s=f"{rollouts / (time.perf_counter() - t0):.1f}")
        bar.close()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from stepjudge.engines.factory import make_engine

            self._engine = make_engine(self.config.engine)
        return self._engine

    def read_groups(self) -> list[dict]:
        lines = []
        for shard in range(self.config.num_shards):
            path = self.shard_path(shard)
            if path.exists():
                with JsonlAppender(path) as f:
                    lines.extend(f.records)
        return lines

    def merge_if_complete(self, n_groups: int) -> dict | None:
        lines = self.read_groups()
        seen = {line["group"] for line in lines}
        if len(seen) < n_groups:
            log.info("annotate: %d of %d groups done; merge waits for the other shards", len(seen), n_groups)
            return None
        if len(lines) != len(seen):
            raise RunFolderError(f"{self.out}: a group appears in more than one shard file (mixed --num-shards?)")
        records = flatten(lines, self.config)
        write_jsonl_atomic(self.out / "annotations.jsonl", records)
        from stepjudge.annotate.report import write_report

        return write_report(self.out, records, lines, self.config)


def annotate(config: AnnotateConfig | dict, engine: Engine | None = None, progress: bool = True) -> dict | None:
    """Python API mirroring ``stepjudge annotate``; returns the report summary (None until all shards end)."""
    if isinstance(config, dict):
        config = AnnotateConfig(**config)
    return AnnotationRun(config, engine=engine, progress=progress).run()
