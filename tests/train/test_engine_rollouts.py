"""GRPO rollouts through the hf engine: TRL's completion layout, the same tokens as model.generate, a step runs."""

from __future__ import annotations

import json

import torch
from trl import GRPOTrainer

from stepjudge.train.core import RLRunConfig, build_rl_trainer, train_to_final
from stepjudge.train.engine_rollouts import EngineRolloutMixin, with_engine_rollouts


def _rows(n=4):
    return [{"prompt": [{"role": "user", "content": f"Is {i} + 1 = {i + 1} right?"}], "label": "Positive"}
            for i in range(n)]


def _cfg(tmp_path, **kw):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    return RLRunConfig(**{"model": "tiny-random", "train_data": str(tmp_path / "rows.jsonl"),
                          "out": str(tmp_path / "run"), "rewards": ["verdict"], "max_steps": 1,
                          "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 8,
                          "max_prompt_length": 128, "learning_rate": 1e-3, "use_cpu": True, "save_steps": 1,
                          "logging_steps": 1, "engine_rollouts": True, **kw})


def test_engine_rollouts_match_model_generate_and_a_step_runs(tmp_path):
    # temperature 1e-4 is greedy in effect: both paths must then give the same tokens
    trainer = build_rl_trainer(_cfg(tmp_path, temperature=1e-4), train_rows=_rows())
    assert isinstance(trainer, EngineRolloutMixin) and isinstance(trainer, GRPOTrainer)
    assert type(trainer).__name__ == "EngineRolloutGRPOTrainer"
    tok = trainer.processing_class
    prompt_ids = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True) for r in _rows(2)]
    prompt_ids = [list(p["input_ids"]) if isinstance(p, dict) or hasattr(p, "keys") else list(p) for p in prompt_ids]
    repeated = [p for p in prompt_ids for _ in range(2)]  # TRL's layout: each prompt G times in a row
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.train()  # as during training: the engine decodes in eval mode and puts it back
    ours, logprobs = trainer._generate_single_turn(repeated, None, None, 2)
    assert logprobs is None and len(ours) == 4
    assert model.training
    model.eval()
    for ids, got in zip(repeated, ours, strict=True):
        with torch.no_grad():
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        eos = tok.eos_token_id
        ref = ref[:ref.index(eos) + 1] if eos in ref else ref  # TRL keeps the first EOS, drops the rest
        assert got == ref
    train_to_final(trainer, str(tmp_path / "run"), "engine rollouts")
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert any("reward" in e for e in log)


def test_unsupported_sampling_falls_back_to_trl(tmp_path):
    trainer = build_rl_trainer(_cfg(tmp_path), train_rows=_rows(), extra_args={"top_k": 5})
    assert trainer._engine_rollouts_supported(None) == "top_k / min_p / repetition_penalty are set"
    assert with_engine_rollouts(type(trainer)) is type(trainer)  # already mixed in: unchanged
    assert build_rl_trainer(_cfg(tmp_path, engine_rollouts=False), train_rows=_rows()).__class__ is GRPOTrainer
