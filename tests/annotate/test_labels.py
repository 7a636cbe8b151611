"""assign_labels: the paper's worked examples and every edge case, with exact values."""

import pytest

from stepjudge.annotate.labels import all_labels, assign_labels, best_of_n_value, first_negative


def test_paper_examples_rel_ratio():
    # 30% -> 70% is progress; 80% -> 20% is a mistake (StepWiser §3.2).
    assert assign_labels([0.7], q_init=0.3, scheme="rel-ratio") == [1]
    assert assign_labels([0.2], q_init=0.8, scheme="rel-ratio") == [0]
    # Abs-Q calls both positive: the 20% chunk can still be finished correctly.
    assert assign_labels([0.7], q_init=0.3, scheme="abs-q") == [1]
    assert assign_labels([0.2], q_init=0.8, scheme="abs-q") == [1]


def test_abs_q():
    assert assign_labels([0.0, 0.0625, 1.0, 0.0], q_init=0.5, scheme="abs-q") == [0, 1, 1, 0]


def test_rel_ratio_threshold_is_strict_and_chained():
    # 0.5 -> 0.35 is ratio 0.7 exactly: not > 0.7, so negative; then 0.35 -> 0.35 (1.0) positive.
    assert assign_labels([0.35, 0.35], q_init=0.5, scheme="rel-ratio", gamma=0.7) == [0, 1]
    assert assign_labels([0.36], q_init=0.5, scheme="rel-ratio", gamma=0.7) == [1]
    assert assign_labels([0.4], q_init=0.5, scheme="rel-ratio", gamma=0.8) == [0]  # 0.8 not > 0.8


def test_rel_ratio_zero_before():
    assert assign_labels([0.0, 0.25, 0.25], q_init=0.0, scheme="rel-ratio") == [0, 1, 1]
    assert assign_labels([0.0, 0.0], q_init=0.5, scheme="rel-ratio") == [0, 0]


def test_rel_effective_exact():
    # n=4, alpha=0.8: Qmu(0.5)=0.9375, Qmu(0.25)=1-0.75^4=0.68359375.
    assert best_of_n_value(0.5, 4) == 0.9375
    assert best_of_n_value(0.25, 4) == pytest.approx(0.68359375)
    # 0.5 -> 0.25: 0.25 + 0.8*(0.68359375-0.9375) = 0.046875 > 0 -> positive
    assert assign_labels([0.25], q_init=0.5, scheme="rel-effective") == [1]
    # 1.0 -> 0.0625: Qmu(0.0625)=1-0.9375^4=0.2275390625; 0.0625 + 0.8*(0.2275390625-1) = -0.5555 -> negative
    assert assign_labels([0.0625], q_init=1.0, scheme="rel-effective") == [0]
    # 0 -> 0: effective reward exactly 0 -> negative ("= 0" read as "<= 0")
    assert assign_labels([0.0], q_init=0.0, scheme="rel-effective") == [0]
    # with alpha=0 it reduces to Abs-Q
    assert assign_labels([0.0625, 0.0], q_init=1.0, scheme="rel-effective", alpha=0.0) == [1, 0]


def test_validation_and_helpers():
    with pytest.raises(ValueError, match="unknown label scheme"):
        assign_labels([0.5], q_init=0.5, scheme="abs")
    with pytest.raises(ValueError, match=r"q\[1\] = 1.5"):
        assign_labels([0.5, 1.5], q_init=0.5, scheme="abs-q")
    assert assign_labels([], q_init=0.5, scheme="abs-q") == []
    labs = all_labels([0.75, 0.0], q_init=0.5)
    assert labs == {"abs-q": [1, 0], "rel-ratio": [1, 0], "rel-effective": [1, 0]}
    assert first_negative([1, 1, 0, 0]) == 2 and first_negative([1, 1]) == -1
