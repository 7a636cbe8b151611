"""Segmentation SFT: fine-tune a policy to write its reasoning as ``<chunk>`` blocks (StepWiser §3.1).

Training is TRL's :class:`~trl.SFTTrainer` on conversational prompt-completion records (built by
:func:`stepjudge.segment.build_segmentation_sft`), with the loss on the completion only: the policy
must learn to *write* tagged solutions, not to reproduce the prompt. Paper settings are the defaults
(lr 1e-5, global batch 32 = 4 x 8 accumulation); the paper's 8192-token packing is left out because
TRL's packing needs padding-free FlashAttention, which CPU training lacks.

Runs are resumable: checkpoints go to ``out/checkpoint-N`` every ``save_steps`` (and at the end),
and a re-run with the same ``out`` continues from the newest complete one. The result is a plain
safetensors checkpoint in ``out/final`` that :class:`~stepjudge.engines.hf.HFEngine` loads directly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.train.core import (
    SFTRunConfig,
    build_sft_trainer,
    find_last_checkpoint,
    read_prompt_completion_rows,
    train_to_final,
)
from stepjudge.train.report import SFT_PANELS

log = logging.getLogger(__name__)

__all__ = ["SegmentSFTConfig", "train_segment", "make_trainer", "load_sft_records", "find_last_checkpoint"]


class SegmentSFTConfig(SFTRunConfig):
    """Everything ``stepjudge train segment`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="policy to fine-tune: built-in name, local path or hub id")
    data: str = Field(description="JSONL of prompt-completion records (stepjudge train segment-data)")


def load_sft_records(path: str | os.PathLike) -> list[dict]:
    """Read and check conversational prompt-completion records, naming file:line field on errors."""
    return read_prompt_completion_rows(path, "chat", empty="no training records")


def make_trainer(config: SegmentSFTConfig | dict) -> Any:
    """The configured :class:`~trl.SFTTrainer` (data tokenized, prompt tokens masked), not yet run."""
    cfg = config if isinstance(config, SegmentSFTConfig) else SegmentSFTConfig(**config)
    records = load_sft_records(cfg.data)  # fail on bad data before loading anything heavy
    return build_sft_trainer(cfg, records, completion_only_loss=True)  # loss on the tagged solution only


def train_segment(config: SegmentSFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` on segmentation SFT data; returns the ``out/final`` checkpoint."""
    cfg = config if isinstance(config, SegmentSFTConfig) else SegmentSFTConfig(**config)
    return train_to_final(make_trainer(cfg), cfg.out, "segmentation SFT", panels=SFT_PANELS)
