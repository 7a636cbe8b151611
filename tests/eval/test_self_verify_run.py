"""``stepjudge eval self-verify``: the metrics of scored samples (by hand) and a run on the tiny model."""

from __future__ import annotations

import json

import pytest

from stepjudge.cli.main import main
from stepjudge.engines.hf import HFEngine
from stepjudge.eval.self_verify_run import self_verify_metrics
from stepjudge.policy.self_reward import self_reward_logprobs, solver_messages


def _s(pid, answer, correct, r_s, finished=True):
    return {"problem_id": pid, "answer": answer, "correct": correct, "r_s": r_s, "finished": finished}


def test_metrics_of_scored_samples_by_hand():
    samples = [_s("a", "1", True, 0.9), _s("a", "2", False, 0.6), _s("a", "2", False, 0.1),
               _s("b", None, False, 0.0, finished=False), _s("b", "4", True, 0.7), _s("b", "5", False, 0.2)]
    m = self_verify_metrics(samples)
    assert m["accuracy"] == pytest.approx(100 * 2 / 6)
    # all: correct 0.9, 0.7 both > 0.5 (100%); incorrect 0.6 wrong, 0.1, 0.0, 0.2 right (75%)
    assert (m["f1_all"]["acc_correct"], m["f1_all"]["acc_incorrect"]) == (100.0, 75.0)
    assert m["f1_filtered"]["acc_incorrect"] == pytest.approx(200 / 3)  # the unanswered sample is left out
    assert m["auroc"] == pytest.approx(1.0)
    assert m["voting"]["k"] == [1, 2, 3]
    assert m["voting"]["weighted"][-1] == 100.0 and m["voting"]["majority"][-1] == 50.0


def test_self_verify_run_on_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "sv"
    assert main(["eval", "self-verify", "--model", "tiny-random", "--c-ref", "-10", "-n", "2", "--arith.n", "2",
                 "--max-tokens", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 4 and metrics["z_c"] == 3
    ids = [json.loads(line)["problem_id"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert ids == ["arith-s1000-0"] * 2 + ["arith-s1000-1"] * 2  # new problems, not the training draw (seed 0)
    for name in ("samples.jsonl", "report.md", "calibration.png", "voting.png"):
        assert (out / name).exists()


def test_self_reward_read_is_the_log_prob_after_eos():
    engine = HFEngine("tiny-random")
    prompt = solver_messages("Start with 1. Add 2.", "plain")
    got = self_reward_logprobs(engine, [prompt], ["<chunk>1 + 2 = 3</chunk> \\boxed{3}"], 3)[0]
    tok = engine.tokenizer
    text = engine.render(prompt) + "<chunk>1 + 2 = 3</chunk> \\boxed{3}" + tok.eos_token
    ids = tok(text, add_special_tokens=True).input_ids
    assert ids[-1] == tok.eos_token_id
    import torch

    with torch.no_grad():
        logits = engine.model(torch.tensor([ids])).logits[0, -1]
    assert got == pytest.approx(torch.log_softmax(logits.float(), -1)[3].item(), abs=1e-4)
