"""Build any TRL RL trainer from an :class:`~stepjudge.train.core.config.RLRunConfig`.

:func:`build_rl_trainer` takes the trainer class and its TRL config class as arguments, so
``GRPOTrainer`` (StepWiser), a ``GRPOTrainer`` subclass (LaSeR) and ``RLOOTrainer`` (Critique-RL) are
built by the same code. TRL 1.16 has no prompt truncation: prompts longer than
``max_prompt_length`` tokens are dropped here (as verl's ``filter_overlong_prompts``), not cut,
since cutting a prompt would cut the problem or the text being judged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stepjudge.errors import DataError
from stepjudge.train.core.config import RLRunConfig, batch_plan
from stepjudge.train.core.trl_args import rl_training_args
from stepjudge.train.rewards import RewardFunc, resolve_rewards

log = logging.getLogger(__name__)

__all__ = ["PrepareRows", "build_rl_trainer", "drop_long_prompts", "passes_for", "rows_to_dataset"]

# (train rows, eval rows or None, tokenizer) -> (train rows, eval rows or None, extra TRL arguments)
PrepareRows = Callable[[list[dict], "list[dict] | None", Any], tuple[list[dict], "list[dict] | None", dict]]


def drop_long_prompts(records: list[dict], tokenizer: Any, limit: int, name: str) -> list[dict]:
    """Rows whose prompt fits in ``limit`` tokens; drops are counted in the log.

    TRL takes both prompt formats: chat messages (measured as the chat template renders them) and plain
    text (measured as it is).
    """
    kept = []
    for rec in records:
        prompt = rec["prompt"]
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= limit:
            kept.append(rec)
    if len(kept) < len(records):
        log.warning("%s: dropped %d of %d prompts longer than max_prompt_length=%d tokens",
                    name, len(records) - len(kept), len(records), limit)
    if not kept:
        raise DataError(f"every prompt is longer than max_prompt_length={limit} tokens", path=name)
    return kept


def rows_to_dataset(records: list[dict], name: str) -> Any:
    """A ``datasets.Dataset`` of the rows; a column whose type changes between rows names the file."""
    from datasets import Dataset

    try:
        return Dataset.from_list(records)
    except Exception as e:  # Arrow refuses columns whose type changes between rows
        raise DataError(f"rows do not share one schema ({type(e).__name__}: {e})", path=name) from None


def build_rl_trainer(cfg: RLRunConfig, *, trainer_cls: type | None = None, args_cls: type | None = None,
                     reward_funcs: Sequence[RewardFunc] | None = None, train_rows: list[dict],
                     eval_rows: list[dict] | None = None, extra_args: dict[str, Any] | None = None,
                     prepare_rows: PrepareRows | None = None, **trainer_kwargs: Any) -> Any:
    """``trainer_cls(model=..., reward_funcs=..., args=args_cls(...), ...)`` for ``cfg``, not yet run.

    ``trainer_cls``/``args_cls`` default to TRL's ``GRPOTrainer``/``GRPOConfig``; ``reward_funcs``
    default to ``cfg.rewards``. Over-long prompts are dropped first; ``prepare_rows`` then does a
    method's own row work with the tokenizer (ordering, pre-filled answers) and may return TRL
    arguments it implies, which join ``extra_args``. ``trainer_kwargs`` go to the trainer as they are.
    """
    from stepjudge.models.registry import load_tokenizer, resolve_model

    if trainer_cls is None or args_cls is None:
        from trl import GRPOConfig, GRPOTrainer

        trainer_cls, args_cls = trainer_cls or GRPOTrainer, args_cls or GRPOConfig
    if cfg.engine_rollouts and not cfg.use_vllm:
        from stepjudge.train.engine_rollouts import with_engine_rollouts

        trainer_cls = with_engine_rollouts(trainer_cls)
    funcs = list(reward_funcs) if reward_funcs is not None else resolve_rewards(cfg.rewards)
    if not funcs:
        raise ValueError("no reward functions: set `rewards` in the config")
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    path = str(resolve_model(cfg.model, allow_pickle=cfg.allow_pickle))
    tokenizer = load_tokenizer(path)
    train_rows = drop_long_prompts(train_rows, tokenizer, cfg.max_prompt_length, cfg.train_data)
    if eval_rows is not None:
        eval_rows = drop_long_prompts(eval_rows, tokenizer, cfg.max_prompt_length, cfg.eval_data or "eval rows")
    extra = dict(extra_args or {})
    if prepare_rows is not None:
        train_rows, eval_rows, implied = prepare_rows(train_rows, eval_rows, tokenizer)
        extra.update(implied)
    train_ds = rows_to_dataset(train_rows, cfg.train_data)
    eval_ds = None if eval_rows is None else rows_to_dataset(eval_rows, cfg.eval_data or "eval rows")
    # The model goes in as a path so TRL loads it the distributed-safe way (device_map, ZeRO-3 init)
    # and builds its own left-padding processor from the same directory.
    trainer = trainer_cls(model=path, reward_funcs=funcs, args=rl_training_args(cfg, args_cls, extra),
                          train_dataset=train_ds, eval_dataset=eval_ds, **trainer_kwargs)
    plan = batch_plan(cfg, trainer.accelerator.num_processes)
    log.info("%s batch plan: %s", trainer_cls.__name__, plan)
    if cfg.num_processes and cfg.num_processes != plan["num_processes"]:
        log.warning("config assumes %d training processes but %d were launched: %.0f prompts per rollout "
                    "instead of %.0f", cfg.num_processes, plan["num_processes"], plan["prompts_per_rollout"],
                    batch_plan(cfg)["prompts_per_rollout"])
    return trainer


def passes_for(cfg: RLRunConfig, n_rows: int, num_processes: int) -> int:
    """Whole passes over ``n_rows`` prompts a run needs (for data laid out pass by pass, unshuffled)."""
    if cfg.max_steps > 0:
        prompts = cfg.max_steps * batch_plan(cfg, num_processes)["prompts_per_update"]
        return max(1, math.ceil(prompts / n_rows))
    return max(1, math.ceil(cfg.epochs))
