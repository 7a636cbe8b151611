"""The StepWiser judge run's human report: setup, held-out table before vs after, last training metrics.

Kept apart from :mod:`stepjudge.train.judge` (the trainer) so each stays small; ``cfg`` is a
``JudgeRLConfig`` (typed loosely here so this module does not import the trainer's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepjudge.train.core import batch_plan
from stepjudge.train.report import dotted_get, fmt_metric

__all__ = ["judge_report_markdown"]

_REPORT_ROWS = (("accuracy", "accuracy (%)"), ("acc_positive", "acc. on Positive chunks (%)"),
                ("acc_negative", "acc. on Negative chunks (%)"), ("balanced_f1", "balanced F1"),
                ("auroc", "AUROC of P(Positive)"), ("predicted_positive_fraction", "share judged Positive"),
                ("unparsed_fraction", "share unparsed"), ("calibrated.threshold", "train-calibrated P(Positive) cut"),
                ("calibrated.balanced_f1", "balanced F1 at that cut"),
                ("calibrated.accuracy", "accuracy at that cut (%)"))


def judge_report_markdown(cfg: Any, log_history: Sequence[dict], before: dict | None,
                          after: dict | None, wall_s: float | None = None) -> str:
    """The run's human report: setup, before/after held-out table, last training metrics, curves."""
    plan = batch_plan(cfg)
    lines = [f"# Judge RL: {cfg.out}", "",
             f"- model: `{cfg.model}`; train data: `{cfg.train_data}`; held-out: `{cfg.heldout_data}`",
             f"- GRPO: lr {cfg.learning_rate:g}, {cfg.num_generations} samples/prompt, clip {cfg.epsilon}/"
             f"{cfg.epsilon_high}, beta {cfg.beta:g}, loss {cfg.loss_type}, {cfg.max_steps} updates of "
             f"{plan['completions_per_update']} completions ({plan['prompts_per_update']:g} prompts), "
             f"{plan['updates_per_rollout']} update(s)/rollout, stratified batches {cfg.stratify_batches}, "
             f"seed {cfg.seed}, response prefix {cfg.response_prefix!r}, dynamic sampling "
             f"{cfg.dynamic_sampling.mode}, prompt {_prompt(cfg)}"]
    if wall_s is not None:
        lines.append(f"- wall time of this call: {wall_s / 60:.1f} min")
    if before or after:
        ref = before or after
        lines += ["", "## Held-out chunks: before vs after", "",
                  f"{ref['n']} chunks ({ref['n_positive']} Positive / {ref['n_negative']} Negative), "
                  "greedy verdicts.", "", "| metric | before | after |", "|---|---|---|"]
        for key, name in _REPORT_ROWS:
            lines.append(f"| {name} | {fmt_metric(dotted_get(before, key), key)} | "
                         f"{fmt_metric(dotted_get(after, key), key)} |")
    train = [e for e in log_history if "loss" in e]
    if train:
        last = train[-1]
        lines += ["", "## Training (last logged update)", "", "| metric | value |", "|---|---|"]
        for key in ("step", "reward", "verdict/positive_share", "verdict/unparsed_share", "entropy",
                    "frac_reward_zero_std", "dynamic_sampling/agree_frac", "dynamic_sampling/dropped_groups"):
            if key in last:
                lines.append(f"| {key} | {fmt_metric(last[key], key)} |")
    lines += ["", "![training curves](curves.png)", ""]
    return "\n".join(lines)


def _prompt(cfg: Any) -> str:
    w = cfg.prompt_from_warmup
    return "as in the rows" if w is None else f"{w.prompt} ({w.variant} warm-up form)"
