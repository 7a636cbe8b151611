"""ProcessBench metric with exact values."""

import pytest

from stepjudge.eval.metrics import harmonic_f1, processbench_summary, subset_scores


def test_subset_scores_exact():
    # 4 erroneous cases (labels 0,1,2,3), 2 hit exactly; 3 correct cases, 2 predicted -1.
    pairs = [(0, 0), (1, 1), (2, 1), (3, -1), (-1, -1), (-1, -1), (-1, 2)]
    s = subset_scores(pairs)
    assert s["n"] == 7 and s["n_error"] == 4 and s["n_correct"] == 3
    assert s["acc_error"] == pytest.approx(50.0)
    assert s["acc_correct"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))  # 57.142857...
    assert s["f1"] == pytest.approx(57.142857, abs=1e-5)


def test_earlier_or_later_index_is_wrong_and_none_never_matches():
    s = subset_scores([(2, 1), (2, 3), (2, None), (-1, None)])
    assert s["acc_error"] == 0.0 and s["acc_correct"] == 0.0 and s["f1"] == 0.0


def test_summary_average_is_mean_of_subset_f1s():
    recs = [
        {"subset": "math", "label": 1, "prediction": 1}, {"subset": "math", "label": -1, "prediction": 0},
        {"subset": "math", "label": -1, "prediction": -1},  # math: acc_err 100, acc_cor 50 -> F1 66.67
        {"subset": "gsm8k", "label": 0, "prediction": 0}, {"subset": "gsm8k", "label": -1, "prediction": -1},
    ]
    s = processbench_summary(recs)
    assert list(s) == ["gsm8k", "math", "average_f1"]  # benchmark order
    assert s["gsm8k"]["f1"] == pytest.approx(100.0)
    assert s["math"]["f1"] == pytest.approx(200 / 3)
    assert s["average_f1"] == pytest.approx((100 + 200 / 3) / 2)


def test_missing_class_gives_undefined_f1():
    s = processbench_summary([{"subset": "gsm8k", "label": 2, "prediction": 2}])
    assert s["gsm8k"]["acc_correct"] is None and s["gsm8k"]["f1"] is None and s["average_f1"] is None
    assert harmonic_f1(0.0, 0.0) == 0.0


def test_auroc_exact_values_with_ties():
    from stepjudge.eval.metrics import auroc

    assert auroc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auroc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([True, False], [0.5, 0.5]) == 0.5  # a tie counts half
    # positives 0.8, 0.4; negatives 0.6, 0.4: pairs (0.8>0.6) 1, (0.8>0.4) 1, (0.4<0.6) 0, (0.4=0.4) 0.5
    assert auroc([True, True, False, False], [0.8, 0.4, 0.6, 0.4]) == 2.5 / 4
    assert auroc([True, True], [0.1, 0.2]) is None
