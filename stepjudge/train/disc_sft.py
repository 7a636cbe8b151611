"""Discriminative judge baseline: SFT a PRM to answer "+"/"-" after every chunk (StepWiser App. A.1).

Each training row is one solution as a multi-turn chat (from
:func:`stepjudge.judge.dataset.to_discriminative_sft_rows`): user turn = chunk (the first one with
the problem), assistant turn = that chunk's label. TRL's ``assistant_only_loss`` puts the loss on the
assistant turns only, so the model learns to *classify* chunks, never to reproduce them. SmolLM2's chat
template has no ``{% generation %}`` markers, which that mask needs, so training uses
:func:`~stepjudge.judge.dataset.chat_template_with_generation_markers`; the saved model gets the
original template back (it renders the same text, and serving stacks need not know the markers).

Runs resume from the newest complete ``out/checkpoint-N``; the result is ``out/final`` (safetensors +
tokenizer) plus ``out/train_log.json`` and ``out/curves.png``. Evaluate it with
``stepjudge.eval.judge_heldout.evaluate_judge_rows(..., protocol="discriminative")``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.data.records import check_chat_messages
from stepjudge.errors import DataError
from stepjudge.train.core import SFTRunConfig, build_sft_trainer, read_rows, train_to_final
from stepjudge.train.report import SFT_PANELS

log = logging.getLogger(__name__)

__all__ = ["DiscSFTConfig", "load_disc_rows", "make_trainer", "train_disc_sft"]


class DiscSFTConfig(SFTRunConfig):
    """Everything ``stepjudge train disc-sft`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="PRM to fine-tune: built-in name, local path or hub id")
    train_data: str = Field(description='JSONL of {"messages": [...]} rows (judge-data, discriminative)')
    max_length: int = Field(2048, ge=8, description="tokens per conversation; cut beyond")


def load_disc_rows(path: str | os.PathLike) -> list[dict]:
    """Read and check multi-turn "+"/"-" chats, naming file:line field on errors (before any model loads)."""

    def parse(rec: dict, line: int) -> dict:
        msgs = check_chat_messages(rec.get("messages"), path=str(path), line=line, field="messages")
        for i, m in enumerate(msgs):
            if m["role"] == "assistant" and m["content"].strip() not in ("+", "-"):
                raise DataError('assistant turns must be "+" or "-"', path=str(path), line=line,
                                field=f"messages[{i}]")
        if msgs[-1]["role"] != "assistant":
            raise DataError("the chat must end with the last chunk's verdict (an assistant turn)",
                            path=str(path), line=line, field="messages")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in msgs]}

    return read_rows(path, parse)


def make_trainer(config: DiscSFTConfig | dict) -> Any:
    """The configured SFTTrainer (template patched, data tokenized with the assistant mask), not yet run."""
    from stepjudge.judge.dataset import chat_template_with_generation_markers

    cfg = config if isinstance(config, DiscSFTConfig) else DiscSFTConfig(**config)
    rows = load_disc_rows(cfg.train_data)
    original: dict[str, Any] = {}

    def patch(tokenizer: Any) -> None:  # TRL needs {% generation %} markers for the assistant mask
        original["template"] = tokenizer.chat_template
        tokenizer.chat_template = chat_template_with_generation_markers(tokenizer)

    # loss on "+"/"-" and end-of-turn only, never on the chunks
    trainer = build_sft_trainer(cfg, rows, prepare_tokenizer=patch, assistant_only_loss=True)
    trainer._stepjudge_original_template = original["template"]  # restored before saving final/
    return trainer


def train_disc_sft(config: DiscSFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` as a discriminative "+"/"-" judge; returns ``out/final``."""
    cfg = config if isinstance(config, DiscSFTConfig) else DiscSFTConfig(**config)

    def restore_template(trainer: Any) -> None:  # final/ keeps the model's own chat template
        trainer.processing_class.chat_template = trainer._stepjudge_original_template

    return train_to_final(make_trainer(cfg), cfg.out, "discriminative SFT", before_save=restore_template,
                          panels=SFT_PANELS)
