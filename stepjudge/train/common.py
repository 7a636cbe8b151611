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
