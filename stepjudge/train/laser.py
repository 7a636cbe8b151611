"""LaSeR (Yang et al., ICLR 2026): GRPO with last-token self-rewarding, on the RL core.

After each *finished* response (one that ends in EOS) the policy reads one extra token, a reserved
special token z_c written right after the first EOS, and its log-probability there becomes the
self-reward ``r_s = beta_v * (log pi(z_c | x, y, EOS) - c_ref)`` (spec §2(b)). A class-weighted MSE
pulls r_s towards the verifiable reward r_v in {0, 1}; after a warm-up the group-normalised
self-reward advantage is mixed into GRPO's: ``A = (1 - tau) * A_v + tau * A_s``. At test time the
same one-token read scores a solution (:mod:`stepjudge.eval.self_verify`).

The maths lives here as pure functions on flat tensors (groups are ``group_size`` consecutive rows,
as TRL lays them out): :func:`self_reward_mse`, :func:`self_reward_advantages`,
:func:`filtered_groups`. The trainer is :class:`stepjudge.train.laser_trainer.LaserGRPOTrainer`.
"""

from __future__ import annotations

import torch

__all__ = ["class_weights", "filtered_groups", "group_advantages", "self_reward_advantages", "self_reward_mse"]

ADV_EPS = 1e-4  # TRL's GRPO adds this to the group std; mixed advantages use the same, so tau=0 is TRL's A_v


def class_weights(n_correct: float, n_incorrect: float) -> tuple[float, float]:
    """``(w_c, w_i) = (N / 2N_c, N / 2N_i)`` with ``N = N_c + N_i`` (LaSeR eq. 14).

    A class absent from the batch gets weight 0 (it has no rows to weigh); the present class keeps
    the formula's value (0.5), as the paper's formula gives.
    """
    total = n_correct + n_incorrect
    w_c = total / (2 * n_correct) if n_correct > 0 else 0.0
    w_i = total / (2 * n_incorrect) if n_incorrect > 0 else 0.0
    return float(w_c), float(w_i)


def self_reward_mse(r_s: torch.Tensor, r_v: torch.Tensor, finished: torch.Tensor, *,
                    counts: tuple[float, float] | None = None) -> torch.Tensor:
    """The self-reward loss before alpha: ``(1/B) sum_rows finished * w(r_v) * (r_s - r_v)^2``.

    ``r_s``, ``r_v``, ``finished`` are 1-D over the B rows of a (micro-)batch; a row is correct when
    ``r_v > 0.5``. Unfinished (truncated) rows add 0 but count in the mean B, as in the released
    code. ``counts = (N_c, N_i)`` are the finished correct / incorrect rows the class weights are
    computed from: the released code counts them over the whole rollout batch while averaging over the
    micro-batch, which is what the trainer passes; None counts them in these rows.
    """
    if not (r_s.shape == r_v.shape == finished.shape) or r_s.dim() != 1:
        raise ValueError(f"need three 1-D tensors of one length, got {tuple(r_s.shape)}, "
                         f"{tuple(r_v.shape)}, {tuple(finished.shape)}")
    if r_s.numel() == 0:
        return r_s.sum() * 0.0
    done = finished.bool()
    correct = r_v > 0.5
    if counts is None:
        counts = (float((done & correct).sum()), float((done & ~correct).sum()))
    w_c, w_i = class_weights(*counts)
    target = r_v.to(r_s.dtype)
    weight = torch.where(correct, torch.full_like(r_s, w_c), torch.full_like(r_s, w_i))
    sq = torch.where(done, weight * (r_s - target) ** 2, torch.zeros_like(r_s))  # where: no NaN leaks in
    return sq.sum() / r_s.numel()


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = ADV_EPS) -> torch.Tensor:
    """GRPO's group z-score ``(r - mean_g) / (std_g + eps)``, std unbiased (torch's, as TRL and verl);
    a one-sample group has mean 0 and std 1 (verl's convention)."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"need a 1-D tensor whose length is a multiple of {group_size}, got {tuple(rewards.shape)}")
    grouped = rewards.float().view(-1, group_size)
    if group_size == 1:
        mean, std = torch.zeros_like(grouped), torch.ones_like(grouped)
    else:
        mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + eps)).view(-1)


def _clamped_self_rewards(r_s: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """r_s clamped to [0, 1]; truncated rows get 0 (the released code's mixing input)."""
    return torch.where(finished.bool(), r_s.float().clamp(0.0, 1.0), torch.zeros_like(r_s, dtype=torch.float))


def filtered_groups(r_s: torch.Tensor, finished: torch.Tensor, group_size: int,
                    std_threshold: float) -> torch.Tensor:
    """Bool per group: True where the clamped self-rewards' std is <= ``std_threshold``, so that group
    keeps A_v (LaSeR's group-std filter T). One-sample groups have std 1 (never filtered)."""
    grouped = _clamped_self_rewards(r_s, finished).view(-1, group_size)
    std = grouped.std(dim=1) if group_size > 1 else torch.ones(grouped.size(0))
    return std <= std_threshold


def self_reward_advantages(r_v: torch.Tensor, r_s: torch.Tensor, finished: torch.Tensor, group_size: int,
                           tau: float, std_threshold: float) -> torch.Tensor:
    """LaSeR's mixed advantages ``(1 - tau) * A_v + tau * A_s`` (eq. 15), one per row.

    A_v is the group z-score of r_v; A_s that of r_s clamped to [0, 1] with truncated rows at 0. In a
    group whose clamped r_s has std <= ``std_threshold``, A_s := A_v (so that group's advantage is A_v).
    """
    if not (r_v.shape == r_s.shape == finished.shape):
        raise ValueError("r_v, r_s and finished must have one shape")
    a_v = group_advantages(r_v, group_size)
    a_s = group_advantages(_clamped_self_rewards(r_s, finished), group_size)
    keep_v = filtered_groups(r_s, finished, group_size, std_threshold).repeat_interleave(group_size)
    a_s = torch.where(keep_v, a_v, a_s)
    return (1.0 - tau) * a_v + tau * a_s
