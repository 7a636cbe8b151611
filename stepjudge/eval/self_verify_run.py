"""``stepjudge eval self-verify``: how well a policy's last-token self-reward judges its own solutions.

n solutions per problem are sampled with the LaSeR solver prompt, graded by the task, and each
finished one is scored with one extra token (:func:`stepjudge.policy.self_reward.self_reward_logprobs`:
in-process with the ``hf`` engine, or prompt log-probs from a served model). Truncated responses
keep r_s = 0, as in training. Reported (``metrics.json``, ``report.md``): accuracy; self-verification
F1 over "all" responses and "filtered" (only responses with an extractable answer); AUROC; ECE with a
calibration curve (``calibration.png``); weighted vote vs majority vote vs pass@1 for k = 1, 2, 4, ... n
(``voting.png``). Every sample is in ``samples.jsonl``.

With ``verifier`` set, an external stepwise judge (a StepWiser judge, e.g. the pipeline's
``judge/final``) scores the same responses for comparison, exactly as ``stepjudge rerank`` scores
solutions (:func:`stepjudge.infer.best_of_n.score_solutions` then
:func:`~stepjudge.infer.best_of_n.solution_score`: the mean over a response's ``<chunk>``s of
P(Positive)). It judges every response, truncated ones included (a judge reads text, it needs no
EOS); a response without chunks has score None, which counts as 0 in the metrics (as a truncated
response's r_s does). The same metrics, computed from its scores with the same ``threshold``, go to
``metrics.json["verifier"]`` and a side-by-side table in ``report.md``; without ``verifier`` nothing
of this runs and the outputs are as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.base import Engine
from stepjudge.engines.factory import EngineConfig
from stepjudge.errors import DataError
from stepjudge.judge.chunk_judge import ChunkJudge, JudgeSpec
from stepjudge.policy.self_reward import SolverStyle
from stepjudge.tasks.arith import NEW_PROBLEMS_SEED_OFFSET, ArithConfig

__all__ = ["SelfVerifyConfig", "plot_calibration", "plot_voting", "run_self_verify", "self_verify_metrics",
           "verifier_scores"]


class SelfVerifyConfig(BaseModel):
    """Every knob of ``stepjudge eval self-verify``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="policy to evaluate: built-in name, path (e.g. runs/x/final) or "
                                                    "hub id; the served model name with --engine.kind openai")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="how the policy runs (model is set above)")
    out: str = Field(description="folder for samples.jsonl, metrics.json, report.md and the plots")
    problems: str = Field("arith", description="arith | gsm8k[:split] | math500 | math-test | path | hub id")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=64, steps=2),
                               description="the generated arith problems, as in training (see new_problems)")
    new_problems: bool = Field(
        True, description="evaluate on new problems of the same kind (the task decides: arith draws with seed + "
                          f"{NEW_PROBLEMS_SEED_OFFSET}); datasets give the same source, so pick a held-out split")
    limit: int | None = Field(None, ge=1, description="first N problems")
    data_root: str | None = Field(None, description="folder of the bundled datasets; None: $STEPJUDGE_DATA")
    prompt_style: SolverStyle = Field("fewshot-chat", description="the solver prompt (as in training)")
    n: int = Field(8, ge=1, description="solutions sampled per problem")
    temperature: float = Field(1.0, ge=0, description="sampling temperature (paper: 1.0)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus-sampling mass")
    max_tokens: int = Field(64, ge=1, description="tokens per solution (paper: 8192)")
    seed: int = Field(0, description="sampling seed")
    z_c_token_id: int | None = Field(None, description="reserved token; None: per tokenizer family")
    beta_v: float = Field(0.1, gt=0, description="r_s = beta_v (log pi(z_c) - c_ref), as in training")
    c_ref: float | None = Field(None, description="None: the training run's c_ref.json beside the model folder")
    threshold: float = Field(0.5, description="predicted correct iff r_s > threshold")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    verifier: str | None = Field(
        None, description="external stepwise judge scoring the same responses for comparison (a StepWiser "
                          "judge: built-in name, checkpoint dir such as runs/x/judge/final, hub id or served "
                          "name); solution score = mean chunk P(Positive), as `stepjudge rerank`; None: off")
    verifier_engine: EngineConfig = Field(default_factory=EngineConfig,
                                          description="how the verifier runs (its model is `verifier`)")
    verifier_spec: JudgeSpec = Field(default_factory=JudgeSpec,
                                     description="how the verifier is asked and read (as rerank's judge_spec)")


def _c_ref(cfg: SelfVerifyConfig) -> float:
    if cfg.c_ref is not None:
        return cfg.c_ref
    path = Path(cfg.model).parent / "c_ref.json"
    if not path.exists():
        raise DataError(f"set c_ref: no {path} (the training run writes it when it measures c_ref)")
    return read_c_ref(path)


def read_c_ref(path: Path) -> float:
    """The ``mean`` of a ``c_ref.json``; a corrupt file is a DataError naming it and the field."""
    from stepjudge.utils.io import read_json

    mean = read_json(path, what="c_ref file").get("mean")
    if isinstance(mean, bool) or not isinstance(mean, (int, float)):
        raise DataError(f"expected a number, got {mean!r:.40}", path=str(path), field="mean")
    return float(mean)


def self_verify_metrics(samples: list[dict], threshold: float = 0.5, score_key: str = "r_s") -> dict:
    """Accuracy, F1 (all / filtered), AUROC, ECE, calibration bins and vote curves of scored samples.

    ``score_key`` names the sample field holding the score (``r_s``; ``verifier_score`` for the
    external verifier, whose None -- a response without chunks -- counts as 0).
    """
    from stepjudge.eval.metrics import auroc
    from stepjudge.eval.self_verify import (
        calibration_bins,
        expected_calibration_error,
        self_verification_f1,
        vote_curves,
    )

    def score(s: dict) -> float:
        return 0.0 if s[score_key] is None else float(s[score_key])

    scores, correct = [score(s) for s in samples], [s["correct"] for s in samples]
    answered = [s for s in samples if s["answer"] is not None]
    groups: dict[str, dict[str, list]] = {}
    for s in samples:
        g = groups.setdefault(s["problem_id"], {"answers": [], "scores": [], "correct": []})
        g["answers"].append(s["answer"])
        g["scores"].append(score(s))
        g["correct"].append(s["correct"])
    n = max((len(g["answers"]) for g in groups.values()), default=1)
    ks = sorted({*(2 ** i for i in range(n.bit_length()) if 2 ** i <= n), n})
    return {
        "n_samples": len(samples), "n_problems": len(groups),
        "accuracy": 100.0 * sum(correct) / len(correct) if correct else None,
        "finished_share": sum(s["finished"] for s in samples) / len(samples) if samples else None,
        "f1_all": self_verification_f1(scores, correct, threshold),
        "f1_filtered": self_verification_f1([score(s) for s in answered], [s["correct"] for s in answered],
                                            threshold),
        "auroc": auroc(correct, scores),
        "ece": expected_calibration_error(scores, correct),
        "calibration": calibration_bins(scores, correct),
        "voting": vote_curves(list(groups.values()), ks),
    }


def verifier_scores(judge: ChunkJudge, problems_texts: Sequence[str], responses: Sequence[str]) -> list[dict]:
    """Each response's chunk P(Positive) and solution score from a stepwise judge, as rerank scores them.

    A response is split into its ``<chunk>``s; one that breaks the chunk format has none and gets
    ``verifier_chunk_probs`` and ``verifier_score`` None. Every chunk of every response goes to the
    judge in one batched :func:`~stepjudge.infer.best_of_n.score_solutions` call.
    """
    from stepjudge.infer.best_of_n import score_solutions, solution_score
    from stepjudge.segment.chunks import ChunkFormatError, parse_chunks

    chunks: list[list[str] | None] = []
    for text in responses:
        try:
            chunks.append(parse_chunks(text).chunks)
        except ChunkFormatError:
            chunks.append(None)
    probs = score_solutions(judge, problems_texts, chunks)
    return [{"verifier_chunk_probs": None if c is None else pr, "verifier_score": solution_score(pr)}
            for c, pr in zip(chunks, probs, strict=True)]


def _figure(path: Path, draw: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig.subplots())
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def plot_calibration(metrics: dict, path: Path) -> None:
    def draw(ax: Any) -> None:
        bins = metrics["calibration"]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"self-reward (ECE {metrics['ece'] or 0:.3f})")
        ax.set(xlabel="r_s clipped to [0, 1]", ylabel="share correct", title="calibration", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8)

    _figure(path, draw)


def plot_voting(metrics: dict, path: Path) -> None:
    def draw(ax: Any) -> None:
        v = metrics["voting"]
        for key in ("weighted", "majority", "pass@1"):
            ax.plot(v["k"], v[key], marker="o", label=key)
        if metrics.get("verifier"):
            ax.plot(v["k"], metrics["verifier"]["voting"]["weighted"], marker="s", label="weighted (verifier)")
        ax.set(xscale="log", xlabel="k samples per problem", ylabel="accuracy (%)", title="voting")
        ax.set_xticks(v["k"], [str(k) for k in v["k"]])
        ax.legend(fontsize=8)

    _figure(path, draw)


def _report(metrics: dict, cfg: SelfVerifyConfig) -> str:
    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{x:.1f}"

    lines = [f"# Self-verification of {cfg.model}", "",
             f"{metrics['n_problems']} problems x {cfg.n} samples ({cfg.problems}); accuracy "
             f"{pct(metrics['accuracy'])}%, finished {pct(100 * (metrics['finished_share'] or 0))}%.", "",
             "| responses | acc on correct | acc on incorrect | F1 |", "|---|---|---|---|"]
    for key in ("all", "filtered"):
        f = metrics[f"f1_{key}"]
        lines.append(f"| {key} | {pct(f['acc_correct'])} | {pct(f['acc_incorrect'])} | {pct(f['f1'])} |")
    auc, ece = metrics["auroc"], metrics["ece"]
    lines += ["", f"AUROC {'n/a' if auc is None else f'{auc:.3f}'}, ECE {'n/a' if ece is None else f'{ece:.3f}'}",
              "", "| k | weighted vote | majority vote | pass@1 |", "|---|---|---|---|"]
    v = metrics["voting"]
    lines += [f"| {k} | {pct(w)} | {pct(m)} | {pct(p)} |"
              for k, w, m, p in zip(v["k"], v["weighted"], v["majority"], v["pass@1"], strict=True)]
    lines += _verifier_report(metrics)
    return "\n".join(lines) + "\n\n![calibration](calibration.png) ![voting](voting.png)\n"


def _verifier_report(metrics: dict) -> list[str]:
    """The self-reward and the external verifier side by side, on the same responses (none without one)."""
    ver = metrics.get("verifier")
    if not ver:
        return []

    def cell(x: Any, digits: int = 1) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    rows = [("acc. on correct, all (%)", "f1_all.acc_correct", 1), ("acc. on incorrect, all (%)", "f1_all.acc_incorrect", 1),
            ("F1, all", "f1_all.f1", 1), ("F1, filtered", "f1_filtered.f1", 1), ("AUROC", "auroc", 3),
            ("ECE", "ece", 3), ("weighted vote at k = n (%)", "voting.weighted.-1", 1),
            ("majority vote at k = n (%)", "voting.majority.-1", 1)]

    def get(m: dict, path: str) -> Any:
        node: Any = m
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else (node or {}).get(part)
        return node

    lines = ["", f"## Self-reward vs external verifier `{ver['model']}` (same responses)", "",
             "| metric | self-reward | verifier |", "|---|---|---|"]
    lines += [f"| {name} | {cell(get(metrics, key), d)} | {cell(get(ver, key), d)} |" for name, key, d in rows]
    lines.append(f"| responses scored | {metrics['scored']} | {ver['scored']} |")
    return lines


def run_self_verify(config: SelfVerifyConfig | dict, policy_engine: Engine | None = None,
                    verifier_engine: Engine | None = None) -> dict:
    """Sample, grade, score (and judge, with a verifier), and write the run folder; returns the metrics.

    ``policy_engine`` / ``verifier_engine`` replace the engines the config would build (tests,
    notebooks that already hold a loaded model); engines passed in are not closed here.
    """
    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.factory import make_engine
    from stepjudge.grading import Grader, normalize_answer
    from stepjudge.policy.self_reward import self_reward_logprobs, solver_messages, z_c_token_id
    from stepjudge.tasks import get_task
    from stepjudge.tasks.problems import load_problem_set
    from stepjudge.utils.io import atomic_write_json, atomic_write_text, write_jsonl_atomic

    cfg = config if isinstance(config, SelfVerifyConfig) else SelfVerifyConfig(**config)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    c_ref = _c_ref(cfg)
    task = get_task(cfg.problems)
    source, arith = cfg.problems, cfg.arith.model_dump()
    if cfg.new_problems:
        fresh = task.new_problems_options({"problems": source, "arith": arith})
        source, arith = fresh.get("problems", source), fresh.get("arith", arith)
    problems = load_problem_set(source, arith, cfg.limit, data_root=cfg.data_root)
    prompts = [solver_messages(p.problem, cfg.prompt_style, task.fewshot_examples) for p in problems]
    engine = policy_engine or make_engine({**cfg.engine.model_dump(), "model": cfg.model})
    try:
        params = SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                                seed=cfg.seed)
        results = engine.generate(prompts, params)
        rows = [(p, prompt, c) for p, prompt, r in zip(problems, prompts, results, strict=True) for c in r.completions]
        z_c = z_c_token_id(engine.tokenizer, cfg.z_c_token_id)
        done = [i for i, (_, _, c) in enumerate(rows) if c.finish_reason == "stop"]
        lps = self_reward_logprobs(engine, [rows[i][1] for i in done], [rows[i][2].text for i in done], z_c)
    finally:
        if policy_engine is None:
            engine.close()
    logp = dict(zip(done, lps, strict=True))
    with Grader(timeout_s=cfg.grade_timeout_s) as grader:
        grades = task.grade(grader, [(c.text, p) for p, _, c in rows])
    samples = [{"problem_id": p.id, "response": c.text, "finished": i in logp, "correct": g.correct,
                "answer": normalize_answer(g.predicted) if g.predicted is not None else None,
                "logp_z_c": logp.get(i), "r_s": cfg.beta_v * (logp[i] - c_ref) if i in logp else 0.0}
               for i, ((p, _, c), g) in enumerate(zip(rows, grades, strict=True))]
    verifier = None
    if cfg.verifier is not None:  # the policy is closed first: one model in memory at a time
        judge_engine = verifier_engine or make_engine({**cfg.verifier_engine.model_dump(), "model": cfg.verifier})
        try:
            judge = ChunkJudge(judge_engine, cfg.verifier_spec)
            for s, v in zip(samples, verifier_scores(judge, [p.problem for p, _, _ in rows],
                                                     [c.text for _, _, c in rows]), strict=True):
                s.update(v)
        finally:
            if verifier_engine is None:
                judge_engine.close()
        verifier = {k: v for k, v in self_verify_metrics(samples, cfg.threshold, "verifier_score").items()
                    if k not in ("n_samples", "n_problems", "accuracy", "finished_share")}
        verifier.update(model=cfg.verifier, spec=cfg.verifier_spec.model_dump(), judge_calls=judge.calls,
                        scored=sum(s["verifier_score"] is not None for s in samples))
    write_jsonl_atomic(out / "samples.jsonl", samples)
    metrics = {**self_verify_metrics(samples, cfg.threshold), "model": cfg.model, "c_ref": c_ref, "z_c": z_c}
    if verifier is not None:
        metrics.update(scored=len(logp), verifier=verifier)
    atomic_write_json(out / "metrics.json", metrics)
    plot_calibration(metrics, out / "calibration.png")
    plot_voting(metrics, out / "voting.png")
    atomic_write_text(out / "report.md", _report(metrics, cfg))
    return metrics
