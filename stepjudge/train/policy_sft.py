"""Policy SFT on selected samples: the "fine-tune" half of StepWiser's rejection-sampling comparison (Table 8).

Input rows are the text prompt-completion records of :func:`stepjudge.infer.select.build_selection_sets`
(``{"prompt": the exact prompt text the policy saw, "completion": the selected sample}``). Training is
TRL's :class:`~trl.SFTTrainer` with the loss on the completion only (the policy learns to *write* the
selected solutions, not to reproduce the prompt); TRL appends EOS to each completion, so the policy also
learns where a solution ends. Extra row fields (``problem_id``, ``score``...) are dropped.

The shared SFT settings (:class:`~stepjudge.train.core.SFTRunConfig`) and the run layout (``final/``, ``train_log.json``, ``curves.png``) match
``train segment``: resumable from the newest complete ``out/checkpoint-N``, the result in ``out/final``
(safetensors + tokenizer, loadable by :class:`~stepjudge.engines.hf.HFEngine`) plus ``out/train_log.json``
and ``out/curves.png``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from stepjudge.train.core import SFTRunConfig, build_sft_trainer, read_prompt_completion_rows, train_to_final
from stepjudge.train.report import SFT_PANELS

log = logging.getLogger(__name__)

__all__ = ["PolicySFTConfig", "load_policy_rows", "make_trainer", "train_policy_sft"]


class PolicySFTConfig(SFTRunConfig):
    """Everything ``stepjudge select train`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="policy to fine-tune (the one that wrote the samples)")
    data: str = Field(description="JSONL of text prompt-completion rows (sft_judge.jsonl / sft_outcome.jsonl)")


def load_policy_rows(path: str | os.PathLike) -> list[dict]:
    """Read and check text prompt-completion rows, naming file:line field on errors (before any model loads)."""
    return read_prompt_completion_rows(path, "text",
                                       empty="no training rows (did every problem lack a correct sample?)")


def make_trainer(config: PolicySFTConfig | dict) -> Any:
    """The configured :class:`~trl.SFTTrainer` (data tokenized, prompt tokens masked), not yet run."""
    cfg = config if isinstance(config, PolicySFTConfig) else PolicySFTConfig(**config)
    rows = load_policy_rows(cfg.data)
    return build_sft_trainer(cfg, rows, completion_only_loss=True)  # loss on the selected solution only


def train_policy_sft(config: PolicySFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` on selected samples; returns the ``out/final`` checkpoint."""
    cfg = config if isinstance(config, PolicySFTConfig) else PolicySFTConfig(**config)
    return train_to_final(make_trainer(cfg), cfg.out, "policy SFT", panels=SFT_PANELS)
