"""Critique-RL's evaluation metrics, as the released code computes them (percent; c->i / i->c over the whole set)."""

import pytest

from stepjudge.eval.critique import majority_answer, mv_at_k, pass_at_k, refinement_metrics


def test_refinement_metrics_exact():
    before = [True, True, False, False, False]
    after = [True, False, True, True, False]
    verdicts = [True, None, False, True, None]
    m = refinement_metrics(before, after, verdicts)
    assert m == pytest.approx({"acc": 40.0, "acc_refine": 60.0, "delta": 20.0, "delta_c2i": 20.0,
                               "delta_i2c": 40.0, "acc_dis": 100 * 2 / 3})
    assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
    assert refinement_metrics([True], [True], [None])["acc_dis"] is None
    with pytest.raises(ValueError):
        refinement_metrics([], [], [])
    with pytest.raises(ValueError):
        refinement_metrics([True], [True, False], [None])


def test_majority_answer_ignores_none_and_breaks_ties_to_the_first_seen():
    assert majority_answer(["2", "3", "3", None, "2"]) == "2"  # 2 and 3 tie at two votes: 2 came first
    assert majority_answer([None, None, "5"]) == "5"  # missing answers never win, however many
    assert majority_answer(["1", "4", "4"]) == "4"
    assert majority_answer([None, None]) is None and majority_answer([]) is None


def test_mv_and_pass_at_k_on_the_first_k_samples():
    g1 = [("4", False), ("7", True), ("7", True), ("4", False)]
    g2 = [(None, False), ("9", True), (None, False), ("1", False)]
    # g1: k=1 "4" wrong; k=2 tie 4/7 -> "4" wrong; k=3 "7" right; k=4 tie 2-2 -> "4" wrong
    # g2: k=1 no answer -> wrong; k=2..4 "9" right (k=4: 9/1 tie -> 9, seen first)
    assert [mv_at_k([g1, g2], k) for k in (1, 2, 3, 4)] == [0.0, 50.0, 100.0, 50.0]
    assert [pass_at_k([g1, g2], k) for k in (1, 2, 3, 4)] == [0.0, 100.0, 100.0, 100.0]
    assert pass_at_k([g1], 4) == 100.0 and mv_at_k([g1], 4) == 0.0  # an oracle pick vs the vote
    # the voted answer is right when any of the k samples with it was graded correct
    assert mv_at_k([[("x", False), ("x", True)]], 2) == 100.0 and mv_at_k([[("x", False), ("x", True)]], 1) == 0.0
    with pytest.raises(ValueError):
        mv_at_k([g1], 5)
    with pytest.raises(ValueError):
        pass_at_k([g1], 0)
    with pytest.raises(ValueError):
        mv_at_k([], 1)
