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

from stepjudge.annotate.groups import (
    RESUME_KEYS,
    AnnotateConfig,
    annotate_group,
    flatten,
    group_seed,
    load_annotation_problems,
)
from stepjudge.data.records import Problem
from stepjudge.engines.base import Engine
from stepjudge.errors import RunFolderError
from stepjudge.utils.io import JsonlAppender, write_jsonl_atomic
from stepjudge.utils.runfolder import run_folder

__all__ = ["AnnotateConfig", "AnnotationRun", "annotate", "annotate_group", "flatten", "group_seed",
           "load_annotation_problems"]

log = logging.getLogger(__name__)


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

    def run(self) -> dict | None:
        """Process the missing groups of this process's shards; merge and report when all are done.

        The problems are loaded (and checked) before the folder is touched; the folder (or, with
        ``--shard``, this shard of it) is locked while the job runs."""
        cfg = self.config
        problems = load_annotation_problems(cfg)
        lock = ".lock" if cfg.shard is None else f".lock-shard-{cfg.shard:05d}"
        with run_folder(self.out, "annotate", cfg.model_dump(mode="json"), RESUME_KEYS, lock_name=lock):
            return self._run_locked(problems)

    def _run_locked(self, problems: Sequence[Problem]) -> dict | None:
        cfg = self.config
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
