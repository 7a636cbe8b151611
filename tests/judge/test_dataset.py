"""Judge dataset builder: examples, split, balance, length filter, trainer formats, SFT masking."""

import json

import pytest

from stepjudge.errors import DataError
from stepjudge.judge.dataset import (
    JudgeDatasetConfig,
    balance_classes,
    build_judge_datasets,
    chunk_examples,
    class_counts,
    load_annotations,
    split_by_problem,
    stepwise_verdict_only_messages,
    to_discriminative_sft_rows,
    to_grpo_rows,
    to_no_cot_rows,
    write_datasets,
)


def _rec(pid, si, chunks, labels, truth=None):
    r = {"problem_id": pid, "problem": f"Problem {pid}?", "sample_index": si, "status": "annotated",
         "chunks": chunks, "labels": {"abs-q": [1] * len(chunks), "rel-ratio": labels,
                                      "rel-effective": labels}}
    if truth is not None:
        r["truth"] = {"first_error": truth, "reason": "x"}
    return r


# 4 problems, 12 chunks under rel-effective: 8 positive, 4 negative; one skipped solution.
RECORDS = [
    _rec("p0", 0, ["a0", "a1", "a2"], [1, 1, 0], truth=2),
    _rec("p0", 1, ["b0"], [1]),
    _rec("p1", 0, ["c0", "c1"], [0, 1]),
    _rec("p2", 0, ["d0", "d1", "d2"], [1, 1, 1]),
    _rec("p3", 0, ["e0", "e1", "e2"], [0, 1, 0]),
    {"problem_id": "p3", "problem": "Problem p3?", "sample_index": 1, "status": "skipped",
     "reason": "chunk format"},
]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def ann(tmp_path):
    return _write(tmp_path / "ann.jsonl", RECORDS)


def test_load_and_chunk_examples(ann):
    recs = load_annotations(ann, "rel-effective")
    assert len(recs) == 5  # skipped record left out
    exs = chunk_examples(recs, "rel-effective")
    assert len(exs) == 12
    assert class_counts(exs) == {"positive": 8, "negative": 4, "total": 12}
    third = exs[2]
    assert (third["problem_id"], third["sample_index"], third["chunk_index"]) == ("p0", 0, 2)
    assert third["label"] == 0 and third["verdict"] == "Negative" and third["truth_first_error"] == 2
    content = third["prompt"][0]["content"]
    assert "Historical Reasoning Path:\na0\n\na1\n\nNew Reasoning Chunk:\na2" in content
    assert "Mathematical Problem:\nProblem p0?" in content
    assert "(none" in exs[0]["prompt"][0]["content"]  # first chunk: empty history
    assert "truth_first_error" not in exs[3]
    assert class_counts(chunk_examples(recs, "abs-q")) == {"positive": 12, "negative": 0, "total": 12}


def test_balance_exact_and_deterministic(ann):
    exs = chunk_examples(load_annotations(ann), "rel-effective")
    bal = balance_classes(exs, seed=3)
    assert class_counts(bal) == {"positive": 4, "negative": 4, "total": 8}
    assert bal == balance_classes(exs, seed=3)
    assert [e for e in exs if e["label"] == 0] == [e for e in bal if e["label"] == 0]  # minority all kept
    positions = [next(i for i, e in enumerate(exs) if e is b) for b in bal]
    assert positions == sorted(positions)  # original order kept
    assert balance_classes([e for e in exs if e["label"] == 1]) == []  # one class only


def test_split_by_problem(ann):
    exs = chunk_examples(load_annotations(ann), "rel-effective")
    train, held = split_by_problem(exs, heldout_problems=2, seed=0)
    tr_ids, ho_ids = {e["problem_id"] for e in train}, {e["problem_id"] for e in held}
    assert len(ho_ids) == 2 and not tr_ids & ho_ids and len(train) + len(held) == 12
    assert split_by_problem(list(reversed(exs)), heldout_problems=2, seed=0)[1] == list(reversed(held))
    _, held_frac = split_by_problem(exs, heldout_fraction=0.25, seed=1)  # 0.25 * 4 problems = 1
    assert len({e["problem_id"] for e in held_frac}) == 1
    with pytest.raises(ValueError):
        split_by_problem(exs, heldout_problems=5)


def test_build_balance_on_off_and_write(ann, tmp_path):
    base = {"annotations": str(ann), "heldout_problems": 1, "max_prompt_tokens": None, "seed": 0}
    on = build_judge_datasets(JudgeDatasetConfig(**base))
    off = build_judge_datasets(JudgeDatasetConfig(**base, balance=False))
    st = off["stats"]
    assert st["train"]["problems"] == 3 and st["heldout"]["problems"] == 1
    n_train = st["train"]["before_balance"]["total"]
    assert len(off["train"]) == n_train and len(off["train"]) + len(off["heldout"]) == 12
    tb = on["stats"]["train"]["before_balance"]
    m = min(tb["positive"], tb["negative"])
    assert on["stats"]["train"]["after_balance"] == {"positive": m, "negative": m, "total": 2 * m}
    assert len(on["train"]) == 2 * m and on["heldout"] == off["heldout"]  # held-out never balanced
    assert on["stats"]["heldout"]["balanced"] is False
    row = on["train"][0]
    assert set(row) - {"truth"} == {"prompt", "label", "problem_id", "sample_index", "chunk_index"}
    assert row.get("truth") in (None, "Positive", "Negative")  # the exact verdict, where arith knows it
    assert row["label"] in ("Positive", "Negative") and row["prompt"][0]["role"] == "user"
    out = write_datasets(on, tmp_path / "out")
    assert len((out / "train.jsonl").read_text().splitlines()) == 2 * m
    assert json.loads((out / "stats.json").read_text())["scheme"] == "rel-effective"


def test_length_filter_drops_long_prompt(tmp_path):
    long = _rec("p9", 0, ["x " * 400], [0])
    ann = _write(tmp_path / "a.jsonl", [*RECORDS, long])
    res = build_judge_datasets(JudgeDatasetConfig(annotations=[str(ann)], tokenizer="tiny-random",
                                                  max_prompt_tokens=300, heldout_problems=0,
                                                  balance=False))
    assert res["stats"]["train"]["dropped_for_length"] == {"positive": 0, "negative": 1, "total": 1}
    assert len(res["train"]) == 12 and all(r["problem_id"] != "p9" for r in res["train"])


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r.pop("labels"), "labels"),
    (lambda r: r["labels"].update({"rel-effective": [1]}), "labels.rel-effective"),
    (lambda r: r["labels"].pop("rel-effective"), "labels.rel-effective"),
    (lambda r: r.update(chunks="oops"), "chunks"),
])
def test_malformed_annotations_name_file_line_field(tmp_path, mutate, field):
    bad = json.loads(json.dumps(RECORDS[2]))
    mutate(bad)
    path = _write(tmp_path / "bad.jsonl", [RECORDS[0], RECORDS[1], bad])
    with pytest.raises(DataError) as e:
        load_annotations([path], "rel-effective")
    assert f"{path}:3" in str(e.value) and f"field '{field}'" in str(e.value)


def test_discriminative_rows_one_turn_per_chunk(ann):
    rows = to_discriminative_sft_rows(load_annotations(ann), "rel-effective")
    assert len(rows) == 5
    msgs = rows[4]["messages"]  # p3: labels [0, 1, 0]
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == ["-", "+", "-"]
    assert msgs[0]["content"] == "Problem p3?\n\ne0" and msgs[2]["content"] == "e1"


def test_no_cot_prompt(ann):
    m = stepwise_verdict_only_messages("P?", ["s1"], "s2")[0]["content"]
    assert "Historical Reasoning Path:\ns1" in m and m.endswith("New Reasoning Chunk:\ns2")
    assert "only \\boxed{Positive}" in m and "\\boxed{Negative}" in m and "Analysis" not in m
    exs = chunk_examples(load_annotations(ann), "rel-effective")
    rows, grpo = to_no_cot_rows(exs), to_grpo_rows(exs)
    assert len(rows) == 12 and [r["label"] for r in rows] == [r["label"] for r in grpo]
    assert rows[2]["prompt"] == stepwise_verdict_only_messages("Problem p0?", ["a0", "a1"], "a2")


def test_assistant_only_loss_masks_exactly_verdicts(tmp_path):
    """TRL's own SFT preparation + collator keep only the "+"/"-" tokens and their <|im_end|>."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    from stepjudge.judge.dataset import chat_template_with_generation_markers
    from stepjudge.models.registry import load_tokenizer, resolve_model

    path = resolve_model("tiny-random")
    tok = load_tokenizer(path)
    msgs = [{"role": "user", "content": "P\n\na"}, {"role": "assistant", "content": "+"}]
    original = tok.apply_chat_template(msgs, tokenize=False)
    tok.chat_template = chat_template_with_generation_markers(tok)
    assert tok.apply_chat_template(msgs, tokenize=False) == original
    assert is_chat_template_stop_token_trained(tok)
    rows = to_discriminative_sft_rows([_rec("p", 0, ["a", "b", "c"], [1, 0, 1])], "rel-effective")
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to=[], use_cpu=True)
    trainer = SFTTrainer(model=str(path), args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    kept = [tok.decode([i]) for i, lab in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(),
                                                strict=True) if lab != -100]
    assert kept == ["+", "<|im_end|>", "-", "<|im_end|>", "+", "<|im_end|>"]


def test_truth_verdict_from_the_first_wrong_chunk():
    from stepjudge.judge.dataset import truth_verdict

    assert [truth_verdict(i, 1) for i in range(3)] == ["Positive", "Negative", None]
    assert [truth_verdict(i, -1) for i in range(2)] == ["Positive", "Positive"]
    assert truth_verdict(0, None) is None


def test_truth_scheme_cuts_after_the_first_error_and_labels_exactly():
    from stepjudge.judge.dataset import with_truth_labels

    rec = {"status": "annotated", "chunks": ["a", "b", "c"], "labels": {"abs-q": [1, 1, 0]},
           "truth": {"first_error": 1, "reason": "wrong sum"}}
    cut = with_truth_labels(rec)
    assert cut["chunks"] == ["a", "b"] and cut["labels"] == {"abs-q": [1, 1, 0], "truth": [1, 0]}
    right = with_truth_labels({**rec, "truth": {"first_error": -1}})
    assert right["chunks"] == ["a", "b", "c"] and right["labels"]["truth"] == [1, 1, 1]
    with pytest.raises(DataError, match="exact step truth"):
        with_truth_labels({**rec, "truth": None}, "ann.jsonl", 3)


def test_answer_rows_label_the_answer_segment_by_its_graded_outcome(tmp_path):
    """--answer-rows: one more example per solution, its answer segment judged after all its chunks."""
    recs = [{**_rec("p0", 0, ["a0", "a1"], [1, 1], truth=-1), "answer_text": "\\boxed{4}", "correct": False},
            {**_rec("p1", 0, ["c0", "c1"], [0, 0], truth=0), "answer_text": "\\boxed{7}", "correct": False},
            {**_rec("p2", 0, ["d0"], [1], truth=-1), "answer_text": "\\boxed{9}", "correct": True},
            {**_rec("p3", 0, ["e0"], [1]), "answer_text": "", "correct": False}]  # truncated: no answer
    exs = chunk_examples(recs, "rel-effective", answers=True)
    answers = [e for e in exs if e.get("step") == "answer"]
    assert [(e["problem_id"], e["chunk_index"], e["verdict"]) for e in answers] == [
        ("p0", 2, "Negative"), ("p1", 2, "Negative"), ("p2", 1, "Positive")]
    assert "Historical Reasoning Path:\na0\n\na1\n\nNew Reasoning Chunk:\n\\boxed{4}" in answers[0]["prompt"][0]["content"]
    rows = to_grpo_rows(answers)
    # exact truth: the outcome when every chunk is right (a premature answer is wrong), none after a wrong chunk
    assert [r.get("truth") for r in rows] == ["Negative", None, "Positive"] and rows[0]["step"] == "answer"
    assert len(chunk_examples(recs, "rel-effective")) == 6  # off by default: chunks only
    # the truth scheme keeps only answers with an exact verdict
    assert [e["problem_id"] for e in chunk_examples(recs, "rel-effective", answers=True)
            if e.get("step") == "answer" and e.get("truth_verdict") is not None] == ["p0", "p2"]
    path = _write(tmp_path / "a.jsonl", recs)
    built = build_judge_datasets(JudgeDatasetConfig(annotations=str(path), answer_rows=True, balance=False,
                                                    heldout_fraction=0.0, max_prompt_tokens=None))
    assert sum(r.get("step") == "answer" for r in built["train"]) == 3 and built["stats"]["answer_rows"] is True
    with pytest.raises(ValueError, match="discriminative"):
        build_judge_datasets(JudgeDatasetConfig(annotations=str(path), answer_rows=True, format="discriminative"))


def test_first_error_scores_ignore_answer_rows():
    from stepjudge.eval.judge_heldout import first_error_scores

    ann = [{"problem_id": "p0", "sample_index": 0, "chunks": ["a", "b"], "truth": {"first_error": -1}}]
    preds = [{"problem_id": "p0", "sample_index": 0, "chunk_index": i, "verdict": v, "p_positive": 0.5}
             for i, v in enumerate(["Positive", "Positive", "Negative"])]  # index 2: the (wrong) answer
    # all steps right and judged right: the solution counts as correctly judged, the answer's verdict aside
    scores = first_error_scores(preds, ann)
    assert (scores["solutions"], scores["n_correct"], scores["acc_correct"]) == (1, 1, 100.0)
