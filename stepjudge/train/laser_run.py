"""``stepjudge train laser``: LaSeR's run config, its rows, c_ref calibration and the training call.

Defaults are the paper's algorithm settings (spec §2(d)): 8 samples per prompt, lr 1e-6, PPO clip
0.2/0.2, token-mean loss, beta_v = alpha = tau = 0.1, group-std filter T = 0.1. ``self_reward: off``
runs plain GRPO with every other setting identical (the baseline). c_ref is a constant (the paper's
-23 for Qwen2.5-7B, -25 for OctoThinker-3B) or, when unset, measured once on the starting model
(:func:`calibrate_c_ref`) and written to ``out/c_ref.json`` so a resumed run reuses it.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from stepjudge.policy.self_reward import SolverStyle, self_reward_logprobs, solver_messages, z_c_token_id
from stepjudge.tasks.arith import ArithConfig
from stepjudge.train.core import RLRunConfig, is_main_process

log = logging.getLogger(__name__)

__all__ = ["LaserConfig", "calibrate_c_ref", "laser_rows", "make_laser_trainer", "resolve_c_ref", "train_laser"]


class LaserConfig(RLRunConfig):
    """Every knob of ``stepjudge train laser``; unknown keys are errors."""

    trl_fields: ClassVar[tuple[str, ...]] = ("loss_type",)

    train_data: str = Field("arith", description="problems to train on: arith | gsm8k[:split] | math500 | "
                                                  "a JSONL file of problems | a hub id (answers required)")
    out: str = Field(description="run folder: checkpoints, final/, train_log.json, curves.png, c_ref.json")
    arith: ArithConfig = Field(default_factory=lambda: ArithConfig(n=256, steps=2),
                               description="the generated arith problems (when train_data is arith)")
    limit: int | None = Field(None, ge=1, description="first N problems")
    data_root: str | None = Field(None, description="folder of the bundled datasets; None: $STEPJUDGE_DATA")
    prompt_style: SolverStyle = Field(
        "fewshot-chat", description="fewshot-chat: the task's worked examples as earlier chat turns (small "
                                    "chat models answer in format and close the turn); plain: problem + the "
                                    "paper's 'reason step by step ... \\boxed{}' line")
    rewards: list[str] = Field(default_factory=lambda: ["verifiable"],
                               description="r_v: verifiable (one \\boxed{} answer graded by the task)")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one answer")
    num_generations: int = Field(8, ge=2, description="samples per prompt (paper: 8)")
    max_prompt_length: int = Field(2048, ge=8, description="longer prompts are dropped; paper: 2048")
    max_completion_length: int = Field(8192, ge=1, description="generated tokens per completion; paper: 8192")
    epsilon_high: float = Field(0.2, gt=0, description="upper clip; LaSeR paper: 0.2 (no clip-higher)")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="token aggregation; dapo = verl's token-mean (the paper's)")
    self_reward: Literal["on", "off"] = Field("on", description="off: plain GRPO with identical settings")
    z_c_token_id: int | None = Field(
        None, description="reserved token read after EOS; None: per tokenizer family (Qwen2.5 151652, "
                          "Llama-3 128002, SmolLM2 3)")
    beta_v: float = Field(0.1, gt=0, description="self-reward scale beta_v in r_s = beta_v (log pi(z_c) - c_ref)")
    c_ref: float | None = Field(None, description="constant log pi_ref(z_c | x, y); None: measured on the "
                                                  "starting model (calibrate_pairs pairs) into out/c_ref.json")
    calibrate_pairs: int = Field(64, ge=2, description="sampled (x, y) pairs for measuring c_ref")
    alpha: float = Field(0.1, ge=0, description="coefficient of the self-reward MSE loss")
    tau: float = Field(0.1, ge=0, le=1, description="advantage mixing (1 - tau) A_v + tau A_s")
    std_threshold: float = Field(0.1, ge=0, description="group-std filter T: groups whose r_s std <= T keep A_v")
    warmup_reasoning: int = Field(0, ge=0, description="w_r: MSE from update w_r + 1 (paper: 200 for base models)")
    warmup_self_reward: int = Field(0, ge=0, description="w_sr: mixing from update w_r + w_sr + 1 (paper: 200)")


def load_laser_problems(cfg: LaserConfig) -> list[Any]:
    from stepjudge.tasks.problems import load_problem_set

    return load_problem_set(cfg.train_data, cfg.arith, cfg.limit, data_root=cfg.data_root)


def laser_rows(cfg: LaserConfig, problems: list[Any] | None = None) -> list[dict]:
    """One GRPO row per problem: the chat prompt and what the verifiable reward needs."""
    from stepjudge.tasks import get_task

    problems = load_laser_problems(cfg) if problems is None else problems
    examples = get_task(cfg.train_data).fewshot_examples
    return [{"prompt": solver_messages(p.problem, cfg.prompt_style, examples), "answer": str(p.answer),
             "task": cfg.train_data, "problem_id": p.id} for p in problems]


def calibrate_c_ref(cfg: LaserConfig, model: str | None = None) -> dict:
    """mean +- sd of log pi_ref(z_c | x, y, EOS) over ``calibrate_pairs`` sampled (x, y) pairs.

    One response per problem (cycling through the problems), sampled from the starting model at the
    run's temperature; finished responses only when any finished (z_c follows EOS).
    """
    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine
    from stepjudge.models.registry import resolve_model

    rows = laser_rows(cfg)
    prompts = [rows[i % len(rows)]["prompt"] for i in range(cfg.calibrate_pairs)]
    engine = HFEngine(str(resolve_model(model or cfg.model)), device="cpu" if cfg.use_cpu else "cuda")
    try:
        z_c = z_c_token_id(engine.tokenizer, cfg.z_c_token_id)
        params = SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_tokens=min(cfg.max_completion_length, 1024), seed=cfg.seed)
        outs = [r.completions[0] for r in engine.generate(prompts, params)]
        finished = [i for i, c in enumerate(outs) if c.finish_reason == "stop"] or list(range(len(outs)))
        lps = self_reward_logprobs(engine, [prompts[i] for i in finished], [outs[i].text for i in finished], z_c)
    finally:
        engine.close()
    return {"mean": statistics.fmean(lps), "sd": statistics.stdev(lps) if len(lps) > 1 else 0.0,
            "n": len(lps), "n_finished": sum(c.finish_reason == "stop" for c in outs), "z_c": z_c,
            "model": str(model or cfg.model)}


def resolve_c_ref(cfg: LaserConfig) -> float:
    """The configured c_ref, else ``out/c_ref.json``'s mean, else a fresh measurement written there."""
    if cfg.c_ref is not None:
        return cfg.c_ref
    from stepjudge.utils.io import atomic_write_json

    path = Path(cfg.out) / "c_ref.json"
    if path.exists():
        from stepjudge.errors import DataError
        from stepjudge.utils.io import read_json

        mean = read_json(path, what="c_ref file").get("mean")
        if isinstance(mean, bool) or not isinstance(mean, (int, float)):
            raise DataError(f"expected a number, got {mean!r:.40}", path=str(path), field="mean")
        return float(mean)
    measured = calibrate_c_ref(cfg)  # seeded: every rank measures the same value; rank 0 writes it
    if is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, measured)
    log.info("c_ref measured: %.3f +- %.3f over %d pairs", measured["mean"], measured["sd"], measured["n"])
    return float(measured["mean"])


def make_laser_trainer(cfg: LaserConfig, reward_funcs: list[Any] | None = None) -> Any:
    """The configured :class:`~stepjudge.train.laser_trainer.LaserGRPOTrainer`, not yet run."""
    from trl import GRPOConfig

    from stepjudge.models.registry import load_tokenizer, resolve_model
    from stepjudge.train.core import build_rl_trainer
    from stepjudge.train.laser_trainer import LaserGRPOTrainer, LaserSettings

    on = cfg.self_reward == "on"
    z_c = z_c_token_id(load_tokenizer(resolve_model(cfg.model)), cfg.z_c_token_id)
    settings = LaserSettings(z_c=z_c, c_ref=resolve_c_ref(cfg) if on else 0.0, beta_v=cfg.beta_v,
                             alpha=cfg.alpha, tau=cfg.tau, std_threshold=cfg.std_threshold,
                             warmup_reasoning=cfg.warmup_reasoning, warmup_self_reward=cfg.warmup_self_reward,
                             self_reward=on)
    return build_rl_trainer(cfg, trainer_cls=LaserGRPOTrainer, args_cls=GRPOConfig, reward_funcs=reward_funcs,
                            train_rows=laser_rows(cfg), extra_args={"scale_rewards": "group"}, laser=settings)


def train_laser(config: LaserConfig | dict) -> Path:
    """GRPO (+ LaSeR self-rewarding unless ``self_reward: off``) on verifiable problems; returns out/final."""
    from stepjudge.train.core import train_to_final
    from stepjudge.train.report import RL_PANELS
    from stepjudge.train.rewards import VerifiableReward, resolve_reward

    cfg = config if isinstance(config, LaserConfig) else LaserConfig(**config)
    with VerifiableReward(cfg.grade_timeout_s) as verifiable:  # one grader worker for the whole run
        funcs = [verifiable if name == "verifiable" else resolve_reward(name) for name in cfg.rewards]
        trainer = make_laser_trainer(cfg, funcs)
        panels = (*RL_PANELS, ("self-reward accuracy", ("laser/self_reward_accuracy",)),
                  ("mean r_s per class", ("laser/r_s_correct", "laser/r_s_incorrect")),
                  ("self-reward MSE", ("laser/mse",)), ("groups filtered (std <= T)", ("laser/filtered_group_share",)))
        return train_to_final(trainer, cfg.out, "LaSeR RL" if cfg.self_reward == "on" else "GRPO (LaSeR baseline)",
                              panels=panels)
