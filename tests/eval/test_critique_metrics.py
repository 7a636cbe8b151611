"""Critique-RL's evaluation metrics, as the released code computes them (percent; c->i / i->c over the whole set)."""

import pytest

from stepjudge.eval.critique import refinement_metrics


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
