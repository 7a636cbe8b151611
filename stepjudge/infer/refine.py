"""``stepjudge refine``: the Critique-RL loop at inference, response -> critique -> refinement, for one or
several rounds (iterative refinement: each round critiques and refines the previous round's result).

Any critic and any actor engine work (the actor must render chat prompts, for its pre-filled answer turn).
Decoding is greedy throughout, as the paper's evaluation (§3(d)). Responses are either written by the actor
(greedy, from the task's problems) or read from a rows file (``heldout_rows.jsonl`` of ``critique-data``).
Work goes in batches; each finished item is one fsynced line of ``refine.jsonl``, so a re-run resumes after
the last finished batch. ``summary.json`` holds :func:`~stepjudge.eval.critique.refinement_metrics` per round
(against the round's input) and overall (the original responses against the last round's refinements).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.data.records import Problem
from stepjudge.engines.factory import EngineConfig
from stepjudge.tasks.arith import ArithConfig
from stepjudge.tasks.base import DEFAULT_SOURCE

log = logging.getLogger(__name__)

__all__ = ["RefineConfig", "refine_items", "run_refine", "summarize_refine"]


class RefineConfig(BaseModel):
    """Every knob of ``stepjudge refine``."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field(description="output folder: refine.jsonl (one line per item), summary.json")
    rows: str | None = Field(None, description="responses to refine: rows with problem_json, response and truth "
                                               "(critique-data's heldout_rows.jsonl); None = the actor answers "
                                               "`problems` greedily first")
    problems: str = Field(DEFAULT_SOURCE, description="arith | gsm8k[:split] | math500 | math-test | path | hub id "
                                                      "(when rows is None)")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=32, steps=2, seed=1000),
                               description="the generated arith problems (used when problems is arith)")
    limit: int | None = Field(None, ge=1, description="first N problems (or rows)")
    data_root: str | None = Field(None, description="folder with the bundled datasets; None: $STEPJUDGE_DATA, "
                                                    "else shared/data found upwards")
    actor: EngineConfig = Field(default_factory=EngineConfig, description="the actor (solves and refines)")
    critic: EngineConfig = Field(default_factory=EngineConfig, description="the critic")
    rounds: int = Field(1, ge=1, description="critique -> refinement rounds (iterative refinement)")
    max_tokens: int = Field(512, ge=1, description="tokens of the actor's first response")
    critique_max_tokens: int = Field(1536, ge=1, description="tokens of a critique (paper 1536)")
    refine_max_tokens: int = Field(1024, ge=1, description="tokens of a refinement (paper 1024)")
    batch_size: int = Field(16, ge=1, description="items per engine call (and per resume step)")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    seed: int = Field(0, description="seed passed to the engines (decoding is greedy)")


def _items(cfg: RefineConfig) -> list[dict[str, Any]]:
    """(id, problem, response or None, truth or None) of every item, in order."""
    if cfg.rows:
        from stepjudge.errors import DataError
        from stepjudge.utils.io import iter_jsonl

        seen: dict[str, int] = {}
        items = []
        for line, r in iter_jsonl(cfg.rows, what="rows file"):
            if cfg.limit and len(items) >= cfg.limit:
                break
            for key, types in (("problem_json", str), ("response", str), ("truth", (bool, type(None)))):
                if key not in r or not isinstance(r[key], types):
                    got = "missing" if key not in r else f"got {type(r[key]).__name__}"
                    want = "a string" if types is str else "true, false or null"
                    raise DataError(f"expected {want} ({got})", path=cfg.rows, line=line, field=key)
            try:
                p = Problem.from_dict(json.loads(r["problem_json"]), path=cfg.rows, line=line)
            except json.JSONDecodeError as e:
                raise DataError(f"not a JSON problem record ({e.msg})", path=cfg.rows, line=line,
                                field="problem_json") from None
            k = seen[p.id] = seen.get(p.id, -1) + 1
            items.append({"id": f"{p.id}#{k}", "problem": p, "response": r["response"], "truth": r["truth"]})
        if not items:
            raise DataError("no rows: the file holds no records", path=cfg.rows)
        return items
    from stepjudge.tasks import get_task

    problems = get_task(cfg.problems).load(cfg.arith, limit=cfg.limit, data_root=cfg.data_root)
    return [{"id": p.id, "problem": p, "response": None, "truth": None} for p in problems]


def refine_items(cfg: RefineConfig, items: list[dict[str, Any]], actor: Any, critic: Any,
                 grader: Any) -> list[dict[str, Any]]:
    """Run the loop on a batch of items; returns their records (response, truth, one entry per round)."""
    from stepjudge.judge.critique import parse_final_verdict
    from stepjudge.judge.critique_loop import critique, grade_texts, refine, solve

    problems = [it["problem"] for it in items]
    missing = [i for i, it in enumerate(items) if it["response"] is None]
    if missing:
        texts = solve(actor, [problems[i] for i in missing], max_tokens=cfg.max_tokens, seed=cfg.seed)
        for i, t in zip(missing, texts, strict=True):
            items[i] = {**items[i], "response": t[0], "truth": None}
    responses = [it["response"] for it in items]
    truths = grade_texts(grader, problems, responses)  # graded here even when the rows carry a truth
    records = [{"id": it["id"], "problem": it["problem"].to_dict(), "response": y, "truth": t, "rounds": []}
               for it, y, t in zip(items, responses, truths, strict=True)]
    current = responses
    for _ in range(cfg.rounds):
        critiques = [c[0] for c in critique(critic, problems, current, max_tokens=cfg.critique_max_tokens,
                                            seed=cfg.seed)]
        refined = refine(actor, problems, current, critiques, max_tokens=cfg.refine_max_tokens, seed=cfg.seed)
        correct = grade_texts(grader, problems, refined)
        for rec, c, y2, ok in zip(records, critiques, refined, correct, strict=True):
            rec["rounds"].append({"critique": c, "verdict": parse_final_verdict(c), "refinement": y2,
                                  "correct": ok})
        current = refined
    return records


def summarize_refine(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics per round (each round against its input) and overall (original vs. last round)."""
    from stepjudge.eval.critique import refinement_metrics

    rounds = []
    before = [r["truth"] for r in records]
    for k in range(min((len(r["rounds"]) for r in records), default=0)):
        after = [r["rounds"][k]["correct"] for r in records]
        rounds.append(refinement_metrics(before, after, [r["rounds"][k]["verdict"] for r in records]))
        before = after
    overall = None
    if rounds:
        overall = refinement_metrics([r["truth"] for r in records], before,
                                     [r["rounds"][0]["verdict"] for r in records])
    return {"items": len(records), "rounds": rounds, "overall": overall}


def run_refine(config: RefineConfig | dict, *, progress: bool = False) -> dict[str, Any]:
    """Run (or resume) the loop over every item; writes ``refine.jsonl`` and ``summary.json``."""
    from stepjudge.engines.factory import make_engine
    from stepjudge.grading import Grader
    from stepjudge.utils.io import JsonlAppender, RunFolderLock, atomic_write_json

    cfg = config if isinstance(config, RefineConfig) else RefineConfig(**config)
    out = Path(cfg.out)
    items = _items(cfg)  # inputs first: a bad one leaves the folder untouched
    with RunFolderLock(out), JsonlAppender(out / "refine.jsonl") as log_file:
        done = {r["id"] for r in log_file.records}
        todo = [it for it in items if it["id"] not in done]
        if todo:
            with make_engine(cfg.actor) as actor, make_engine(cfg.critic) as critic, \
                    Grader(timeout_s=cfg.grade_timeout_s) as grader:
                for b in range(0, len(todo), cfg.batch_size):
                    for rec in refine_items(cfg, todo[b:b + cfg.batch_size], actor, critic, grader):
                        log_file.append(rec)
                    if progress:
                        log.info("refined %d / %d", len(done) + min(b + cfg.batch_size, len(todo)), len(items))
        order = {it["id"]: i for i, it in enumerate(items)}
        records = sorted((r for r in log_file.records if r["id"] in order), key=lambda r: order[r["id"]])
        summary = {**summarize_refine(records), "rounds_requested": cfg.rounds}
        atomic_write_json(out / "summary.json", summary)
    return summary
