"""The top-up's re-labelling: only zero prefixes change, Q̂ = successes / rollouts, labels follow the schemes."""
from __future__ import annotations

import pytest
from experiment_modules import import_experiment


@pytest.fixture(scope="module")
def topup():
    yield from import_experiment("topup_zero_rollouts")


def _record(successes, labels, first_error, pid="p1", si=0):
    m = 4
    q = [w / m for w in successes]
    return {"problem_id": pid, "sample_index": si, "status": "annotated", "chunks": ["a"] * (len(successes) - 1),
            "rollout_successes": successes, "q_init": q[0], "q": q[1:], "rollout": {"m": m},
            "labels": {"rel-effective": labels}, "truth": {"first_error": first_error}}


def test_zero_prefixes_lists_only_prefixes_without_a_success(topup):
    recs = [_record([2, 0, 1], [0, 1], -1), _record([0, 0, 0], [0, 0], 0, si=1),
            {"problem_id": "p2", "sample_index": 0, "status": "skipped"}]
    assert topup.zero_prefixes(recs) == [("p1", 0, 1), ("p1", 1, 0), ("p1", 1, 1), ("p1", 1, 2)]


def test_relabel_pools_rollouts_per_prefix_and_recomputes_every_scheme(topup):
    rec = _record([0, 0, 0], [0, 0], 1)
    new = topup.relabel(rec, {0: 1, 1: 2}, 4, gamma=0.7, alpha=0.8, n=4)
    assert new["rollout_successes"] == [1, 2, 0]
    assert new["rollouts_used"] == [8, 8, 4]
    assert new["q_init"] == 0.125 and new["q"] == [0.25, 0.0]
    assert new["rollouts"] == 20
    # Q rose after chunk 1 (0.125 -> 0.25): Positive under every scheme; chunk 2 falls to 0: Negative
    assert new["labels"] == {"abs-q": [1, 0], "rel-ratio": [1, 0], "rel-effective": [1, 0]}
    assert new["topup"] == {"extra": 4, "prefixes": [0, 1]}
    assert rec["rollout_successes"] == [0, 0, 0]  # the input record is not modified


def test_truth_agreement_counts_chunks_up_to_the_first_error(topup):
    recs = [_record([1, 1, 1], [1, 0], -1),          # both right: one Positive right, one Negative right
            _record([1, 0, 0], [0, 0], 0, si=1),     # first chunk wrong; the second has no truth
            _record([1, 1, 0], [1, 1], 1, si=2)]     # right, then wrong labelled Positive
    got = topup.truth_agreement(recs, "rel-effective")
    assert got["label1_truth1"] == 2 and got["label0_truth1"] == 1
    assert got["label0_truth0"] == 1 and got["label1_truth0"] == 1
    assert got["negative_precision"] == 0.5 and got["positive_precision"] == pytest.approx(2 / 3)
