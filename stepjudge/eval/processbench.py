"""Evaluate a judge on ProcessBench: three protocols, one resumable run folder.

Protocols
---------
``critic``   the official one: the whole solution with ``<paragraph_i>`` tags in one prompt; the judge
             answers the earliest wrong index (or -1) in ``\\boxed{}``; greedy, or majority over K samples.
``stepwise`` the StepWiser judge: one prompt per step (problem, earlier steps, new step); the first step
             judged Negative is the prediction, else -1. A solution stops being judged at its first
             Negative. With K votes, each step's verdict is the majority of K samples (which share one
             prefill in the ``hf`` engine).
``prm``      a discriminative judge answering "+"/"-" per step in a multi-turn chat; the first step whose
             answer is not "+" is the prediction (the benchmark's PRM convention).

Run folder (``--out``): ``run.json`` (the configuration; a resumed run must match it), ``predictions.jsonl``
(one line per finished case, appended and fsynced, with the judge's raw outputs), ``summary.json`` and
``report.md`` (rewritten atomically). Re-running the same command skips finished cases, so a crash or
Ctrl-C loses at most the cases in flight and never duplicates one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepjudge.data.records import ProcessBenchCase
from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig, make_engine
from stepjudge.eval.metrics import processbench_summary, summary_markdown
from stepjudge.grading.extract import extract_int_boxed, extract_verdict
from stepjudge.judge.prompts import critic_messages, prm_messages, stepwise_judge_messages
from stepjudge.judge.scoring import prefill_answer
from stepjudge.judge.verdicts import majority_index, majority_verdict, parse_prm_verdict
from stepjudge.judge.warmup import WarmupConfig, warmup_prompt
from stepjudge.utils.io import JsonlAppender, atomic_write_json, atomic_write_text
from stepjudge.utils.runfolder import run_folder

log = logging.getLogger(__name__)

Protocol = Literal["critic", "stepwise", "prm"]
DEFAULT_MAX_TOKENS = {"critic": 2048, "stepwise": 512, "prm": 4}
# Settings that change results: a run folder may only be resumed with the same values.
_RESUME_KEYS = ("judge", "protocol", "votes", "temperature", "top_p", "max_tokens", "seed", "unparsed_as",
                "judge_prompt", "response_prefix", "prompt_from_warmup")


class ProcessBenchEvalConfig(BaseModel):
    """Every knob of ``stepjudge eval processbench`` (the YAML config takes the same keys)."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field("smollm2-135m", description="model name/path (hf) or served model name (openai)")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="engine settings (its model is `judge`)")
    protocol: Protocol = Field("stepwise", description="critic (official), stepwise (StepWiser) or prm ('+'/'-')")
    subsets: list[str] = Field(default_factory=lambda: ["gsm8k", "math", "olympiadbench", "omnimath"],
                               description="ProcessBench subsets to evaluate")
    limit: int | None = Field(None, ge=1, description="first N cases of each subset")
    balanced: bool = Field(False, description="with limit N: the first N/2 erroneous and N/2 correct cases "
                                              "of each subset (the files list erroneous cases first)")
    source: str | None = Field(None, description="ProcessBench folder or hub id (default: shared data)")
    votes: int = Field(1, ge=1, description="samples per judgement; majority vote when > 1")
    temperature: float | None = Field(None, ge=0, description="default: 0 with 1 vote, 1.0 when voting")
    top_p: float | None = Field(None, gt=0, le=1, description="default: 1.0 (0.9 when voting, as official)")
    max_tokens: int | None = Field(None, ge=1, description="default per protocol: critic 2048, stepwise 512, prm 4")
    seed: int = Field(0, description="sampling seed")
    batch_size: int = Field(16, ge=1, description="cases judged concurrently (one engine call per round)")
    unparsed_as: Literal["Positive", "Negative"] = Field(
        "Positive", description="stepwise: verdict used when no sample has a parseable \\boxed{} verdict")
    judge_prompt: Literal["stepwise", "no-cot"] = Field(
        "stepwise", description="stepwise protocol: StepWiser's reason-then-verdict prompt, or the verdict-only "
                                "prompt of a no-CoT judge (train judge-data --format no-cot)")
    response_prefix: str = Field(
        "", description="stepwise protocol: pre-filled start of the judge's answer, e.g. '\\boxed{' for the "
                        "verdict-only judge (hf engine: the chat is rendered locally and continued)")
    prompt_from_warmup: WarmupConfig | None = Field(
        None, description="stepwise protocol: ask the judge as this warm-up did (its `prompt` and `variant`, e.g. "
                          "compact + reference; `train judge-warmup`); overrides judge_prompt. None = judge_prompt")
    out: str = Field("runs/processbench", description="run folder (resumable)")

    @model_validator(mode="after")
    def _warmup_prompt_is_written(self) -> ProcessBenchEvalConfig:
        if self.prompt_from_warmup is not None and self.prompt_from_warmup.prompt == "keep":
            raise ValueError("prompt_from_warmup.prompt 'keep' keeps a judge row's prompt; ProcessBench has no "
                             "judge rows (use judge_prompt, or a warm-up prompt 'compact' / 'full')")
        return self

    def resolved(self) -> ProcessBenchEvalConfig:
        """Fill protocol-dependent defaults so the run folder records the values actually used."""
        voting = self.votes > 1
        return self.model_copy(update={
            "temperature": self.temperature if self.temperature is not None else (1.0 if voting else 0.0),
            "top_p": self.top_p if self.top_p is not None else (0.9 if voting else 1.0),
            "max_tokens": self.max_tokens or DEFAULT_MAX_TOKENS[self.protocol],
            "engine": self.engine.model_copy(update={"model": self.judge}),
        })

    def sampling(self) -> SamplingParams:
        c = self.resolved()
        stop = ("\n",) if c.protocol == "prm" else ()
        return SamplingParams(n=c.votes, temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens,
                              seed=c.seed, stop=stop)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------------------------- state
@dataclass
class _CaseState:
    case: ProcessBenchCase
    step: int = 0
    prediction: int | None = None
    done: bool = False
    calls: int = 0
    tokens: int = 0
    steps_log: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def record(self) -> dict:
        c = self.case
        return {"id": c.id, "subset": c.subset, "label": c.label, "prediction": self.prediction,
                "match": self.prediction is not None and self.prediction == c.label,
                "num_steps": len(c.steps), "judge_calls": self.calls, "completion_tokens": self.tokens,
                "seconds": round(time.perf_counter() - self.started, 3), "judgements": self.steps_log}


def _prompt_for(state: _CaseState, protocol: Protocol, judge_prompt: str = "stepwise",
                warmup: WarmupConfig | None = None):
    c = state.case
    if protocol == "critic":
        return critic_messages(c.problem, c.steps)
    if protocol == "stepwise":
        if warmup is not None:
            return warmup_prompt({"problem": c.problem, "history": list(c.steps[:state.step]),
                                  "chunk": c.steps[state.step]}, warmup)
        if judge_prompt == "no-cot":
            from stepjudge.judge.dataset import stepwise_verdict_only_messages

            return stepwise_verdict_only_messages(c.problem, c.steps[:state.step], c.steps[state.step])
        return stepwise_judge_messages(c.problem, c.steps[:state.step], c.steps[state.step])
    return prm_messages(c.problem, c.steps[:state.step + 1])


def _advance(state: _CaseState, protocol: Protocol, texts: Sequence[str], tokens: int,
             unparsed_as: str) -> None:
    """Fold one judgement (all votes) into the case; mark it done when its prediction is known."""
    state.calls += 1
    state.tokens += tokens
    if protocol == "critic":
        parsed = [extract_int_boxed(t) for t in texts]
        state.prediction = majority_index(parsed)
        state.steps_log.append({"outputs": list(texts), "parsed": parsed})
        state.done = True
        return
    if protocol == "stepwise":
        parsed = [extract_verdict(t) for t in texts]
        verdict = majority_verdict(parsed, unparsed_as=unparsed_as)  # type: ignore[arg-type]
        negative = verdict == "Negative"
    else:
        parsed = [parse_prm_verdict(t) for t in texts]
        # Benchmark convention: any answer other than "+" (majority when voting) flags the step.
        plus = sum(p == "+" for p in parsed)
        verdict = "+" if plus * 2 > len(parsed) else "-"
        negative = verdict != "+"
    state.steps_log.append({"step": state.step, "outputs": list(texts), "parsed": parsed, "verdict": verdict})
    if negative:
        state.prediction, state.done = state.step, True
    elif state.step + 1 >= len(state.case.steps):
        state.prediction, state.done = -1, True
    else:
        state.step += 1


# ---------------------------------------------------------------------------------------------- runner
class ProcessBenchRun:
    """A resumable evaluation in one folder. ``run()`` judges what is missing and writes the summary."""

    def __init__(self, config: ProcessBenchEvalConfig, engine: Engine | None = None,
                 cases: Sequence[ProcessBenchCase] | None = None, progress: bool = True):
        self.config = config.resolved()
        self.out = Path(self.config.out)
        self._engine = engine
        self._cases = cases
        self.progress = progress

    # -- inputs
    def load_cases(self) -> list[ProcessBenchCase]:
        if self._cases is not None:
            return list(self._cases)
        from stepjudge.data.loaders import load_processbench

        cfg = self.config
        if not (cfg.balanced and cfg.limit):
            return load_processbench(cfg.subsets, source=cfg.source, limit=cfg.limit)
        picked: list[ProcessBenchCase] = []
        for subset in cfg.subsets:
            cases = load_processbench([subset], source=cfg.source)
            n_err = (cfg.limit + 1) // 2
            picked += [c for c in cases if c.label != -1][:n_err]
            picked += [c for c in cases if c.label == -1][:cfg.limit - n_err]
        return picked

    def run(self) -> dict:
        """Load (and check) the cases, then lock the folder, check ``run.json`` and judge what is missing."""
        cases = self.load_cases()
        if not cases:
            from stepjudge.errors import DataError

            raise DataError("no ProcessBench cases to judge: the source holds no records",
                            path=self.config.source or "processbench")
        wanted = {c.id for c in cases}
        with run_folder(self.out, "processbench", self.config.model_dump(mode="json"), _RESUME_KEYS), \
                JsonlAppender(self.out / "predictions.jsonl") as log_file:
            finished = {r["id"] for r in log_file.records}
            todo = [c for c in cases if c.id not in finished]
            log.info("processbench: %d cases, %d already judged, %d to go", len(cases), len(cases) - len(todo),
                     len(todo))
            if todo:
                self._judge(todo, log_file)
            records = [r for r in log_file.records if r["id"] in wanted]
            return self.write_summary(records)

    def write_summary(self, records: list[dict]) -> dict:
        summary = processbench_summary(records)
        n = len(records)
        unparsed = sum(1 for r in records for j in r["judgements"]
                       for p in j["parsed"] if p is None)
        votes_total = sum(len(j["parsed"]) for r in records for j in r["judgements"])
        extra = {
            "cases": n,
            "judge_calls": sum(r["judge_calls"] for r in records),
            "completion_tokens": sum(r["completion_tokens"] for r in records),
            "unparsed_fraction": (unparsed / votes_total) if votes_total else None,
            "predicted_no_error_fraction": (sum(r["prediction"] == -1 for r in records) / n) if n else None,
        }
        atomic_write_json(self.out / "summary.json", {"metrics": summary, "stats": extra,
                                                      "config": self.config.model_dump(mode="json")})
        cfg = self.config
        md = [f"# ProcessBench: `{cfg.judge}` as a `{cfg.protocol}` judge", "",
              f"votes={cfg.votes}, temperature={cfg.temperature}, top_p={cfg.top_p}, max_tokens={cfg.max_tokens}, "
              f"engine={cfg.engine.kind}, limit={cfg.limit}", "", summary_markdown(summary), "",
              f"- cases judged: {n}; judge calls: {extra['judge_calls']}; generated tokens: "
              f"{extra['completion_tokens']}",
              f"- unparseable judge outputs: {_pct(extra['unparsed_fraction'])}",
              f"- cases predicted error-free (-1): {_pct(extra['predicted_no_error_fraction'])}",
              ""]
        atomic_write_text(self.out / "report.md", "\n".join(md))
        return summary

    # -- the judging loop
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.config.engine)
        return self._engine

    def _judge(self, todo: list[ProcessBenchCase], log_file: JsonlAppender) -> None:
        """Case-level continuous batching: each round judges the current step of up to ``batch_size``
        live cases in one engine call; finished cases are written at once and replaced from the queue."""
        from tqdm.auto import tqdm

        cfg = self.config
        params = cfg.sampling()
        queue = deque(todo)
        live: list[_CaseState] = []
        bar = tqdm(total=len(todo), desc=f"processbench/{cfg.protocol}", unit="case", disable=not self.progress)
        engine = self.engine
        t0, tok0 = time.perf_counter(), engine.stats.completion_tokens
        try:
            while queue or live:
                while queue and len(live) < cfg.batch_size:
                    live.append(_CaseState(queue.popleft()))
                prompts = [_prompt_for(s, cfg.protocol, cfg.judge_prompt, cfg.prompt_from_warmup) for s in live]
                prefix = cfg.response_prefix if cfg.protocol == "stepwise" else ""
                prompts = prefill_answer(engine, prompts, prefix)
                results = engine.generate(prompts, params)
                for state, res in zip(live, results, strict=True):
                    _advance(state, cfg.protocol, [prefix + t for t in res.texts],
                             sum(c.num_tokens for c in res.completions), cfg.unparsed_as)
                    if state.done:
                        log_file.append(state.record())
                        bar.update(1)
                live = [s for s in live if not s.done]
                elapsed = time.perf_counter() - t0
                bar.set_postfix(tok_s=f"{(engine.stats.completion_tokens - tok0) / max(elapsed, 1e-9):.0f}",
                                live=len(live))
        finally:
            bar.close()


def evaluate_processbench(config: ProcessBenchEvalConfig | dict, engine: Engine | None = None,
                          progress: bool = True) -> dict:
    """Python API mirroring ``stepjudge eval processbench``; returns the metric summary."""
    if isinstance(config, dict):
        config = ProcessBenchEvalConfig(**config)
    return ProcessBenchRun(config, engine=engine, progress=progress).run()


def score_predictions_file(path: str | Path, source: str | None = None) -> dict:
    """``--score``: labels from ProcessBench, predictions from a JSONL of ``{"id", "prediction"}``."""
    from stepjudge.data.loaders import PROCESSBENCH_SUBSETS, load_processbench
    from stepjudge.errors import DataError
    from stepjudge.utils.io import iter_jsonl

    preds: dict[str, int | None] = {}
    for lineno, rec in iter_jsonl(path, what="predictions file"):
        if not isinstance(rec.get("id"), str):
            got = "missing" if "id" not in rec else f"expected a string like 'gsm8k-12', got {type(rec['id']).__name__}"
            raise DataError(got, path=str(path), line=lineno, field="id")
        if "prediction" not in rec:
            raise DataError("missing", path=str(path), line=lineno, field="prediction")
        p = rec["prediction"]
        if p is not None and (isinstance(p, bool) or not isinstance(p, int)):
            raise DataError(f"must be an integer step index or -1, got {p!r}", path=str(path), line=lineno,
                            field="prediction")
        if rec["id"] in preds:
            raise DataError(f"duplicate id {rec['id']!r}", path=str(path), line=lineno, field="id")
        preds[str(rec["id"])] = p
    if not preds:
        raise DataError("no predictions: the file holds no records (one {\"id\", \"prediction\"} object per line)",
                        path=str(path))
    subsets = sorted({i.rsplit("-", 1)[0] for i in preds}, key=lambda s: (
        PROCESSBENCH_SUBSETS.index(s) if s in PROCESSBENCH_SUBSETS else 99, s))
    unknown = [s for s in subsets if s not in PROCESSBENCH_SUBSETS]
    if unknown:
        raise DataError(f"ids must look like '<subset>-<n>' with subset in {list(PROCESSBENCH_SUBSETS)}; "
                        f"found prefixes {unknown}", path=str(path))
    cases = {c.id: c for c in load_processbench(subsets, source=source)}
    missing = [i for i in preds if i not in cases]
    if missing:
        raise DataError(f"{len(missing)} ids are not in ProcessBench, e.g. {missing[:3]}", path=str(path),
                        field="id")
    summary = processbench_summary(
        {"subset": cases[i].subset, "label": cases[i].label, "prediction": p} for i, p in preds.items())
    return summary
