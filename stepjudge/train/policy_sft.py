"""Policy SFT on selected samples: the "fine-tune" half of StepWiser's rejection-sampling comparison (Table 8).

Input rows are the text prompt-completion records of :func:`stepjudge.infer.select.build_selection_sets`
(``{"prompt": the exact prompt text the policy saw, "completion": the selected sample}``). Training is
TRL's :class:`~trl.SFTTrainer` with the loss on the completion only (the policy learns to *write* the
selected solutions, not to reproduce the prompt); TRL appends EOS to each completion, so the policy also
learns where a solution ends. Extra row fields (``problem_id``, ``score``...) are dropped.

The shared SFT settings (:class:`~stepjudge.train.common.SFTRunConfig`) and the run layout match
``train segment``: resumable from the newest complete ``out/checkpoint-N``, the result in ``out/final``
(safetensors + tokenizer, loadable by :class:`~stepjudge.engines.hf.HFEngine`) plus ``out/train_log.json``.
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

__all__ = ["PolicySFTConfig", "load_policy_rows", "make_trainer", "train_policy_sft"]


class PolicySFTConfig(SFTRunConfig):
    """Everything ``stepjudge select train`` needs; unknown keys are errors (typos in YAML)."""

    model: str = Field("smollm2-135m", description="policy to fine-tune (the one that wrote the samples)")
    data: str = Field(description="JSONL of text prompt-completion rows (sft_judge.jsonl / sft_outcome.jsonl)")
    out: str = Field(description="run folder: checkpoints, final/ and train_log.json")


def load_policy_rows(path: str | os.PathLike) -> list[dict]:
    """Read and check text prompt-completion rows, naming file:line field on errors (before any model loads)."""
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError("training data file not found", path=str(path))
    rows = []
    for line, rec in iter_jsonl(path):
        for key in ("prompt", "completion"):
            if not isinstance(rec.get(key), str):
                raise DataError("expected a string (text prompt-completion rows)", path=str(path), line=line,
                                field=key)
        if not rec["completion"].strip():
            raise DataError("empty completion", path=str(path), line=line, field="completion")
        rows.append({"prompt": rec["prompt"], "completion": rec["completion"]})
    if not rows:
        raise DataError("no training rows (did every problem lack a correct sample?)", path=str(path))
    return rows


def _sft_args(cfg: PolicySFTConfig, out: Path) -> Any:
    # loss on the selected solution, never on the prompt
    return sft_training_args(cfg, out, completion_only_loss=True)


def make_trainer(config: PolicySFTConfig | dict) -> Any:
    """The configured :class:`~trl.SFTTrainer` (data tokenized, prompt tokens masked), not yet run."""
    cfg = config if isinstance(config, PolicySFTConfig) else PolicySFTConfig(**config)
    rows = load_policy_rows(cfg.data)

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
    return SFTTrainer(model=model, args=_sft_args(cfg, out), train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer)


def train_policy_sft(config: PolicySFTConfig | dict) -> Path:
    """Fine-tune ``config.model`` on selected samples; returns the ``out/final`` checkpoint."""
    from stepjudge.utils.io import atomic_write_json

    cfg = config if isinstance(config, PolicySFTConfig) else PolicySFTConfig(**config)
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
    log.info("policy SFT done: %d steps, model in %s", trainer.state.global_step, final)
    return final
