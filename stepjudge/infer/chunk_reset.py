"""Chunk-Reset Reasoning (StepWiser §4.4): a judge vets every chunk while the policy writes it.

The policy writes its solution one ``<chunk>`` at a time (generation stops at ``</chunk>``). Each new
chunk goes to a stepwise judge; a Positive chunk is kept and the policy continues from it, a Negative
one is thrown away and re-sampled from the same prefix. After ``max_tries`` tries of one chunk the
last try is kept anyway (the paper does not say what happens then; keeping it lets the solution go
on) and the record says so (``kept_after_max``). The final answer line after the last chunk is not a
chunk and is not judged unless ``judge_answer`` is on: then it is vetted like a chunk (a judge trained
with ``judge-data --answer-rows`` has seen answer segments), and a rejected answer is re-sampled from the
same prefix, where the policy may also go on with another chunk. Without a judge the same loop accepts every chunk: that is the no-judge
baseline, which sees the same prompts and seeds, so the two runs differ only by the judge.

Batching: problems move in lock-step **rounds**. Each round makes one policy call with the next try
of every unfinished problem (a first try of its next chunk or a retry of a rejected one, whatever
it needs) and one judge call with all the chunks that round produced, so the engines always see
whole batches and never one request at a time. A round's sampling seed depends only on the config
seed and the round index.

Measured per problem (StepWiser Table 7 columns): correctness, accepted length (policy tokens of
the kept chunks and of the answer segment), rejected length (tokens of thrown-away tries), judge
calls (one per judged try), plus resets and kept-after-max counts. On a task with exact step truth
(``arith``) every judged chunk is also checked against the first wrong step, which shows what the
judge rejected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from stepjudge.data.records import Problem
from stepjudge.engines.base import Capability, Completion, Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.grading.extract import extract_boxed
from stepjudge.judge.chunk_judge import ChunkJudge, ChunkQuery, JudgeSpec
from stepjudge.segment.chunks import CLOSE, OPEN, prefix_text
from stepjudge.tasks import Task, get_task, task_of
from stepjudge.tasks.config import ProblemSetConfig

log = logging.getLogger(__name__)

__all__ = ["ChunkResetConfig", "chunk_reset_solve", "summarize", "run_chunk_reset", "load_problems",
           "split_try", "round_seed", "batch_seed", "problem_batches", "solve_resumable", "report_markdown"]

PromptStyle = Literal["fewshot", "chat"]


class ChunkResetConfig(ProblemSetConfig):
    """Every knob of ``stepjudge solve`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field("smollm2-135m", description="the model that writes the chunks")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="the policy's engine")
    judge: str | None = Field(None, description="judge model name/path (hf) or served name (openai)")
    judge_engine: EngineConfig | None = Field(
        None, description="the judge's engine (None: the policy engine's settings with the judge model)")
    judge_spec: JudgeSpec = Field(default_factory=JudgeSpec, description="how the judge is asked and read")
    reset: bool = Field(False, description="judge every chunk and re-sample rejected ones (needs a judge)")
    compare_baseline: bool | None = Field(
        None, description="with reset: also run the no-judge baseline on the same problems and seed "
                          "(None: on when reset)")
    max_tries: int = Field(5, ge=1, description="tries per chunk; the last is kept even if rejected")
    judge_answer: bool = Field(False, description="also judge the answer segment after the last chunk and "
                                                  "re-sample a rejected one (for judges trained with answer rows)")
    max_chunks: int = Field(8, ge=1, description="a solution stops (unanswered) after this many chunks")
    chunk_max_tokens: int = Field(64, ge=1, description="policy tokens per try (one chunk or the answer)")
    temperature: float = Field(1.0, ge=0, description="policy sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="policy nucleus sampling")
    seed: int = Field(0, description="sampling seed; each round derives its own from it")
    batch_problems: int | None = Field(
        None, ge=1, description="problems solved together and appended to the output as one batch: a killed "
                                "run resumes after the last whole batch (None: all problems in one batch, "
                                "so only finished methods are kept)")
    out: str = Field("runs/solve", description="run folder (resumable)")

    @model_validator(mode="after")
    def _check_judge(self) -> ChunkResetConfig:
        if self.reset and not self.judge:
            raise ValueError("reset needs a judge model (judge / --judge)")
        if self.reset and self.judge_spec.score == "token-prob" and not self.judge_spec.response_prefix:
            raise ValueError("judge_spec.score 'token-prob' reads the verdict token after a response_prefix "
                             "such as '\\boxed{'; set one, or use score 'votes'")
        return self

    @property
    def run_baseline(self) -> bool:
        return not self.reset or (self.compare_baseline is not False)

    def policy_engine_config(self) -> EngineConfig:
        return self.engine.model_copy(update={"model": self.policy})

    def judge_engine_config(self) -> EngineConfig:
        base = self.judge_engine or self.engine
        return base.model_copy(update={"model": self.judge})


# Settings that change the results: a folder holding a run with other values is refused.
_RESULT_KEYS = ("problems", "arith", "limit", "policy", "judge", "judge_spec", "reset", "compare_baseline",
                "max_tries", "judge_answer", "max_chunks", "chunk_max_tokens", "temperature", "top_p", "seed", "prompt_style",
                "batch_problems")


def load_problems(cfg: ChunkResetConfig) -> list[Problem]:
    """The configured problems (same sources as ``stepjudge annotate``); each needs a reference answer."""
    return get_task(cfg.problems).load(cfg.arith, limit=cfg.limit, data_root=cfg.data_root)


def round_seed(seed: int, round_index: int) -> int:
    """Sampling seed of one round: reproducible, and different for every round."""
    return (seed * 1_000_003 + round_index * 7919 + 17) % (2**31 - 1)


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed of one batch of problems: the config seed for the first (so one batch is the unbatched run),
    a different reproducible one for each later batch."""
    return seed if batch_index == 0 else (seed + batch_index * 1_000_033) % (2**31 - 1)


def problem_batches(problems: Sequence[Problem], size: int | None) -> list[list[Problem]]:
    """Consecutive batches of ``size`` problems (one batch when None); fixed by the problem order, so a
    resumed run solves exactly the batches an uninterrupted one would."""
    size = size or max(len(problems), 1)
    return [list(problems[i:i + size]) for i in range(0, len(problems), size)]


def solve_resumable(path: str | Path, problems: Sequence[Problem], batch_size: int | None,
                    solve_batch: Any) -> list[dict]:
    """Records of ``problems`` in order, solving only the batches ``path`` does not hold yet.

    ``path`` is an append log keyed by problem id: each batch's records are appended with one write
    (``solve_batch(batch, batch_index) -> records``). On resume a torn last line is repaired
    (:func:`~stepjudge.utils.io.repair_jsonl_tail`) and a batch with only some of its records (a crash
    mid-write) is dropped and solved again, so a resumed run equals an uninterrupted one.
    """
    from stepjudge.errors import RunFolderError
    from stepjudge.utils.io import JsonlAppender, repair_jsonl_tail, write_jsonl_atomic

    path = Path(path)
    batches = problem_batches(problems, batch_size)
    old = repair_jsonl_tail(path)
    by_id: dict[str, dict] = {}
    for n, rec in enumerate(old, start=1):
        pid = rec.get("id")
        if not isinstance(pid, str):
            raise RunFolderError(f"{path}: record {n} has no string 'id'; not a solutions log of this run")
        if pid in by_id:
            raise RunFolderError(f"{path}: problem id {pid!r} appears twice; the log is corrupt, use another --out")
        by_id[pid] = rec
    whole = [b for b in batches if all(p.id in by_id for p in b)]
    keep = {p.id for b in whole for p in b}
    if set(by_id) - keep:
        log.warning("%s: dropping %d records of unfinished batches (solved again)", path, len(set(by_id) - keep))
        write_jsonl_atomic(path, [r for r in old if r["id"] in keep])
    if whole:
        log.info("%s: %d of %d batches already solved", path.name, len(whole), len(batches))
    with JsonlAppender(path) as out:
        for k, batch in enumerate(batches):
            if all(p.id in keep for p in batch):
                continue
            records = solve_batch(batch, k)
            out.extend(records)
            by_id.update({r["id"]: r for r in records})
    return [by_id[p.id] for p in problems]


def stop_strings(style: PromptStyle) -> tuple[str, ...]:
    """Stop at the end of a chunk; in the few-shot prompt a blank line also ends the solution."""
    return (CLOSE, "\n\n") if style == "fewshot" else (CLOSE,)


def _stopped_at_close(engine: Engine, comp: Completion, stops: Sequence[str]) -> bool:
    """Did this try end at ``</chunk>`` (rather than a blank line, EOS or the token limit)?

    Engines cut the stop string from the text, so the text alone cannot tell. With token ids and a
    tokenizer (hf) the raw text is decoded and the first stop string found in it decides; otherwise
    (openai) a try that opened a ``<chunk>`` and stopped is taken to have closed it.
    """
    if comp.finish_reason != "stop":
        return False
    if comp.token_ids is not None and engine.supports(Capability.TOKENIZER):
        raw = engine.tokenizer.decode(comp.token_ids, skip_special_tokens=True)
        found = [(raw.find(s), s) for s in stops if s and s in raw]
        return bool(found) and min(found)[1] == CLOSE
    return OPEN in comp.text


def split_try(text: str, closed: bool) -> tuple[Literal["chunk", "final"], str]:
    """One try's text -> ``("chunk", body)`` or ``("final", answer segment)``.

    A try that ended at ``</chunk>`` is a chunk: the text after its ``<chunk>`` (all of it when the
    model wrote no opening tag); anything before the tag is dropped, as the next prompt holds the
    canonical prefix. It is the final segment instead when a ``\\boxed{}`` answer came before the tag
    or the chunk is empty. Any other try (blank line, EOS, token limit) ends the solution.
    """
    if closed:
        pre, body = text.rsplit(OPEN, 1) if OPEN in text else ("", text)
        if extract_boxed(pre) is not None:
            return "final", pre.strip()
        if body.strip():
            return "chunk", body.strip()
    return "final", text.strip()


@dataclass
class _State:
    """One problem's progress through the rounds."""

    problem: Problem
    base: str
    chunks: list[str] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)            # tries used by each kept chunk
    kept_after_max: list[bool] = field(default_factory=list)
    p_positive: list[float | None] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    judged: list[dict] = field(default_factory=list)          # arith: verdict vs truth per judged try
    current_tries: int = 0
    final_segment: str = ""
    final_tokens: int = 0
    answer_tries: int | None = None       # judge_answer: tries of the kept answer segment
    answer_p_positive: float | None = None
    status: str = ""
    rounds: int = 0
    judge_calls: int = 0
    judge_tokens: int = 0

    @property
    def done(self) -> bool:
        return bool(self.status)

    def prompt(self) -> str:
        return self.base + prefix_text(self.chunks, len(self.chunks))

    def final_text(self) -> str:
        return prefix_text(self.chunks, len(self.chunks)) + self.final_segment


def _truth_wrong(task: Task, problem: Problem, chunks: Sequence[str], chunk: str) -> bool | None:
    """Is ``chunk`` the first wrong step after a correct prefix? None when the task cannot tell."""
    before = task.step_truth(problem, chunks)
    if before is None or before.first_error >= 0:
        return None  # no exact truth, or the path is already wrong: a label for this chunk is undefined
    after = task.step_truth(problem, [*chunks, chunk])
    return None if after is None else after.first_error == len(chunks)


def chunk_reset_solve(problems: Sequence[Problem], policy_engine: Engine, judge: ChunkJudge | None, *,
                      max_tries: int = 5, max_chunks: int = 8, chunk_max_tokens: int = 64,
                      judge_answer: bool = False,
                      temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                      prompt_style: PromptStyle = "fewshot", grader: Any = None,
                      progress: bool = False, desc: str = "solve", task: Task | None = None) -> list[dict]:
    """Solve ``problems`` chunk by chunk; with a ``judge`` rejected chunks are re-sampled (Chunk-Reset).

    Returns one record per problem, in order. ``judge=None`` accepts every chunk (the baseline).
    ``grader`` is a :class:`stepjudge.grading.Grader` (one is opened and closed here when None).
    ``task`` prompts, grades and gives step truth (None: the task the first problem belongs to).
    """
    if max_tries < 1 or max_chunks < 1:
        raise ValueError("max_tries and max_chunks must be >= 1")
    # A run must not depend on what the engine encoded before it (baseline vs reset comparisons).
    policy_engine.clear_prefix_cache()
    stops = stop_strings(prompt_style)
    if not problems:
        return []
    task = task or task_of(problems[0])
    states = [_State(p, task.solver_prompt(p, prompt_style, policy_engine)) for p in problems]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(states), unit="problem", desc=desc)
    r = 0
    while True:
        active = [s for s in states if not s.done]
        if not active:
            break
        params = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=chunk_max_tokens,
                                stop=stops, seed=round_seed(seed, r))
        results = policy_engine.generate([s.prompt() for s in active], params)
        pending: list[tuple[_State, str, Completion, str]] = []
        for s, res in zip(active, results, strict=True):
            s.rounds += 1
            comp = res.completions[0]
            kind, text = split_try(comp.text, _stopped_at_close(policy_engine, comp, stops))
            truncated = comp.finish_reason == "length"
            if kind == "chunk" or (judge is not None and judge_answer and text and not truncated):
                pending.append((s, text, comp, kind))
            else:
                s.final_segment, s.final_tokens = text, comp.num_tokens
                s.status = "truncated" if truncated else "finished"
        verdicts = (judge.judge([ChunkQuery(s.problem.problem, tuple(s.chunks), c) for s, c, _, _ in pending])
                    if judge is not None and pending else [None] * len(pending))
        for (s, chunk, comp, kind), v in zip(pending, verdicts, strict=True):
            s.current_tries += 1
            p = None if v is None else v.p_positive
            if v is not None:
                s.judge_calls += 1
                s.judge_tokens += v.tokens
                wrong = _truth_wrong(task, s.problem, s.chunks, chunk) if kind == "chunk" else None
                if wrong is not None:
                    s.judged.append({"verdict": v.verdict, "wrong": wrong})
            accepted = v is None or v.verdict == "Positive"
            if kind == "final":  # a judged answer segment (judge_answer)
                if accepted or s.current_tries >= max_tries:
                    s.final_segment, s.final_tokens, s.answer_tries = chunk, comp.num_tokens, s.current_tries
                    s.answer_p_positive, s.current_tries, s.status = p, 0, "finished"
                else:
                    s.rejected.append({"index": len(s.chunks), "try": s.current_tries, "text": chunk,
                                       "tokens": comp.num_tokens, "p_positive": p, "answer": True})
                continue
            if accepted or s.current_tries >= max_tries:
                s.chunks.append(chunk)
                s.tries.append(s.current_tries)
                s.kept_after_max.append(not accepted)
                s.p_positive.append(p)
                s.chunk_tokens.append(comp.num_tokens)
                s.current_tries = 0
                if len(s.chunks) >= max_chunks:
                    s.status = "max_chunks"
            else:
                s.rejected.append({"index": len(s.chunks), "try": s.current_tries, "text": chunk,
                                   "tokens": comp.num_tokens, "p_positive": p})
        if bar is not None:
            bar.update(sum(s.done for s in active))
            bar.set_postfix(round=r, active=sum(not s.done for s in states))
        r += 1
    if bar is not None:
        bar.close()
    return _records(states, grader, task)


def _records(states: Sequence[_State], grader: Any, task: Task) -> list[dict]:
    from stepjudge.grading import Grader

    pairs = [(s.final_text(), s.problem) for s in states]
    if grader is None:
        with Grader() as g:
            grades = task.grade(g, pairs)
    else:
        grades = task.grade(grader, pairs)
    out = []
    for s, (text, _), g in zip(states, pairs, grades, strict=True):
        rec = {
            "id": s.problem.id, "problem": s.problem.problem, "gold": s.problem.answer,
            "chunks": s.chunks, "final_segment": s.final_segment, "final_text": text, "status": s.status,
            "answer": g.predicted, "correct": g.correct, "grade": g.status,
            "tries": s.tries, "kept_after_max": s.kept_after_max,
            "kept_after_max_count": sum(s.kept_after_max), "p_positive": s.p_positive,
            "accepted_tokens": sum(s.chunk_tokens) + s.final_tokens, "chunk_tokens": s.chunk_tokens,
            "final_tokens": s.final_tokens, "answer_tries": s.answer_tries,
            "answer_p_positive": s.answer_p_positive, "rejected_tokens": sum(x["tokens"] for x in s.rejected),
            "resets": len(s.rejected), "judge_calls": s.judge_calls, "judge_tokens": s.judge_tokens,
            "rejected": s.rejected, "rounds": s.rounds,
        }
        truth = task.step_truth(s.problem, s.chunks)
        if truth is not None:
            rec["truth"] = {"first_error": truth.first_error, "reason": truth.reason, "judged": s.judged}
        out.append(rec)
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(records: Sequence[dict]) -> dict:
    """Table 7 columns and the bookkeeping behind them, over one method's records."""
    n = len(records)
    judge_calls = sum(r["judge_calls"] for r in records)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    out: dict[str, Any] = {
        "problems": n,
        "correct": sum(bool(r["correct"]) for r in records),
        "accuracy": _mean([float(bool(r["correct"])) for r in records]),
        "mean_accepted_tokens": _mean([r["accepted_tokens"] for r in records]),
        "mean_rejected_tokens": _mean([r["rejected_tokens"] for r in records]),
        "judge_calls": judge_calls,
        "judge_calls_per_problem": judge_calls / n if n else None,
        "judge_tokens": sum(r["judge_tokens"] for r in records),
        "resets": sum(r["resets"] for r in records),
        "kept_after_max": sum(r["kept_after_max_count"] for r in records),
        "mean_chunks": _mean([len(r["chunks"]) for r in records]),
        "status": statuses,
    }
    truths = [r["truth"] for r in records if "truth" in r]
    if truths:
        judged = [j for t in truths for j in t["judged"]]
        cell = {f"{v}_{w}": sum(j["verdict"] == v and j["wrong"] == (w == "wrong") for j in judged)
                for v in ("Negative", "Positive") for w in ("wrong", "right")}
        out["arith_truth"] = {
            "solutions_without_wrong_chunk": _mean([float(t["first_error"] < 0) for t in truths]),
            "judged_chunks_with_known_truth": len(judged), **cell,
        }
    return out


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.1f}"


_LABELS = {"chunk_reset": "Chunk-Reset", "baseline": "no judge"}


def report_markdown(summary: dict) -> str:
    """The comparison table (StepWiser Table 7 columns) plus the bookkeeping."""
    lines = ["# Chunk-Reset Reasoning", "",
             f"policy `{summary['policy']}`, judge `{summary['judge']}`, {summary['problems_source']}, "
             f"max_tries {summary['max_tries']}, max_chunks {summary['max_chunks']}, "
             f"T {summary['temperature']}, seed {summary['seed']}", "",
             "| method | problems | accuracy | accepted len | rejected len | judge calls / problem | "
             "resets | kept after max |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in summary["methods"].items():
        lines.append(f"| {_LABELS.get(name, name)} | {m['problems']} | {_fmt(m['accuracy'], pct=True)} | "
                     f"{_fmt(m['mean_accepted_tokens'])} | {_fmt(m['mean_rejected_tokens'])} | "
                     f"{_fmt(m['judge_calls_per_problem'])} | {m['resets']} | {m['kept_after_max']} |")
    lines += ["", "Lengths are mean policy tokens per problem: accepted = kept chunks + answer segment, "
              "rejected = thrown-away tries. A chunk still rejected after max_tries tries is kept "
              "(\"kept after max\")."]
    for name, m in summary["methods"].items():
        t = m.get("arith_truth")
        if t:
            lines.append(f"- {name}: {_fmt(t['solutions_without_wrong_chunk'], pct=True)} of solutions have no "
                         f"wrong chunk; judged chunks with known truth: {t['judged_chunks_with_known_truth']} "
                         f"(rejected: {t['Negative_wrong']} wrong / {t['Negative_right']} right; accepted: "
                         f"{t['Positive_wrong']} wrong / {t['Positive_right']} right)")
        lines.append(f"- {name}: status {m['status']}, {m['seconds']:.1f}s, {m['rounds']} rounds")
    return "\n".join(lines) + "\n"


def run_chunk_reset(config: ChunkResetConfig | dict, policy_engine: Engine | None = None,
                    judge_engine: Engine | None = None, progress: bool = True) -> dict:
    """Python API mirroring ``stepjudge solve``: run, write the run folder, return the summary.

    Engines are built from the config unless given. Folder: ``run.json``, ``solutions.jsonl`` (the
    Chunk-Reset run, or the baseline without reset), ``baseline_solutions.jsonl`` (with reset and
    compare_baseline), ``summary.json``, ``report.md``. The problems are loaded and checked before the
    folder is touched; the solution files are append logs (one write per batch of ``batch_problems``),
    so re-running the same command resumes after the last whole batch. ``seconds`` and
    ``policy_tokens`` in the summary count this process only.
    """
    from stepjudge.utils.runfolder import run_folder

    cfg = config if isinstance(config, ChunkResetConfig) else ChunkResetConfig(**config)
    out = Path(cfg.out)
    saved = cfg.model_dump(mode="json")
    saved["engine"] = cfg.policy_engine_config().model_dump(mode="json")
    if cfg.judge:
        saved["judge_engine"] = cfg.judge_engine_config().model_dump(mode="json")
    task = get_task(cfg.problems)
    problems = load_problems(cfg)  # inputs first: a bad one leaves the folder untouched
    with run_folder(out, "solve", saved, _RESULT_KEYS):
        return _run_in_folder(cfg, out, task, problems, policy_engine, judge_engine, progress)


def _run_in_folder(cfg: ChunkResetConfig, out: Path, task: Task, problems: list[Problem],
                   policy_engine: Engine | None, judge_engine: Engine | None, progress: bool) -> dict:
    from stepjudge.engines.factory import make_engine
    from stepjudge.grading import Grader
    from stepjudge.utils.io import atomic_write_json, atomic_write_text

    policy = policy_engine or make_engine(cfg.policy_engine_config())
    judge = None
    if cfg.reset:
        judge = ChunkJudge(judge_engine or make_engine(cfg.judge_engine_config()), cfg.judge_spec)
    elif cfg.judge:
        log.info("solve: a judge is set but reset is off; running the no-judge baseline only")
    runs: list[tuple[str, ChunkJudge | None, str]] = []
    if cfg.reset:
        runs.append(("chunk_reset", judge, "solutions.jsonl"))
    if cfg.run_baseline:
        runs.append(("baseline", None, "baseline_solutions.jsonl" if cfg.reset else "solutions.jsonl"))
    methods: dict[str, dict] = {}
    kw = dict(max_tries=cfg.max_tries, judge_answer=cfg.judge_answer, max_chunks=cfg.max_chunks, chunk_max_tokens=cfg.chunk_max_tokens,
              temperature=cfg.temperature, top_p=cfg.top_p, prompt_style=cfg.prompt_style)
    with Grader(timeout_s=cfg.grade_timeout_s) as grader:
        for name, j, filename in runs:
            t0 = time.perf_counter()
            tokens0 = policy.stats.completion_tokens

            def solve_batch(batch: list[Problem], k: int, j: ChunkJudge | None = j, name: str = name) -> list[dict]:
                return chunk_reset_solve(batch, policy, j, grader=grader, progress=progress, desc=name, task=task,
                                         seed=batch_seed(cfg.seed, k), **kw)

            records = solve_resumable(out / filename, problems, cfg.batch_problems, solve_batch)
            m = summarize(records)
            m.update(seconds=round(time.perf_counter() - t0, 3), rounds=max((r["rounds"] for r in records), default=0),
                     policy_tokens=policy.stats.completion_tokens - tokens0, file=filename)
            methods[name] = m
    summary = {"policy": cfg.policy, "judge": cfg.judge if cfg.reset else None,
               "problems_source": cfg.problems, "max_tries": cfg.max_tries, "max_chunks": cfg.max_chunks,
               "temperature": cfg.temperature, "seed": cfg.seed, "judge_spec": cfg.judge_spec.model_dump(),
               "primary": "chunk_reset" if cfg.reset else "baseline", "methods": methods}
    if "chunk_reset" in methods and "baseline" in methods:
        a, b = methods["chunk_reset"]["accuracy"], methods["baseline"]["accuracy"]
        summary["accuracy_gain"] = None if a is None or b is None else a - b
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", report_markdown(summary))
    return summary
