"""Settings every SFT-style run shares (segment SFT, discriminative judge SFT)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
