"""LaSeR's trainer: TRL 1.16's :class:`~trl.GRPOTrainer` with the self-reward slot, loss and mixing.

Hooks used (TRL's own; nothing of TRL is copied):

* ``_generate``: after sampling, z_c is appended to every *finished* completion (one whose last
  token is EOS/pad; TRL already cuts completions after the first EOS), so the slot right after the
  first EOS holds z_c. TRL's ``tool_mask`` is 0 there: the slot is attended and scored but carries
  no policy-gradient loss and is not counted in ``num_items_in_batch``.
* ``_calculate_rewards``: reward functions see the completion ids without z_c; the gathered rewards
  (r_v, summed with TRL's weights) are kept for the MSE targets and the mixing.
* ``_generate_and_score_completions``: per-row MSE inputs (slot, finished, r_v, the rollout's class
  counts) join TRL's batch; once mixing is on, r_s is read *with z_c in place* (TRL's old
  log-probs when it computed them, else one no-grad forward) and the advantages become
  :func:`~stepjudge.train.laser.self_reward_advantages`.
* ``_compute_loss``: the log-probs TRL computes for its policy loss (same forward) are captured,
  r_s read at the slot, and ``alpha * MSE / accumulation`` added (the policy loss is already scaled
  for gradient accumulation, ``loss_is_scaled_for_ga``).

``last_rollout`` / ``last_loss_batch`` keep the tensors of the latest rollout and micro-batch, so a
caller (or a test) can recompute the logged values from the pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from stepjudge.train.laser import filtered_groups, self_reward_advantages, self_reward_mse

__all__ = ["LaserGRPOTrainer", "LaserSettings"]

_KEYS = ("laser_slot", "laser_finished", "laser_r_v", "laser_counts")


@dataclass(frozen=True)
class LaserSettings:
    """The trainer's LaSeR knobs (from :class:`~stepjudge.train.laser_run.LaserConfig`)."""

    z_c: int
    c_ref: float
    beta_v: float = 0.1
    alpha: float = 0.1
    tau: float = 0.1
    std_threshold: float = 0.1
    warmup_reasoning: int = 0
    warmup_self_reward: int = 0
    self_reward: bool = True


class LaserGRPOTrainer(GRPOTrainer):
    """GRPO + LaSeR self-rewarding; extra keyword ``laser`` (:class:`LaserSettings`)."""

    def __init__(self, *args: Any, laser: LaserSettings, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.laser = laser
        if laser.self_reward and (self.tools or self.environment_factories is not None or self.rollout_func):
            raise ValueError("LaSeR's z_c slot does not support tools, environments or rollout_func")
        self._finished_local: list[bool] | None = None
        self._rewards: torch.Tensor | None = None
        self._capture: list[torch.Tensor] | None = None
        self.last_rollout: dict[str, Any] | None = None
        self.last_loss_batch: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------- schedule
    def _update(self) -> int:
        """1-based number of the optimizer update being computed (verl's ``global_steps``)."""
        return self.state.global_step + 1

    def mse_active(self) -> bool:
        return self.laser.self_reward and self.model.training and self._update() > self.laser.warmup_reasoning

    def mixing_active(self) -> bool:
        w = self.laser.warmup_reasoning + self.laser.warmup_self_reward
        return self.laser.self_reward and self.model.training and self._update() > w and self.laser.tau > 0

    def _log(self, name: str, value: float) -> None:
        self._metrics["train" if self.model.training else "eval"][f"laser/{name}"].append(float(value))

    # -------------------------------------------------------------------------------- hooks
    def _generate(self, prompts: list) -> tuple:
        out = list(super()._generate(prompts))
        if not self.laser.self_reward:
            return tuple(out)
        completion_ids, tool_mask, logprobs = out[1], out[2], out[4]
        ends = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        finished = [bool(ids) and ids[-1] in ends for ids in completion_ids]
        mask = tool_mask if tool_mask is not None else [[1] * len(ids) for ids in completion_ids]
        for i, done in enumerate(finished):
            if done:
                completion_ids[i] = [*completion_ids[i], self.laser.z_c]
                mask[i] = [*mask[i], 0]
                if logprobs is not None:
                    logprobs[i] = [*logprobs[i], float("nan")]  # not sampled: no IS correction there
        out[2] = mask
        self._finished_local = finished
        return tuple(out)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._finished_local is not None:
            completion_ids_list = [ids[:-1] if done else ids
                                   for ids, done in zip(completion_ids_list, self._finished_local, strict=True)]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.laser.self_reward:
            return super()._generate_and_score_completions(inputs)
        masking = self.mask_truncated_completions  # TRL would take z_c for a truncation: mask here instead
        self.mask_truncated_completions = False
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self.mask_truncated_completions = masking
        device = output["completion_ids"].device
        finished = torch.tensor(self._finished_local, dtype=torch.bool, device=device)
        self._finished_local = None
        if masking:
            keep = finished.to(output["completion_mask"].dtype).unsqueeze(1)
            output["completion_mask"] = output["completion_mask"] * keep
            output["tool_mask"] = output["tool_mask"] * keep
            output["num_items_in_batch"] = self.accelerator.gather(
                (output["completion_mask"] * output["tool_mask"]).sum()).sum()
        # z_c is the last attended completion token of a finished row: its slot is the length minus one
        slot = output["completion_mask"].sum(dim=1) - finished.long()
        r_v_all = (self._rewards * self.reward_weights.to(self._rewards.device).unsqueeze(0)).nansum(dim=1)
        fin_all = self.accelerator.gather(finished.int()).bool()
        correct = r_v_all.to(device) > 0.5
        counts = torch.stack([(fin_all & correct).sum(), (fin_all & ~correct).sum()]).float()
        n = finished.numel()
        start = self.accelerator.process_index * n
        output.update(laser_slot=slot, laser_finished=finished, laser_r_v=r_v_all[start:start + n].to(device),
                      laser_counts=counts.unsqueeze(0).expand(n, 2).clone())
        self._log("finished_share", fin_all.float().mean().item())
        if self.mixing_active():
            r_s = self._rollout_self_rewards(output)
            r_s_all = self.accelerator.gather(r_s.float())
            g = self.num_generations
            adv = self_reward_advantages(r_v_all.to(device), r_s_all, fin_all, g, self.laser.tau,
                                         self.laser.std_threshold)
            output["advantages"] = adv[start:start + n]
            filt = filtered_groups(r_s_all, fin_all, g, self.laser.std_threshold)
            self._log("filtered_group_share", filt.float().mean().item())
            self.last_rollout = {"r_v": r_v_all.to(device), "r_s": r_s_all, "finished": fin_all,
                                 "advantages": adv, "filtered": filt}
        else:
            self.last_rollout = {"r_v": r_v_all.to(device), "finished": fin_all, "advantages": None}
        self._log("mixing_active", float(self.mixing_active()))
        return output

    def _rollout_self_rewards(self, output: dict[str, Any]) -> torch.Tensor:
        """r_s of the local rows at rollout time, z_c in place (not the released code's z_c-less read)."""
        logps = output.get("old_per_token_logps")
        if logps is None:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attn = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, attn, output["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size)
        return self._read_r_s(logps, output["laser_slot"], output["laser_finished"])

    def _read_r_s(self, logps: torch.Tensor, slot: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        lp = logps.gather(1, slot.clamp(0, logps.size(1) - 1).unsqueeze(1)).squeeze(1)
        r_s = self.laser.beta_v * (lp - self.laser.c_ref)
        return torch.where(finished, r_s, torch.zeros_like(r_s))

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._capture is not None:
            self._capture.append(out[0])
        return out

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        if not self.laser.self_reward or "laser_slot" not in inputs:
            return super()._compute_loss(model, inputs)
        self._capture = []
        try:
            loss = super()._compute_loss(model, inputs)
            logps = self._capture[0]  # the policy-loss forward's log-probs, z_c slot included
        finally:
            self._capture = None
        finished, r_v = inputs["laser_finished"], inputs["laser_r_v"]
        counts = inputs["laser_counts"][0].tolist()
        r_s = self._read_r_s(logps, inputs["laser_slot"], finished)
        mse = self_reward_mse(r_s, r_v.to(r_s.dtype), finished, counts=(counts[0], counts[1]))
        added = torch.zeros((), device=loss.device)
        if self.mse_active():
            added = self.laser.alpha * mse / self.current_gradient_accumulation_steps
            loss = loss + added
        self.last_loss_batch = {"r_s": r_s.detach(), "r_v": r_v, "finished": finished, "counts": tuple(counts),
                                "mse": mse.detach(), "added_loss": added.detach()}
        self._log("mse", self.accelerator.gather(mse.detach()).mean().item())
        self._log_accuracy(r_s.detach(), r_v, finished)
        return loss

    def _log_accuracy(self, r_s: torch.Tensor, r_v: torch.Tensor, finished: torch.Tensor) -> None:
        """Self-reward accuracy (r_s > 0.5 vs r_v) and mean r_s per class, over finished rows (all ranks)."""
        correct = r_v > 0.5
        pred = r_s > 0.5
        stats = torch.stack([
            (finished & (pred == correct)).sum(), finished.sum(),
            torch.where(finished & correct, r_s, 0.0).sum(), (finished & correct).sum(),
            torch.where(finished & ~correct, r_s, 0.0).sum(), (finished & ~correct).sum()]).float()
        s = self.accelerator.reduce(stats, reduction="sum").tolist()
        if s[1]:
            self._log("self_reward_accuracy", s[0] / s[1])
        if s[3]:
            self._log("r_s_correct", s[2] / s[3])
        if s[5]:
            self._log("r_s_incorrect", s[4] / s[5])
