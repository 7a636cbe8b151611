"""``stepjudge train laser`` end to end on the tiny random model: the verifiable reward, c_ref
calibration written into the run, and one training step through the CLI."""

from __future__ import annotations

import json

import pytest

from stepjudge.cli.main import main
from stepjudge.train.laser_run import LaserConfig, laser_rows, make_laser_trainer
from stepjudge.train.rewards import VerifiableReward, resolve_reward

TINY = ["--model", "tiny-random", "--arith.n", "4", "--max-completion-length", "4", "--num-generations", "2",
        "--per-device-batch-size", "4", "--max-prompt-length", "512", "--use-cpu", "--save-steps", "1"]


def test_verifiable_reward_wants_one_box_graded_by_the_task():
    completions = ["so \\boxed{8}", "\\boxed{8} or \\boxed{8}", "\\boxed{7}", "8",
                   [{"role": "assistant", "content": "<chunk>5 + 3 = 8</chunk>\n\\boxed{8}"}]]
    with VerifiableReward() as reward:
        got = reward([None] * 5, completions, answer=["8"] * 5, task=["arith"] * 5)
    assert got == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert resolve_reward("verifiable")([None], ["\\boxed{8}"], answer=["8"], task=["arith"]) == [1.0]


def test_rows_carry_the_fewshot_chat_prompt_and_the_answer(tmp_path):
    cfg = LaserConfig(out=str(tmp_path), arith={"n": 2, "steps": 2})
    rows = laser_rows(cfg)
    assert [r["task"] for r in rows] == ["arith", "arith"]
    prompt = rows[0]["prompt"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert prompt[0]["content"] == "Start with 2. Add 5. Add 1." and prompt[1]["content"].endswith("\\boxed{8}")
    assert prompt[-1]["content"].startswith("Start with ")


def test_calibrate_then_train_one_step_uses_the_measured_c_ref(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "laser", "--calibrate", "--out", str(out), "--calibrate-pairs", "3", *TINY]) == 0
    measured = json.loads((out / "c_ref.json").read_text())
    assert measured["n"] == 3 and measured["z_c"] == 3 and measured["mean"] < 0
    assert f"{measured['mean']:.3f} +- {measured['sd']:.3f}" in capsys.readouterr().out

    cfg = LaserConfig(out=str(out), **{"model": "tiny-random", "arith": {"n": 4}, "max_completion_length": 4,
                                       "num_generations": 2, "per_device_batch_size": 4, "use_cpu": True})
    assert make_laser_trainer(cfg).laser.c_ref == pytest.approx(measured["mean"])

    assert main(["train", "laser", "--out", str(out), "--max-steps", "1", *TINY]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert any("laser/mse" in entry for entry in log) and (out / "final" / "model.safetensors").exists()
    assert (out / "curves.png").exists()


def test_self_reward_off_needs_no_c_ref(tmp_path):
    cfg = LaserConfig(out=str(tmp_path), model="tiny-random", arith={"n": 2}, self_reward="off",
                      max_completion_length=4, num_generations=2, per_device_batch_size=4, use_cpu=True)
    trainer = make_laser_trainer(cfg)
    assert not trainer.laser.self_reward and not (tmp_path / "c_ref.json").exists()
