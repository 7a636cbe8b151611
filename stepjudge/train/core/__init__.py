"""The method-agnostic training layer: run configs, TRL argument translation, trainer builders and
the distributed-safe finalisation shared by every RL and SFT trainer.

A new RL method is a config subclass of :class:`RLRunConfig`, a TRL trainer (or a subclass of one),
its rewards (registered with :func:`~stepjudge.train.rewards.register_reward` or named by import
path) and one :func:`build_rl_trainer` + :func:`train_to_final` call; see docs/judge_training.md.
"""

from stepjudge.train.core.config import (
    RLRunConfig,
    RunConfig,
    SFTRunConfig,
    batch_plan,
    no_cuda,
    resolve_bf16,
)
from stepjudge.train.core.finalize import find_last_checkpoint, is_main_process, train_to_final
from stepjudge.train.core.rl import (
    PrepareRows,
    build_rl_trainer,
    drop_long_prompts,
    passes_for,
    rows_to_dataset,
)
from stepjudge.train.core.rows import read_prompt_completion_rows, read_rows
from stepjudge.train.core.sft import build_sft_trainer
from stepjudge.train.core.trl_args import (
    checkpointing_arg,
    rl_training_args,
    rl_trl_kwargs,
    sft_training_args,
    trl_field_names,
)

__all__ = ["PrepareRows", "RLRunConfig", "RunConfig", "SFTRunConfig", "batch_plan", "build_rl_trainer",
           "build_sft_trainer", "checkpointing_arg", "drop_long_prompts", "find_last_checkpoint", "is_main_process", "no_cuda",
           "passes_for", "read_prompt_completion_rows", "read_rows", "resolve_bf16", "rl_training_args", "rl_trl_kwargs", "rows_to_dataset",
           "sft_training_args", "train_to_final", "trl_field_names"]
