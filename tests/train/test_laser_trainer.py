"""The LaSeR trainer on TRL's GRPO, run for real on the ``tiny-random`` model.

A random model never writes EOS within a few tokens, so the test trainer scripts what the sampler
returns (``_generate_single_turn``); everything after it -- TRL's padding, masks, forward passes, loss,
the LaSeR hooks -- runs unchanged. Completions: row 0 ``5 6 EOS``, row 1 ``7 8 9 10`` (cut at
max_completion_length = 4: truncated), row 2 ``11 EOS``, row 3 ``12 13 14 EOS``; groups of 2.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig

from stepjudge.models.registry import resolve_model
from stepjudge.train.laser import self_reward_advantages, self_reward_mse
from stepjudge.train.laser_trainer import LaserGRPOTrainer, LaserSettings

torch.set_num_threads(1)

EOS, Z_C = 2, 3
SCRIPT = [[5, 6, EOS], [7, 8, 9, 10], [11, EOS], [12, 13, 14, EOS]]
FINISHED = [True, False, True, True]


def scripted_reward(prompts, completions, completion_ids, **kwargs):
    assert all(Z_C not in ids for ids in completion_ids)  # rewards never see the z_c slot
    return [1.0 if ids[0] in (5, 11) else 0.0 for ids in completion_ids]


class ScriptedLaser(LaserGRPOTrainer):
    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        return [list(SCRIPT[i % len(SCRIPT)]) for i in range(len(prompt_ids))], None


def _trainer(tmp_path, accumulation=1, **laser):
    settings = LaserSettings(**{"z_c": Z_C, "c_ref": -10.0, "beta_v": 0.1, "alpha": 0.5, "tau": 0.5,
                                "std_threshold": 0.01, **laser})
    rows = [{"prompt": f"Is step {i} right?"} for i in range(2)]  # equal token lengths: no left padding
    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                        max_completion_length=4, use_cpu=True, report_to="none", max_steps=1, logging_steps=1,
                        learning_rate=1e-3, seed=0, save_strategy="no", gradient_accumulation_steps=accumulation)
    trainer = ScriptedLaser(model=str(resolve_model("tiny-random")), reward_funcs=[scripted_reward], args=config,
                            train_dataset=Dataset.from_list(rows), laser=settings)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = accumulation  # set by Trainer's loop; tests call hooks directly
    return trainer


def _batch():
    return [{"prompt": f"Is step {i} right?"} for i in range(2) for _ in range(2)]


def _reference_logp_zc(tmp_path, prompt: str, completion: list[int]) -> float:
    """log pi(z_c | prompt, completion) from a plain forward of the unpadded sequence (z_c not fed)."""
    path = resolve_model("tiny-random")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tok(prompt, add_special_tokens=False).input_ids + completion
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits.float(), -1)[Z_C].item()


def test_z_c_sits_after_the_first_eos_and_is_read_in_the_update_pass(tmp_path):
    trainer = _trainer(tmp_path)
    out = trainer._generate_and_score_completions(_batch())
    ids, mask, tool = out["completion_ids"], out["completion_mask"], out["tool_mask"]
    assert out["laser_finished"].tolist() == FINISHED
    for i, script in enumerate(SCRIPT):
        row = ids[i].tolist()
        if FINISHED[i]:
            slot = len(script)
            assert out["laser_slot"][i].item() == slot
            assert row[slot - 1] == EOS and row[slot] == Z_C  # z_c right after the first EOS
            assert mask[i, slot].item() == 1 and tool[i, slot].item() == 0  # attended, no policy loss
        else:
            assert Z_C not in row and mask[i].sum().item() == 4
    # the policy-gradient token count leaves the z_c slots out
    assert out["num_items_in_batch"].item() == sum(len(s) for s in SCRIPT)

    trainer._compute_loss(trainer.model, out)
    got = trainer.last_loss_batch
    for i, script in enumerate(SCRIPT):
        if FINISHED[i]:
            ref = _reference_logp_zc(tmp_path, f"Is step {i // 2} right?", script)
            # batched (padded) vs single forward differ by kernel rounding only (~6e-4 in log-prob here)
            assert got["r_s"][i].item() == pytest.approx(0.1 * (ref + 10.0), abs=2e-4)
        else:
            assert got["r_s"][i].item() == 0.0


def test_truncated_completion_gets_no_mse_term(tmp_path):
    trainer = _trainer(tmp_path)
    out = trainer._generate_and_score_completions(_batch())
    trainer._compute_loss(trainer.model, out)
    got = trainer.last_loss_batch
    r_s, r_v = got["r_s"], got["r_v"]
    assert r_v.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert got["counts"] == (2.0, 1.0)  # finished: rows 0, 2 correct, row 3 incorrect; row 1 truncated
    w_c, w_i = 3 / 4, 3 / 2
    by_hand = (w_c * (r_s[0] - 1) ** 2 + w_c * (r_s[2] - 1) ** 2 + w_i * (r_s[3] - 0) ** 2) / 4  # row 1: nothing
    assert got["mse"].item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_logged_mse_and_mixed_advantages_equal_the_pure_functions(tmp_path):
    trainer = _trainer(tmp_path, accumulation=2)
    out = trainer._generate_and_score_completions(_batch())
    roll = trainer.last_rollout
    expected = self_reward_advantages(roll["r_v"], roll["r_s"], roll["finished"], 2, 0.5, 0.01)
    assert out["advantages"].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert trainer._metrics["train"]["laser/filtered_group_share"] == [roll["filtered"].float().mean().item()]

    loss = trainer._compute_loss(trainer.model, out)
    got = trainer.last_loss_batch
    # the rollout's r_s (z_c in place, no grad) equals the update pass's (same weights, same tokens)
    assert got["r_s"].tolist() == pytest.approx(roll["r_s"].tolist(), abs=1e-5)
    mse = self_reward_mse(got["r_s"], got["r_v"], got["finished"], counts=got["counts"])
    assert got["mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert trainer._metrics["train"]["laser/mse"][-1] == pytest.approx(mse.item(), rel=1e-6)
    # the MSE enters as alpha * MSE / accumulation, on top of TRL's (already accumulation-scaled) loss
    trainer.laser = LaserSettings(**{**trainer.laser.__dict__, "alpha": 0.0})
    plain = trainer._compute_loss(trainer.model, out)
    assert (loss - plain).item() == pytest.approx(0.5 * mse.item() / 2, rel=1e-4, abs=1e-7)
    accuracy = trainer._metrics["train"]["laser/self_reward_accuracy"][0]
    pred = [r > 0.5 for r in got["r_s"].tolist()]
    truth = [True, False, True, False]
    assert accuracy == pytest.approx(sum(pred[i] == truth[i] for i in (0, 2, 3)) / 3)


def test_warm_ups_gate_the_mse_and_the_mixing(tmp_path):
    trainer = _trainer(tmp_path, warmup_reasoning=1, warmup_self_reward=1)
    assert not trainer.mse_active() and not trainer.mixing_active()  # update 1 <= w_r
    out = trainer._generate_and_score_completions(_batch())
    assert trainer.last_rollout["advantages"] is None
    trainer._compute_loss(trainer.model, out)
    assert trainer.last_loss_batch["added_loss"].item() == 0.0
    trainer.state.global_step = 1  # update 2: MSE on, mixing still off (2 <= w_r + w_sr)
    assert trainer.mse_active() and not trainer.mixing_active()
    trainer.state.global_step = 2
    assert trainer.mixing_active()


def test_self_reward_off_is_plain_grpo(tmp_path):
    trainer = _trainer(tmp_path, self_reward=False)
    out = trainer._generate_and_score_completions(_batch())
    assert "laser_slot" not in out and "tool_mask" not in out and Z_C not in out["completion_ids"].tolist()[0]
    assert trainer.last_loss_batch is None


def test_one_training_step_runs(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"laser/mse", "laser/self_reward_accuracy", "laser/r_s_correct", "laser/filtered_group_share"} <= logged
    assert trainer.state.global_step == 1
