"""StepWiser's stages, each declared once with :func:`~stepjudge.pipeline.registry.register_stage`.

============== ======================================= =========================================
stage          what                                    done when
============== ======================================= =========================================
annotate       sample K solutions, MC rollouts, labels annotate/report.json
judge_data     judge prompts, balanced train, held-out judge_data/stats.json
judge_warmup   optional: SFT warm-up in the judge's    judge_warmup/final/ and warmup_stats.json
               own format, held-out before/after
judge          GRPO judge + held-out before/after      judge/report.md and judge/final/
processbench   ProcessBench slice, base vs trained     processbench_{before,after}/summary.json
chunk_reset    Chunk-Reset vs the same policy alone    chunk_reset/summary.json
best_of_n      judge best-of-N / weighted vote vs maj. best_of_n/summary.json
selection      SFT on judge- vs outcome-selected samples selection/summary.json
============== ======================================= =========================================

(``report``, declared in :mod:`stepjudge.pipeline.report`, runs last.) Each stage's YAML section takes
the keys of the stage's own command (``stepjudge annotate``, ``train judge-data``, ``train judge``,
``eval processbench``, ``solve``, ``rerank``); the builders below fill in the paths that connect the
stages and the shared policy/engine. Builders run when the pipeline config is loaded, so a typo fails
before an hour of annotation, not after it.

``judge_warmup`` runs only when the YAML has a ``judge_warmup:`` section (``train judge-warmup``
options). Then the judge is asked the warm-up's way everywhere: ``judge`` starts from
``judge_warmup/final`` with ``prompt_from_warmup`` set to the warm-up's ``warmup`` settings, and
processbench (``prompt_from_warmup``), chunk_reset, best_of_n and selection (``judge_spec.warmup``;
a CoT judge is read with ``score: reasoned-prob``) use the same prompt. A section's own
``model`` / ``prompt_from_warmup`` / ``judge_spec`` keys still win. Without the section every stage
behaves as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.pipeline.registry import Panels, PipelineConfig, StageContext, Table, register_stage
from stepjudge.pipeline.report import dig, fmt, fmt_key, load_json, pct
from stepjudge.tasks import new_problems_options
from stepjudge.utils.io import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["judge_prompt", "response_prefix", "judge_spec", "warmup_settings", "ChunkResetOptions"]


# ------------------------------------------------------------------ derived settings
def warmup_settings(cfg: PipelineConfig) -> dict[str, Any] | None:
    """The judge_warmup stage's ``warmup`` settings (``WarmupConfig`` fields), or None when it is off."""
    if not cfg.has_section("judge_warmup"):
        return None
    from stepjudge.judge.warmup import WarmupConfig

    return WarmupConfig(**cfg.section("judge_warmup").get("warmup", {})).model_dump()


def _asked_as_warmup(cfg: PipelineConfig) -> dict[str, Any] | None:
    """The warm-up settings that rewrite the judge's prompt (None: off, or ``prompt: keep``, whose
    prompt is the judge data's own and so already the one asked)."""
    warm = warmup_settings(cfg)
    return warm if warm is not None and warm["prompt"] != "keep" else None


def judge_prompt(cfg: PipelineConfig) -> str:
    """The judge's prompt follows the warm-up's variant when it rewrites the prompt, else the judge
    data's format (verdict-only or reasoning)."""
    warm = _asked_as_warmup(cfg)
    if warm is not None:
        return "no-cot" if warm["variant"] == "verdict" else "stepwise"
    return "no-cot" if cfg.section("judge_data").get("format", "generative") == "no-cot" else "stepwise"


def response_prefix(cfg: PipelineConfig) -> str:
    """A verdict-only judge's answer is pre-filled up to the verdict."""
    return cfg.section("judge").get("response_prefix", "\\boxed{" if judge_prompt(cfg) == "no-cot" else "")


def _judge_max_tokens(cfg: PipelineConfig) -> int:
    """A reasoning judge writes as long as it was trained to (the judge's max_completion_length)."""
    return int(cfg.section("judge").get("max_completion_length", 3096))


def judge_spec(cfg: PipelineConfig) -> dict[str, Any]:
    """How the downstream stages read the trained judge (``JudgeSpec`` fields)."""
    prefix = response_prefix(cfg)
    warm = _asked_as_warmup(cfg)
    if prefix:  # verdict-only judge: P(Positive) from the verdict token after the prefix
        spec = {"prompt": judge_prompt(cfg), "response_prefix": prefix, "score": "token-prob"}
    elif warm is not None:  # a warmed-up CoT judge: greedy reasoning, then P(Positive) at its verdict token
        spec = {"prompt": judge_prompt(cfg), "response_prefix": "", "score": "reasoned-prob",
                "max_tokens": _judge_max_tokens(cfg)}
    else:  # a reasoning judge: greedy, as long as it was trained to write (one vote; raise votes for shares)
        spec = {"prompt": judge_prompt(cfg), "response_prefix": "", "score": "votes", "votes": 1,
                "temperature": 0.0, "max_tokens": _judge_max_tokens(cfg)}
    return spec if warm is None else {**spec, "warmup": warm}


# ------------------------------------------------------------------ stage configs
def _annotate_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.annotate.pipeline import AnnotateConfig

    return AnnotateConfig(**{"policy": cfg.policy, "engine": cfg.engine.model_dump(), **cfg.section("annotate"),
                             "out": str(out / "annotate")})


def _judge_data_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.judge.dataset import JudgeDatasetConfig

    return JudgeDatasetConfig(**{"tokenizer": cfg.judge_base or cfg.policy, **cfg.section("judge_data"),
                                 "annotations": str(out / "annotate" / "annotations.jsonl")})


def _judge_warmup_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.train.judge_warmup import JudgeWarmupConfig

    data = out / "judge_data"
    return JudgeWarmupConfig(**{"model": cfg.judge_base or cfg.policy, "heldout_data": str(data / "heldout.jsonl"),
                                **cfg.section("judge_warmup"), "train_data": str(data / "train.jsonl"),
                                "out": str(out / "judge_warmup")})


def _judge_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.train.judge import JudgeRLConfig

    data = out / "judge_data"
    start: dict[str, Any] = {"model": cfg.judge_base or cfg.policy}
    warm = warmup_settings(cfg)
    if warm is not None:  # RL starts from the warmed-up judge and asks it as the warm-up did
        start = {"model": str(out / "judge_warmup" / "final"), "prompt_from_warmup": warm}
    return JudgeRLConfig(**{**start, "response_prefix": response_prefix(cfg),
                            "heldout_data": str(data / "heldout.jsonl"), **cfg.section("judge"),
                            "train_data": str(data / "train.jsonl"), "out": str(out / "judge")})


def _processbench_cfgs(cfg: PipelineConfig, out: Path):
    from stepjudge.eval.processbench import ProcessBenchEvalConfig

    prefix = response_prefix(cfg)
    base = {"protocol": "stepwise", "judge_prompt": judge_prompt(cfg), "response_prefix": prefix,
            "max_tokens": 4 if prefix else None, "engine": cfg.engine.model_dump()}
    warm = _asked_as_warmup(cfg)
    if warm is not None:  # the base and the trained judge are both asked the warm-up's way
        base.update(prompt_from_warmup=warm, max_tokens=4 if prefix else _judge_max_tokens(cfg))
    base.update(cfg.section("processbench"))
    before = cfg.judge_base or cfg.policy
    after = str(out / "judge" / "final")
    return (ProcessBenchEvalConfig(**{**base, "judge": before, "out": str(out / "processbench_before")}),
            ProcessBenchEvalConfig(**{**base, "judge": after, "out": str(out / "processbench_after")}))


def _chunk_reset_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.infer.chunk_reset import ChunkResetConfig

    section = {"reset": True, **cfg.section("chunk_reset")}  # the stage exists to compare the judge with no judge
    return ChunkResetConfig(**_with_models(cfg, out, ChunkResetConfig, section, "chunk_reset"))


def _best_of_n_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.infer.best_of_n import BestOfNConfig

    return BestOfNConfig(**_with_models(cfg, out, BestOfNConfig, cfg.section("best_of_n"), "best_of_n"))


def _with_models(cfg: PipelineConfig, out: Path, model_cls: Any, section: dict, name: str) -> dict:
    """Fill the policy, the trained judge and its prompt settings into a solve/rerank section."""
    fields = model_cls.model_fields
    filled: dict[str, Any] = {}
    engine = cfg.engine.model_dump()
    annotate = cfg.section("annotate")
    for key, value in (("policy", cfg.policy), ("judge", str(out / "judge" / "final")),
                       ("judge_spec", judge_spec(cfg)), ("out", str(out / name)), ("engine", engine),
                       ("policy_engine", engine), ("judge_engine", engine)):
        if key in fields:
            filled[key] = value
    if "prompt_style" in fields and "prompt_style" in annotate:
        filled["prompt_style"] = annotate["prompt_style"]
    filled.update({k: v for k, v in new_problems_options(annotate).items() if k in fields})
    return {**filled, **section, **({"out": filled["out"]} if "out" in filled else {})}


def _selection_cfgs(cfg: PipelineConfig, out: Path) -> tuple[int, dict, dict]:
    """(seed, PolicySFTConfig kwargs without data/out, ChunkResetConfig kwargs without policy/out)."""
    from stepjudge.infer.chunk_reset import ChunkResetConfig
    from stepjudge.train.policy_sft import PolicySFTConfig

    selection = cfg.section("selection")
    extra = set(selection) - {"seed", "sft", "eval"}
    if extra:
        raise ValueError(f"selection: unknown keys {sorted(extra)} (seed, sft, eval)")
    sft = {"model": cfg.policy, **selection.get("sft", {})}
    PolicySFTConfig(**sft, data="sft.jsonl", out=str(out / "selection"))  # validate now
    ev = _with_models(cfg, out, ChunkResetConfig, {**selection.get("eval", {}), "reset": False}, "selection")
    ev.pop("judge", None)
    ev.pop("judge_spec", None)
    ChunkResetConfig(**ev)
    return int(selection.get("seed", 0)), sft, ev


# ------------------------------------------------------------------ report sections and plot panels
def _strip(result: Mapping | None) -> dict | None:
    return None if result is None else {k: v for k, v in result.items() if k != "predictions"}


def _annotate_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    ann = results["annotate"]
    if not ann:
        return []
    rows = [["solutions annotated / sampled", f"{ann['solutions_annotated']} / {ann['solutions']}"],
            ["correct solutions", str(ann.get("solutions_correct"))],
            ["chunks labelled", str(ann["chunks"])]]
    for scheme, bal in ann.get("class_balance", {}).items():
        rows.append([f"{scheme}: positive / negative", f"{bal['positive']} / {bal['negative']}"])
    for scheme, agr in (ann.get("truth_agreement") or {}).items():
        if isinstance(agr, Mapping):
            rows.append([f"{scheme}: agreement with true first error (balanced F1)", fmt(agr.get("balanced_f1"))])
    comp = ann.get("compute", {})
    rows.append(["rollouts (rollouts/s)", f"{comp.get('rollouts')} ({fmt(comp.get('rollouts_per_s'))})"])
    imgs = ["annotate/q_trajectories.png"] if (out / "annotate" / "q_trajectories.png").exists() else []
    return [("Annotation (Monte-Carlo chunk labels)", ["", "value"], rows, imgs)]


_JUDGE_ROWS = (("accuracy", "accuracy (%)"), ("acc_positive", "acc. Positive chunks (%)"),
               ("acc_negative", "acc. Negative chunks (%)"), ("balanced_f1", "balanced F1"),
               ("auroc", "AUROC of P(Positive)"), ("predicted_positive_fraction", "share judged Positive"),
               ("calibrated.threshold", "P(Positive) cut fitted on the train split"),
               ("calibrated.balanced_f1", "balanced F1 at that cut"),
               ("calibrated.accuracy", "accuracy at that cut (%)"))


def _warmup_results(out: Path) -> dict[str, Any]:
    """The warm-up's held-out scores and SFT row counts; no entries when the stage is not part of the run."""
    folder = out / "judge_warmup"
    if not folder.exists():
        return {}
    return {"judge_warmup_before": _strip(load_json(folder / "eval_before.json")),
            "judge_warmup_after": _strip(load_json(folder / "eval_after.json")),
            "judge_warmup_data": load_json(folder / "warmup_stats.json")}


def _same_scores(a: Mapping | None, b: Mapping | None) -> bool:
    return bool(a and b) and all(dig(a, k) == dig(b, k) for k in ("n", "n_positive", "n_negative",
                                                                   *(k for k, _ in _JUDGE_ROWS)))


def _sizes(result: Mapping | None) -> str:
    return "n/a" if not result else f"{result['n']} ({result['n_positive']} / {result['n_negative']})"


def _warmup_judge_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    """Untrained -> after the SFT warm-up -> after RL, on the same held-out chunks (the RL start is its
    own column only when it was scored differently from the warm-up's end; metrics no column has are
    left out)."""
    w_before, w_after = results.get("judge_warmup_before"), results.get("judge_warmup_after")
    before, after = results.get("judge_before"), results.get("judge_after")
    columns = [("untrained", w_before), ("after warm-up", w_after)]
    if before and not _same_scores(before, w_after):
        columns.append(("RL start", before))
    columns.append(("after RL", after))
    rows = [[name, *(fmt_key(dig(r, k), k) for _, r in columns)] for k, name in _JUDGE_ROWS
            if any(dig(r, k) is not None for _, r in columns)]  # e.g. no AUROC or cut for a CoT judge
    rows.append(["held-out chunks (Positive / Negative)", *(_sizes(r) for _, r in columns)])
    ref = next(r for r in (w_before, w_after, before, after) if r)
    sft = dig(results.get("judge_warmup_data"), "after_balance")
    trained_on = (f"{sft['total']} SFT rows, {sft['positive']} Positive / {sft['negative']} Negative"
                  if sft else "SFT rows n/a")
    title = (f"Judge on held-out chunks ({ref['n']}: {ref['n_positive']} Positive / {ref['n_negative']} Negative): "
             f"untrained, after the warm-up ({trained_on}), after RL")
    imgs = [p for p in ("judge_warmup/curves.png", "judge/curves.png") if (out / p).exists()]
    return [(title, ["metric", *(name for name, _ in columns)], rows, imgs)]


def _judge_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    if results.get("judge_warmup_before") or results.get("judge_warmup_after"):
        return _warmup_judge_tables(results, out)
    before, after = results["judge_before"], results["judge_after"]
    if not (before or after):
        return []
    rows = [[name, fmt_key(dig(before, k), k), fmt_key(dig(after, k), k)] for k, name in _JUDGE_ROWS]
    ref = before or after
    title = (f"Judge on held-out chunks ({ref['n']}: {ref['n_positive']} Positive / {ref['n_negative']} "
             "Negative), before vs after RL")
    imgs = ["judge/curves.png"] if (out / "judge" / "curves.png").exists() else []
    return [(title, ["metric", "before", "after"], rows, imgs)]


def _judge_headline(results: Mapping[str, Any]) -> Panels:
    if results.get("judge_warmup_before") or results.get("judge_warmup_after"):
        bars = {k: v for k, v in (("untrained", results.get("judge_warmup_before")),
                                  ("warm-up", results.get("judge_warmup_after")),
                                  ("after RL", results.get("judge_after"))) if v}
        if len(bars) < 2:
            return {}
        panels = {"held-out judge balanced F1": {k: v.get("balanced_f1") or 0.0 for k, v in bars.items()}}
        if all(v.get("auroc") is not None for v in bars.values()):
            panels["held-out judge AUROC"] = {k: v["auroc"] for k, v in bars.items()}
        return panels
    b, a = results["judge_before"], results["judge_after"]
    if not (b and a):
        return {}
    panels = {"held-out judge balanced F1": {"before": b.get("balanced_f1") or 0.0,
                                             "after": a.get("balanced_f1") or 0.0}}
    if b.get("auroc") is not None and a.get("auroc") is not None:
        panels["held-out judge AUROC"] = {"before": b["auroc"], "after": a["auroc"]}
    return panels


def _processbench_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    pb_b, pb_a = results["processbench_before"], results["processbench_after"]
    if not (pb_b or pb_a):
        return []
    subsets = sorted({k for r in (pb_b, pb_a) if r for k in r["metrics"] if k != "average_f1"})
    rows = []
    for s in subsets:
        b = (pb_b or {}).get("metrics", {}).get(s, {})
        a = (pb_a or {}).get("metrics", {}).get(s, {})
        rows.append([s, str(b.get("n") or a.get("n")), fmt(b.get("acc_error")), fmt(a.get("acc_error")),
                     fmt(b.get("acc_correct")), fmt(a.get("acc_correct")), fmt(b.get("f1")), fmt(a.get("f1"))])
    return [("ProcessBench slice (stepwise protocol), before vs after",
             ["subset", "n", "acc. error before", "after", "acc. correct before", "after", "F1 before",
              "F1 after"], rows, [])]


def _processbench_headline(results: Mapping[str, Any]) -> Panels:
    pb_b, pb_a = results["processbench_before"], results["processbench_after"]
    if not (pb_b and pb_a):
        return {}
    return {"ProcessBench avg F1": {"before": pb_b["metrics"].get("average_f1") or 0.0,
                                    "after": pb_a["metrics"].get("average_f1") or 0.0}}


_CR_ROWS = (("accuracy", "accuracy (%)"), ("mean_accepted_tokens", "accepted length (tokens, mean)"),
            ("mean_rejected_tokens", "rejected length (tokens, mean)"), ("judge_calls", "judge calls"),
            ("judge_calls_per_problem", "judge calls per problem"), ("resets", "chunks re-sampled"),
            ("kept_after_max", "chunks kept after max tries"), ("mean_chunks", "chunks per solution"))
_CR_NAMES = {"chunk_reset": "Chunk-Reset", "baseline": "no judge"}


def _chunk_reset_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    """`stepjudge solve`'s summary.json: one column per method (Chunk-Reset, the no-judge baseline)."""
    cr = results["chunk_reset"]
    if not cr:
        return []
    methods = cr.get("methods", {})
    header = ["metric", *(_CR_NAMES.get(m, m) for m in methods)]
    spec = cr.get("judge_spec") or {}
    rows = []
    if spec.get("score") in ("token-prob", "reasoned-prob"):
        rows.append(["judge rejects when P(Positive) <",
                     *(fmt_key(spec.get("threshold"), "threshold") if m == "chunk_reset" else "" for m in methods)])
    for key, name in _CR_ROWS:
        cell = pct if key == "accuracy" else fmt
        rows.append([name, *(cell(v.get(key)) for v in methods.values())])
    return [("Chunk-Reset reasoning vs the same policy without a judge", header, rows, [])]


def _chunk_reset_headline(results: Mapping[str, Any]) -> Panels:
    cr = results["chunk_reset"]
    if not (cr and cr.get("methods")):
        return {}
    return {"Chunk-Reset accuracy (%)": {_CR_NAMES.get(k, k): 100 * (v.get("accuracy") or 0.0)
                                         for k, v in cr["methods"].items()}}


def _best_of_n_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    """`stepjudge rerank`'s summary.json: accuracy of each way of picking one of the N answers."""
    from stepjudge.infer.best_of_n import METHOD_NAMES

    bon = results["best_of_n"]
    if not bon:
        return []
    n = bon.get("problems")
    rows = [[METHOD_NAMES.get(m, m), pct(acc), f"{bon.get('correct_problems', {}).get(m)} / {n}"]
            for m, acc in bon.get("accuracy", {}).items()]
    rows.append(["judge calls (chunks scored)", str(bon.get("judge_calls")), ""])
    rows.append(["mean judge score: correct / wrong samples",
                 f"{fmt(bon.get('mean_score_correct'))} / {fmt(bon.get('mean_score_wrong'))}", ""])
    return [("Best-of-N and voting with the judge", ["method", "accuracy (%)", "correct / problems"], rows, [])]


_BON_NAMES = {"first": "pass@1", "majority": "majority", "best_of_n": "judge best", "weighted": "judge-weighted",
              "oracle": "oracle"}


def _best_of_n_headline(results: Mapping[str, Any]) -> Panels:
    bon = results["best_of_n"]
    if not (bon and isinstance(bon.get("accuracy"), Mapping)):
        return {}
    return {"best-of-N accuracy (%)": {_BON_NAMES.get(k, k): 100 * v for k, v in bon["accuracy"].items()
                                       if isinstance(v, (int, float))}}


def _selection_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    sel = results["selection"]
    if not sel:
        return []
    names = {"base": "base policy (no SFT)", "judge": "SFT on judge-selected samples",
             "outcome": "SFT on outcome-selected samples"}
    rows = [[names.get(k, k), str(v.get("sft_rows")), pct(v.get("accuracy")), fmt(v.get("mean_accepted_tokens"))]
            for k, v in sel["policies"].items()]
    sets = sel.get("sets", {})
    rows.append([f"problems with an eligible sample: {sets.get('selected_problems')} of {sets.get('problems')}; "
                 f"same pick by both rules: {sets.get('same_pick')}", "", "", ""])
    return [("Data selection: judge (stepwise rejection sampling) vs outcome-only",
             ["policy", "SFT rows", "accuracy on new problems (%)", "tokens per solution"], rows, [])]


def _selection_headline(results: Mapping[str, Any]) -> Panels:
    sel = results["selection"]
    if not (sel and len(sel.get("policies", {})) > 1):
        return {}
    names = {"base": "base", "judge": "judge-selected", "outcome": "outcome-only"}
    return {"policy accuracy after SFT (%)": {names.get(k, k): 100 * (v.get("accuracy") or 0.0)
                                              for k, v in sel["policies"].items()}}


# ------------------------------------------------------------------ the stages
@register_stage(
    "annotate", build=_annotate_cfg, done=("annotate/report.json",), decides_results=True,
    section_help="`stepjudge annotate` options",
    results=lambda out: {"annotate": load_json(out / "annotate" / "report.json")}, tables=_annotate_tables)
def _run_annotate(ctx: StageContext) -> None:
    from stepjudge.annotate.pipeline import annotate

    annotate(_annotate_cfg(ctx.config, ctx.out), progress=ctx.progress)


@register_stage(
    "judge_data", build=_judge_data_cfg, done=("judge_data/stats.json",), decides_results=True,
    section_help="`stepjudge train judge-data` options", section_default=lambda: {"format": "no-cot"},
    results=lambda out: {"judge_data": load_json(out / "judge_data" / "stats.json")})
def _run_judge_data(ctx: StageContext) -> None:
    from stepjudge.judge.dataset import build_judge_datasets, write_datasets

    write_datasets(build_judge_datasets(_judge_data_cfg(ctx.config, ctx.out)), ctx.out / "judge_data")


@register_stage(
    "judge_warmup", build=_judge_warmup_cfg, optional=True, decides_results=True,
    done=("judge_warmup/final/model.safetensors", "judge_warmup/summary.json"),
    section_help="`stepjudge train judge-warmup` options (optional: the stage runs when this section is given; "
                 "model, train/held-out data and out are filled in); the judge then starts from its final model "
                 "and every later stage asks it the warm-up's way",
    results=_warmup_results)
def _run_judge_warmup(ctx: StageContext) -> None:
    from stepjudge.train.judge_warmup import train_judge_warmup

    cfg = _judge_warmup_cfg(ctx.config, ctx.out)
    final = train_judge_warmup(cfg)  # held-out scores (if on) are written before it returns
    atomic_write_json(ctx.out / "judge_warmup" / "summary.json",
                      {"final": str(final), "warmup": cfg.warmup.model_dump(), "scored_heldout": cfg.score_heldout})


def _reuse_warmup_scores(cfg: PipelineConfig, out: Path) -> None:
    """The RL judge starts from the warm-up's final model; when RL would score it on the held-out rows
    exactly as the warm-up's own after-scoring did (same rows, prompt, greedy token budget, seed and
    device, no pre-filled answer), its ``eval_before.json`` is that file: one held-out pass, not two."""
    if not cfg.has_section("judge_warmup"):
        return
    warm, judge = _judge_warmup_cfg(cfg, out), _judge_cfg(cfg, out)
    source, target = Path(warm.out) / "eval_after.json", Path(judge.out) / "eval_before.json"
    same = (warm.score_heldout and judge.model == str(Path(warm.out) / "final")
            and judge.heldout_data == warm.heldout_data and judge.prompt_from_warmup == warm.warmup
            and not judge.response_prefix and judge.heldout_max_tokens == warm.sample_max_tokens
            and judge.seed == warm.seed and judge.use_cpu == warm.use_cpu)
    if same and source.exists() and not target.exists():
        log.info("pipeline: the RL judge's start is scored already (%s)", source)
        atomic_write_json(target, json.loads(source.read_text()))


@register_stage(
    "judge", build=_judge_cfg, done=("judge/report.md", "judge/final/model.safetensors"), decides_results=True,
    section_help="`stepjudge train judge` options",
    results=lambda out: {"judge_before": _strip(load_json(out / "judge" / "eval_before.json")),
                         "judge_after": _strip(load_json(out / "judge" / "eval_after.json"))},
    tables=_judge_tables, headline=_judge_headline)
def _run_judge(ctx: StageContext) -> None:
    from stepjudge.train.judge import train_judge

    _reuse_warmup_scores(ctx.config, ctx.out)
    train_judge(_judge_cfg(ctx.config, ctx.out))


@register_stage(
    "processbench", build=_processbench_cfgs,
    done=("processbench_before/summary.json", "processbench_after/summary.json"),
    section_help="`stepjudge eval processbench` options (the judge is filled in)",
    section_default=lambda: {"subsets": ["gsm8k"], "limit": 12, "balanced": True},
    results=lambda out: {"processbench_before": load_json(out / "processbench_before" / "summary.json"),
                         "processbench_after": load_json(out / "processbench_after" / "summary.json")},
    tables=_processbench_tables, headline=_processbench_headline)
def _run_processbench(ctx: StageContext) -> None:
    from stepjudge.eval.processbench import ProcessBenchRun

    for cfg in _processbench_cfgs(ctx.config, ctx.out):
        ProcessBenchRun(cfg, progress=ctx.progress).run()


class ChunkResetOptions(BaseModel):
    """Top-level pipeline keys owned by the chunk_reset stage."""

    model_config = ConfigDict(extra="forbid")

    calibrated_threshold: bool = Field(
        True, description="Chunk-Reset rejects chunks below the trained judge's P(Positive) cut fitted on the "
                          "judge's *train* split (judge/eval_after.json), unless chunk_reset.judge_spec sets "
                          "a threshold; off = the plain 0.5 cut")


@register_stage(
    "chunk_reset", build=_chunk_reset_cfg, done=("chunk_reset/summary.json",), options=ChunkResetOptions,
    section_help="`stepjudge solve` options",
    results=lambda out: {"chunk_reset": load_json(out / "chunk_reset" / "summary.json")},
    tables=_chunk_reset_tables, headline=_chunk_reset_headline)
def _run_chunk_reset(ctx: StageContext) -> None:
    from stepjudge.infer.chunk_reset import run_chunk_reset

    cfg = _chunk_reset_cfg(ctx.config, ctx.out)
    explicit = "threshold" in (ctx.config.section("chunk_reset").get("judge_spec") or {})
    after = ctx.out / "judge" / "eval_after.json"
    if ctx.config.option("calibrated_threshold") and not explicit and after.exists():
        cut = (json.loads(after.read_text()).get("calibrated") or {}).get("threshold")
        if cut is not None:
            log.info("pipeline: Chunk-Reset uses the judge's train-calibrated cut P(Positive) >= %.4f", cut)
            cfg = cfg.model_copy(update={"judge_spec": cfg.judge_spec.model_copy(update={"threshold": cut})})
    run_chunk_reset(cfg)


@register_stage(
    "best_of_n", build=_best_of_n_cfg, done=("best_of_n/summary.json",), section_help="`stepjudge rerank` options",
    results=lambda out: {"best_of_n": load_json(out / "best_of_n" / "summary.json")},
    tables=_best_of_n_tables, headline=_best_of_n_headline)
def _run_best_of_n(ctx: StageContext) -> None:
    from stepjudge.infer.best_of_n import run_best_of_n

    run_best_of_n(_best_of_n_cfg(ctx.config, ctx.out))


@register_stage(
    "selection", build=_selection_cfgs, done=("selection/summary.json",),
    section_help="data selection from best_of_n's samples: `seed` (outcome-only draw), `sft` (`stepjudge select "
                 "train` options) and `eval` (`stepjudge solve` options for scoring the base and both fine-tuned "
                 "policies on new problems, no judge)",
    results=lambda out: {"selection": load_json(out / "selection" / "summary.json")},
    tables=_selection_tables, headline=_selection_headline)
def _run_selection(ctx: StageContext) -> None:
    """StepWiser's stepwise rejection sampling vs outcome-only selection (Table 8, in miniature):
    fine-tune the policy on each SFT set and score base and both on new problems, no judge."""
    from stepjudge.infer.select import compare_selections

    seed, sft, ev = _selection_cfgs(ctx.config, ctx.out)
    compare_selections(ctx.out / "best_of_n" / "samples.jsonl", ctx.out / "selection",
                       base_policy=ctx.config.policy, sft=sft, evaluate=ev, seed=seed)
