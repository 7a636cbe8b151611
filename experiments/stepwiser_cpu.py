"""StepWiser's main comparison on CPU: does a judge trained on Monte-Carlo labels beat the baselines?

    python experiments/stepwiser_cpu.py --config experiments/stepwiser_cpu.yaml --seeds 0 1 2

One run folder per seed and arm (``out/seed{S}/{arm}``); every step is skipped when its output exists,
so a killed run continues where it stopped. The judge data (split by problem, held-out never balanced)
is built once from ``annotations`` and shared by all seeds and arms; the seed changes training only.

Arms (``arms:`` in the YAML picks a subset, in this order):

=================== ============================================================================
untrained-cot       the base model asked with the compact recompute (CoT) prompt, greedy
untrained-verdict   the base model asked for the verdict only (pre-filled ``\\boxed{``)
warmup-cot          SFT warm-up on recompute completions (check lines, then the MC verdict)
stepwiser-cot       warmup-cot + GRPO on the MC labels (the StepWiser judge)
stepwiser-cot-unbal warmup-cot + GRPO on the *unbalanced* train split (the no-balancing ablation)
warmup-verdict      SFT warm-up on verdict-only completions
stepwiser-verdict   warmup-verdict + GRPO (the no-CoT ablation, paper Table 6)
disc-prm            discriminative "+"/"-" PRM trained by SFT on the same labels (the paper's baseline)
=================== ============================================================================

Every judge is scored on the same held-out chunks against the MC labels and against arith's exact truth
(``truth``), plus the first-error F1 of held-out solutions (the ProcessBench metric on arith).
``table.md`` / ``results.json`` hold mean ± sd over the seeds; ``curves.png`` the RL reward curves.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

from common import experiment_config, experiment_parser
from pydantic import BaseModel, ConfigDict, Field

from stepjudge.config import build_config
from stepjudge.utils.io import atomic_write_json, atomic_write_text, read_jsonl

ARMS = ("untrained-cot", "untrained-verdict", "warmup-cot", "stepwiser-cot", "stepwiser-cot-unbal",
        "warmup-verdict", "stepwiser-verdict", "disc-prm")
PREFIX = "\\boxed{"


class DownstreamConfig(BaseModel):
    """The trained judges where they are used (StepWiser Tables 7-8 analogues), on new held-out problems."""

    model_config = ConfigDict(extra="forbid")

    arms: list[str] = Field(default_factory=lambda: ["warmup-cot", "stepwiser-cot"],
                            description="judges used downstream (generative arms)")
    arith: dict[str, Any] = Field(default_factory=lambda: {"n": 200, "steps": 2, "ops": ["add"], "max_operand": 9,
                                                          "seed": 1007},
                                  description="held-out problems (a seed no annotation used)")
    judge_spec: dict[str, Any] = Field(
        default_factory=lambda: {"score": "reasoned-prob", "response_prefix": "", "max_tokens": 48},
        description="how a CoT judge is read (JudgeSpec; its warm-up prompt is added); verdict-only arms read "
                    "the verdict token after \\boxed{")
    methods: list[Literal["chunk-reset", "best-of-n"]] = Field(
        default_factory=lambda: ["chunk-reset", "best-of-n"],
        description="uses of the judge to run: Chunk-Reset (Table 7) and best-of-N / voting; `selection` "
                    "reuses best-of-N's samples, so it runs only with best-of-n")
    chunk_reset: dict[str, Any] = Field(default_factory=dict, description="`stepjudge solve` options")
    best_of_n: dict[str, Any] = Field(default_factory=dict, description="`stepjudge rerank` options (n = largest N)")
    n_values: list[int] = Field(default_factory=lambda: [4, 8], description="N of the best-of-N / voting table")
    selection: dict[str, Any] | None = Field(
        None, description="data selection from the best-of-N samples (StepWiser Table 8): `seed` (outcome-only "
                          "draw), `sft` (`stepjudge select train` options) and `eval` (`stepjudge solve` options "
                          "for scoring base and both fine-tuned policies on new problems, no judge)")
    policy: str = Field("smollm2-135m", description="the policy the judges help")


class ExperimentConfig(BaseModel):
    """Every knob of the experiment (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    annotations: str | None = Field(None, description="annotations.jsonl of `stepjudge annotate` (MC labels + "
                                                      "arith truth); or set `annotate`")
    annotate: str | None = Field(None, description="an annotate YAML: run once into cache_dir/<hash of the settings "
                                                   "that change the records>, reused by every later run")
    cache_dir: str = Field("runs/cache/annotate", description="where content-addressed annotations live")
    annotation_archive: str | None = Field(
        "experiments/results/annotations",
        description="committed copies of finished annotations (<key>.jsonl.gz, same key as the cache): one found "
                    "here is unpacked into the cache instead of re-annotating; `--archive-annotations` adds one")
    out: str = Field("runs/exp/stepwiser_cpu", description="run folder")
    model: str = Field("smollm2-135m", description="the judge's starting model")
    arms: list[str] = Field(default_factory=lambda: list(ARMS), description="arms to run, in table order")
    judge_data: dict[str, Any] = Field(default_factory=dict, description="`train judge-data` options")
    warmup: dict[str, Any] = Field(default_factory=dict, description="`train judge-warmup` options (both forms)")
    rl: dict[str, Any] = Field(default_factory=dict, description="`train judge` options (both forms)")
    disc: dict[str, Any] = Field(default_factory=dict, description="`train disc-sft` options")
    eval_max_tokens: int = Field(48, ge=1, description="judge tokens when scoring a CoT judge")
    downstream: DownstreamConfig | None = Field(None, description="Chunk-Reset and best-of-N with the judges")
    keep_checkpoints: bool = Field(False, description="keep the trainers' checkpoint-* folders once an arm is done "
                                                      "(each is ~1.5 GB: weights + optimizer state); final/ is "
                                                      "always kept")
    warmup_from: str | None = Field(None, description="reuse the warm-ups of another run folder of this experiment "
                                                       "(its seed{S}/warmup-{form}/final) instead of training them: "
                                                       "for RL ablations from the same start")
    cot_variant: str = Field("recompute", description="the CoT arms' warm-up analysis: recompute (check lines of "
                                                      "the chunk's own claims) | reference (the task's expected step)")


def ensure_annotations(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``annotations`` set: as given, or the cached (annotated now if missing) folder of
    ``annotate``. An interrupted annotation resumes in the same folder."""
    if cfg.annotations:
        return cfg
    if not cfg.annotate:
        raise SystemExit("set `annotations` (a file) or `annotate` (an annotate YAML)")
    from stepjudge.annotate.groups import annotation_key
    from stepjudge.annotate.pipeline import AnnotateConfig, annotate

    acfg = build_config(AnnotateConfig, cfg.annotate)
    key = annotation_key(acfg)
    folder = Path(cfg.cache_dir) / key
    path = folder / "annotations.jsonl"
    archived = Path(cfg.annotation_archive) / f"{key}.jsonl.gz" if cfg.annotation_archive else None
    if not path.exists() and archived is not None and archived.exists():
        unpack_annotations(archived, path)
    if not path.exists():
        annotate(acfg.model_copy(update={"out": str(folder)}))
    return cfg.model_copy(update={"annotations": str(path)})


def unpack_annotations(archived: Path, path: Path) -> None:
    """The archived records into the cache, checked line by line (a truncated archive is an error, and a
    half-written cache file is never left behind)."""
    import gzip

    from stepjudge.errors import DataError

    try:
        text = gzip.decompress(archived.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"not a readable gzip of JSONL ({e})", path=str(archived)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".unpacking")
    staged.write_text(text, encoding="utf-8")
    try:
        read_jsonl(staged)  # every line must parse before the cache takes it
    except DataError as e:
        staged.unlink()
        raise DataError(f"archived annotation is damaged: {e}", path=str(archived), line=e.line) from None
    staged.replace(path)


def archive_annotations(cfg: ExperimentConfig) -> Path:
    """Write the cached annotation to ``annotation_archive/<key>.jsonl.gz`` (deterministic bytes: no
    timestamp in the gzip header), so a fresh clone reuses it instead of paying for the rollouts again."""
    import gzip

    from stepjudge.annotate.groups import annotation_key
    from stepjudge.annotate.pipeline import AnnotateConfig

    if not (cfg.annotate and cfg.annotation_archive and cfg.annotations):
        raise SystemExit("--archive-annotations needs `annotate` and `annotation_archive`")
    key = annotation_key(build_config(AnnotateConfig, cfg.annotate))
    target = Path(cfg.annotation_archive) / f"{key}.jsonl.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    blob = gzip.compress(Path(cfg.annotations).read_bytes(), compresslevel=9, mtime=0)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(target)
    return target


def _judge_data(cfg: ExperimentConfig, out: Path) -> dict[str, Path]:
    """Balanced, unbalanced and discriminative sets from one split (built once, shared by every seed)."""
    from stepjudge.judge.dataset import JudgeDatasetConfig, build_judge_datasets, write_datasets

    folders = {}
    for name, extra in (("balanced", {}), ("unbalanced", {"balance": False}),
                        ("disc", {"format": "discriminative", "answer_rows": False})):  # PRM: chunks only
        folder = out / "data" / name
        if not (folder / "stats.json").exists():
            ds = JudgeDatasetConfig(**{"annotations": cfg.annotations, **cfg.judge_data, **extra})
            write_datasets(build_judge_datasets(ds), folder)
        folders[name] = folder
    return folders


def _score(model: str, rows: list[dict], *, verdict_only: bool, max_tokens: int, seed: int) -> dict:
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import evaluate_judge_rows

    engine = HFEngine(model)
    try:
        if verdict_only:
            return evaluate_judge_rows(engine, rows, max_tokens=4, seed=seed, response_prefix=PREFIX,
                                       probabilities=True)
        return evaluate_judge_rows(engine, rows, max_tokens=max_tokens, seed=seed, probabilities=True)
    finally:
        engine.close()


def _score_disc(model: str, data: dict[str, Path], seed: int) -> tuple[dict, list[dict]]:
    """The PRM's per-chunk verdicts, re-keyed onto the generative held-out rows (same chunks)."""
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import evaluate_judge_rows

    engine = HFEngine(model)
    try:
        result = evaluate_judge_rows(engine, read_jsonl(data["disc"] / "heldout.jsonl"), protocol="discriminative",
                                     seed=seed, probabilities=True)
    finally:
        engine.close()
    return result, result["predictions"]


def _on_heldout_rows(heldout: list[dict], preds: list[dict]) -> tuple[list[dict], list[dict]]:
    """The PRM's per-chunk predictions paired with the generative held-out rows of the same chunks, in
    held-out order (rows it did not judge, e.g. answer segments, are left out)."""
    by_key = {(p["problem_id"], p["sample_index"], p["chunk_index"]): p for p in preds}
    keyed = [(r, by_key.get((r["problem_id"], r["sample_index"], r["chunk_index"]))) for r in heldout]
    return [r for r, p in keyed if p is not None], [p for _, p in keyed if p is not None]


def _warmup_cfg(form: str, cot_variant: str) -> dict[str, Any]:
    return {"variant": cot_variant if form == "cot" else "verdict", "prompt": "compact"}


def run_arm(arm: str, cfg: ExperimentConfig, data: dict[str, Path], seed: int, out: Path) -> dict:
    """Train (if the arm trains) and score one arm; returns its metrics (cached in metrics.json)."""
    from stepjudge.eval.judge_heldout import first_error_scores, metrics_against_truth
    from stepjudge.judge.warmup import with_warmup_prompts

    done = out / "metrics.json"
    form = "verdict" if arm.endswith("verdict") else "cot"
    warm = _warmup_cfg(form, cfg.cot_variant)
    heldout = read_jsonl(data["balanced"] / "heldout.jsonl")
    if done.exists():
        return backfill_auroc(json.loads(done.read_text()), arm, out, heldout, warm, data, seed)
    if arm.startswith("untrained"):  # greedy and untrained: the same verdicts for every seed, scored once
        for other in sorted(out.parent.parent.glob(f"seed*/{arm}/metrics.json")):
            out.mkdir(parents=True, exist_ok=True)
            metrics = {**json.loads(other.read_text()), "seed": seed, "scored_in": str(other.parent)}
            atomic_write_json(done, metrics)
            return metrics
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = cfg.model
    if arm.startswith("warmup") or arm.startswith("stepwiser"):
        from stepjudge.train.judge_warmup import train_judge_warmup

        # shared by warmup-X and stepwiser-X of this seed, or taken from another run (warmup_from)
        wdir = (Path(cfg.warmup_from) / f"seed{seed}" if cfg.warmup_from else out.parent) / f"warmup-{form}"
        if cfg.warmup_from and not (wdir / "final").exists():
            raise SystemExit(f"warmup_from: {wdir / 'final'} does not exist (run that experiment's warm-up first)")
        final = wdir / "final"
        if not final.exists():
            train_judge_warmup({**cfg.warmup, "model": cfg.model, "seed": seed, "warmup": {**warm, "seed": seed},
                                "train_data": str(data["balanced"] / "train.jsonl"),
                                "heldout_data": str(data["balanced"] / "heldout.jsonl"), "out": str(wdir),
                                "score_heldout": False})  # held-out rows: leak check only; scored below
        model = str(final)
    if arm.startswith("stepwiser"):
        from stepjudge.train.judge import train_judge

        split = "unbalanced" if arm.endswith("unbal") else "balanced"
        model = str(train_judge({**cfg.rl, "model": model, "seed": seed, "out": str(out / "rl"),
                                 "train_data": str(data[split] / "train.jsonl"), "prompt_from_warmup": warm,
                                 "response_prefix": PREFIX if form == "verdict" else "",
                                 "max_completion_length": 4 if form == "verdict" else cfg.eval_max_tokens}))
    if arm == "disc-prm":
        from stepjudge.train.disc_sft import train_disc_sft

        final = out / "sft" / "final"
        if not final.exists():
            train_disc_sft({**cfg.disc, "model": cfg.model, "seed": seed, "out": str(out / "sft"),
                            "train_data": str(data["disc"] / "train.jsonl")})
        model = str(final)
        result, preds = _score_disc(model, data, seed)
        rows_for_truth, preds = _on_heldout_rows(heldout, preds)
    else:
        rows = with_warmup_prompts(heldout, warm)
        result = _score(model, rows, verdict_only=form == "verdict", max_tokens=cfg.eval_max_tokens, seed=seed)
        preds, rows_for_truth = result["predictions"], heldout
    annotations = list(read_jsonl(cfg.annotations))
    metrics = {"arm": arm, "seed": seed, "model": model,
               "mc": {k: v for k, v in result.items() if k != "predictions"},
               "truth": metrics_against_truth(rows_for_truth, preds),
               "first_error": first_error_scores(preds, annotations),
               "train_wall_s": time.perf_counter() - t0}
    if any(r.get("step") == "answer" for r in heldout):  # judge_data.answer_rows: answers apart
        if arm != "disc-prm":  # the PRM judges chunks only: all its rows are chunks
            metrics["answers"] = step_metrics(rows_for_truth, preds, "answer")
        metrics["chunks"] = step_metrics(rows_for_truth, preds, "chunk")
    atomic_write_json(out / "predictions.json", preds)
    atomic_write_json(done, metrics)
    return metrics


def backfill_auroc(metrics: dict, arm: str, out: Path, heldout: list[dict], warm: dict, data: dict[str, Path],
                   seed: int) -> dict:
    """Add the AUROC columns to an arm scored before P(Positive) was read: one prefill per held-out row on
    the arm's saved predictions (the verdicts, and so every other column, stay as they were)."""
    model = str(out / "sft" / "final") if arm == "disc-prm" else metrics["model"]
    if metrics["mc"].get("auroc") is not None or ("/" in model and not Path(model).exists()):
        return metrics  # has it, or the judge's weights are gone
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import (
        _prefilled_probabilities,
        _reasoned_probabilities,
        metrics_against_truth,
    )
    from stepjudge.eval.metrics import auroc
    from stepjudge.judge.warmup import with_warmup_prompts

    if arm == "disc-prm":
        result, preds = _score_disc(model, data, seed)
        rows, preds = _on_heldout_rows(heldout, preds)
        mc_auroc = result["auroc"]
    else:
        preds = json.loads((out / "predictions.json").read_text())
        rows = with_warmup_prompts(heldout, warm)
        engine = HFEngine(model)
        try:
            probs = (_prefilled_probabilities(engine, rows, PREFIX) if arm.endswith("verdict")
                     else _reasoned_probabilities(engine, rows, preds))
        finally:
            engine.close()
        for p, prob in zip(preds, probs, strict=True):
            p["p_positive"] = prob
        mc_auroc = auroc([p["label"] == "Positive" for p in preds], probs)
        rows = heldout
    truth = metrics_against_truth(rows, preds)
    metrics = {**metrics, "mc": {**metrics["mc"], "auroc": mc_auroc},
               "truth": {**metrics["truth"], "auroc": truth.get("auroc") if truth else None}}
    if arm != "disc-prm":
        atomic_write_json(out / "predictions.json", preds)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def step_metrics(rows: list[dict], preds: list[dict], step: str) -> dict:
    """MC-label and exact-truth metrics of the rows of one kind: ``answer`` segments or ``chunk`` steps."""
    from stepjudge.eval.judge_heldout import judge_metrics, metrics_against_truth

    pairs = [(r, p) for r, p in zip(rows, preds, strict=True) if (r.get("step") == "answer") == (step == "answer")]
    sel_rows, sel_preds = [r for r, _ in pairs], [p for _, p in pairs]
    return {"mc": judge_metrics([r["label"] for r in sel_rows], [p["verdict"] for p in sel_preds]),
            "truth": metrics_against_truth(sel_rows, sel_preds)}


def prune_checkpoints(folder: Path) -> int:
    """Delete the resume checkpoints (``checkpoint-*``) under ``folder`` once its ``final/`` exists."""
    import shutil

    removed = 0
    for ckpt in sorted(folder.rglob("checkpoint-*")):
        if ckpt.is_dir() and (ckpt.parent / "final").exists():
            shutil.rmtree(ckpt)
            removed += 1
    return removed


def _judge_spec(arm: str, cfg: ExperimentConfig, seed: int) -> dict[str, Any]:
    ds = cfg.downstream
    assert ds is not None
    form = "verdict" if arm.endswith("verdict") else "cot"
    if form == "verdict":
        return {"score": "token-prob", "response_prefix": PREFIX, "warmup": _warmup_cfg(form, cfg.cot_variant)}
    return {**ds.judge_spec, "warmup": _warmup_cfg(form, cfg.cot_variant), "seed": seed}


def _arm_model(arm: str, seed: int, out: Path) -> str:
    """The judge an arm trained (its metrics.json names it)."""
    return json.loads((out / f"seed{seed}" / arm / "metrics.json").read_text())["model"]


def run_downstream(cfg: ExperimentConfig, seed: int, out: Path) -> dict[str, dict]:
    """Chunk-Reset (with each judge and without) and best-of-N / voting on the held-out problems."""
    from stepjudge.infer.best_of_n import accuracy_at_n, run_best_of_n
    from stepjudge.infer.chunk_reset import run_chunk_reset

    ds = cfg.downstream
    assert ds is not None
    base = {"problems": "arith", "arith": ds.arith, "policy": ds.policy, "seed": seed}
    results: dict[str, dict] = {}
    none_dir = out / f"seed{seed}" / "no-judge"
    done = none_dir / "downstream.json"
    if not done.exists():
        cr = run_chunk_reset({**base, **ds.chunk_reset, "out": str(none_dir / "chunk_reset")}, progress=False)
        atomic_write_json(done, {"chunk_reset": cr["methods"]["baseline"]})
    results["no-judge"] = json.loads(done.read_text())
    for arm in ds.arms:
        arm_dir = out / f"seed{seed}" / arm
        done = arm_dir / "downstream.json"
        result: dict[str, Any] = json.loads(done.read_text()) if done.exists() else {}
        want = {"chunk-reset": "chunk_reset", "best-of-n": "best_of_n"}
        if any(key not in result for method, key in want.items() if method in ds.methods):  # a method is missing
            t0 = time.perf_counter()
            model, spec = _arm_model(arm, seed, out), _judge_spec(arm, cfg, seed)
            if "chunk-reset" in ds.methods and "chunk_reset" not in result:
                cr = run_chunk_reset({**base, **ds.chunk_reset, "judge": model, "judge_spec": spec, "reset": True,
                                      "compare_baseline": False, "out": str(arm_dir / "chunk_reset")},
                                     progress=False)
                result["chunk_reset"] = cr["methods"]["chunk_reset"]
            if "best-of-n" in ds.methods and "best_of_n" not in result:
                bon = run_best_of_n({**base, **ds.best_of_n, "n": max(ds.n_values), "judge": model,
                                     "judge_spec": spec, "out": str(arm_dir / "best_of_n")}, progress=False)
                records = read_jsonl(arm_dir / "best_of_n" / "samples.jsonl")
                result["best_of_n"] = {str(n): accuracy_at_n(records, n) for n in ds.n_values}
                result["bon_judge_calls"] = bon["judge_calls"]
                if ds.selection is not None:
                    from stepjudge.infer.select import compare_selections

                    sel = ds.selection
                    result["selection"] = compare_selections(
                        arm_dir / "best_of_n" / "samples.jsonl", arm_dir / "selection", base_policy=ds.policy,
                        sft={**sel.get("sft", {}), "seed": seed},
                        evaluate={"problems": "arith", **sel.get("eval", {}), "seed": seed},
                        seed=sel.get("seed", seed))
            result["wall_s"] = result.get("wall_s", 0.0) + time.perf_counter() - t0
            atomic_write_json(done, result)
        results[arm] = json.loads(done.read_text())
    return results


def downstream_table(runs: dict[str, list[dict]], n_values: list[int], n_problems: int) -> str:
    """Mean ± sd over seeds: Chunk-Reset (Table 7 columns) and best-of-N / voting at each N."""
    cols = [("Chunk-Reset acc. (%)", "chunk_reset.accuracy", 100), ("accepted tok.", "chunk_reset.mean_accepted_tokens", 1),
            ("rejected tok.", "chunk_reset.mean_rejected_tokens", 1)]
    for n in n_values:
        cols += [(f"N={n} {m} (%)", f"best_of_n.{n}.{m}", 100) for m in ("first", "majority", "best_of_n", "weighted")]
    cols += [(title, f"selection.policies.{k}.accuracy", 100) for k, title in (
        ("base", "policy before SFT (%)"), ("judge", "SFT judge-selected (%)"), ("outcome", "SFT outcome-only (%)"))]
    lines = [f"Held-out problems: {n_problems}. Mean ± sd over seeds. Accuracies in %; token counts are policy "
             "tokens per problem (accepted = kept chunks + answer; rejected = thrown-away tries).", "",
             "| judge | seeds | " + " | ".join(c for c, _, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for arm, metrics in runs.items():
        cells = []
        for _, path, scale in cols:
            vals = [_get(m, path) for m in metrics]
            cells.append(_mean_sd([v * scale if v is not None else None for v in vals]))
        lines.append(f"| {arm} | {len(metrics)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# (column title, path into metrics, scale) of the table
COLUMNS = (("acc. vs MC (%)", "mc.accuracy"), ("bal. F1 vs MC", "mc.balanced_f1"), ("AUROC vs MC", "mc.auroc"),
           ("acc. vs truth (%)", "truth.accuracy"), ("bal. F1 vs truth", "truth.balanced_f1"),
           ("AUROC vs truth", "truth.auroc"), ("first-error F1", "first_error.f1"),
           ("share Positive", "mc.predicted_positive_fraction"), ("wall (min)", "train_wall_min"))
# with judge_data.answer_rows: the answer segments' own scores (n/a for runs without them)
ANSWER_COLUMNS = (("answers: bal. F1 vs MC", "answers.mc.balanced_f1"),
                  ("answers: bal. F1 vs truth", "answers.truth.balanced_f1"),
                  ("chunks: bal. F1 vs truth", "chunks.truth.balanced_f1"))


def _get(m: dict, path: str) -> float | None:
    node: Any = {**m, "train_wall_min": m["train_wall_s"] / 60} if "train_wall_s" in m else m
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _mean_sd(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3g}"
    return f"{statistics.mean(vals):.3g} ± {statistics.stdev(vals):.2g}"


def table(results: dict[str, list[dict]], n_heldout: dict[str, int]) -> str:
    columns = COLUMNS
    if any("answers" in m for runs in results.values() for m in runs):
        columns = COLUMNS + ANSWER_COLUMNS
    lines = [f"Held-out chunks: {n_heldout['mc']} ({n_heldout['mc_pos']} Positive / {n_heldout['mc_neg']} Negative "
             f"by MC label); {n_heldout['truth']} with an exact verdict. Mean ± sd over seeds.", "",
             "| arm | seeds | " + " | ".join(c for c, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for arm, runs in results.items():
        cells = [_mean_sd([_get(m, path) for m in runs]) for _, path in columns]
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_rl_curves(out: Path, seeds: list[int], arms: list[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for arm in (a for a in arms if a.startswith("stepwiser")):
        for seed in seeds:
            log_path = out / f"seed{seed}" / arm / "rl" / "train_log.json"
            if not log_path.exists():
                continue
            log = [e for e in json.loads(log_path.read_text()) if "reward" in e]
            for ax, key in zip(axes, ("reward", "frac_reward_zero_std"), strict=True):
                ax.plot([e["step"] for e in log], [e.get(key) for e in log], label=f"{arm} s{seed}")
    for ax, key in zip(axes, ("reward (mean)", "frac_reward_zero_std"), strict=True):
        ax.set_title(key)
        ax.set_xlabel("update")
        ax.legend(fontsize=7)
    fig.savefig(out / "curves.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser(__doc__, ExperimentConfig)
    parser.add_argument("--skip-downstream", action="store_true", help="only the held-out chunk table")
    parser.add_argument("--archive-annotations", action="store_true",
                        help="also write the annotation to annotation_archive (to commit it), then go on")
    args = parser.parse_args(argv)
    cfg = ensure_annotations(experiment_config(args))
    if args.archive_annotations:
        print(f"annotation archived: {archive_annotations(cfg)}", flush=True)
    unknown = set(cfg.arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)} (known: {', '.join(ARMS)})")
    out = Path(cfg.out)
    data = _judge_data(cfg, out)
    results: dict[str, list[dict]] = {arm: [] for arm in cfg.arms}
    for seed in args.seeds:
        for arm in cfg.arms:
            t0 = time.perf_counter()
            results[arm].append(run_arm(arm, cfg, data, seed, out / f"seed{seed}" / arm))
            if not cfg.keep_checkpoints:
                prune_checkpoints(out / f"seed{seed}")
            print(f"seed {seed} {arm}: {time.perf_counter() - t0:.0f} s", flush=True)
    heldout = read_jsonl(data["balanced"] / "heldout.jsonl")
    counts = {"mc": len(heldout), "mc_pos": sum(r["label"] == "Positive" for r in heldout),
              "mc_neg": sum(r["label"] == "Negative" for r in heldout),
              "truth": sum(r.get("truth") is not None for r in heldout)}
    atomic_write_json(out / "results.json", {"seeds": args.seeds, "heldout": counts, "runs": results})
    atomic_write_text(out / "table.md", table(results, counts))
    plot_rl_curves(out, args.seeds, cfg.arms)
    print((out / "table.md").read_text())
    if cfg.downstream is not None and not args.skip_downstream:
        down: dict[str, list[dict]] = {}
        for seed in args.seeds:
            t0 = time.perf_counter()
            for arm, m in run_downstream(cfg, seed, out).items():
                down.setdefault(arm, []).append(m)
            if not cfg.keep_checkpoints:
                prune_checkpoints(out / f"seed{seed}")
            print(f"seed {seed} downstream: {time.perf_counter() - t0:.0f} s", flush=True)
        atomic_write_json(out / "downstream.json", {"seeds": args.seeds, "runs": down})
        atomic_write_text(out / "downstream.md", downstream_table(down, cfg.downstream.n_values,
                                                                  cfg.downstream.arith.get("n", 0)))
        print((out / "downstream.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
