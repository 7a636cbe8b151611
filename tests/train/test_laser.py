"""LaSeR's maths (spec §2(b)), checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from stepjudge.train.laser import (
    class_weights,
    filtered_groups,
    group_advantages,
    self_reward_advantages,
    self_reward_mse,
)

T = torch.tensor


def test_class_weights_follow_eq_14():
    assert class_weights(1, 2) == (1.5, 0.75)  # N = 3: w_c = 3 / 2, w_i = 3 / 4
    assert class_weights(4, 4) == (1.0, 1.0)
    assert class_weights(0, 3) == (0.0, 0.5)  # absent class: weight 0; the other keeps N / 2N_i
    assert class_weights(0, 0) == (0.0, 0.0)


def test_mse_weights_finished_rows_and_averages_over_all_rows():
    r_s, r_v, fin = T([0.8, 0.2, 0.5, 0.9]), T([1.0, 0.0, 0.0, 1.0]), T([True, True, True, False])
    # finished: one correct, two incorrect -> w_c = 1.5, w_i = 0.75; the truncated row adds 0, counts in /4
    expected = (1.5 * 0.2 ** 2 + 0.75 * 0.2 ** 2 + 0.75 * 0.5 ** 2 + 0.0) / 4
    assert self_reward_mse(r_s, r_v, fin).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.069375)
    # class counts from the whole rollout batch (3 correct, 1 incorrect): w_c = 4/6, w_i = 2
    got = self_reward_mse(r_s, r_v, fin, counts=(3, 1)).item()
    assert got == pytest.approx((2 / 3 * 0.04 + 2 * 0.04 + 2 * 0.25) / 4, abs=1e-7)


def test_mse_ignores_a_truncated_row_even_when_its_reading_is_not_finite():
    r_s = T([float("nan"), 0.5])
    loss = self_reward_mse(r_s, T([1.0, 1.0]), T([False, True]))
    assert loss.item() == pytest.approx(0.5 * 0.25 / 2)  # N_c = 1 -> w_c = 0.5; mean over 2 rows


def test_mse_has_the_gradient_of_the_formula():
    r_s = T([0.8, 0.2], requires_grad=True)
    self_reward_mse(r_s, T([1.0, 0.0]), T([True, True])).backward()
    # w_c = w_i = 1; d/dr_s of (r_s - r_v)^2 / 2 = (r_s - r_v)
    assert r_s.grad.tolist() == pytest.approx([-0.2, 0.2])


def test_mse_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="1-D"):
        self_reward_mse(T([0.1, 0.2]), T([1.0]), T([True, True]))
    assert self_reward_mse(T([]), T([]), T([], dtype=torch.bool)).item() == 0.0


def test_group_advantages_are_trls_z_scores():
    r = T([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    std = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0)
    expected = [(2 / 3) / (std + 1e-4), (-1 / 3) / (std + 1e-4), (-1 / 3) / (std + 1e-4), 0.0, 0.0, 0.0]
    assert group_advantages(r, 3).tolist() == pytest.approx(expected, rel=1e-6)
    assert group_advantages(T([0.3, 0.7]), 1).tolist() == pytest.approx([0.3 / 1.0001, 0.7 / 1.0001])


def test_mixed_advantages_by_hand():
    # group 1: r_s clamped -> (0.9, 0.2, 0) (the third is truncated); group 2: r_s spread < T -> A_v kept
    r_v = T([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    r_s = T([0.9, 0.2, 1.5, 0.55, 0.50, 0.52])
    fin = T([True, True, False, True, True, True])
    got = self_reward_advantages(r_v, r_s, fin, group_size=3, tau=0.1, std_threshold=0.1)

    s_v = math.sqrt(1 / 3) + 1e-4
    a_v1 = [(2 / 3) / s_v, (-1 / 3) / s_v, (-1 / 3) / s_v]
    m = 1.1 / 3
    s_s = math.sqrt(((0.9 - m) ** 2 + (0.2 - m) ** 2 + (0 - m) ** 2) / 2) + 1e-4
    a_s1 = [(0.9 - m) / s_s, (0.2 - m) / s_s, (0.0 - m) / s_s]
    a_v2 = [(1 / 3) / s_v, (1 / 3) / s_v, (-2 / 3) / s_v]
    expected = [0.9 * v + 0.1 * s for v, s in zip(a_v1, a_s1, strict=True)] + a_v2
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    assert filtered_groups(r_s, fin, 3, 0.1).tolist() == [False, True]
    # tau = 0 is plain GRPO
    assert self_reward_advantages(r_v, r_s, fin, 3, 0.0, 0.1).tolist() == pytest.approx(a_v1 + a_v2, rel=1e-6)


def test_self_rewards_are_clamped_before_grouping():
    # r_s above 1 and below 0 clamp to 1 and 0: same as giving 1 and 0
    r_v, fin = T([1.0, 0.0]), T([True, True])
    a = self_reward_advantages(r_v, T([3.0, -2.0]), fin, 2, 0.5, 0.1)
    b = self_reward_advantages(r_v, T([1.0, 0.0]), fin, 2, 0.5, 0.1)
    assert a.tolist() == b.tolist()
