"""The reconstruction of the prompts a stratified GRPO run reads, and the noisy-label counts."""

from __future__ import annotations

import pytest
from experiment_modules import import_experiment


@pytest.fixture(scope="module")
def seen_mod():
    yield from import_experiment("rl_prompts_seen")


def _rows():
    # 6 Positive and 4 Negative rows; the truth contradicts rows 1 (Negative, right) and 7 (Positive, wrong)
    labels = ["Positive", "Negative", "Positive", "Negative", "Positive", "Positive", "Negative", "Positive",
              "Positive", "Negative"]
    truth = ["Positive", "Positive", "Positive", "Negative", None, "Positive", "Negative", "Negative",
             "Positive", None]
    return [{"id": i, "label": lab, "truth": t} for i, (lab, t) in enumerate(zip(labels, truth, strict=True))]


def test_prompts_seen_follow_the_trainers_stratified_order(seen_mod):
    from stepjudge.train.judge import stratified_order

    rows = _rows()
    rl = {"num_generations": 4, "per_device_batch_size": 8, "max_steps": 3, "stratify_batches": True}
    seen = seen_mod.prompts_seen(rows, rl, seed=5)
    assert len(seen) == 6  # 3 updates x 8 completions / 4 per prompt
    order = stratified_order([r["label"] for r in rows], 5)
    assert [r["id"] for r in seen] == order[:6]
    # a run longer than one pass continues with the next pass's permutation (seed + 1)
    long = seen_mod.prompts_seen(rows, {**rl, "max_steps": 6}, seed=5)
    assert [r["id"] for r in long] == order + stratified_order([r["label"] for r in rows], 6)[:2]


def test_noise_counts_are_exact(seen_mod):
    assert seen_mod.noise_counts(_rows()) == {"prompts": 10, "negative": 4, "with_truth": 8, "noisy": 2,
                                              "negative_but_right": 1, "positive_but_wrong": 1}


def test_unstratified_runs_are_refused(seen_mod):
    with pytest.raises(SystemExit, match="shuffles"):
        seen_mod.prompts_seen(_rows(), {"max_steps": 3, "stratify_batches": False}, seed=0)
