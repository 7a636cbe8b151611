"""Build TRL's ``SFTTrainer`` from an :class:`~stepjudge.train.core.config.SFTRunConfig`: the shared
set-up of segment SFT, discriminative judge SFT and policy SFT."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stepjudge.train.core.config import SFTRunConfig
from stepjudge.train.core.trl_args import sft_training_args

__all__ = ["build_sft_trainer"]


def build_sft_trainer(cfg: SFTRunConfig, rows: Sequence[dict], *,
                      prepare_tokenizer: Callable[[Any], None] | None = None, **loss_options: Any) -> Any:
    """TRL ``SFTTrainer`` for ``cfg.model`` (fp32) on ``rows``; ``prepare_tokenizer`` may adjust the
    tokenizer (e.g. a training chat template) before the data is tokenized."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from stepjudge.models.registry import load_tokenizer, resolve_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(cfg.model, allow_pickle=cfg.allow_pickle)
    tokenizer = load_tokenizer(path)
    if prepare_tokenizer is not None:
        prepare_tokenizer(tokenizer)
    safe = {} if cfg.allow_pickle else {"use_safetensors": True}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **safe)
    return SFTTrainer(model=model, args=sft_training_args(cfg, out, **loss_options),
                      train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer)
