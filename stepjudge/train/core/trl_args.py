"""Translation of run configs into TRL's config dataclasses: the one place that names TRL fields.

:func:`rl_training_args` works for any TRL RL config class (``GRPOConfig``, ``RLOOConfig``, a
subclass): it builds the arguments every RL method shares and passes only those the class declares,
so a trainer without, say, ``loss_type`` simply does not get it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from stepjudge.train.core.config import RLRunConfig, SFTRunConfig, resolve_bf16

log = logging.getLogger(__name__)

__all__ = ["checkpointing_arg", "rl_trl_kwargs", "rl_training_args", "sft_training_args", "trl_field_names"]


def trl_field_names(args_cls: type) -> set[str]:
    """The init fields of a TRL config dataclass."""
    return {f.name for f in dataclasses.fields(args_cls) if f.init}


def checkpointing_arg(args_cls: type, on: bool) -> dict[str, bool]:
    """transformers 5.x renamed gradient_checkpointing (TRL defaults the old name to True and the alias
    warns); set whichever name this version has so the choice is explicit and silent."""
    names = trl_field_names(args_cls)
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def rl_trl_kwargs(cfg: RLRunConfig, args_cls: type) -> dict[str, Any]:
    """Every TRL argument the shared RL settings imply, before filtering to ``args_cls``'s fields."""
    kwargs: dict[str, Any] = dict(
        output_dir=cfg.out,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
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
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        use_cpu=cfg.use_cpu,
        bf16=resolve_bf16(cfg),
        log_completions=cfg.log_completions,
        report_to="none",
        **{name: getattr(cfg, name) for name in cfg.trl_fields},
        **checkpointing_arg(args_cls, cfg.gradient_checkpointing),
    )
    if cfg.eval_data:
        # TRL wants whole groups per eval batch; rounding up keeps that true for any process count.
        g = cfg.num_generations
        eval_bs = cfg.per_device_eval_batch_size or -(-cfg.per_device_batch_size // g) * g
        kwargs.update(eval_strategy="steps", eval_steps=cfg.eval_steps or cfg.save_steps,
                      per_device_eval_batch_size=eval_bs)
    if cfg.use_vllm:
        kwargs.update(use_vllm=True, vllm_mode=cfg.vllm_mode, vllm_server_base_url=cfg.vllm_server_base_url,
                      vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                      vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
                      vllm_max_model_length=cfg.max_prompt_length + cfg.max_completion_length)
    return kwargs


def rl_training_args(cfg: RLRunConfig, args_cls: type, extra_args: dict[str, Any] | None = None) -> Any:
    """``args_cls`` (e.g. ``GRPOConfig``, ``RLOOConfig``) for ``cfg``; TRL validates the batch sizes.

    Shared settings the class lacks are left out (logged); ``extra_args`` are a method's own TRL
    arguments and override the shared ones; a name the class lacks there is an error, not a silent drop.
    """
    names = trl_field_names(args_cls)
    extra = dict(extra_args or {})
    unknown = sorted(set(extra) - names)
    if unknown:
        raise ValueError(f"{args_cls.__name__} has no field(s) {unknown}")
    kwargs = {**rl_trl_kwargs(cfg, args_cls), **extra}
    dropped = sorted(set(kwargs) - names)
    if dropped:
        log.info("%s has no %s: left out", args_cls.__name__, ", ".join(dropped))
    return args_cls(**{k: v for k, v in kwargs.items() if k in names})


def sft_training_args(cfg: SFTRunConfig, out: Any, **loss_options: Any) -> Any:
    """TRL ``SFTConfig`` from the shared settings; ``loss_options`` pick the loss mask
    (``completion_only_loss`` for prompt-completion data, ``assistant_only_loss`` for chats)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
        seed=cfg.seed, logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, use_cpu=cfg.use_cpu, bf16=resolve_bf16(cfg),
        report_to="none", **loss_options, **checkpointing_arg(SFTConfig, cfg.gradient_checkpointing))
