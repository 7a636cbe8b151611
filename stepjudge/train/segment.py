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

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.errors import DataError
from stepjudge.train.common import SFTRunConfig, sft_training_args

log = logging.getLogger(__name__)

__all__ = ["SegmentSFTConfig", "train_segment", "make_trainer", "load_sft_records", "find_last_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class SegmentSFTConfig(SFTRunConfig):
    """Everything ``stepjudge train segment`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="policy to fine-tune: built-in name, local path or hub id")
    data: str = Field(description="JSONL of prompt-completion records (stepjudge train segment-data)")
    out: str = Field(description="run folder: checkpoints, final/ and train_log.json")


def load_sft_records(path: str | os.PathLike) -> list[dict]:
    """Read and check conversational prompt-completion records, naming file:line field on errors."""
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError("training data file not found", path=str(path))
    records = []
    for line, rec in iter_jsonl(path):
        for key in ("prompt", "completion"):
            msgs = rec.get(key)
            if not isinstance(msgs, list) or not msgs:
                raise DataError("expected a non-empty list of chat messages", path=str(path), line=line,
                                field=key)
            for i, m in enumerate(msgs):
                if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                        and isinstance(m.get("content"), str)):
                    raise DataError('each message must be {"role": str, "content": str}', path=str(path),
                                    line=line, field=f"{key}[{i}]")
        if rec["completion"][-1]["role"] != "assistant" or not rec["completion"][-1]["content"].strip():
            raise DataError("the completion must end with a non-empty assistant message", path=str(path),
                            line=line, field="completion")
        records.append({"prompt": rec["prompt"], "completion": rec["completion"]})
    if not records:
        raise DataError("no training records", path=str(path))
    return records


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


def _sft_args(cfg: SegmentSFTConfig, out: Path) -> Any:
    # loss on the tagged solution, never on the prompt
    return sft_training_args(cfg, out, completion_only_loss=True)


def make_trainer(config: SegmentSFTConfig | dict) -> Any:
    """The configured :class:`~trl.SFTTrainer` (data tokenized, prompt tokens masked), not yet run."""
    cfg = config if isinstance(config, SegmentSFTConfig) else SegmentSFTConfig(**config)
    records = load_sft_records(cfg.data)  # fail on bad data before loading anything heavy

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from stepjudge.models.registry import load_tokenizer, resolve_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return SFTTrainer(model=model, args=_sft_args(cfg, out), train_dataset=Dataset.from_list(records),
                      processing_class=tokenizer)


def train_segment(config: SegmentSFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` on segmentation SFT data; returns the ``out/final`` checkpoint."""
    from stepjudge.utils.io import atomic_write_json

    cfg = config if isinstance(config, SegmentSFTConfig) else SegmentSFTConfig(**config)
    out = Path(cfg.out)
    trainer = make_trainer(cfg)
    resume = find_last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # Write final/ beside its destination, then swap it in, so a crash never leaves a half model.
    final, tmp = out / "final", out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.config.use_cache = True  # training may turn the KV cache off; generation wants it
    trainer.save_model(str(tmp))  # model (safetensors) + tokenizer
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(out / "train_log.json", trainer.state.log_history)
    log.info("segmentation SFT done: %d steps, model in %s", trainer.state.global_step, final)
    return final
