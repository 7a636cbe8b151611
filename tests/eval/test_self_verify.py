"""Self-verification metrics and self-reward-weighted voting, on hand-worked cases."""

from __future__ import annotations

import pytest

from stepjudge.eval.self_verify import (
    calibration_bins,
    expected_calibration_error,
    self_verification_f1,
    vote_curves,
    weighted_majority_vote,
)


def test_f1_is_the_harmonic_mean_of_class_accuracies_in_percent():
    scores = [0.9, 0.6, 0.4, 0.2, 0.7, 0.8]
    correct = [True, True, True, False, False, False]
    got = self_verification_f1(scores, correct)
    assert got["acc_correct"] == pytest.approx(200 / 3)  # 0.9, 0.6 > 0.5; 0.4 is not
    assert got["acc_incorrect"] == pytest.approx(100 / 3)  # only 0.2 <= 0.5
    assert got["f1"] == pytest.approx(2 * (200 / 3) * (100 / 3) / 100)
    assert (got["n_correct"], got["n_incorrect"]) == (3, 3)


def test_f1_threshold_is_strict_and_configurable():
    assert self_verification_f1([0.5], [True])["acc_correct"] == 0.0  # 0.5 is not > 0.5
    assert self_verification_f1([0.5], [False])["acc_incorrect"] == 100.0
    assert self_verification_f1([0.5], [True], threshold=0.4)["acc_correct"] == 100.0
    one_class = self_verification_f1([0.9], [True])
    assert one_class["acc_incorrect"] is None and one_class["f1"] is None


def test_weighted_vote_sums_clipped_scores():
    # without clipping "a" (3.0) would win; clipped it has 1.0 against b's 0.6 + 0.5
    assert weighted_majority_vote(["a", "b", "b"], [3.0, 0.6, 0.5]) == "b"
    # a negative score counts 0; None answers are ignored whatever their score
    assert weighted_majority_vote(["3", "5", None, "5", "3"], [0.9, 0.4, 1.0, 0.3, -0.2]) == "3"
    assert weighted_majority_vote([None, None], [1.0, 1.0]) is None
    assert weighted_majority_vote([], []) is None


def test_weighted_vote_ties_go_to_the_first_answer():
    assert weighted_majority_vote(["x", "y"], [0.5, 0.5]) == "x"
    assert weighted_majority_vote(["y", "x"], [0.5, 0.5]) == "y"
    assert weighted_majority_vote(["y", "x", "x"], [0.0, 0.0, 0.0]) == "y"
    with pytest.raises(ValueError):
        weighted_majority_vote(["a"], [])


def test_ece_by_hand():
    scores, correct = [0.05, 0.15, 0.95, 0.85, 1.0], [False, True, True, False, True]
    bins = calibration_bins(scores, correct)
    assert [(b["lo"], b["n"]) for b in bins] == [(0.0, 1), (0.1, 1), (0.8, 1), (0.9, 2)]
    assert bins[-1]["confidence"] == pytest.approx(0.975) and bins[-1]["accuracy"] == 1.0
    # (0.05 + 0.85 + 0.85 + 2 * 0.025) / 5
    assert expected_calibration_error(scores, correct) == pytest.approx(0.36)
    assert expected_calibration_error([], []) is None


def test_vote_curves_with_all_samples():
    groups = [{"answers": ["1", "2", "2"], "scores": [0.9, 0.1, 0.2], "correct": [True, False, False]},
              {"answers": ["4", "4", None], "scores": [0.1, 0.1, 0.9], "correct": [True, True, False]}]
    got = vote_curves(groups, [1, 3], draws=8, seed=0)
    assert got["k"] == [1, 3]
    assert got["weighted"][1] == 100.0 and got["majority"][1] == 50.0  # weighted picks "1" in group 1
    assert got["pass@1"] == [50.0, 50.0]
    assert got["weighted"][0] == got["majority"][0]  # one sample: both votes take it
