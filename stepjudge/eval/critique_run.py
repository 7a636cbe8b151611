"""``stepjudge eval critique``: a critic and an actor evaluated the Critique-RL way (spec §3(e), §3(a)5).

Two parts, one run folder:

1. **Greedy loop** (the paper's table): response -> critique -> refinement for ``rounds`` rounds, greedy
   (T = 0), every response critiqued and refined. It is ``stepjudge refine`` itself: run here into
   ``out/greedy`` (resumable), or read from a finished ``refine`` folder (``refine_run``). Reported per round
   with :func:`~stepjudge.eval.critique.refinement_metrics` (each round against its input) and overall.
2. **Refinement vs parallel sampling at equal budget** (the paper's MV@K comparison, Fig. 1/6 and Table 11,
   where one response-critique-refinement round with K samples is set against 3K parallel actor samples):
   for every problem the actor samples ``(1 + 2 R) K`` responses at ``sample_temperature`` (paper 0.7), and
   the first ``K`` of them start K chains, each critiqued and refined at the same temperature for R rounds
   (R = the greedy part's rounds). The **budget** is generations per problem: a chain of r rounds costs
   1 + 2r (its response, then one critique and one refinement per round), so K chains after round r cost
   (1 + 2r) K, and they are compared with MV and Pass over the first (1 + 2r) K parallel samples (r = 1:
   the paper's K vs 3K). Curves take k = 1, 2, 4, ... K chains (first samples, see
   :mod:`stepjudge.eval.critique`); answers are the task's extracted answers, normalised. ``k: 0`` skips
   this part.

Files: ``samples.jsonl`` (one fsynced line per problem: its parallel samples and its chains; a re-run resumes
after the last finished problem), ``summary.json``, ``report.md``, ``accuracy_vs_k.png``, ``run.json`` (a
folder holding other settings is refused).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.data.records import Problem
from stepjudge.infer.refine import RefineConfig

log = logging.getLogger(__name__)

__all__ = ["CritiqueEvalConfig", "chain_budget", "plot_budget_curves", "run_critique_eval", "sample_chains",
           "sampling_summary"]

# Settings that change samples.jsonl: resuming a folder with other values is refused.
# Engines count by their model only (threads, batch rows or a server's URL may change between calls).
_RESUME_KEYS = ("refine_run", "rows", "problems", "arith", "limit", "actor_model", "critic_model", "rounds",
                "max_tokens", "critique_max_tokens", "refine_max_tokens", "k", "sample_temperature", "seed")


class CritiqueEvalConfig(RefineConfig):
    """Every knob of ``stepjudge eval critique``: the ``refine`` options plus the sampling comparison."""

    out: str = Field(description="run folder: greedy/ (the refine loop), samples.jsonl, summary.json, report.md, "
                                 "accuracy_vs_k.png")
    refine_run: str | None = Field(None, description="a finished `stepjudge refine` folder whose refine.jsonl gives "
                                                     "the greedy metrics (and the problems); None = run the loop "
                                                     "here into out/greedy")
    k: int = Field(4, ge=0, description="chains per problem for MV@K / Pass@K (k = 1, 2, 4, ... K); the actor "
                                        "also samples (1 + 2 rounds) K parallel responses; 0 = greedy part only")
    sample_temperature: float = Field(0.7, ge=0, description="temperature of the sampled responses, critiques "
                                                             "and refinements (paper 0.7)")


def chain_budget(rounds: int) -> int:
    """Generations of one chain after ``rounds`` rounds: its response, then a critique and a refinement each."""
    return 1 + 2 * rounds


def _ks(k: int) -> list[int]:
    """1, 2, 4, ... up to ``k``, and ``k`` itself."""
    ks, x = [], 1
    while x < k:
        ks.append(x)
        x *= 2
    return [*ks, k]


def _answer(result: Any) -> str | None:
    from stepjudge.grading import normalize_answer

    if result.predicted is None:
        return None
    return normalize_answer(result.predicted) or None


def sample_chains(problems: Sequence[Problem], actor: Any, critic: Any, grader: Any, cfg: CritiqueEvalConfig,
                  rounds: int, seed: int) -> list[dict[str, Any]]:
    """One record per problem: ``(1 + 2 rounds) k`` sampled responses (``parallel``) and ``k`` chains started
    from the first k of them, each a list of rounds (critique, verdict, refinement, answer, correct)."""
    from stepjudge.judge.critique import parse_final_verdict
    from stepjudge.judge.critique_loop import critique, grade_results, refine, solve

    t = cfg.sample_temperature
    texts = solve(actor, problems, n=chain_budget(rounds) * cfg.k, temperature=t, max_tokens=cfg.max_tokens,
                  seed=seed)
    flat = [(p, y) for p, ys in zip(problems, texts, strict=True) for y in ys]
    grades = grade_results(grader, [p for p, _ in flat], [y for _, y in flat])
    n = chain_budget(rounds) * cfg.k
    records = [{"id": p.id, "problem": p.to_dict(), "chains": [[] for _ in range(cfg.k)],
                "parallel": [{"text": y, "answer": _answer(g), "correct": g.correct}
                             for y, g in zip(ys, grades[j * n:(j + 1) * n], strict=True)]}
               for j, (p, ys) in enumerate(zip(problems, texts, strict=True))]
    chain_problems = [p for p in problems for _ in range(cfg.k)]
    current = [y for ys in texts for y in ys[:cfg.k]]
    for r in range(rounds):
        crits = [c[0] for c in critique(critic, chain_problems, current, temperature=t,
                                        max_tokens=cfg.critique_max_tokens, seed=seed + 1 + r)]
        refined = refine(actor, chain_problems, current, crits, max_tokens=cfg.refine_max_tokens, temperature=t,
                         seed=seed + 1 + r)
        results = grade_results(grader, chain_problems, refined)
        for i, (c, y2, g) in enumerate(zip(crits, refined, results, strict=True)):
            records[i // cfg.k]["chains"][i % cfg.k].append(
                {"critique": c, "verdict": parse_final_verdict(c), "refinement": y2, "answer": _answer(g),
                 "correct": g.correct})
        current = refined
    return records


def sampling_summary(records: Sequence[dict[str, Any]], k: int, rounds: int) -> dict[str, Any]:
    """MV@K and Pass@K of the chains after each round vs the parallel samples at the same budget."""
    from stepjudge.eval.critique import mv_at_k, pass_at_k

    ks = _ks(k)
    parallel = [[(s["answer"], s["correct"]) for s in r["parallel"]] for r in records]
    budgets = sorted({chain_budget(r) * x for r in range(rounds + 1) for x in ks})
    out: dict[str, Any] = {
        "problems": len(records), "k": k, "rounds": rounds, "parallel_samples": chain_budget(rounds) * k,
        "parallel": {"budget": budgets, "mv": [mv_at_k(parallel, b) for b in budgets],
                     "pass": [pass_at_k(parallel, b) for b in budgets]},
        "refine": []}
    for r in range(1, rounds + 1):
        chains = [[(c[r - 1]["answer"], c[r - 1]["correct"]) for c in rec["chains"]] for rec in records]
        out["refine"].append({"round": r, "k": ks, "budget": [chain_budget(r) * x for x in ks],
                              "mv": [mv_at_k(chains, x) for x in ks], "pass": [pass_at_k(chains, x) for x in ks],
                              "parallel_mv": [mv_at_k(parallel, chain_budget(r) * x) for x in ks],
                              "parallel_pass": [pass_at_k(parallel, chain_budget(r) * x) for x in ks]})
    return out


def plot_budget_curves(sampling: dict[str, Any], path: Path) -> None:
    """Accuracy vs generations per problem: parallel sampling and the chains after each round (MV and Pass)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    par = sampling["parallel"]
    ax.plot(par["budget"], par["mv"], marker="o", color="grey", label="parallel MV")
    ax.plot(par["budget"], par["pass"], marker="o", color="grey", linestyle="--", label="parallel Pass")
    for curve in sampling["refine"]:
        line = ax.plot(curve["budget"], curve["mv"], marker="s", label=f"refine round {curve['round']} MV@K")
        ax.plot(curve["budget"], curve["pass"], marker="s", linestyle="--", color=line[0].get_color(),
                label=f"refine round {curve['round']} Pass@K")
    ax.set(xscale="log", xlabel="generations per problem (budget)", ylabel="accuracy (%)",
           title="refinement vs parallel sampling")
    ax.set_xticks(par["budget"], [str(b) for b in par["budget"]])
    ax.legend(fontsize=7)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def report_markdown(summary: dict[str, Any], cfg: CritiqueEvalConfig) -> str:
    """report.md: the greedy metrics per round and overall, then the equal-budget table per round."""
    greedy = summary["greedy"]
    keys = ("acc", "acc_refine", "delta", "delta_c2i", "delta_i2c", "acc_dis")
    lines = [f"# Critique-RL evaluation: critic {cfg.critic.model}, actor {cfg.actor.model}", "",
             f"Greedy loop on {greedy['items']} responses ({summary['greedy_source']}); percentages; "
             "Δc→i / Δi→c over the whole set; Acc@Dis over parseable verdicts.", "",
             "| round | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    rows = [(str(i + 1), m) for i, m in enumerate(greedy["rounds"])]
    if greedy["overall"] is not None and len(greedy["rounds"]) > 1:
        rows.append(("overall", greedy["overall"]))
    lines += [f"| {name} | " + " | ".join(_pct(m[k]) for k in keys) + " |" for name, m in rows]
    sampling = summary.get("sampling")
    if sampling:
        lines += ["", f"## Refinement vs parallel sampling (T = {cfg.sample_temperature}, {sampling['problems']} "
                  "problems)", "",
                  "Budget = generations per problem: K chains after round r cost (1 + 2r) K, compared with the first "
                  "(1 + 2r) K parallel actor samples.", "",
                  "| round | K chains | budget | MV@K refine | MV parallel | Pass@K refine | Pass parallel |",
                  "|---|---|---|---|---|---|---|"]
        for c in sampling["refine"]:
            for i, x in enumerate(c["k"]):
                lines.append(f"| {c['round']} | {x} | {c['budget'][i]} | {_pct(c['mv'][i])} | "
                             f"{_pct(c['parallel_mv'][i])} | {_pct(c['pass'][i])} | {_pct(c['parallel_pass'][i])} |")
        lines += ["", "![accuracy vs budget](accuracy_vs_k.png)"]
    return "\n".join(lines) + "\n"


def _read_refine_run(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """A finished ``stepjudge refine`` folder's records, checked (file, line, field) before anything runs."""
    from stepjudge.errors import DataError, RunFolderError
    from stepjudge.infer.refine import summarize_refine
    from stepjudge.utils.io import iter_jsonl

    if not (folder / "summary.json").exists():
        raise RunFolderError(f"{folder} has no summary.json: finish that `stepjudge refine` run first")
    path = folder / "refine.jsonl"
    records = []
    for line, rec in iter_jsonl(path, what="refine log"):
        for key, types in (("id", str), ("problem", dict), ("rounds", list)):
            if not isinstance(rec.get(key), types):
                raise DataError(f"expected {types.__name__} ({'missing' if key not in rec else 'wrong type'})",
                                path=str(path), line=line, field=key)
        records.append(rec)
    if not records:
        raise DataError("no records: the refine log is empty", path=str(path))
    return records, summarize_refine(records), str(folder)


def _greedy(cfg: CritiqueEvalConfig, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """The greedy loop's records and summary: read from ``refine_run`` or run (resumably) into out/greedy."""
    from stepjudge.infer.refine import run_refine, summarize_refine
    from stepjudge.utils.io import read_jsonl

    if cfg.refine_run:
        return _read_refine_run(Path(cfg.refine_run))
    fields = {k: v for k, v in cfg.model_dump().items() if k in RefineConfig.model_fields}
    greedy = RefineConfig(**{**fields, "out": str(Path(cfg.out) / "greedy")})
    run_refine(greedy, progress=progress)
    records = read_jsonl(Path(greedy.out) / "refine.jsonl")
    return records, summarize_refine(records), greedy.out


def run_critique_eval(config: CritiqueEvalConfig | dict, *, progress: bool = False) -> dict[str, Any]:
    """Run (or resume) both parts; writes summary.json, report.md and accuracy_vs_k.png; returns the summary."""
    from stepjudge.utils.runfolder import run_folder

    cfg = config if isinstance(config, CritiqueEvalConfig) else CritiqueEvalConfig(**config)
    out = Path(cfg.out)
    given = _read_refine_run(Path(cfg.refine_run)) if cfg.refine_run else None  # inputs before the folder
    with run_folder(out, "eval-critique", {**cfg.model_dump(mode="json"), "actor_model": cfg.actor.model,
                                           "critic_model": cfg.critic.model}, _RESUME_KEYS):
        return _critique_eval_in_folder(cfg, out, given or _greedy(cfg, progress), progress)


def _critique_eval_in_folder(cfg: CritiqueEvalConfig, out: Path,
                             greedy_run: tuple[list[dict[str, Any]], dict[str, Any], str],
                             progress: bool) -> dict[str, Any]:
    from stepjudge.engines.factory import make_engine
    from stepjudge.grading import Grader
    from stepjudge.utils.io import JsonlAppender, atomic_write_json, atomic_write_text

    records, greedy, source = greedy_run
    summary: dict[str, Any] = {"greedy": greedy, "greedy_source": source, "sampling": None}
    rounds = len(greedy["rounds"])
    if cfg.k and rounds:
        problems = list({r["problem"]["id"]: Problem.from_dict(r["problem"]) for r in records}.values())
        with JsonlAppender(out / "samples.jsonl") as samples:
            done = {r["id"] for r in samples.records}
            todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
            if todo:
                with make_engine(cfg.actor) as actor, make_engine(cfg.critic) as critic, \
                        Grader(timeout_s=cfg.grade_timeout_s) as grader:
                    for b in range(0, len(todo), cfg.batch_size):
                        batch = todo[b:b + cfg.batch_size]
                        for rec in sample_chains([p for _, p in batch], actor, critic, grader, cfg, rounds,
                                                 seed=cfg.seed + batch[0][0]):
                            samples.append(rec)
                        if progress:
                            log.info("sampled %d / %d problems", len(done) + b + len(batch), len(problems))
            order = {p.id: i for i, p in enumerate(problems)}
            sampled = sorted((r for r in samples.records if r["id"] in order), key=lambda r: order[r["id"]])
        summary["sampling"] = {**sampling_summary(sampled, cfg.k, rounds), "temperature": cfg.sample_temperature}
        plot_budget_curves(summary["sampling"], out / "accuracy_vs_k.png")
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", report_markdown(summary, cfg))
    return summary
