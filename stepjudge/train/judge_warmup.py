"""StepWiser judge warm-up: SFT on the judge's own output format, with both verdicts, before RL.

An untrained small judge says Positive almost always, so on Negative-labelled prompts every GRPO group
agrees and carries no gradient (docs/judge_training.md). The warm-up teaches the format first, from the
same balanced, Monte-Carlo-labelled judge rows RL uses (:mod:`stepjudge.judge.warmup` builds the SFT
rows: ``verdict``, ``recompute`` or ``rejection-sampling``); RL then starts from ``out/final`` with
``prompt_from_warmup`` set to the same warm-up settings, so the judge is asked exactly as it was taught.

``rejection-sampling`` (the paper's RS-FT) first samples the judge's own answers to every row with the hf
engine and keeps those whose verdict matches the label. Held-out rows (``heldout_data``) are refused in
the warm-up set and, when given, scored before and after (``eval_before.json`` / ``eval_after.json``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import Field

from stepjudge.judge.warmup import WarmupConfig, build_warmup_rows, warmup_prompt, with_warmup_prompts
from stepjudge.train.core import SFTRunConfig, build_sft_trainer, is_main_process, train_to_final
from stepjudge.train.report import SFT_PANELS

log = logging.getLogger(__name__)

__all__ = ["JudgeWarmupConfig", "build_rows", "score_heldout", "train_judge_warmup"]


class JudgeWarmupConfig(SFTRunConfig):
    """Everything ``stepjudge train judge-warmup`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="judge to warm up: built-in name, local path or hub id")
    train_data: str = Field(description="judge rows (train judge-data's train.jsonl), labels Positive/Negative")
    heldout_data: str | None = Field(
        None, description="held-out judge rows: their problems are refused in the warm-up set, and the judge "
                          "is scored on them before and after (eval_before.json / eval_after.json)")
    warmup: WarmupConfig = Field(default_factory=WarmupConfig,
                                 description="how the SFT rows are built (variant, prompt, balance)")
    sample_temperature: float = Field(1.0, gt=0, description="rejection-sampling: the judge's sampling temperature")
    sample_max_tokens: int = Field(96, ge=1, description="rejection-sampling and held-out scoring: judge tokens")
    samples_per_row: int = Field(4, ge=1, description="rejection-sampling: answers sampled per row")
    score_heldout: bool = Field(True, description="score the held-out rows before and after (off when the "
                                                  "caller scores them itself, e.g. the experiment script)")


def _read(path: str) -> list[dict]:
    from stepjudge.train.judge import load_judge_records

    return load_judge_records(path)


def build_rows(cfg: JudgeWarmupConfig) -> dict:
    """The warm-up SFT rows and their stats (samples the judge first for rejection-sampling)."""
    rows = _read(cfg.train_data)
    heldout = _read(cfg.heldout_data) if cfg.heldout_data else []
    samples = None
    if cfg.warmup.variant == "rejection-sampling":
        from stepjudge.engines.base import SamplingParams
        from stepjudge.engines.hf import HFEngine

        engine = HFEngine(cfg.model, device="cpu" if cfg.use_cpu else "cuda")
        try:
            params = SamplingParams(n=cfg.samples_per_row, temperature=cfg.sample_temperature,
                                    max_tokens=cfg.sample_max_tokens, seed=cfg.seed)
            results = engine.generate([warmup_prompt(r, cfg.warmup) for r in rows], params)
        finally:
            engine.close()
        samples = [[c.text for c in res.completions] for res in results]
    return build_warmup_rows(rows, cfg.warmup, heldout=heldout, samples=samples)


def score_heldout(cfg: JudgeWarmupConfig, model: str) -> dict:
    """Greedy held-out verdicts of ``model``, asked with the warm-up's prompt."""
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import evaluate_judge_rows

    rows = with_warmup_prompts(_read(cfg.heldout_data), cfg.warmup)
    engine = HFEngine(model, device="cpu" if cfg.use_cpu else "cuda")
    try:
        # probabilities: P(Positive) at the verdict token after the greedy check, for the AUROC column
        result = evaluate_judge_rows(engine, rows, max_tokens=cfg.sample_max_tokens, seed=cfg.seed,
                                     probabilities=True)
    finally:
        engine.close()
    return {**result, "model": model}


def train_judge_warmup(config: JudgeWarmupConfig | dict) -> Path:
    """Warm the judge up on its own format; returns ``out/final`` (the start of judge RL)."""
    from stepjudge.models.registry import resolve_model
    from stepjudge.utils.io import atomic_write_json

    cfg = config if isinstance(config, JudgeWarmupConfig) else JudgeWarmupConfig(**config)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    built = build_rows(cfg)  # fails on bad data or a held-out leak before any training
    main = is_main_process()  # rank 0 writes; every rank does the same work, so all reach training together
    if main:
        atomic_write_json(out / "warmup_stats.json", built["stats"])
    before_path = out / "eval_before.json"
    if cfg.heldout_data and cfg.score_heldout and not before_path.exists():
        before = score_heldout(cfg, str(resolve_model(cfg.model)))
        if main:
            atomic_write_json(before_path, before)
    sft_rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in built["rows"]]
    trainer = build_sft_trainer(cfg, sft_rows, completion_only_loss=True)  # loss on the judge's answer only

    def score_after(final: Path) -> None:
        if cfg.heldout_data and cfg.score_heldout:
            atomic_write_json(out / "eval_after.json", score_heldout(cfg, str(final)))

    final = train_to_final(trainer, out, "judge warm-up", on_main=score_after, panels=SFT_PANELS)
    log.info("warm-up rows: %s", json.dumps(built["stats"]["after_balance"]))
    return final
