"""Held-out judge scoring: exact metric values, first-error F1, and both protocols on a tiny model."""

import pytest
import torch

from stepjudge.eval.judge_heldout import (
    evaluate_judge_rows,
    first_error_f1,
    first_error_from_verdicts,
    judge_metrics,
    predicted_first_errors,
)
from stepjudge.judge.dataset import chunk_examples, to_discriminative_sft_rows, to_grpo_rows

torch.set_num_threads(1)
P, N = "Positive", "Negative"


def _rec(pid, chunks, labels, truth):
    return {"problem_id": pid, "problem": f"What is {pid}?", "sample_index": 0, "status": "annotated",
            "chunks": chunks, "labels": {"rel-effective": labels}, "truth": {"first_error": truth}}


RECORDS = [_rec("p0", ["1+1=2.", "2+2=5."], [1, 0], 1), _rec("p1", ["3*3=9.", "9-1=8."], [1, 1], -1)]


def test_judge_metrics_exact_values():
    m = judge_metrics([P, P, P, N, N], [P, N, P, N, None], unparsed_as=P)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (5, 3, 2)
    assert m["acc_positive"] == pytest.approx(200 / 3) and m["acc_negative"] == 50.0
    assert m["balanced_f1"] == pytest.approx(2 * (200 / 3) * 50 / (200 / 3 + 50))
    assert m["accuracy"] == 60.0 and m["unparsed_fraction"] == 0.2
    assert m["predicted_positive_fraction"] == 0.6
    # the same unparsed verdict counted as Negative fixes the negative case
    m2 = judge_metrics(["+", "+", "+", "-", "-"], [P, N, P, N, None], unparsed_as=N)
    assert m2["acc_negative"] == 100.0 and m2["balanced_f1"] == pytest.approx(80.0)
    one_class = judge_metrics([1, 1], [P, N])
    assert one_class["acc_negative"] is None and one_class["balanced_f1"] is None
    with pytest.raises(ValueError):
        judge_metrics([P], [])


def test_first_error_f1_exact_values():
    truths = [2, 0, -1, -1, {"truth": {"first_error": 1}}, {"truth_first_error": -1}]
    preds = [2, 1, -1, 0, None, -1]
    s = first_error_f1(truths, preds)
    assert (s["n"], s["n_error"], s["n_correct"]) == (6, 3, 3)
    assert s["acc_error"] == pytest.approx(100 / 3) and s["acc_correct"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * (100 / 3) * (200 / 3) / 100)
    assert first_error_from_verdicts([P, None, N, N]) == 2
    assert first_error_from_verdicts([P, None], unparsed_as=N) == 1
    assert first_error_from_verdicts([P, P]) == -1


def test_predicted_first_errors_groups_by_solution():
    preds = [{"problem_id": "a", "sample_index": 0, "chunk_index": 1, "verdict": N},
             {"problem_id": "a", "sample_index": 0, "chunk_index": 0, "verdict": P},
             {"problem_id": "b", "sample_index": 0, "chunk_index": 0, "verdict": P}]
    assert predicted_first_errors(preds) == {("a", 0): 1, ("b", 0): -1}


@pytest.fixture(scope="module")
def engine():
    from stepjudge.engines.hf import HFEngine

    return HFEngine("tiny-random")


def test_generative_protocol_on_tiny_model(engine):
    rows = to_grpo_rows(chunk_examples(RECORDS))
    assert len(rows) == 4
    res = evaluate_judge_rows(engine, rows, votes=2, max_tokens=4, seed=1)
    assert (res["n"], res["n_positive"], res["n_negative"]) == (4, 3, 1)
    assert len(res["predictions"]) == 4
    for p, row in zip(res["predictions"], rows, strict=True):
        assert p["label"] == row["label"] and p["verdict"] in (P, N) and len(p["raw"]) == 2
        assert p["chunk_index"] == row["chunk_index"]
    pos = sum(p["verdict"] == P for p in res["predictions"])
    assert res["predicted_positive_fraction"] == pos / 4
    assert res["unparsed_fraction"] == sum(p["unparsed"] for p in res["predictions"]) / 4
    hits = sum(p["verdict"] == p["label"] for p in res["predictions"])
    assert res["accuracy"] == 100 * hits / 4
    fe = predicted_first_errors(res["predictions"])
    s = first_error_f1(RECORDS, [fe[(r["problem_id"], 0)] for r in RECORDS])
    assert s["n"] == 2


def test_discriminative_protocol_on_tiny_model(engine):
    rows = to_discriminative_sft_rows(RECORDS)
    res = evaluate_judge_rows(engine, rows, protocol="discriminative", unparsed_as=N)
    assert (res["n"], res["n_positive"], res["n_negative"]) == (4, 3, 1)
    preds = res["predictions"]
    assert [(p["row"], p["chunk_index"], p["label"]) for p in preds] == [
        (0, 0, P), (0, 1, N), (1, 0, P), (1, 1, P)]
    assert all(len(p["raw"]) == 1 for p in preds)
    for p in preds:  # an unparsed answer is scored as unparsed_as
        assert p["verdict"] == (N if p["unparsed"] else {"+": P, "-": N}[p["raw"][0].strip()[0]])
    assert all("prompt" not in p for p in preds)  # the chats are not copied into the predictions
    with pytest.raises(ValueError, match="protocol"):
        evaluate_judge_rows(engine, rows, protocol="other")
    # P(+) renormalised over "+" and "-" at the PRM's answer token, and its AUROC
    import math

    from stepjudge.eval.metrics import auroc

    probs = evaluate_judge_rows(engine, rows, protocol="discriminative", probabilities=True)
    tok = engine.tokenizer
    ids = [tok("+", add_special_tokens=False).input_ids[0], tok("-", add_special_tokens=False).input_ids[0]]
    chats = [rows[0]["messages"][:1], rows[0]["messages"][:3], rows[1]["messages"][:1], rows[1]["messages"][:3]]
    want = [math.exp(a) / (math.exp(a) + math.exp(b)) for a, b in engine.next_token_logprobs(chats, ids)]
    assert [p["p_positive"] for p in probs["predictions"]] == pytest.approx(want)
    assert probs["auroc"] == auroc([p["label"] == P for p in probs["predictions"]], want)


def test_probabilities_auroc_and_train_calibrated_cut(engine):
    from stepjudge.eval.judge_heldout import calibrated_metrics
    from stepjudge.eval.metrics import auroc
    from stepjudge.judge.dataset import to_no_cot_rows
    from stepjudge.judge.scoring import calibrate_threshold, positive_probabilities

    rows = to_no_cot_rows(chunk_examples(RECORDS))
    res = evaluate_judge_rows(engine, rows, max_tokens=2, response_prefix="\\boxed{", probabilities=True)
    probs = positive_probabilities(engine, [r["prompt"] for r in rows])
    assert [p["p_positive"] for p in res["predictions"]] == pytest.approx(probs)
    assert res["auroc"] == auroc([r["label"] == P for r in rows], probs)
    train = rows[:2] + rows[3:]  # stand-in "train" rows with both classes
    cal = calibrated_metrics(engine, train, res["predictions"])
    t_probs = positive_probabilities(engine, [r["prompt"] for r in train])
    assert cal["threshold"] == pytest.approx(calibrate_threshold(t_probs, [r["label"] == P for r in train]))
    expected = judge_metrics([p["label"] for p in res["predictions"]],
                             [P if p["p_positive"] >= cal["threshold"] else N for p in res["predictions"]])
    assert {k: cal[k] for k in expected} == expected


def test_reasoned_probabilities_read_after_the_judges_own_analysis(engine):
    """A judge that reasons first: P(Positive) at \\boxed{ after its greedy analysis (cut at its last
    \\boxed{, or at its end), so CoT judges get an AUROC too."""
    from stepjudge.eval.metrics import auroc
    from stepjudge.judge.scoring import positive_probabilities

    rows = to_grpo_rows(chunk_examples(RECORDS))
    res = evaluate_judge_rows(engine, rows, max_tokens=6, probabilities=True)
    contexts = []
    for row, pred in zip(rows, res["predictions"], strict=True):
        text = pred["raw"][0]
        cut = text.rfind("\\boxed{")
        contexts.append(engine.render(row["prompt"]) + (text[:cut] if cut >= 0 else text))
    expected = positive_probabilities(engine, contexts, "\\boxed{")
    assert [p["p_positive"] for p in res["predictions"]] == pytest.approx(expected)
    assert all(0.0 <= p <= 1.0 for p in expected)
    assert res["auroc"] == auroc([r["label"] == P for r in rows], expected)
    # an analysis that already wrote \\boxed{Negative} is read at that \\boxed{, not after it
    pred = {"raw": ["check 2 \\boxed{Negative}"]}
    from stepjudge.eval.judge_heldout import _reasoned_probabilities

    got = _reasoned_probabilities(engine, rows[:1], [pred])
    want = positive_probabilities(engine, [engine.render(rows[0]["prompt"]) + "check 2 "], "\\boxed{")
    assert got == pytest.approx(want)


def test_first_error_scores_against_arith_truth():
    from stepjudge.eval.judge_heldout import first_error_scores

    preds = [{"problem_id": "a", "sample_index": 0, "chunk_index": 0, "verdict": P, "p_positive": 0.9},
             {"problem_id": "a", "sample_index": 0, "chunk_index": 1, "verdict": P, "p_positive": 0.6},
             {"problem_id": "b", "sample_index": 0, "chunk_index": 0, "verdict": N, "p_positive": 0.7},
             {"problem_id": "c", "sample_index": 1, "chunk_index": 0, "verdict": P, "p_positive": 0.95}]
    ann = [{"problem_id": "a", "sample_index": 0, "status": "annotated", "truth": {"first_error": 1}},
           {"problem_id": "b", "sample_index": 0, "status": "annotated", "truth": {"first_error": -1}},
           {"problem_id": "c", "sample_index": 1, "status": "annotated", "truth": {"first_error": -1}},
           {"problem_id": "d", "sample_index": 0, "status": "skipped"}]
    greedy = first_error_scores(preds, ann)  # predicted: a -1 (miss), b 0 (miss), c -1 (hit)
    assert greedy["solutions"] == 3 and greedy["n_error"] == 1 and greedy["n_correct"] == 2
    assert (greedy["acc_error"], greedy["acc_correct"], greedy["f1"]) == (0.0, 50.0, 0.0)
    cut = first_error_scores(preds, ann, threshold=0.65)  # a 1 (hit), b -1 (hit), c -1 (hit)
    assert (cut["acc_error"], cut["acc_correct"], cut["f1"]) == (100.0, 100.0, 100.0)


def test_metrics_against_truth_skip_rows_without_truth_and_score_the_rest_exactly():
    from stepjudge.eval.judge_heldout import metrics_against_truth

    rows = [{"truth": "Positive"}, {"truth": "Negative"}, {"truth": None}, {"truth": "Negative"}, {}]
    preds = [{"verdict": v, "p_positive": p} for v, p in
             [("Positive", 0.9), ("Positive", 0.8), ("Negative", 0.1), ("Negative", 0.2), ("Positive", 0.5)]]
    m = metrics_against_truth(rows, preds)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (3, 1, 2)
    assert (m["acc_positive"], m["acc_negative"]) == (100.0, 50.0)
    assert m["balanced_f1"] == pytest.approx(2 * 100 * 50 / 150)
    assert m["auroc"] == 1.0  # the true Positive outranks both true Negatives
    assert metrics_against_truth([{}], [{"verdict": "Positive"}]) is None
