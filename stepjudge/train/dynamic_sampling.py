"""DAPO-style dynamic sampling for TRL 1.16's GRPO: keep GRPO groups informative.

Why: a small judge soon answers the same verdict for all G samples of a prompt. Such a group gets
G equal rewards, so every advantage is 0 and it carries no policy gradient; under the token-mean
loss (``loss_type="dapo"``, TRL's default) its tokens still count in the normaliser and shrink the
gradient of the groups that do disagree. DAPO (Yu et al. 2025) re-samples such groups; TRL 1.16
does not (trl#3708), so this module adds it as a trainer hook.

Modes (:class:`DynamicSamplingConfig`):

* ``off``: plain :class:`~trl.GRPOTrainer` (every hook passes straight through).
* ``drop``: a group whose rewards all agree is masked out of the loss: its rows' ``completion_mask``
  is zeroed (as TRL itself does for ``mask_truncated_completions``) and ``num_items_in_batch`` is
  recounted, so it neither adds gradient nor dilutes the token-mean. Shapes stay TRL's, so the loss
  code is unchanged. (``grpo``/``dr_grpo``/``luspo`` losses average over rows or a fixed length, so
  a masked row there still counts in the denominator; use ``dapo`` or ``bnpo`` for exact dropping.)
* ``low_reward_cutoff`` (with ``drop`` or ``resample``): informative groups whose mean reward is at most
  the cutoff are masked too, after any re-sampling. Meant for noisy labels: on a mislabelled prompt a
  judge that checks well is mostly "wrong", and the one paid sample in such a group gets a large
  advantage for breaking the check.
* ``resample``: the G completions of an agreeing group are generated again from the same prompt, up
  to ``max_rounds`` times, and the group is replaced by the first informative draw. A group still
  agreeing after ``max_rounds`` is dropped or kept (``on_exhausted``).

"Agree" means the group's summed, weighted reward (the quantity TRL normalises) has spread
``max - min <= agree_atol`` over its scorable rows (all-NaN groups agree: they have no signal).
Groups are ``num_generations`` consecutive rows of the global (gathered) batch, as TRL lays them out.

Metrics (train mode, one value per generation batch, averaged by TRL's ``log``), in log_history:
``dynamic_sampling/agree_frac`` (share of groups whose first draw agreed),
``dynamic_sampling/low_reward_groups`` (informative groups dropped by ``low_reward_cutoff``),
``dynamic_sampling/resampled_groups`` (group re-generations run), ``dynamic_sampling/recovered_groups``
(agreeing groups replaced by an informative draw) and ``dynamic_sampling/dropped_groups``.

Limits: ``resample`` needs one process and no tools / environments / ``rollout_func`` (the re-draw
calls TRL's ``_generate`` on a sub-batch of whole groups, and those features keep per-batch state).
Re-draws add to TRL's completion-length metrics and ``num_input_tokens_seen`` (tokens really
generated); reward-function ``log_metric`` values come from the first draw only (the raw policy).
Evaluation is never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from trl import GRPOTrainer

__all__ = ["DynamicSamplingConfig", "DynamicSamplingGRPOTrainer", "DynamicSamplingMixin", "agreeing_groups",
           "group_rows", "low_reward_groups"]

_PREFIX = "dynamic_sampling/"


class DynamicSamplingConfig(BaseModel):
    """Dynamic sampling settings (YAML keys = these names); ``mode="off"`` is plain GRPO."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "drop", "resample"] = Field(
        "off", description="off: plain GRPO | drop: mask all-agree groups out of the loss | "
                           "resample: re-generate all-agree groups (DAPO dynamic sampling)")
    max_rounds: int = Field(2, ge=1, description="resample: re-generations of an agreeing group before giving up")
    on_exhausted: Literal["drop", "keep"] = Field(
        "drop", description="resample: what happens to a group that still agrees after max_rounds")
    agree_atol: float = Field(0.0, ge=0, description="a group agrees when max - min of its rewards <= this")
    low_reward_cutoff: float | None = Field(
        None, description="also drop (mask) every group whose mean reward is <= this (None: keep them). With "
                          "noisy labels, a group in which nearly every sample disagrees with its label is most "
                          "often a mislabelled prompt, and the few paid samples teach the judge to break its "
                          "own check (docs/judge_training.md); online difficulty filtering in other words")

    @model_validator(mode="after")
    def _cutoff_needs_a_mode(self) -> DynamicSamplingConfig:
        if self.low_reward_cutoff is not None and self.mode == "off":
            raise ValueError("low_reward_cutoff drops groups: set mode to drop or resample")
        return self


def agreeing_groups(rewards: torch.Tensor, group_size: int, atol: float = 0.0) -> torch.Tensor:
    """Bool (n_groups,): True where a group's rewards all agree (spread <= ``atol``; NaN rows ignored).

    ``rewards`` is (N,) with groups as ``group_size`` consecutive rows. A group with no finite reward
    agrees (it has nothing to learn from).
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"need a 1-D reward tensor whose length is a multiple of {group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.detach().float().view(-1, group_size)
    nan = torch.isnan(grouped)
    hi = grouped.masked_fill(nan, float("-inf")).max(dim=1).values
    lo = grouped.masked_fill(nan, float("inf")).min(dim=1).values
    return nan.all(dim=1) | ((hi - lo) <= atol)


def low_reward_groups(rewards: torch.Tensor, group_size: int, cutoff: float) -> torch.Tensor:
    """Bool (n_groups,): True where a group's mean reward (NaN rows ignored) is <= ``cutoff``; a group
    with no finite reward is not low (it already agrees)."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"need a 1-D reward tensor whose length is a multiple of {group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.detach().float().view(-1, group_size)
    finite = ~torch.isnan(grouped)
    mean = grouped.nan_to_num(0.0).sum(dim=1) / finite.sum(dim=1).clamp(min=1)
    return finite.any(dim=1) & (mean <= cutoff)


def group_rows(groups: Sequence[int] | torch.Tensor, group_size: int) -> list[int]:
    """Row indices of the given group indices (groups are ``group_size`` consecutive rows)."""
    if isinstance(groups, torch.Tensor) and groups.dtype == torch.bool:
        idx = groups.nonzero().flatten().tolist()
    else:
        idx = [int(g) for g in groups]
    return [g * group_size + k for g in idx for k in range(group_size)]


def _splice(items: list[Any], sub: Sequence[Any], n_rows: int, rows: Sequence[int],
            sub_rows: Sequence[int]) -> None:
    """Copy ``sub``'s per-row entries ``sub_rows`` into rows ``rows`` of ``items`` (lists edited in place).

    ``items`` is TRL's ``_generate`` tuple: every list with one entry per row (ids, completions, logprobs,
    images) and every per-row list inside a dict (``extra_fields``) is spliced; the rest is batch-level.
    """
    for value, new in zip(items, sub, strict=True):
        if isinstance(value, list) and len(value) == n_rows:
            for r, s in zip(rows, sub_rows, strict=True):
                value[r] = new[s]
        elif isinstance(value, dict):
            for key, col in value.items():
                if isinstance(col, list) and len(col) == n_rows:
                    for r, s in zip(rows, sub_rows, strict=True):
                        col[r] = new[key][s]


class DynamicSamplingMixin:
    """Adds dynamic sampling to a :class:`~trl.GRPOTrainer` (or any subclass) through TRL's own hooks.

    Hooks: ``_generate_and_score_completions`` (remembers the batch rows, masks dropped groups after
    TRL has built its tensors), ``_generate`` (resample: re-draws agreeing groups before TRL pads and
    scores them) and ``_calculate_rewards`` (keeps the gathered rewards; re-uses the scores computed
    while re-sampling so reward functions run once per kept completion).
    """

    def __init__(self, *args: Any, dynamic_sampling: DynamicSamplingConfig | dict | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = dynamic_sampling if isinstance(dynamic_sampling, DynamicSamplingConfig) \
            else DynamicSamplingConfig(**(dynamic_sampling or {}))
        self.dynamic_sampling = cfg
        if cfg.mode == "resample":
            if self.accelerator.num_processes > 1:
                raise ValueError("dynamic_sampling mode 'resample' supports one process; use 'drop' with several")
            if self.tools or self.environment_factories is not None or self.rollout_func is not None:
                raise ValueError("dynamic_sampling mode 'resample' does not support tools, environments or "
                                 "rollout_func; use 'drop'")
        self._ds_inputs: list[dict] | None = None
        self._ds_rewards: torch.Tensor | None = None  # last gathered (N, n_funcs) rewards
        self._ds_cached: tuple[Any, torch.Tensor] | None = None  # (completions list, its rewards)
        self._ds_drop: torch.Tensor | None = None  # bool (n_groups,) decided while re-sampling

    # ------------------------------------------------------------------------------------ helpers

    def _ds_active(self) -> bool:
        return self.dynamic_sampling.mode != "off" and self.model.training

    def _ds_summed(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """TRL's scalar reward per row: weighted sum of the functions (NaN where all are NaN)."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        summed = (rewards_per_func * weights).nansum(dim=1)
        summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return summed

    def _ds_agree(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        return agreeing_groups(self._ds_summed(rewards_per_func), self.num_generations,
                               self.dynamic_sampling.agree_atol)

    def _ds_log(self, name: str, value: float) -> None:
        self._metrics["train"][_PREFIX + name].append(float(value))

    @contextlib.contextmanager
    def _ds_muted_reward_logs(self) -> Iterator[None]:
        """Reward functions' log_metric / log_extra calls are discarded (re-draws are not the policy's
        raw behaviour, and extra columns must stay one value per kept row)."""
        metrics, extra = self._pending_metrics, self._pending_extra_logs
        self._pending_metrics, self._pending_extra_logs = type(metrics)(list), type(extra)(list)
        try:
            yield
        finally:
            self._pending_metrics, self._pending_extra_logs = metrics, extra

    # -------------------------------------------------------------------------------------- hooks

    def _calculate_rewards(self, inputs: list[dict], prompts: list, completions: list,
                           completion_ids_list: list[list[int]]) -> torch.Tensor:
        cached = self._ds_cached
        self._ds_cached = None
        if cached is not None and cached[0] is completions:
            rewards = cached[1]
        else:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._ds_rewards = rewards
        return rewards

    def _generate(self, prompts: list) -> tuple:
        out = list(super()._generate(prompts))
        if not (self._ds_active() and self.dynamic_sampling.mode == "resample"):
            return tuple(out)
        completion_ids, completions = out[1], out[3]
        inputs, g, n = self._ds_inputs, self.num_generations, len(prompts)
        if inputs is None or len(inputs) != n:
            raise RuntimeError("dynamic sampling: _generate called outside _generate_and_score_completions")
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids)  # first draw: logged
        agree = self._ds_agree(rewards)
        self._ds_log("agree_frac", agree.float().mean().item())
        resampled = recovered = 0
        for _ in range(self.dynamic_sampling.max_rounds):
            groups = agree.nonzero().flatten().tolist()
            if not groups:
                break
            rows = group_rows(groups, g)
            sub = super()._generate([prompts[r] for r in rows])
            with self._ds_muted_reward_logs():
                sub_rewards = super()._calculate_rewards([inputs[r] for r in rows], [prompts[r] for r in rows],
                                                         sub[3], sub[1])
            resampled += len(groups)
            sub_agree = self._ds_agree(sub_rewards)
            for j, grp in enumerate(groups):
                if sub_agree[j]:
                    continue
                dst, src = group_rows([grp], g), group_rows([j], g)
                _splice(out, sub, n, dst, src)
                rewards[dst] = sub_rewards[src]
                agree[grp] = False
                recovered += 1
        self._ds_log("resampled_groups", resampled)
        self._ds_log("recovered_groups", recovered)
        self._ds_drop = agree if self.dynamic_sampling.on_exhausted == "drop" else torch.zeros_like(agree)
        self._ds_cached = (out[3], rewards)
        return tuple(out)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._ds_inputs, self._ds_drop, self._ds_cached = inputs, None, None
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._ds_inputs = None
        if not self._ds_active():
            return output
        if self.dynamic_sampling.mode == "drop":
            drop = self._ds_agree(self._ds_rewards)
            self._ds_log("agree_frac", drop.float().mean().item())
        elif self._ds_drop is not None:
            drop = self._ds_drop
        else:  # a subclass generated without our _generate: nothing was decided, drop nothing
            drop = torch.zeros(output["completion_mask"].size(0) * self.accelerator.num_processes
                               // self.num_generations, dtype=torch.bool)
        self._ds_drop = None
        cutoff = self.dynamic_sampling.low_reward_cutoff
        if cutoff is not None:  # the final draw's rewards (re-sampled groups included)
            low = low_reward_groups(self._ds_summed(self._ds_rewards), self.num_generations, cutoff) & ~drop
            self._ds_log("low_reward_groups", int(low.sum().item()))
            drop = drop | low
        self._ds_log("dropped_groups", int(drop.sum().item()))
        if drop.any():
            output = self._ds_mask_groups(output, drop)
        return output

    def _ds_mask_groups(self, output: dict[str, Any], drop: torch.Tensor) -> dict[str, Any]:
        """Zero the loss mask of the dropped groups' local rows and recount ``num_items_in_batch``."""
        mask = output["completion_mask"]
        n_local = mask.size(0)
        global_rows = drop.repeat_interleave(self.num_generations)
        start = self.accelerator.process_index * n_local
        keep = (~global_rows[start:start + n_local]).to(mask.device, mask.dtype).unsqueeze(1)
        output["completion_mask"] = mask * keep
        loss_mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            loss_mask = loss_mask * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return output


class DynamicSamplingGRPOTrainer(DynamicSamplingMixin, GRPOTrainer):
    """:class:`~trl.GRPOTrainer` with dynamic sampling; extra keyword ``dynamic_sampling`` (config or dict)."""
