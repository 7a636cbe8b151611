"""Dynamic sampling on TRL's GRPO: exactly which groups are dropped, re-sampled or left alone.

The trainers run for real on the ``tiny-random`` model. The reward is scripted per prompt (a
``kind`` column), because a random model's completions cannot be steered: ``agree`` gives every
sample 1.0 (the group agrees), ``split`` alternates 0/1 along the group (informative), ``late:k``
agrees on the group's first k draws and is informative from draw k + 1 on.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError
from trl import GRPOConfig, GRPOTrainer

from stepjudge.models.registry import resolve_model
from stepjudge.train.dynamic_sampling import (
    DynamicSamplingConfig,
    DynamicSamplingGRPOTrainer,
    agreeing_groups,
    group_rows,
    low_reward_groups,
)

torch.set_num_threads(1)

G = 2  # samples per prompt


class ScriptedReward:
    """Reward fixed by the row's ``kind`` column; counts its calls and each ``late`` group's draws."""

    __name__ = "scripted"

    def __init__(self) -> None:
        self.calls = 0
        self.draws: Counter[str] = Counter()

    def __call__(self, prompts, completions, kind, **kwargs) -> list[float]:
        self.calls += 1
        out, pos = [], Counter()
        for k in kind:
            if pos[k] % G == 0:
                self.draws[k] += 1
            if k == "agree":
                out.append(1.0)
            elif k == "split":
                out.append(float(pos[k] % 2))
            else:  # late:n
                out.append(0.0 if self.draws[k] <= int(k.split(":")[1]) else float(pos[k] % 2))
            pos[k] += 1
        return out


class CountingTrainer(DynamicSamplingGRPOTrainer):
    """Records every batch TRL's generation step is asked for, and what it returned."""

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        self.generated.append(list(completion_ids))
        return completion_ids, logprobs


def _rows(kinds: list[str]) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"Is step {i} right?"}], "kind": k} for i, k in enumerate(kinds)]


def _trainer(tmp_path, kinds, dynamic_sampling=None, cls=CountingTrainer, **args):
    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=G * len(kinds), num_generations=G,
                        max_completion_length=4, use_cpu=True, report_to="none", max_steps=1, logging_steps=1,
                        learning_rate=1e-3, seed=0, save_strategy="no", **args)
    kw = {} if cls is GRPOTrainer else {"dynamic_sampling": dynamic_sampling}
    trainer = cls(model=str(resolve_model("tiny-random")), reward_funcs=[ScriptedReward()], args=config,
                  train_dataset=Dataset.from_list(_rows(kinds)), **kw)
    trainer.generated = []
    trainer.model.train()
    return trainer


def _generation_batch(kinds: list[str]) -> list[dict]:
    """What TRL's repeat sampler hands over: each prompt's row G times in a row."""
    return [row for row in _rows(kinds) for _ in range(G)]


def _step(trainer, kinds, seed=0) -> dict:
    torch.manual_seed(seed)
    return trainer._generate_and_score_completions(_generation_batch(kinds))


def _metric(trainer, name):
    return trainer._metrics["train"][f"dynamic_sampling/{name}"]


# ----------------------------------------------------------------------------------- pure helpers


def test_agreeing_groups_is_exact():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, float("nan"), float("nan"), 2.0, float("nan")])
    assert agreeing_groups(r, 2).tolist() == [True, False, True, True, True]
    assert agreeing_groups(torch.tensor([0.0, 0.1, 0.0, 0.3]), 2, atol=0.2).tolist() == [True, False]
    assert agreeing_groups(torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 1.0]), 3).tolist() == [False, True]
    with pytest.raises(ValueError, match="multiple of 4"):
        agreeing_groups(torch.zeros(6), 4)
    assert group_rows([0, 2], 3) == [0, 1, 2, 6, 7, 8]
    assert group_rows(torch.tensor([False, True, True]), 2) == [2, 3, 4, 5]


def test_low_reward_groups_is_exact():
    r = torch.tensor([0.0, 0.0, 0.0, 1.0,  # mean 0.25
                      1.0, 0.0, 0.0, 1.0,  # mean 0.5
                      0.0, 0.0, 0.0, 0.0,  # mean 0 (also agrees)
                      1.0, float("nan"), 0.0, float("nan"),  # mean of the finite rows: 0.5
                      float("nan")] * 1 + [float("nan")] * 3)  # no finite reward: not "low"
    assert low_reward_groups(r, 4, 0.25).tolist() == [True, False, True, False, False]
    assert low_reward_groups(r, 4, 0.5).tolist() == [True, True, True, True, False]
    assert low_reward_groups(r, 4, -0.1).tolist() == [False, False, False, False, False]
    with pytest.raises(ValueError, match="multiple of 3"):
        low_reward_groups(torch.zeros(4), 3, 0.25)


def test_config_is_typed():
    assert DynamicSamplingConfig().mode == "off"
    assert DynamicSamplingConfig(mode="resample").model_dump() == {
        "mode": "resample", "max_rounds": 2, "on_exhausted": "drop", "agree_atol": 0.0, "low_reward_cutoff": None}
    for bad in ({"mode": "filter"}, {"max_rounds": 0}, {"on_exhausted": "skip"}, {"rounds": 2},
                {"low_reward_cutoff": 0.25}):  # a cutoff drops groups: plain GRPO (mode off) cannot
        with pytest.raises(ValidationError):
            DynamicSamplingConfig(**bad)


# ---------------------------------------------------------------------------------------- trainer

KINDS = ["split", "agree", "split"]


def test_off_reproduces_plain_grpo_and_drop_masks_only_the_agreeing_group(tmp_path):
    plain = _step(_trainer(tmp_path / "plain", KINDS, cls=GRPOTrainer), KINDS)
    off_trainer = _trainer(tmp_path / "off", KINDS, {"mode": "off"})
    off = _step(off_trainer, KINDS)
    assert off.keys() == plain.keys()
    for key in plain:
        assert torch.equal(off[key], plain[key]), key
    assert not off_trainer._metrics["train"].get("dynamic_sampling/agree_frac")

    drop_trainer = _trainer(tmp_path / "drop", KINDS, {"mode": "drop"})
    drop = _step(drop_trainer, KINDS)
    mask, plain_mask = drop["completion_mask"], plain["completion_mask"]
    assert mask[2:4].sum() == 0 and plain_mask[2:4].sum() > 0  # group 1 (rows 2, 3) agreed: no loss weight
    kept = [0, 1, 4, 5]
    assert torch.equal(mask[kept], plain_mask[kept])  # informative groups untouched
    for key in ("completion_ids", "prompt_ids", "prompt_mask", "advantages"):
        assert torch.equal(drop[key], plain[key]), key
    assert drop["num_items_in_batch"].item() == plain_mask[kept].sum().item()  # token-mean not diluted
    assert _metric(drop_trainer, "agree_frac") == [pytest.approx(1 / 3)]
    assert _metric(drop_trainer, "dropped_groups") == [1.0]
    assert drop_trainer.generated and len(drop_trainer.generated) == 1  # drop never re-generates


def test_drop_is_a_no_op_when_every_group_is_informative(tmp_path):
    kinds = ["split", "split"]
    trainer = _trainer(tmp_path, kinds, {"mode": "drop"})
    out = _step(trainer, kinds)
    assert out["completion_mask"].sum(dim=1).gt(0).all()
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert _metric(trainer, "dropped_groups") == [0.0] and _metric(trainer, "agree_frac") == [0.0]


@pytest.mark.parametrize("cutoff, low", [(0.5, 2), (0.4, 0)])
def test_low_reward_cutoff_also_drops_informative_groups_at_or_below_it(tmp_path, cutoff, low):
    trainer = _trainer(tmp_path, KINDS, {"mode": "drop", "low_reward_cutoff": cutoff})
    out = _step(trainer, KINDS)  # split groups: rewards 0, 1 (mean 0.5); the agree group: 1, 1
    per_group = out["completion_mask"].view(3, G, -1).sum(dim=(1, 2))
    assert per_group[1] == 0  # the agreeing group, as without a cutoff
    assert (per_group[[0, 2]] == 0).all() == (low == 2)
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert _metric(trainer, "low_reward_groups") == [float(low)]
    assert _metric(trainer, "dropped_groups") == [1.0 + low]


def test_drop_of_every_group_gives_a_zero_loss_not_nan(tmp_path):
    kinds = ["agree", "agree"]
    trainer = _trainer(tmp_path, kinds, {"mode": "drop"})
    out = _step(trainer, kinds)
    assert out["completion_mask"].sum() == 0 and out["num_items_in_batch"].item() == 0
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; this calls the loss directly
    loss = trainer.compute_loss(trainer.model, out)
    assert torch.isfinite(loss)
    assert loss.item() == 0.0
    assert _metric(trainer, "dropped_groups") == [2.0] and _metric(trainer, "agree_frac") == [1.0]


@pytest.mark.parametrize("on_exhausted", ["drop", "keep"])
def test_resample_regenerates_an_always_agreeing_group_exactly_max_rounds_times(tmp_path, on_exhausted):
    trainer = _trainer(tmp_path, KINDS, {"mode": "resample", "max_rounds": 3, "on_exhausted": on_exhausted})
    out = _step(trainer, KINDS)
    # one full batch, then the agreeing group's G rows again, three times
    assert [len(batch) for batch in trainer.generated] == [6, G, G, G]
    reward = trainer.reward_funcs[0]
    assert reward.calls == 4  # TRL's own scoring of the final batch re-uses the cached rewards
    assert reward.draws["agree"] == 4 and reward.draws["split"] == 2  # two split groups, each drawn once
    first = trainer.generated[0]
    for row in (0, 1, 4, 5):  # informative groups keep their first draw
        n = len(first[row])
        assert out["completion_ids"][row, :n].tolist() == first[row]
    assert (out["completion_mask"][2:4].sum() == 0) == (on_exhausted == "drop")
    assert out["completion_mask"][[0, 1, 4, 5]].sum(dim=1).gt(0).all()
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert _metric(trainer, "agree_frac") == [pytest.approx(1 / 3)]
    assert _metric(trainer, "resampled_groups") == [3.0]
    assert _metric(trainer, "recovered_groups") == [0.0]
    assert _metric(trainer, "dropped_groups") == [1.0 if on_exhausted == "drop" else 0.0]


def test_resample_replaces_a_group_by_its_first_informative_draw(tmp_path):
    kinds = ["late:2", "split", "split"]
    trainer = _trainer(tmp_path, kinds, {"mode": "resample", "max_rounds": 5})
    out = _step(trainer, kinds)
    assert [len(batch) for batch in trainer.generated] == [6, G, G]  # stops once the group is informative
    informative = trainer.generated[2]
    for row in (0, 1):
        n = len(informative[row])
        assert out["completion_ids"][row, :n].tolist() == informative[row]
    for row in (2, 3, 4, 5):
        n = len(trainer.generated[0][row])
        assert out["completion_ids"][row, :n].tolist() == trainer.generated[0][row]
    assert out["advantages"][:2].abs().min() > 0  # the replacement carries gradient
    assert out["completion_mask"].sum(dim=1).gt(0).all()
    assert list(trainer._logs["rewards"]["scripted"])[:2] == [0.0, 1.0]  # TRL logs the kept draw's rewards
    assert _metric(trainer, "resampled_groups") == [2.0]
    assert _metric(trainer, "recovered_groups") == [1.0]
    assert _metric(trainer, "dropped_groups") == [0.0]


def test_training_logs_the_dynamic_sampling_metrics(tmp_path):
    trainer = _trainer(tmp_path, KINDS, {"mode": "resample", "max_rounds": 1})
    trainer.train()
    logged = next(e for e in trainer.state.log_history if "dynamic_sampling/agree_frac" in e)
    assert logged["dynamic_sampling/agree_frac"] == pytest.approx(1 / 3)
    assert logged["dynamic_sampling/resampled_groups"] == 1.0
    assert logged["dynamic_sampling/dropped_groups"] == 1.0
    assert logged["frac_reward_zero_std"] == pytest.approx(1 / 3)  # TRL sees the final batch


def test_resample_refuses_what_it_cannot_redraw(tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=G, num_generations=G, use_cpu=True,
                      report_to="none")
    with pytest.raises(ValueError, match="rollout_func"):
        DynamicSamplingGRPOTrainer(model=str(resolve_model("tiny-random")), reward_funcs=[ScriptedReward()],
                                   args=args, train_dataset=Dataset.from_list(_rows(["split"])),
                                   rollout_func=lambda prompts, trainer: {}, dynamic_sampling={"mode": "resample"})
