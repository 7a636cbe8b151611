"""What every SFT-style run shares (segment SFT, discriminative judge SFT, policy SFT): settings, the
trainer set-up, resuming from the newest complete checkpoint and the atomic ``final/`` model."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


class SFTRunConfig(BaseModel):
    """Optimisation and checkpointing knobs; subclasses add the model, data and output fields."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-5, gt=0, description="paper: 1e-5")
    epochs: float = Field(1.0, gt=0, description="passes over the data (ignored when max_steps > 0)")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps; -1 = run for `epochs`")
    per_device_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1, description="global batch = batch x this (paper 32)")
    max_length: int = Field(1024, ge=8, description="tokens per example; cut beyond")
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (and at the end)")
    save_total_limit: int | None = Field(2, ge=1, description="keep at most N checkpoints (None = all)")
    use_cpu: bool = Field(default_factory=no_cuda, description="train on CPU (default: when no CUDA)")
    bf16: bool | None = Field(None, description="bf16 mixed precision; None = on for a bf16-capable GPU")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory on big models")

    @field_validator("max_steps")
    @classmethod
    def _steps_not_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return v


def resolve_bf16(cfg: SFTRunConfig) -> bool:
    """``bf16=None`` means: on for a bf16-capable GPU, off on CPU (where bf16 is ~10x slower here)."""
    if cfg.bf16 is not None:
        return cfg.bf16
    import torch

    return (not cfg.use_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def sft_training_args(cfg: SFTRunConfig, out, **loss_options):
    """TRL ``SFTConfig`` from the shared settings; ``loss_options`` pick the loss mask
    (``completion_only_loss`` for prompt-completion data, ``assistant_only_loss`` for chats)."""
    import dataclasses

    from trl import SFTConfig

    # transformers 5.x renamed gradient_checkpointing (TRL defaults the old name to True and the alias
    # warns); set whichever name this version has so the choice is explicit and silent.
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return SFTConfig(
        output_dir=str(out), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
        seed=cfg.seed, logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, use_cpu=cfg.use_cpu, bf16=resolve_bf16(cfg),
        report_to="none", **loss_options, **{ckpt: cfg.gradient_checkpointing})


def find_last_checkpoint(out: str | os.PathLike) -> Path | None:
    """Newest ``checkpoint-N`` in ``out`` whose ``trainer_state.json`` (written last) is readable.

    A checkpoint torn by a crash mid-save lacks a valid state file and is skipped, so a resume falls
    back to the previous one instead of failing.
    """
    out = Path(out)
    if not out.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in out.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    for _, path in steps:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping incomplete checkpoint %s", path)
            continue
        return path
    return None


def build_sft_trainer(cfg: Any, rows: Sequence[dict], *, prepare_tokenizer: Callable[[Any], None] | None = None,
                      **loss_options: Any) -> Any:
    """TRL ``SFTTrainer`` for ``cfg.model`` (fp32) on ``rows``; ``prepare_tokenizer`` may adjust the
    tokenizer (e.g. a training chat template) before the data is tokenized."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from stepjudge.models.registry import load_tokenizer, resolve_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(path)
    if prepare_tokenizer is not None:
        prepare_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return SFTTrainer(model=model, args=sft_training_args(cfg, out, **loss_options),
                      train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer)


def train_to_final(trainer: Any, out: str | os.PathLike, what: str,
                   before_save: Callable[[Any], None] | None = None) -> Path:
    """Train (resuming from the newest complete checkpoint in ``out``), then write ``out/final``
    (safetensors + tokenizer) beside its destination and swap it in, so a crash never leaves a half
    model; ``train_log.json`` holds TRL's log history."""
    from stepjudge.utils.io import atomic_write_json

    out = Path(out)
    resume = find_last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final, tmp = out / "final", out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if before_save is not None:
        before_save(trainer)
    trainer.model.config.use_cache = True  # training may turn the KV cache off; generation wants it
    trainer.save_model(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(out / "train_log.json", trainer.state.log_history)
    log.info("%s done: %d steps, model in %s", what, trainer.state.global_step, final)
    return final
