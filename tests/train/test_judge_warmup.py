"""The judge warm-up trainer and the RL recipe switches it feeds (issue: StepWiser's effect on CPU)."""

import json

import pytest
import torch

from stepjudge.errors import DataError
from stepjudge.judge.warmup import COMPACT_JUDGE_TEMPLATE, WarmupConfig, with_warmup_prompts
from stepjudge.train.dynamic_sampling import DynamicSamplingGRPOTrainer
from stepjudge.train.judge import JudgeRLConfig, make_trainer
from stepjudge.train.judge_warmup import JudgeWarmupConfig, build_rows, train_judge_warmup
from stepjudge.utils.io import write_jsonl_atomic

torch.set_num_threads(1)


def _row(pid: str, a: int, b: int, c: int, label: str) -> dict:
    return {"problem": f"Start with {a}. Add {b}.", "history": [], "chunk": f"{a} + {b} = {c}",
            "prompt": [{"role": "user", "content": f"Judge: {a} + {b} = {c}"}], "label": label,
            "problem_id": pid, "sample_index": 0, "chunk_index": 0}


@pytest.fixture
def judge_rows(tmp_path):
    # train: 3 Positive / 2 Negative over problems p0..p4; held-out: problem h0
    train = [_row("p0", 1, 2, 3, "Positive"), _row("p1", 2, 2, 4, "Positive"), _row("p2", 3, 4, 7, "Positive"),
             _row("p3", 5, 1, 9, "Negative"), _row("p4", 13, 3, 26, "Negative")]
    heldout = [_row("h0", 4, 4, 8, "Positive"), _row("h0", 4, 4, 9, "Negative")]
    write_jsonl_atomic(tmp_path / "train.jsonl", train)
    write_jsonl_atomic(tmp_path / "heldout.jsonl", heldout)
    return tmp_path


def test_rows_are_balanced_recompute_completions_in_the_compact_prompt(judge_rows):
    cfg = JudgeWarmupConfig(train_data=str(judge_rows / "train.jsonl"), heldout_data=str(judge_rows / "heldout.jsonl"),
                            out=str(judge_rows / "w"), warmup={"variant": "recompute", "prompt": "compact"})
    built = build_rows(cfg)
    assert built["stats"]["after_balance"] == {"positive": 2, "negative": 2, "total": 4}
    negatives = {r["problem_id"]: r["completion"][0]["content"] for r in built["rows"] if r["label"] == "Negative"}
    assert negatives == {"p3": "Check: 5 + 1 = 6. The step says 9.\nVerdict: \\boxed{Negative}",
                         "p4": "Check: 13 + 3 = 16. The step says 26.\nVerdict: \\boxed{Negative}"}
    prompt = built["rows"][0]["prompt"][0]["content"]
    assert prompt.startswith(COMPACT_JUDGE_TEMPLATE.split("{")[0])


def test_a_heldout_problem_in_the_train_rows_is_refused(judge_rows):
    leak = [_row("h0", 4, 4, 8, "Positive"), _row("p9", 1, 1, 3, "Negative")]
    write_jsonl_atomic(judge_rows / "leaky.jsonl", leak)
    cfg = JudgeWarmupConfig(train_data=str(judge_rows / "leaky.jsonl"), heldout_data=str(judge_rows / "heldout.jsonl"),
                            out=str(judge_rows / "w"))
    with pytest.raises(DataError, match="1 held-out problems in the warm-up rows"):
        build_rows(cfg)


def test_tiny_warmup_trains_scores_heldout_and_writes_its_outputs(judge_rows):
    out = judge_rows / "warm"
    final = train_judge_warmup({"model": "tiny-random", "train_data": str(judge_rows / "train.jsonl"),
                                "heldout_data": str(judge_rows / "heldout.jsonl"), "out": str(out),
                                "warmup": {"variant": "verdict"}, "max_steps": 2, "per_device_batch_size": 2,
                                "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "use_cpu": True,
                                "sample_max_tokens": 4, "max_length": 256})
    assert final == out / "final" and (final / "model.safetensors").exists()
    stats = json.loads((out / "warmup_stats.json").read_text())
    assert stats["after_balance"] == {"positive": 2, "negative": 2, "total": 4} and stats["variant"] == "verdict"
    before, after = (json.loads((out / f"eval_{w}.json").read_text()) for w in ("before", "after"))
    assert before["n"] == after["n"] == 2 and (before["n_positive"], before["n_negative"]) == (1, 1)
    assert after["model"] == str(final)
    assert [e["step"] for e in json.loads((out / "train_log.json").read_text()) if "loss" in e] == [1, 2]


def test_rl_asks_the_judge_as_the_warmup_did_and_plugs_in_dynamic_sampling(judge_rows):
    warm = WarmupConfig(variant="recompute", prompt="compact")
    cfg = JudgeRLConfig(model="tiny-random", train_data=str(judge_rows / "train.jsonl"), out=str(judge_rows / "rl"),
                        num_generations=2, per_device_batch_size=4, max_completion_length=4, max_prompt_length=256,
                        use_cpu=True, max_steps=1, prompt_from_warmup=warm,
                        dynamic_sampling={"mode": "drop"})
    trainer = make_trainer(cfg)
    assert type(trainer) is DynamicSamplingGRPOTrainer and trainer.dynamic_sampling.mode == "drop"
    expected = {r["problem_id"]: r["prompt"] for r in with_warmup_prompts(
        [json.loads(line) for line in (judge_rows / "train.jsonl").read_text().splitlines()], warm)}
    got = {row["problem_id"]: row["prompt"] for row in trainer.train_dataset}
    assert got == expected
    plain = make_trainer(cfg.model_copy(update={"dynamic_sampling": cfg.dynamic_sampling.model_copy(
        update={"mode": "off"}), "prompt_from_warmup": None}))
    assert type(plain).__name__ == "GRPOTrainer"
    assert plain.train_dataset[0]["prompt"] == [{"role": "user", "content": "Judge: 1 + 2 = 3"}]
