"""Run configs shared by every trainer: :class:`RunConfig` (what SFT and RL runs share),
:class:`SFTRunConfig` and :class:`RLRunConfig`, the one base that every RL method config extends.

Method configs add their own fields by inheritance and keep them *flat* (no nested sections), so a
YAML file or a command line names every setting by its field name. Every field carries a
``description``: the CLI builds its flags and help from the models.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["RLRunConfig", "RunConfig", "SFTRunConfig", "batch_plan", "no_cuda", "resolve_bf16"]


def no_cuda() -> bool:
    """Default of ``use_cpu``: train on CPU when no CUDA device is visible."""
    import torch

    return not torch.cuda.is_available()


class RunConfig(BaseModel):
    """Settings every training run has: model, run folder, schedule, seed, logging, checkpoints, hardware."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="model to train: built-in name, local path or hub id")
    allow_pickle: bool = Field(False, description="also load a model whose weights are pickles (.bin, .pt); "
                                                  "loading one can run code, so only for trusted files")
    out: str = Field(description="run folder: checkpoints, final/, train_log.json, curves.png")
    epochs: float = Field(1.0, gt=0, description="passes over the data (ignored when max_steps > 0)")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps; -1 = run for `epochs`")
    seed: int = Field(0, description="seed of the data order, sampling and initialisation")
    logging_steps: int = Field(1, ge=1, description="log every N optimizer steps")
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


def resolve_bf16(cfg: RunConfig) -> bool:
    """``bf16=None`` means: on for a bf16-capable GPU, off on CPU (where bf16 is ~10x slower here)."""
    if cfg.bf16 is not None:
        return cfg.bf16
    import torch

    return (not cfg.use_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


class SFTRunConfig(RunConfig):
    """Optimisation knobs of SFT runs; subclasses add the model, data and output fields."""

    learning_rate: float = Field(1e-5, gt=0, description="optimizer learning rate; StepWiser paper: 1e-5")
    per_device_batch_size: int = Field(4, ge=1, description="examples per device per micro-step")
    gradient_accumulation_steps: int = Field(8, ge=1, description="global batch = batch x this (paper 32)")
    max_length: int = Field(1024, ge=8, description="tokens per example; cut beyond")


class RLRunConfig(RunConfig):
    """The base run config of every RL trainer (GRPO, RLOO and their subclasses).

    TRL's batch sizes count *completions* and its ``max_steps`` counts optimizer updates;
    :func:`batch_plan` turns them into prompt counts. ``trl_fields`` names a method's own fields
    that go to the TRL config under the same name (when that config has them).
    """

    trl_fields: ClassVar[tuple[str, ...]] = ()

    train_data: str = Field(description='JSONL rows {"prompt": [messages], ...}; every column reaches the rewards')
    eval_data: str | None = Field(None, description="held-out rows in the same format (eval reward)")
    rewards: list[str] = Field(
        default_factory=list, description="reward functions, summed with weight 1: registered names "
        "(stepjudge.train.rewards.registered_rewards()) or import paths 'package.module:function'")
    learning_rate: float = Field(1e-6, gt=0, description="optimizer learning rate; StepWiser paper: 1e-6")
    per_device_batch_size: int = Field(8, ge=1, description="COMPLETIONS per device per micro-step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-steps per optimizer update")
    steps_per_generation: int | None = Field(
        None, ge=1, description="micro-steps served by one rollout; None = accumulation (1 update per "
        "rollout). A multiple k of the accumulation gives k updates per rollout (paper: 4)")
    num_processes: int | None = Field(
        None, ge=1, description="training processes (GPUs) the batch arithmetic assumes; a launch with "
        "another count is warned about, since it changes the prompts per step")
    num_generations: int = Field(4, ge=2, description="samples per prompt (the group); StepWiser paper: 4")
    max_prompt_length: int = Field(3096, ge=8, description="longer prompts are dropped; paper: 3096")
    max_completion_length: int = Field(3096, ge=1, description="generated tokens per completion; paper: 3096")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="rollout nucleus-sampling mass")
    epsilon: float = Field(0.2, gt=0, description="lower clip eps_low; paper: 0.2")
    epsilon_high: float = Field(0.28, gt=0, description="upper clip (clip-higher); paper: 0.28")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 = no reference model (paper: unstated)")
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N updates; None = save_steps")
    per_device_eval_batch_size: int | None = Field(
        None, ge=1, description="eval completions per device; None = train size rounded up to whole groups")
    log_completions: bool = Field(False, description="print sample completions with their rewards")
    engine_rollouts: bool = Field(False, description="generate rollouts with stepjudge's hf engine (each prompt "
                                                    "prefilled once for its G samples) instead of model.generate")
    use_vllm: bool = Field(False, description="generate rollouts with vLLM (GPU only)")
    vllm_mode: Literal["server", "colocate"] = Field(
        "colocate", description="colocate: vLLM inside each training process; server: `trl vllm-serve`")
    vllm_server_base_url: str | None = Field(None, description="server mode, e.g. http://gpu-node-2:8000")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate mode: vLLM's share")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="colocate mode: GPUs per vLLM engine")

    @field_validator("rewards", mode="before")
    @classmethod
    def _split_plus(cls, v: Any) -> Any:
        """``"verdict+format"`` is shorthand for ``["verdict", "format"]`` (one flag, one YAML scalar)."""
        return [part.strip() for part in v.split("+") if part.strip()] if isinstance(v, str) else v

    @field_validator("rewards")
    @classmethod
    def _rewards_resolve(cls, v: list[str]) -> list[str]:
        from stepjudge.train.rewards import resolve_reward

        for name in v:  # fail on a typo before any model loads
            resolve_reward(name)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RLRunConfig:
        if self.epsilon_high < self.epsilon:
            raise ValueError("epsilon_high must be >= epsilon (clip-higher widens the upper bound)")
        spg = self.steps_per_generation
        if spg is not None and spg % self.gradient_accumulation_steps:
            raise ValueError("steps_per_generation must be a multiple of gradient_accumulation_steps, "
                             "so each rollout feeds a whole number of optimizer updates")
        return self


def batch_plan(cfg: RLRunConfig, num_processes: int | None = None) -> dict[str, Any]:
    """Prompts and completions per update and per rollout for ``num_processes`` (default: the config's).

    The single place that translates TRL's completion-counted knobs into prompt counts::

        completions per optimizer update = per_device_batch_size x processes x gradient_accumulation_steps
        completions per rollout          = per_device_batch_size x processes x steps_per_generation
        prompts = completions / num_generations;  rollout steps = max_steps / (steps_per_generation / accum)
    """
    n = num_processes or cfg.num_processes or 1
    accum = cfg.gradient_accumulation_steps
    spg = cfg.steps_per_generation or accum
    per_update = cfg.per_device_batch_size * n * accum
    per_rollout = cfg.per_device_batch_size * n * spg
    updates_per_rollout = spg // accum
    return {
        "num_processes": n,
        "completions_per_update": per_update,
        "prompts_per_update": per_update / cfg.num_generations,
        "completions_per_rollout": per_rollout,
        "prompts_per_rollout": per_rollout / cfg.num_generations,
        "updates_per_rollout": updates_per_rollout,
        "rollout_steps": cfg.max_steps / updates_per_rollout if cfg.max_steps > 0 else None,
    }
