"""Discriminative judge baseline: SFT a PRM to answer "+"/"-" after every chunk (StepWiser App. A.1).

Each training row is one solution as a multi-turn chat (from
:func:`stepjudge.judge.dataset.to_discriminative_sft_rows`): user turn = chunk (the first one with
the problem), assistant turn = that chunk's label. TRL's ``assistant_only_loss`` puts the loss on the
assistant turns only, so the model learns to *classify* chunks, never to reproduce them. SmolLM2's chat
template has no ``{% generation %}`` markers, which that mask needs, so training uses
:func:`~stepjudge.judge.dataset.chat_template_with_generation_markers`; the saved model gets the
original template back (it renders the same text, and serving stacks need not know the markers).

Runs resume from the newest complete ``out/checkpoint-N``; the result is ``out/final`` (safetensors +
tokenizer) plus ``out/train_log.json``. Evaluate it with
``stepjudge.eval.judge_heldout.evaluate_judge_rows(..., protocol="discriminative")``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.errors import DataError
from stepjudge.train.common import SFTRunConfig, sft_training_args
from stepjudge.train.segment import find_last_checkpoint

log = logging.getLogger(__name__)

__all__ = ["DiscSFTConfig", "load_disc_rows", "make_trainer", "train_disc_sft"]


class DiscSFTConfig(SFTRunConfig):
    """Everything ``stepjudge train disc-sft`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="PRM to fine-tune: built-in name, local path or hub id")
    train_data: str = Field(description='JSONL of {"messages": [...]} rows (judge-data, discriminative)')
    out: str = Field(description="run folder: checkpoints, final/ and train_log.json")
    max_length: int = Field(2048, ge=8, description="tokens per conversation; cut beyond")


def load_disc_rows(path: str | os.PathLike) -> list[dict]:
    """Read and check multi-turn "+"/"-" chats, naming file:line field on errors (before any model loads)."""
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError("training data file not found", path=str(path))
    rows = []
    for line, rec in iter_jsonl(path):
        msgs = rec.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise DataError("expected a non-empty list of chat messages", path=str(path), line=line,
                            field="messages")
        for i, m in enumerate(msgs):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)):
                raise DataError('each message must be {"role": str, "content": str}', path=str(path),
                                line=line, field=f"messages[{i}]")
            if m["role"] == "assistant" and m["content"].strip() not in ("+", "-"):
                raise DataError('assistant turns must be "+" or "-"', path=str(path), line=line,
                                field=f"messages[{i}]")
        if msgs[-1]["role"] != "assistant":
            raise DataError("the chat must end with the last chunk's verdict (an assistant turn)",
                            path=str(path), line=line, field="messages")
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in msgs]})
    if not rows:
        raise DataError("no training rows", path=str(path))
    return rows


def _sft_args(cfg: DiscSFTConfig, out: Path) -> Any:
    # loss on "+"/"-" and end-of-turn only, never on the chunks
    return sft_training_args(cfg, out, assistant_only_loss=True)


def make_trainer(config: DiscSFTConfig | dict) -> Any:
    """The configured SFTTrainer (template patched, data tokenized with the assistant mask), not yet run."""
    cfg = config if isinstance(config, DiscSFTConfig) else DiscSFTConfig(**config)
    rows = load_disc_rows(cfg.train_data)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from stepjudge.judge.dataset import chat_template_with_generation_markers
    from stepjudge.models.registry import load_tokenizer, resolve_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(path)
    original = tokenizer.chat_template
    tokenizer.chat_template = chat_template_with_generation_markers(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=_sft_args(cfg, out), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer)
    trainer._stepjudge_original_template = original  # restored before saving final/
    return trainer


def train_disc_sft(config: DiscSFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` as a discriminative "+"/"-" judge; returns ``out/final``."""
    from stepjudge.utils.io import atomic_write_json

    cfg = config if isinstance(config, DiscSFTConfig) else DiscSFTConfig(**config)
    out = Path(cfg.out)
    trainer = make_trainer(cfg)
    resume = find_last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # Write final/ beside its destination, then swap it in, so a crash never leaves a half model.
    final, tmp = out / "final", out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.processing_class.chat_template = trainer._stepjudge_original_template
    trainer.model.config.use_cache = True  # training may turn the KV cache off; generation wants it
    trainer.save_model(str(tmp))  # model (safetensors) + tokenizer
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(out / "train_log.json", trainer.state.log_history)
    log.info("discriminative SFT done: %d steps, model in %s", trainer.state.global_step, final)
    return final
