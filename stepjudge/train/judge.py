"""RL training of a generative stepwise judge with TRL's GRPO (StepWiser §3.3, §4.1).

The judge reads (problem, earlier chunks, new chunk), reasons, and ends with ``\\boxed{Positive}`` or
``\\boxed{Negative}``; the reward is 1 when that verdict equals the chunk's Monte-Carlo label
(:func:`stepjudge.train.rewards.verdict_reward`). The trainer is TRL's :class:`~trl.GRPOTrainer`
used as its authors intend: a reward function with TRL's signature and a :class:`~trl.GRPOConfig`.
No subclass is needed: TRL's ``log_metric`` hook lets the reward log verdict shares itself, and TRL
already logs reward, ``frac_reward_zero_std``, entropy and clip ratios.

Paper recipe (verl): lr 1e-6, 4 samples per prompt, clip-higher eps_low 0.2 / eps_high 0.28, 1024
prompts per rollout step, PPO mini-batch 256 prompts (so 4 optimizer updates per rollout), 800
rollout steps. In TRL terms (its batch sizes count *completions*, its ``max_steps`` counts optimizer
updates)::

    completions per optimizer update = per_device_batch_size x processes x gradient_accumulation_steps
    completions per rollout          = per_device_batch_size x processes x steps_per_generation
    prompts = completions / num_generations;  rollout steps = max_steps / (steps_per_generation / accum)

:func:`batch_plan` does this arithmetic and :func:`train_judge` logs it for the real world size.
Clip-higher only acts when a rollout feeds several updates (``steps_per_generation`` > accumulation);
with one update per rollout the policy ratio is exactly 1 and no clipping ever happens.

TRL 1.16 has no ``max_prompt_length``: prompts longer than ``max_prompt_length`` tokens are dropped
here before training (as verl's ``filter_overlong_prompts``), not truncated, since cutting a judge
prompt would cut the problem or the chunk it is judging.

Runs resume from the newest complete ``out/checkpoint-N``; the result is ``out/final`` (safetensors
+ tokenizer) that ``stepjudge eval processbench --judge`` and ``stepjudge serve --model`` load, plus
``out/train_log.json`` (TRL's log history) and ``out/curves.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepjudge.data.records import check_chat_messages
from stepjudge.errors import DataError
from stepjudge.train.common import find_last_checkpoint
from stepjudge.train.rewards import canonical_label, format_penalty_reward, verdict_reward

log = logging.getLogger(__name__)

__all__ = ["JudgeRLConfig", "batch_plan", "evaluate_heldout", "judge_report_markdown", "load_judge_records",
           "make_grpo_config", "make_trainer", "plot_curves", "reward_functions", "stratified_order",
           "train_judge"]

RewardFunc = Callable[..., list[float]]


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


class JudgeRLConfig(BaseModel):
    """Every knob of ``stepjudge train judge``; unknown keys are errors (typos in YAML).

    Defaults are the paper's algorithm settings; batch sizes are per deployment (see the YAMLs).
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="judge to train: built-in name, local path or hub id")
    train_data: str = Field(description='JSONL rows {"prompt": [messages], "label": "Positive"|"Negative"}')
    eval_data: str | None = Field(None, description="held-out rows in the same format (eval reward)")
    out: str = Field(description="run folder: checkpoints, final/, train_log.json, curves.png")
    learning_rate: float = Field(1e-6, gt=0, description="paper: 1e-6")
    num_generations: int = Field(4, ge=2, description="samples per prompt (GRPO group); paper: 4")
    per_device_batch_size: int = Field(8, ge=1, description="COMPLETIONS per device per micro-step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-steps per optimizer update")
    steps_per_generation: int | None = Field(
        None, ge=1, description="micro-steps served by one rollout; None = accumulation (1 update per "
        "rollout). A multiple k of the accumulation gives k updates per rollout (paper: 4)")
    num_processes: int | None = Field(
        None, ge=1, description="training processes (GPUs) the batch arithmetic assumes; a launch with "
        "another count is warned about, since it changes the prompts per step")
    max_steps: int = Field(-1, ge=-1, description="optimizer updates; -1 = run for `epochs`")
    epochs: float = Field(1.0, gt=0, description="passes over the prompts (ignored when max_steps > 0)")
    max_prompt_length: int = Field(3096, ge=8, description="longer prompts are dropped; paper: 3096")
    max_completion_length: int = Field(3096, ge=1, description="judge output tokens; paper: 3096")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1)
    epsilon: float = Field(0.2, gt=0, description="lower clip eps_low; paper: 0.2")
    epsilon_high: float = Field(0.28, gt=0, description="upper clip (clip-higher); paper: 0.28")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 = no reference model (paper: unstated)")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="token aggregation; dapo = verl's token-mean (TRL default)")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="advantage std scaling")
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer updates (and at the end)")
    save_total_limit: int | None = Field(2, ge=1, description="keep at most N checkpoints (None = all)")
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N updates; None = save_steps")
    per_device_eval_batch_size: int | None = Field(
        None, ge=1, description="eval completions per device; None = train size rounded up to whole groups")
    use_vllm: bool = Field(False, description="generate rollouts with vLLM (GPU only)")
    vllm_mode: Literal["server", "colocate"] = Field(
        "colocate", description="colocate: vLLM inside each training process; server: `trl vllm-serve`")
    vllm_server_base_url: str | None = Field(None, description="server mode, e.g. http://gpu-node-2:8000")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate mode: vLLM's share")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="colocate mode: GPUs per vLLM engine")
    bf16: bool | None = Field(None, description="bf16 mixed precision; None = on for a bf16-capable GPU")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory on big models")
    use_cpu: bool = Field(default_factory=_no_cuda, description="train on CPU (default: when no CUDA)")
    reward: Literal["verdict", "verdict+format"] = Field(
        "verdict", description="verdict+format adds the -1 format penalty of the no-CoT ablation")
    log_completions: bool = Field(False, description="print sample completions with their rewards")
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

    @field_validator("max_steps")
    @classmethod
    def _steps_not_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> JudgeRLConfig:
        if self.epsilon_high < self.epsilon:
            raise ValueError("epsilon_high must be >= epsilon (clip-higher widens the upper bound)")
        spg = self.steps_per_generation
        if spg is not None and spg % self.gradient_accumulation_steps:
            raise ValueError("steps_per_generation must be a multiple of gradient_accumulation_steps, "
                             "so each rollout feeds a whole number of optimizer updates")
        return self


def batch_plan(cfg: JudgeRLConfig, num_processes: int | None = None) -> dict[str, Any]:
    """Prompts and completions per update and per rollout for ``num_processes`` (default: the config's).

    The single place that translates TRL's completion-counted knobs into the paper's prompt counts.
    """
    n = num_processes or cfg.num_processes or 1
    accum = cfg.gradient_accumulation_steps
    spg = cfg.steps_per_generation or accum
    per_update = cfg.per_device_batch_size * n * accum
    per_rollout = cfg.per_device_batch_size * n * spg
    updates_per_rollout = spg // accum
    return {
        "num_processes": n,
        "completions_per_update": per_update,
        "prompts_per_update": per_update / cfg.num_generations,
        "completions_per_rollout": per_rollout,
        "prompts_per_rollout": per_rollout / cfg.num_generations,
        "updates_per_rollout": updates_per_rollout,
        "rollout_steps": cfg.max_steps / updates_per_rollout if cfg.max_steps > 0 else None,
    }


def stratified_order(labels: Sequence[str], seed: int) -> list[int]:
    """A permutation of row indices in which every prefix holds the classes in the data's proportions.

    Each class is shuffled and its k-th of n rows placed at (k + 0.5) / n along the pass; rows meeting at
    one place are ordered randomly. On 50/50 data every consecutive pair has one row of each class.
    """
    import random

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
    if cfg.max_steps > 0:
        prompts = cfg.max_steps * batch_plan(cfg, num_processes)["prompts_per_update"]
        passes = max(1, math.ceil(prompts / len(records)))
    else:
        passes = max(1, math.ceil(cfg.epochs))
    labels = [r["label"] for r in records]
    rows = [records[i] for p in range(passes) for i in stratified_order(labels, cfg.seed + p)]
    return rows, passes


def make_grpo_config(cfg: JudgeRLConfig, passes: int = 1) -> Any:
    """The :class:`~trl.GRPOConfig` for ``cfg`` (TRL validates batch divisibility for this world size)."""
    import torch
    from trl import GRPOConfig

    bf16 = cfg.bf16
    if bf16 is None:
        bf16 = (not cfg.use_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # transformers 5.x renamed gradient_checkpointing (GRPOConfig defaults the old name to True and the
    # alias warns); set whichever name this version has so the choice is explicit and silent.
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    extra: dict[str, Any] = {ckpt: cfg.gradient_checkpointing}
    if cfg.eval_data:
        # TRL wants whole groups per eval batch; rounding up keeps that true for any process count.
        g = cfg.num_generations
        eval_bs = cfg.per_device_eval_batch_size or -(-cfg.per_device_batch_size // g) * g
        extra.update(eval_strategy="steps", eval_steps=cfg.eval_steps or cfg.save_steps,
                     per_device_eval_batch_size=eval_bs)
    if cfg.use_vllm:
        extra.update(use_vllm=True, vllm_mode=cfg.vllm_mode, vllm_server_base_url=cfg.vllm_server_base_url,
                     vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                     vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
                     vllm_max_model_length=cfg.max_prompt_length + cfg.max_completion_length)
    return GRPOConfig(
        output_dir=cfg.out,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs / passes,  # stratified data already repeats `passes` times
        shuffle_dataset=not cfg.stratify_batches,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        steps_per_generation=cfg.steps_per_generation,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        use_cpu=cfg.use_cpu,
        bf16=bf16,
        log_completions=cfg.log_completions,
        report_to="none",
        **extra,
    )


def load_judge_records(path: str | os.PathLike) -> list[dict]:
    """Read and check judge rows, naming file:line field on errors; labels come back canonical.

    Columns besides ``prompt`` and ``label`` (``problem_id``, ``chunk_index``, ...) are kept: TRL hands
    every column to the reward functions.
    """
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError("judge training data file not found", path=str(path))
    records = []
    for line, rec in iter_jsonl(path):
        check_chat_messages(rec.get("prompt"), path=str(path), line=line, field="prompt")
        try:
            label = canonical_label(rec.get("label"))
        except ValueError as e:
            raise DataError(str(e), path=str(path), line=line, field="label") from None
        records.append({**rec, "label": label})
    if not records:
        raise DataError("no judge training rows", path=str(path))
    return records


def _drop_long_prompts(records: list[dict], tokenizer: Any, limit: int, name: str) -> list[dict]:
    """Rows whose chat-formatted prompt fits in ``limit`` tokens; drops are counted in the log."""
    kept = []
    for rec in records:
        text = tokenizer.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= limit:
            kept.append(rec)
    if len(kept) < len(records):
        log.warning("%s: dropped %d of %d prompts longer than max_prompt_length=%d tokens",
                    name, len(records) - len(kept), len(records), limit)
    if not kept:
        raise DataError(f"every prompt is longer than max_prompt_length={limit} tokens", path=name)
    return kept


def _dataset(records: list[dict], name: str) -> Any:
    from datasets import Dataset

    try:
        return Dataset.from_list(records)
    except Exception as e:  # Arrow refuses columns whose type changes between rows
        raise DataError(f"rows do not share one schema ({type(e).__name__}: {e})", path=name) from None


def reward_functions(cfg: JudgeRLConfig, extra: Sequence[RewardFunc] = ()) -> list[RewardFunc]:
    """The configured rewards (summed by TRL with weight 1 each), then any extra Python callables."""
    funcs: list[RewardFunc] = [verdict_reward]
    if cfg.reward == "verdict+format":
        funcs.append(format_penalty_reward)
    return [*funcs, *extra]


def make_trainer(config: JudgeRLConfig | dict, extra_reward_funcs: Sequence[RewardFunc] = ()) -> Any:
    """The configured :class:`~trl.GRPOTrainer` (data checked, long prompts dropped), not yet run."""
    cfg = config if isinstance(config, JudgeRLConfig) else JudgeRLConfig(**config)
    train_rows = load_judge_records(cfg.train_data)  # fail on bad data before loading anything heavy
    eval_rows = load_judge_records(cfg.eval_data) if cfg.eval_data else None

    from trl import GRPOTrainer

    from stepjudge.models.registry import load_tokenizer, resolve_model

    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    path = str(resolve_model(cfg.model))
    tokenizer = load_tokenizer(path)
    train_rows = _drop_long_prompts(train_rows, tokenizer, cfg.max_prompt_length, cfg.train_data)
    passes = 1
    if cfg.stratify_batches:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        train_rows, passes = _stratified_passes(train_rows, cfg, world)
    train_ds = _dataset(train_rows, cfg.train_data)
    eval_ds = None
    if eval_rows is not None:
        eval_ds = _dataset(_drop_long_prompts(eval_rows, tokenizer, cfg.max_prompt_length, cfg.eval_data),
                           cfg.eval_data)
    if cfg.response_prefix:
        train_ds, eval_ds = (None if ds is None else ds.map(
            lambda row: {"prompt": tokenizer.apply_chat_template(row["prompt"], tokenize=False,
                                                                 add_generation_prompt=True) + cfg.response_prefix,
                         "response_prefix": cfg.response_prefix}) for ds in (train_ds, eval_ds))
    # The model goes in as a path so TRL loads it the distributed-safe way (device_map, ZeRO-3 init)
    # and builds its own left-padding processor from the same directory.
    trainer = GRPOTrainer(model=path, reward_funcs=reward_functions(cfg, extra_reward_funcs),
                          args=make_grpo_config(cfg, passes), train_dataset=train_ds, eval_dataset=eval_ds)
    plan = batch_plan(cfg, trainer.accelerator.num_processes)
    log.info("judge RL batch plan: %s", plan)
    if cfg.num_processes and cfg.num_processes != plan["num_processes"]:
        log.warning("config assumes %d training processes but %d were launched: %.0f prompts per rollout "
                    "instead of %.0f", cfg.num_processes, plan["num_processes"], plan["prompts_per_rollout"],
                    batch_plan(cfg)["prompts_per_rollout"])
    return trainer


# (title, log_history keys) per panel; keys TRL or verdict_reward did not log are simply absent.
_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward (mean)", ("reward", "eval_reward")),
    ("token entropy", ("entropy",)),
    ("verdict shares", ("verdict/positive_share", "verdict/negative_share", "verdict/unparsed_share")),
    ("frac_reward_zero_std", ("frac_reward_zero_std",)),
    ("clip ratio", ("clip_ratio/low_mean", "clip_ratio/high_mean")),
    ("completion length", ("completions/mean_length",)),
)


def plot_curves(log_history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Training curves as a PNG (written atomically) from TRL's ``log_history``.

    Uses matplotlib's object API with the Agg canvas, so no global backend is switched in the caller.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(13, 7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    for ax, (title, keys) in zip(axes, _PANELS, strict=True):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.ticklabel_format(axis="y", useOffset=False)  # entropy moves in the 4th decimal early on
        drawn = False
        for key in keys:
            pts = [(e["step"], e[key]) for e in log_history if e.get(key) is not None and "step" in e]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 50 else None, label=key)
                drawn = True
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return path


def evaluate_heldout(cfg: JudgeRLConfig, model: str) -> dict:
    """Greedy held-out scores of ``model`` (plus P(Positive) and AUROC when the answer is pre-filled)."""
    from stepjudge.engines.hf import HFEngine
    from stepjudge.eval.judge_heldout import evaluate_judge_rows
    from stepjudge.utils.io import read_jsonl

    rows = read_jsonl(cfg.heldout_data)
    engine = HFEngine(model, device="cpu" if cfg.use_cpu else "cuda")
    try:
        result = evaluate_judge_rows(engine, rows, max_tokens=cfg.heldout_max_tokens, seed=cfg.seed,
                                     response_prefix=cfg.response_prefix,
                                     probabilities=bool(cfg.response_prefix))
        if cfg.response_prefix:
            from stepjudge.eval.judge_heldout import calibrated_metrics

            result["calibrated"] = calibrated_metrics(engine, load_judge_records(cfg.train_data),
                                                      result["predictions"], cfg.response_prefix)
    finally:
        engine.close()
    result["model"] = model
    return result


_REPORT_ROWS = (("accuracy", "accuracy (%)"), ("acc_positive", "acc. on Positive chunks (%)"),
                ("acc_negative", "acc. on Negative chunks (%)"), ("balanced_f1", "balanced F1"),
                ("auroc", "AUROC of P(Positive)"), ("predicted_positive_fraction", "share judged Positive"),
                ("unparsed_fraction", "share unparsed"), ("calibrated.threshold", "train-calibrated P(Positive) cut"),
                ("calibrated.balanced_f1", "balanced F1 at that cut"),
                ("calibrated.accuracy", "accuracy at that cut (%)"))


def _get(result: dict | None, dotted: str) -> Any:
    node: Any = result or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _fmt(x: Any, key: str = "") -> str:
    """Percentages with one decimal, shares and AUROC with three, probability cuts with six (they sit
    near 1.0 for a judge that favours Positive)."""
    if x is None:
        return "n/a"
    if not isinstance(x, float):
        return str(x)
    if "threshold" in key:
        return f"{x:.6f}"
    if key.startswith(("auroc", "predicted_", "unparsed_")) or key in ("reward", "entropy") or "share" in key \
            or "frac" in key:
        return f"{x:.3f}"
    return f"{x:.1f}"


def judge_report_markdown(cfg: JudgeRLConfig, log_history: Sequence[dict], before: dict | None,
                          after: dict | None, wall_s: float | None = None) -> str:
    """The run's human report: setup, before/after held-out table, last training metrics, curves."""
    plan = batch_plan(cfg)
    lines = [f"# Judge RL: {cfg.out}", "",
             f"- model: `{cfg.model}`; train data: `{cfg.train_data}`; held-out: `{cfg.heldout_data}`",
             f"- GRPO: lr {cfg.learning_rate:g}, {cfg.num_generations} samples/prompt, clip {cfg.epsilon}/"
             f"{cfg.epsilon_high}, beta {cfg.beta:g}, loss {cfg.loss_type}, {cfg.max_steps} updates of "
             f"{plan['completions_per_update']} completions ({plan['prompts_per_update']:g} prompts), "
             f"{plan['updates_per_rollout']} update(s)/rollout, stratified batches {cfg.stratify_batches}, "
             f"seed {cfg.seed}, response prefix {cfg.response_prefix!r}"]
    if wall_s is not None:
        lines.append(f"- wall time of this call: {wall_s / 60:.1f} min")
    if before or after:
        lines += ["", "## Held-out chunks: before vs after", "",
                  f"{(before or after)['n']} chunks ({(before or after)['n_positive']} Positive / "
                  f"{(before or after)['n_negative']} Negative), greedy verdicts.", "",
                  "| metric | before | after |", "|---|---|---|"]
        for key, name in _REPORT_ROWS:
            lines.append(f"| {name} | {_fmt(_get(before, key), key)} | {_fmt(_get(after, key), key)} |")
    train = [e for e in log_history if "loss" in e]
    if train:
        last = train[-1]
        lines += ["", "## Training (last logged update)", "", "| metric | value |", "|---|---|"]
        for key in ("step", "reward", "verdict/positive_share", "verdict/unparsed_share", "entropy",
                    "frac_reward_zero_std"):
            if key in last:
                lines.append(f"| {key} | {_fmt(last[key], key)} |")
    lines += ["", "![training curves](curves.png)", ""]
    return "\n".join(lines)


def train_judge(config: JudgeRLConfig | dict, extra_reward_funcs: Sequence[RewardFunc] = ()) -> Path:
    """GRPO-train ``config.model`` as a stepwise judge; returns the ``out/final`` checkpoint.

    ``extra_reward_funcs`` (Python API only) are added to the configured rewards, each with TRL's
    reward signature: e.g. a shaped reward for a smoke test whose random model never boxes a verdict.
    """
    import json
    import time

    from stepjudge.utils.io import atomic_write_json

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
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(before_path, before)
    trainer = make_trainer(cfg, extra_reward_funcs)
    resume = find_last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # Every process takes part in saving (ZeRO-3/FSDP gather the shards); rank 0 alone writes files.
    # final/ is written beside its destination, then swapped in, so a crash never leaves a half model.
    final, tmp = out / "final", out / ".final.tmp"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.model.config.use_cache = True  # training may turn the KV cache off; generation wants it
    trainer.save_model(str(tmp))  # model (safetensors) + tokenizer
    trainer.accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_json(out / "train_log.json", trainer.state.log_history)
        plot_curves(trainer.state.log_history, out / "curves.png")
        after = None
        if cfg.heldout_data:
            after = evaluate_heldout(cfg, str(final))
            atomic_write_json(out / "eval_after.json", after)
        from stepjudge.utils.io import atomic_write_text

        atomic_write_text(out / "report.md", judge_report_markdown(
            cfg, trainer.state.log_history, _summary(before), _summary(after), time.perf_counter() - t0))
        log.info("judge RL done: %d steps, model in %s, report %s", trainer.state.global_step, final,
                 out / "report.md")
    trainer.accelerator.wait_for_everyone()
    return final


def _summary(result: dict | None) -> dict | None:
    return None if result is None else {k: v for k, v in result.items() if k != "predictions"}
