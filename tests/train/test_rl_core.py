"""The method-agnostic training core: reward registry, TRL-args translation for any TRL config class,
one builder for GRPO/RLOO/a GRPOTrainer subclass, and the shared distributed-safe finalisation."""

import json
import sys
import textwrap

import pytest
import torch
from pydantic import ValidationError
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from stepjudge.train.core import (
    RLRunConfig,
    build_rl_trainer,
    find_last_checkpoint,
    rl_training_args,
    train_to_final,
)
from stepjudge.train.judge import JudgeRLConfig
from stepjudge.train.rewards import (
    format_penalty_reward,
    register_reward,
    registered_rewards,
    resolve_reward,
    resolve_rewards,
    verdict_reward,
)

torch.set_num_threads(1)


@pytest.fixture
def user_rewards(tmp_path, monkeypatch):
    """A user's own reward module, importable as ``my_rewards`` (named in configs by import path)."""
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def length_reward(prompts, completions, **kwargs):
            return [len(c if isinstance(c, str) else c[0]["content"]) / 50 for c in completions]

        class Scorer:
            def half(self, prompts, completions, **kwargs):
                return [0.5] * len(completions)

        scorer = Scorer()
        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)  # this test's file, not a cached one
    import my_rewards

    return my_rewards


def _rows(n=8):
    return [{"prompt": [{"role": "user", "content": f"Is {i} + 1 = {i + 1 + i % 2} right?"}],
             "label": "Positive" if i % 2 == 0 else "Negative", "problem_id": f"p{i}"} for i in range(n)]


def _tiny(tmp_path, **kw):
    # one rollout of 4 completions (2 prompts x 2 samples) per optimizer step
    return RLRunConfig(**{"model": "tiny-random", "train_data": str(tmp_path / "rows.jsonl"),
                          "out": str(tmp_path / "run"), "rewards": ["my_rewards:length_reward"], "max_steps": 1,
                          "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 6,
                          "max_prompt_length": 128, "learning_rate": 1e-3, "use_cpu": True, "save_steps": 1,
                          "logging_steps": 1, **kw})


def test_rewards_resolve_by_registered_name_or_import_path(user_rewards):
    assert {"verdict", "format"} <= set(registered_rewards())
    assert resolve_reward("verdict") is verdict_reward and resolve_reward("format") is format_penalty_reward
    assert resolve_reward("stepjudge.train.rewards:verdict_reward") is verdict_reward
    assert resolve_reward("my_rewards:length_reward") is user_rewards.length_reward
    assert resolve_reward("my_rewards:scorer.half")([], ["a", "b"]) == [0.5, 0.5]  # a method of an object
    assert resolve_rewards(["format", "verdict"]) == [format_penalty_reward, verdict_reward]


def test_unknown_or_broken_reward_names_are_clear_errors(user_rewards):
    with pytest.raises(ValueError, match=r"unknown reward 'verdikt': registered rewards are \[.*'format'.*'verdict'"):
        resolve_reward("verdikt")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        resolve_reward("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="'my_rewards' has no attribute 'missing'"):
        resolve_reward("my_rewards:missing")
    with pytest.raises(ValueError, match="is not callable"):
        resolve_reward("my_rewards:NOT_CALLABLE")
    with pytest.raises(ValueError, match="already registered to verdict_reward"):
        register_reward("verdict")(user_rewards.length_reward)
    assert register_reward("verdict")(verdict_reward) is verdict_reward  # re-registering the same is fine
    with pytest.raises(ValidationError, match="unknown reward 'nope'"):  # caught when the config is read
        RLRunConfig(train_data="d", out="o", rewards=["nope"])


def test_trl_args_for_grpo_and_rloo_carry_the_same_shared_values(tmp_path):
    cfg = JudgeRLConfig(train_data="d.jsonl", out=str(tmp_path / "o"), learning_rate=3e-6, num_generations=4,
                        per_device_batch_size=8, gradient_accumulation_steps=2, steps_per_generation=4,
                        epsilon=0.1, epsilon_high=0.3, beta=0.02, max_completion_length=64, temperature=1.2,
                        top_p=0.9, max_steps=10, seed=7, save_steps=5, save_total_limit=None,
                        loss_type="grpo", scale_rewards="none", use_cpu=True, eval_data="e.jsonl")
    grpo = rl_training_args(cfg, GRPOConfig)
    rloo = rl_training_args(cfg, RLOOConfig, {"normalize_advantages": True})
    for args in (grpo, rloo):
        assert (args.output_dir, args.learning_rate, args.num_generations, args.per_device_train_batch_size,
                args.gradient_accumulation_steps, args.steps_per_generation, args.epsilon, args.epsilon_high,
                args.beta, args.max_completion_length, args.temperature, args.top_p, args.max_steps, args.seed,
                args.save_steps, args.save_total_limit, args.use_cpu, args.bf16, args.report_to) == (
            str(tmp_path / "o"), 3e-6, 4, 8, 2, 4, 0.1, 0.3, 0.02, 64, 1.2, 0.9, 10, 7, 5, None, True, False, [])
        assert (args.eval_strategy, args.eval_steps, args.per_device_eval_batch_size) == ("steps", 5, 8)
        assert args.generation_batch_size == 32 and args.activation_checkpointing is False
    assert (grpo.loss_type, grpo.scale_rewards) == ("grpo", "none")  # the method's own TRL fields ...
    assert not hasattr(rloo, "loss_type") and not hasattr(rloo, "scale_rewards")  # ... left out for RLOO
    assert rloo.normalize_advantages is True and rloo.beta == 0.02  # not RLOO's default 0.05
    with pytest.raises(ValueError, match=r"GRPOConfig has no field\(s\) \['normalize_advantages'\]"):
        rl_training_args(cfg, GRPOConfig, {"normalize_advantages": True})


def test_rloo_trainer_plugs_in_and_finalisation_is_atomic_and_resumes(tmp_path, user_rewards):
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "final" / "stale.txt").write_text("from an older run")
    (out / ".final.tmp").mkdir()  # left by a crash mid-save
    (out / ".final.tmp" / "half.bin").write_text("x")
    cfg = _tiny(tmp_path, beta=0.0)
    trainer = build_rl_trainer(cfg, trainer_cls=RLOOTrainer, args_cls=RLOOConfig, train_rows=_rows())
    assert type(trainer) is RLOOTrainer and type(trainer.args) is RLOOConfig
    assert trainer.reward_funcs == [user_rewards.length_reward]  # from cfg.rewards, by import path
    final = train_to_final(trainer, out, "RLOO")
    assert final == out / "final" and (final / "model.safetensors").exists()
    assert not (final / "stale.txt").exists() and not (out / ".final.tmp").exists()
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e] == [1]
    assert "rewards/length_reward/mean" in log[0]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    torn = out / "checkpoint-7"  # a later checkpoint torn mid-save: no trainer_state.json
    torn.mkdir()
    (torn / "model.safetensors").write_text("")
    assert find_last_checkpoint(out) == out / "checkpoint-1"
    again = build_rl_trainer(cfg.model_copy(update={"max_steps": 2}), trainer_cls=RLOOTrainer, args_cls=RLOOConfig,
                             train_rows=_rows())
    train_to_final(again, out, "RLOO")
    log2 = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log2 if "loss" in e] == [1, 2]
    assert log2[0]["loss"] == log[0]["loss"]  # step 1 restored from checkpoint-1, not recomputed
    assert find_last_checkpoint(out) == out / "checkpoint-2"


class RewardStashingGRPO(GRPOTrainer):
    """A LaSeR-shaped subclass: keeps the gathered reward matrix TRL computes for each rollout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stashed: list[torch.Tensor] = []

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.stashed.append(rewards.detach().clone())
        return rewards


def test_a_grpo_subclass_plugs_in_with_trainer_kwargs(tmp_path, user_rewards):
    from transformers import TrainerCallback

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            CountSteps.steps += 1

    cfg = _tiny(tmp_path, rewards=["my_rewards:length_reward", "verdict"])
    trainer = build_rl_trainer(cfg, trainer_cls=RewardStashingGRPO, args_cls=GRPOConfig, train_rows=_rows(),
                               callbacks=[CountSteps()])
    assert type(trainer.args) is GRPOConfig and trainer.reward_funcs == [user_rewards.length_reward, verdict_reward]
    train_to_final(trainer, cfg.out, "LaSeR-shaped GRPO")
    assert CountSteps.steps == 1 and len(trainer.stashed) == 1
    assert trainer.stashed[0].shape == (4, 2)  # 4 completions x 2 reward functions
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
