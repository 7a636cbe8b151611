"""StepWiser on the RL core: RL training of a generative stepwise judge with TRL's GRPO (§3.3, §4.1).

The judge reads (problem, earlier chunks, new chunk), reasons, and ends with ``\\boxed{Positive}`` or
``\\boxed{Negative}``; the reward is 1 when that verdict equals the chunk's Monte-Carlo label
(:func:`stepjudge.train.rewards.verdict_reward`, registered as ``verdict``). The trainer is TRL's
:class:`~trl.GRPOTrainer` used as its authors intend, built by
:func:`stepjudge.train.core.build_rl_trainer`; no subclass is needed: TRL's ``log_metric`` hook lets
the reward log verdict shares itself. What is StepWiser's own lives here: class-stratified batches,
the pre-filled verdict (``response_prefix``), held-out scoring before and after, and the report.

Paper recipe (verl): lr 1e-6, 4 samples per prompt, clip-higher eps_low 0.2 / eps_high 0.28, 1024
prompts per rollout step, PPO mini-batch 256 prompts (so 4 optimizer updates per rollout), 800
rollout steps; :func:`~stepjudge.train.core.batch_plan` maps these onto TRL's completion-counted
batch sizes. Clip-higher only acts when a rollout feeds several updates (``steps_per_generation`` >
accumulation); with one update per rollout the policy ratio is exactly 1 and nothing is clipped.

Runs resume from the newest complete ``out/checkpoint-N``; the result is ``out/final`` (safetensors
+ tokenizer) that ``stepjudge eval processbench --judge`` and ``stepjudge serve --model`` load, plus
``out/train_log.json`` (TRL's log history), ``out/curves.png`` and ``out/report.md``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from stepjudge.data.records import check_chat_messages
from stepjudge.errors import DataError
from stepjudge.judge.warmup import WarmupConfig, with_warmup_prompts
from stepjudge.train.core import (
    RLRunConfig,
    batch_plan,
    build_rl_trainer,
    passes_for,
    read_rows,
    rl_training_args,
)
from stepjudge.train.dynamic_sampling import DynamicSamplingConfig
from stepjudge.train.judge_report import judge_report_markdown
from stepjudge.train.report import plot_curves
from stepjudge.train.rewards import RewardFunc, canonical_label, resolve_rewards

log = logging.getLogger(__name__)

__all__ = ["JudgeRLConfig", "batch_plan", "evaluate_heldout", "judge_report_markdown", "load_judge_records",
           "make_grpo_config", "make_trainer", "plot_curves", "reward_functions", "stratified_order",
           "train_judge"]


class JudgeRLConfig(RLRunConfig):
    """Every knob of ``stepjudge train judge``; unknown keys are errors (typos in YAML).

    Defaults are the paper's algorithm settings; batch sizes are per deployment (see the YAMLs). The
    old key ``reward: verdict | verdict+format`` is still read, as ``rewards``.
    """

    trl_fields: ClassVar[tuple[str, ...]] = ("loss_type", "scale_rewards")

    model: str = Field("smollm2-135m", description="judge to train: built-in name, local path or hub id")
    train_data: str = Field(description='JSONL rows {"prompt": [messages], "label": "Positive"|"Negative"}')
    out: str = Field(description="run folder: checkpoints, final/, train_log.json, curves.png, report.md")
    rewards: list[str] = Field(
        default_factory=lambda: ["verdict"], description="reward functions, summed: verdict (1 when the "
        "boxed verdict equals the label); add format for the no-CoT ablation's -1 format penalty; or "
        "'package.module:function'")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="token aggregation; dapo = verl's token-mean (TRL default)")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="advantage std scaling")
    heldout_data: str | None = Field(
        None, description="held-out judge rows (train judge-data's heldout.jsonl): scored before and after "
                          "training into eval_before.json / eval_after.json and the report's tables")
    heldout_max_tokens: int = Field(256, ge=1, description="judge output tokens in the held-out scoring")
    stratify_batches: bool = Field(
        False, description="order prompts so every rollout batch has the data's class mix (50/50 on balanced "
                           "data) instead of a random mix; each pass is a fresh stratified permutation. "
                           "Cuts the batch-to-batch label swings that push a small judge onto one verdict")
    response_prefix: str = Field(
        "", description="pre-fill the start of the judge's answer (e.g. '\\boxed{' for the verdict-only "
                        "judge): prompts are rendered with the chat template as text and the prefix appended; "
                        "rewards read prefix + completion")
    dynamic_sampling: DynamicSamplingConfig = Field(
        default_factory=DynamicSamplingConfig, description="keep GRPO groups informative: drop (mask) or "
        "re-sample groups whose rewards all agree (DAPO's dynamic sampling); off = plain GRPO")
    prompt_from_warmup: WarmupConfig | None = Field(
        None, description="ask the judge as this warm-up did: every row's prompt (train, eval, held-out) is "
        "rewritten with its `prompt` and `variant` (e.g. compact + recompute); None = rows as given")

    @model_validator(mode="before")
    @classmethod
    def _old_reward_key(cls, data: Any) -> Any:
        """``reward: verdict+format`` (older YAMLs) means ``rewards: [verdict, format]``."""
        if isinstance(data, dict) and "reward" in data:
            data = dict(data)
            old = data.pop("reward")
            if "rewards" in data:
                raise ValueError("give `rewards` only (`reward` is its old name)")
            data["rewards"] = old
        return data


def stratified_order(labels: Sequence[str], seed: int) -> list[int]:
    """A permutation of row indices in which every prefix holds the classes in the data's proportions.

    Each class is shuffled and its k-th of n rows placed at (k + 0.5) / n along the pass; rows meeting at
    one place are ordered randomly. On 50/50 data every consecutive pair has one row of each class.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    keyed = []
    for idx in by_class.values():
        rng.shuffle(idx)
        keyed += [((k + 0.5) / len(idx), rng.random(), i) for k, i in enumerate(idx)]
    return [i for *_, i in sorted(keyed)]


def _stratified_passes(records: list[dict], cfg: JudgeRLConfig, num_processes: int) -> tuple[list[dict], int]:
    """Rows for ``shuffle_dataset=False`` training: enough stratified passes for the run, and their count."""
    passes = passes_for(cfg, len(records), num_processes)
    labels = [r["label"] for r in records]
    return [records[i] for p in range(passes) for i in stratified_order(labels, cfg.seed + p)], passes


def _trl_extras(cfg: JudgeRLConfig, passes: int) -> dict[str, Any]:
    """StepWiser's own TRL arguments: stratified data is laid out pass by pass, so TRL must not shuffle."""
    return {"num_train_epochs": cfg.epochs / passes, "shuffle_dataset": not cfg.stratify_batches}


def make_grpo_config(cfg: JudgeRLConfig, passes: int = 1) -> Any:
    """The :class:`~trl.GRPOConfig` for ``cfg`` (TRL validates batch divisibility for this world size)."""
    from trl import GRPOConfig

    return rl_training_args(cfg, GRPOConfig, _trl_extras(cfg, passes))


def load_judge_records(path: str | os.PathLike) -> list[dict]:
    """Read and check judge rows, naming file:line field on errors; labels come back canonical.

    Columns besides ``prompt`` and ``label`` (``problem_id``, ``chunk_index``, ...) are kept: TRL hands
    every column to the reward functions.
    """

    def parse(rec: dict, line: int) -> dict:
        check_chat_messages(rec.get("prompt"), path=str(path), line=line, field="prompt")
        try:
            label = canonical_label(rec.get("label"))
        except ValueError as e:
            raise DataError(str(e), path=str(path), line=line, field="label") from None
        return {**rec, "label": label}

    return read_rows(path, parse, missing="judge training data file not found", empty="no judge training rows")


def reward_functions(cfg: JudgeRLConfig, extra: Sequence[RewardFunc] = ()) -> list[RewardFunc]:
    """The configured rewards (summed by TRL with weight 1 each), then any extra Python callables."""
    return [*resolve_rewards(cfg.rewards), *extra]


def make_trainer(config: JudgeRLConfig | dict, extra_reward_funcs: Sequence[RewardFunc] = ()) -> Any:
    """The configured :class:`~trl.GRPOTrainer` (data checked, long prompts dropped), not yet run."""
    cfg = config if isinstance(config, JudgeRLConfig) else JudgeRLConfig(**config)
    train_rows = load_judge_records(cfg.train_data)  # fail on bad data before loading anything heavy
    eval_rows = load_judge_records(cfg.eval_data) if cfg.eval_data else None

    def prepare(train: list[dict], evals: list[dict] | None, tokenizer: Any):
        passes = 1
        train = with_warmup_prompts(train, cfg.prompt_from_warmup)
        evals = None if evals is None else with_warmup_prompts(evals, cfg.prompt_from_warmup)
        if cfg.stratify_batches:
            train, passes = _stratified_passes(train, cfg, int(os.environ.get("WORLD_SIZE", "1")))
        if cfg.response_prefix:  # the prompt becomes text ending in the pre-filled answer start
            def prefill(row: dict) -> dict:
                text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
                return {**row, "prompt": text + cfg.response_prefix, "response_prefix": cfg.response_prefix}

            train = [prefill(r) for r in train]
            evals = None if evals is None else [prefill(r) for r in evals]
        return train, evals, _trl_extras(cfg, passes)

    from trl import GRPOConfig, GRPOTrainer

    extra: dict[str, Any] = {}
    trainer_cls: type = GRPOTrainer
    if cfg.dynamic_sampling.mode != "off":
        from stepjudge.train.dynamic_sampling import DynamicSamplingGRPOTrainer

        trainer_cls, extra = DynamicSamplingGRPOTrainer, {"dynamic_sampling": cfg.dynamic_sampling}
    return build_rl_trainer(cfg, trainer_cls=trainer_cls, args_cls=GRPOConfig,
                            reward_funcs=reward_functions(cfg, extra_reward_funcs), train_rows=train_rows,
                            eval_rows=eval_rows, prepare_rows=prepare, **extra)


def evaluate_heldout(cfg: JudgeRLConfig, model: str) -> dict:
    """Greedy held-out scores of ``model`` (plus P(Positive) and AUROC when the answer is pre-filled)."""
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import calibrated_metrics, evaluate_judge_rows
    from stepjudge.utils.io import read_jsonl

    rows = with_warmup_prompts(read_jsonl(cfg.heldout_data), cfg.prompt_from_warmup)
    engine = HFEngine(model, device="cpu" if cfg.use_cpu else "cuda")
    try:
        result = evaluate_judge_rows(engine, rows, max_tokens=cfg.heldout_max_tokens, seed=cfg.seed,
                                     response_prefix=cfg.response_prefix,
                                     probabilities=True)  # reasoned P(Positive) without a prefix
        if cfg.response_prefix:
            train_rows = with_warmup_prompts(load_judge_records(cfg.train_data), cfg.prompt_from_warmup)
            result["calibrated"] = calibrated_metrics(engine, train_rows,
                                                      result["predictions"], cfg.response_prefix)
    finally:
        engine.close()
    result["model"] = model
    return result


def train_judge(config: JudgeRLConfig | dict, extra_reward_funcs: Sequence[RewardFunc] = ()) -> Path:
    """GRPO-train ``config.model`` as a stepwise judge; returns the ``out/final`` checkpoint.

    ``extra_reward_funcs`` (Python API only) are added to the configured rewards, each with TRL's
    reward signature: e.g. a shaped reward for a smoke test whose random model never boxes a verdict.
    """
    import json
    import time

    from stepjudge.train.core import is_main_process, train_to_final
    from stepjudge.utils.io import atomic_write_json, atomic_write_text

    cfg = config if isinstance(config, JudgeRLConfig) else JudgeRLConfig(**config)
    out = Path(cfg.out)
    t0 = time.perf_counter()
    before = None
    if cfg.heldout_data:  # scored once; a resumed run reuses it
        before_path = out / "eval_before.json"
        if before_path.exists():
            before = json.loads(before_path.read_text())
        else:
            from stepjudge.models.registry import resolve_model

            before = evaluate_heldout(cfg, str(resolve_model(cfg.model)))
            if is_main_process():  # every rank scores (same pace into training); rank 0 writes
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_json(before_path, before)
    trainer = make_trainer(cfg, extra_reward_funcs)

    def held_out_and_report(final: Path) -> None:  # rank 0, once final/ is in place
        after = None
        if cfg.heldout_data:
            after = evaluate_heldout(cfg, str(final))
            atomic_write_json(out / "eval_after.json", after)
        atomic_write_text(out / "report.md", judge_report_markdown(
            cfg, trainer.state.log_history, _summary(before), _summary(after), time.perf_counter() - t0))
        log.info("judge report: %s", out / "report.md")

    return train_to_final(trainer, out, "judge RL", on_main=held_out_and_report)


def _summary(result: dict | None) -> dict | None:
    return None if result is None else {k: v for k, v in result.items() if k != "predictions"}
