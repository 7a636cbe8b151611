"""Best-of-N reranking and voting with a stepwise judge (StepWiser §4.4's solution score).

The policy samples N solutions per problem; the judge scores every ``<chunk>`` of every solution given
the problem and the earlier chunks, and a solution's score is the **mean over its chunks of
P(Positive)**. P(Positive) comes from :class:`~stepjudge.judge.chunk_judge.ChunkJudge`: with
``JudgeSpec(score="token-prob")`` (the default) it is the verdict token's probability, renormalised over
Positive/Negative; with ``score="votes"`` it is the share of Positive among sampled verdicts.

Pick rules (pure functions, exact and deterministic):

* :func:`solution_score` -- mean of the chunk probabilities; a solution with **no chunks** (it broke the
  chunk format, or was empty) scores ``None``, which ranks below every real score.
* :func:`best_of_n` -- the index of the best sample. Samples with an extracted answer come before
  samples without one (a solution with no final answer cannot be right, so picking it wastes the
  pick); then the higher score wins (``None`` lowest); ties go to the **lowest index**.
* :func:`majority_vote` -- the most frequent answer; ``None`` answers are ignored; ties go to the
  answer **seen first**; all ``None`` gives ``None``.
* :func:`weighted_vote` -- the answer with the largest sum of weights (a ``None`` weight counts 0);
  ``None`` answers are ignored; ties go to the answer **seen first**; all ``None`` gives ``None``.

Voting compares answers as given; the runner passes :func:`~stepjudge.grading.normalize_answer` keys
so ``$1,000$`` and ``1000`` vote together.

The runner (:func:`run_best_of_n`, CLI ``stepjudge rerank``) samples, parses, grades, scores and writes
a run folder: ``run.json``, ``groups.jsonl`` (append log, one line per finished group of problems: the
unit of crash safety, so a re-run resumes), and once all groups are done ``samples.jsonl`` (one line
per problem), ``summary.json`` and ``report.md``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.judge.chunk_judge import ChunkJudge, ChunkQuery, JudgeSpec
from stepjudge.tasks import get_task
from stepjudge.tasks.config import ProblemSetConfig

log = logging.getLogger(__name__)

__all__ = ["solution_score", "best_of_n", "majority_vote", "weighted_vote", "score_solutions", "accuracy_at_n",
           "BestOfNConfig", "rerank_group", "summarize", "run_best_of_n", "METHODS"]

# Accuracy columns of the report, in order.
METHODS = ("first", "majority", "best_of_n", "weighted", "oracle")
METHOD_NAMES = {"first": "first sample (pass@1)", "majority": "majority vote",
                "best_of_n": "judge best-of-N", "weighted": "judge-weighted majority vote",
                "oracle": "oracle (any sample correct)"}


# ---------------------------------------------------------------------------------------- pure rules
def solution_score(chunk_probs: Sequence[float]) -> float | None:
    """Mean P(Positive) over a solution's chunks; ``None`` for a solution with no chunks (never
    preferred over a scored one)."""
    if not chunk_probs:
        return None
    return math.fsum(chunk_probs) / len(chunk_probs)


def best_of_n(answers: Sequence[str | None], scores: Sequence[float | None]) -> int:
    """Index of the sample to keep: answered before unanswered, then highest score (``None`` lowest),
    ties to the lowest index."""
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")
    if not answers:
        raise ValueError("best_of_n needs at least one sample")
    best, best_key = 0, None
    for i, (a, s) in enumerate(zip(answers, scores, strict=True)):
        key = (a is not None, s is not None, s if s is not None else 0.0)
        if best_key is None or key > best_key:  # strict: an equal key keeps the earlier index
            best, best_key = i, key
    return best


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """Most frequent non-None answer; ties to the answer seen first; ``None`` if there is none."""
    return weighted_vote(answers, [1.0] * len(answers))


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float | None]) -> str | None:
    """Answer with the largest total weight (``None`` weight = 0); ``None`` answers ignored; ties to
    the answer seen first; ``None`` if no sample has an answer."""
    if len(answers) != len(weights):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[str, list[float]] = {}  # insertion order = first appearance
    for a, w in zip(answers, weights, strict=True):
        if a is None:
            continue
        totals.setdefault(a, []).append(0.0 if w is None else float(w))
    best, best_total = None, -math.inf
    for a, ws in totals.items():
        total = math.fsum(ws)
        if total > best_total:  # strict: a tie keeps the earlier answer
            best, best_total = a, total
    return best


# ---------------------------------------------------------------------------------------- judging
def score_solutions(judge: ChunkJudge, problems_texts: Sequence[str],
                    solutions_chunks: Sequence[Sequence[str] | None]) -> list[list[float]]:
    """P(Positive) of every chunk of every solution, from ONE ``judge.judge`` call.

    ``problems_texts[i]`` is the problem of solution ``i`` and ``solutions_chunks[i]`` its chunk list
    (``None`` or ``[]`` for a solution without chunks, which gets ``[]``). Each chunk is judged given the
    problem and the chunks before it; one batched call lets the engine share prefills across everything.
    """
    if len(problems_texts) != len(solutions_chunks):
        raise ValueError(f"{len(problems_texts)} problems but {len(solutions_chunks)} solutions")
    queries: list[ChunkQuery] = []
    sizes: list[int] = []
    for problem, chunks in zip(problems_texts, solutions_chunks, strict=True):
        chunks = list(chunks or [])
        sizes.append(len(chunks))
        queries.extend(ChunkQuery(problem, tuple(chunks[:i]), c) for i, c in enumerate(chunks))
    verdicts = judge.judge(queries)
    if len(verdicts) != len(queries):
        raise RuntimeError(f"the judge answered {len(verdicts)} of {len(queries)} chunk queries")
    out, pos = [], 0
    for k in sizes:
        out.append([v.p_positive for v in verdicts[pos:pos + k]])
        pos += k
    return out


# ---------------------------------------------------------------------------------------- runner
class BestOfNConfig(ProblemSetConfig):
    """Every knob of ``stepjudge rerank`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field("smollm2-135m", description="the model that writes the N solutions")
    policy_engine: EngineConfig = Field(default_factory=EngineConfig, description="its model is `policy`")
    n: int = Field(8, ge=1, description="solutions sampled per problem")
    temperature: float = Field(1.0, ge=0, description="policy sampling temperature")
    max_tokens: int = Field(256, ge=1, description="per solution")
    judge: str = Field(description="the stepwise judge: built-in name, checkpoint dir, hub id or served name")
    judge_engine: EngineConfig = Field(default_factory=EngineConfig, description="its model is `judge`")
    judge_spec: JudgeSpec = Field(default_factory=JudgeSpec, description="how the judge is asked and read")
    group_size: int = Field(8, ge=1, description="problems per policy call and judge call (one log line)")
    seed: int = Field(0, description="sampling seed")
    out: str = Field("runs/rerank", description="run folder (resumable)")


# Settings that change the records: resuming a folder with other values is refused.
_RESUME_KEYS = ("problems", "arith", "limit", "policy", "prompt_style", "n", "temperature", "max_tokens",
                "judge", "judge_spec", "group_size", "seed")


def _vote_key(answer: str | None) -> str | None:
    from stepjudge.grading import normalize_answer

    if answer is None:
        return None
    key = normalize_answer(answer)
    return key or None


def _pick_record(samples: list[dict]) -> tuple[dict, dict]:
    """Picks of every method and whether each is correct, from a problem's graded, scored samples."""
    answers = [s["answer"] for s in samples]
    keys = [_vote_key(a) for a in answers]
    scores = [s["score"] for s in samples]
    first_with = {}
    for i, k in enumerate(keys):
        if k is not None:
            first_with.setdefault(k, i)

    def voted(key: str | None) -> tuple[str | None, bool]:
        if key is None:
            return None, False
        i = first_with[key]
        return answers[i], bool(samples[i]["correct"])

    bon = best_of_n(keys, scores)
    maj, maj_ok = voted(majority_vote(keys))
    wv, wv_ok = voted(weighted_vote(keys, scores))
    picks = {"first": 0, "best_of_n": bon, "majority": maj, "weighted": wv}
    correct = {"first": bool(samples[0]["correct"]), "majority": maj_ok,
               "best_of_n": bool(samples[bon]["correct"]), "weighted": wv_ok,
               "oracle": any(s["correct"] for s in samples)}
    return picks, correct


def rerank_group(problems: Sequence[Any], policy: Engine, judge: ChunkJudge, grader: Any,
                 cfg: BestOfNConfig, group: int) -> dict:
    """Sample, parse, grade and judge one group of problems; returns its log line (one record each)."""
    from stepjudge.annotate.groups import group_seed
    from stepjudge.grading.extract import extract_boxed
    from stepjudge.segment.chunks import ChunkFormatError, parse_chunks

    t0 = time.perf_counter()
    seed = group_seed(cfg.seed, group)
    for engine in (policy, judge.engine):  # a group's numbers must not depend on earlier groups' KV
        engine.clear_prefix_cache()
    task = get_task(cfg.problems)
    bases = [task.solver_prompt(p, cfg.prompt_style, policy) for p in problems]
    results = policy.generate(bases, SamplingParams(n=cfg.n, temperature=cfg.temperature,
                                                    max_tokens=cfg.max_tokens, stop=cfg.stop, seed=seed))
    texts = [(p, c) for p, r in zip(problems, results, strict=True) for c in r.completions]
    if len(texts) != cfg.n * len(problems):
        raise RuntimeError(f"the policy returned {len(texts)} samples for {len(problems)} problems x n={cfg.n}")
    grades = task.grade(grader, [(c.text, p) for p, c in texts])

    samples: list[dict] = []
    for i, ((_p, c), g) in enumerate(zip(texts, grades, strict=True)):
        s = {"index": i % cfg.n, "text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason,
             "answer": extract_boxed(c.text), "correct": g.correct, "grade": g.status,
             "format_ok": True, "format_error": None, "chunks": None}
        try:
            s["chunks"] = parse_chunks(c.text).chunks
        except ChunkFormatError as e:
            s.update(format_ok=False, format_error=str(e))
        samples.append(s)

    calls_before, tokens_before = judge.calls, judge.tokens
    probs = score_solutions(judge, [p.problem for p, _ in texts], [s["chunks"] for s in samples])
    for s, pr in zip(samples, probs, strict=True):
        s["chunk_probs"] = pr if s["format_ok"] else None
        s["score"] = solution_score(pr)

    records = []
    for pi, p in enumerate(problems):
        mine = samples[pi * cfg.n:(pi + 1) * cfg.n]
        picks, correct = _pick_record(mine)
        records.append({"problem_id": p.id, "problem": p.problem, "answer": p.answer, "prompt": bases[pi],
                        "samples": mine, "picks": picks, "correct": correct,
                        "judge_calls": sum(len(s["chunks"] or []) for s in mine)})
    return {"group": group, "problems": records,
            "stats": {"seconds": round(time.perf_counter() - t0, 3),
                      "policy_tokens": sum(c.num_tokens for _, c in texts),
                      "judge_calls": judge.calls - calls_before, "judge_tokens": judge.tokens - tokens_before}}


def summarize(records: Sequence[dict], group_stats: Sequence[dict] = ()) -> dict:
    """Accuracy of every pick method plus sample and judge counts (the ``summary.json`` body)."""
    n_prob = len(records)
    samples = [s for r in records for s in r["samples"]]

    def mean(xs: Sequence[float]) -> float | None:
        return math.fsum(xs) / len(xs) if xs else None

    accuracy = {m: mean([float(r["correct"][m]) for r in records]) for m in METHODS}
    counts = {m: sum(bool(r["correct"][m]) for r in records) for m in METHODS}
    scored = [s for s in samples if s["score"] is not None]
    return {
        "problems": n_prob,
        "samples": len(samples),
        "accuracy": accuracy,
        "correct_problems": counts,
        "sample_accuracy": mean([float(s["correct"]) for s in samples]),
        "format_broken_samples": sum(not s["format_ok"] for s in samples),
        "samples_without_answer": sum(s["answer"] is None for s in samples),
        "judge_calls": sum(r["judge_calls"] for r in records),
        "judge_tokens": sum(g.get("judge_tokens", 0) for g in group_stats),
        "policy_tokens": sum(g.get("policy_tokens", 0) for g in group_stats),
        "seconds": round(sum(g.get("seconds", 0.0) for g in group_stats), 3),
        "mean_score_correct": mean([s["score"] for s in scored if s["correct"]]),
        "mean_score_wrong": mean([s["score"] for s in scored if not s["correct"]]),
    }


def accuracy_at_n(records: Sequence[dict], n: int) -> dict[str, float | None]:
    """Accuracy of every pick method when only the first ``n`` samples of each problem are drawn.

    The samples were drawn independently, so the first ``n`` of N are an N = ``n`` run: one N = 8
    rerank also reports N = 1, 2, 4 without sampling or judging again.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows = [_pick_record(r["samples"][:n])[1] for r in records]
    return {m: (math.fsum(float(c[m]) for c in rows) / len(rows) if rows else None) for m in METHODS}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report_markdown(summary: dict, cfg: BestOfNConfig) -> str:
    lines = [f"# Best-of-N with a stepwise judge (n={cfg.n})", "",
             f"policy `{cfg.policy}` ({cfg.prompt_style}, T={cfg.temperature:g}), judge `{cfg.judge}` "
             f"(P(Positive) from {'the verdict token' if cfg.judge_spec.score == 'token-prob' else 'vote shares'}"
             f"), problems `{cfg.problems}`: {summary['problems']}", "",
             "| method | accuracy (%) | correct / problems |", "|---|---|---|"]
    for m in METHODS:
        lines.append(f"| {METHOD_NAMES[m]} | {_fmt(summary['accuracy'][m])} | "
                     f"{summary['correct_problems'][m]} / {summary['problems']} |")
    lines += ["",
              f"- samples: {summary['samples']} (accuracy {_fmt(summary['sample_accuracy'])}%), broken chunk "
              f"format: {summary['format_broken_samples']}, no boxed answer: {summary['samples_without_answer']}",
              f"- judge calls (chunks judged): {summary['judge_calls']}, judge output tokens: "
              f"{summary['judge_tokens']}, policy tokens: {summary['policy_tokens']}",
              f"- mean solution score (100 x mean P(Positive)): correct samples "
              f"{_fmt(summary['mean_score_correct'])}, wrong samples {_fmt(summary['mean_score_wrong'])}", ""]
    return "\n".join(lines)


class BestOfNRun:
    """A resumable best-of-N job in one run folder."""

    def __init__(self, config: BestOfNConfig, policy_engine: Engine | None = None,
                 judge_engine: Engine | None = None, progress: bool = True):
        self.config = config.model_copy(update={
            "policy_engine": config.policy_engine.model_copy(update={"model": config.policy}),
            "judge_engine": config.judge_engine.model_copy(update={"model": config.judge})})
        self.out = Path(self.config.out)
        self._policy, self._judge = policy_engine, judge_engine
        self.progress = progress

    def run(self) -> dict:
        from tqdm.auto import tqdm

        from stepjudge.engines.factory import make_engine
        from stepjudge.grading import Grader
        from stepjudge.utils.io import JsonlAppender
        from stepjudge.utils.runfolder import run_folder

        cfg = self.config
        problems = get_task(cfg.problems).load(cfg.arith, limit=cfg.limit, data_root=cfg.data_root)  # inputs first
        g = cfg.group_size
        groups = [problems[i:i + g] for i in range(0, len(problems), g)]
        with run_folder(self.out, "rerank", cfg.model_dump(mode="json"), _RESUME_KEYS), \
                JsonlAppender(self.out / "groups.jsonl") as log_file:
            done = {line["group"] for line in log_file.records}
            todo = [i for i in range(len(groups)) if i not in done]
            if todo:
                policy = self._policy or make_engine(cfg.policy_engine)
                judge_engine = self._judge
                if judge_engine is None:  # the same model on the same settings is loaded once
                    same = self._policy is None and cfg.judge_engine == cfg.policy_engine
                    judge_engine = policy if same else make_engine(cfg.judge_engine)
                judge = ChunkJudge(judge_engine, cfg.judge_spec)
                bar = tqdm(total=sum(len(groups[i]) for i in todo), unit="problem", desc="rerank",
                           disable=not self.progress)
                # Only the boxed answer counts, so grading and the recorded answer always agree.
                with Grader(timeout_s=cfg.grade_timeout_s, formats=("boxed",)) as grader:
                    for i in todo:
                        line = rerank_group(groups[i], policy, judge, grader, cfg, i)
                        log_file.append(line)
                        bar.update(len(groups[i]))
                        bar.set_postfix(judge_calls=judge.calls)
                bar.close()
            lines = sorted(log_file.records, key=lambda x: x["group"])
            return self.finish(lines)

    def finish(self, lines: Sequence[dict]) -> dict:
        from stepjudge.utils.io import atomic_write_json, atomic_write_text, write_jsonl_atomic

        records = [r for line in lines for r in line["problems"]]
        summary = summarize(records, [line["stats"] for line in lines])
        summary["config"] = {k: getattr(self.config, k) for k in ("policy", "judge", "n", "temperature",
                                                                  "prompt_style", "problems")}
        write_jsonl_atomic(self.out / "samples.jsonl", records)
        atomic_write_json(self.out / "summary.json", summary)
        atomic_write_text(self.out / "report.md", report_markdown(summary, self.config))
        return summary


def run_best_of_n(config: BestOfNConfig | dict, policy_engine: Engine | None = None,
                  judge_engine: Engine | None = None, progress: bool = True) -> dict:
    """Python API of ``stepjudge rerank``; returns the summary (also in ``out/summary.json``).

    ``policy_engine`` / ``judge_engine`` replace the engines the config would build (tests, notebooks
    that already hold a loaded model; one engine may serve both roles).
    """
    if isinstance(config, dict):
        config = BestOfNConfig(**config)
    return BestOfNRun(config, policy_engine=policy_engine, judge_engine=judge_engine, progress=progress).run()
