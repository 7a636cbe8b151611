"""Spread annotation groups over a Ray cluster: one actor per worker, each owning an engine.

The driver keeps the run folder: it deals out the groups still to do, writes each finished group to
its shard file as it arrives (so a crash of the driver loses only groups in flight), and merges at the
end exactly as a single-process run does. A group's seed depends only on its index, so the records
are the same whichever worker computed them (with the same engine settings and thread count).
Workers use the ``hf`` engine in-process, or with ``engine.kind = openai`` one server URL each from
``worker_base_urls`` (e.g. one vLLM server per GPU).

A worker that dies mid-group (killed, out of memory, its node lost) is restarted by Ray, which builds
its engine again and re-runs the group (``ray_max_retries`` times per worker); the group's seed makes
the re-run give the same lines. Past that the run stops with an error naming the group, and the groups
already written stay for a resume.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from stepjudge.data.records import Problem
from stepjudge.errors import StepJudgeError

log = logging.getLogger(__name__)


class _Worker:
    """Ray actor body: builds its engine and grader once, then annotates groups on request."""

    def __init__(self, config_json: dict, base_url: str | None):
        from stepjudge.annotate.groups import AnnotateConfig
        from stepjudge.engines.factory import make_engine
        from stepjudge.grading import Grader

        self.cfg = AnnotateConfig(**config_json)
        engine_cfg = self.cfg.engine
        if base_url:
            engine_cfg = engine_cfg.model_copy(update={"base_url": base_url})
        self.engine = make_engine(engine_cfg)
        self.grader = Grader(timeout_s=self.cfg.grade_timeout_s)

    def annotate(self, group: int, problems: list[dict]) -> dict:
        from stepjudge.annotate.groups import annotate_group

        return annotate_group([Problem.from_dict(p) for p in problems], self.engine, self.grader, self.cfg, group)

    def close(self) -> None:
        """Stop the grading worker and the engine this actor owns (before the actor is killed)."""
        self.grader.close()
        self.engine.close()


def run_on_ray(run, groups: Sequence[Sequence[Problem]], shards: Sequence[int]) -> None:
    import ray
    from tqdm.auto import tqdm

    from stepjudge.utils.io import JsonlAppender

    cfg = run.config
    todo = [(s, g) for s in shards for g in run.todo(s, groups)]
    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        init_kw = {"address": cfg.ray_address} if cfg.ray_address else {"num_cpus": cfg.ray_workers}
        ray.init(include_dashboard=False, log_to_driver=False, **init_kw)
    n_workers = cfg.ray_workers
    urls = cfg.worker_base_urls
    if cfg.engine.kind == "openai" and urls and len(urls) < n_workers:
        raise ValueError(f"ray_workers={n_workers} but only {len(urls)} worker_base_urls were given")
    retries = cfg.ray_max_retries
    actor_cls = ray.remote(num_cpus=1, max_restarts=retries, max_task_retries=retries)(_Worker)
    workers = [actor_cls.remote(cfg.model_dump(mode="json"), urls[i] if urls else None) for i in range(n_workers)]
    files = {s: JsonlAppender(run.shard_path(s)) for s in shards}
    bar = tqdm(total=sum(len(groups[g]) for _, g in todo), unit="problem", desc=f"annotate (ray x{n_workers})",
               disable=not run.progress)
    pending: dict = {}
    queue = list(todo)
    idle = list(workers)
    try:
        while queue or pending:
            while queue and idle:
                shard, g = queue.pop(0)
                w = idle.pop()
                ref = w.annotate.remote(g, [p.to_dict() for p in groups[g]])
                pending[ref] = (w, shard, g)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                w, shard, g = pending.pop(ref)
                try:
                    line = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise StepJudgeError(
                        f"annotation group {g} failed on a Ray worker (after up to {retries} restarts, "
                        f"ray_max_retries): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                        f"the finished groups are kept in {run.out / 'shards'}: re-run to resume") from e
                files[shard].append(line)
                idle.append(w)
                bar.update(len(groups[g]))
    finally:
        bar.close()
        for f in files.values():
            f.close()
        with contextlib.suppress(Exception):  # best effort: a dead or stuck actor is killed anyway
            ray.get([w.close.remote() for w in workers], timeout=30)
        for w in workers:
            ray.kill(w)
        if started_here:
            ray.shutdown()
