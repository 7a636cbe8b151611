"""Warm-up SFT data for the judge: exact completions, 50/50 balance, held-out problems never used."""

from __future__ import annotations

import builtins
import json

import pytest
from pydantic import ValidationError

from stepjudge.errors import DataError
from stepjudge.judge.dataset import (
    JudgeDatasetConfig,
    build_judge_datasets,
    chunk_examples,
    class_counts,
    to_grpo_rows,
)
from stepjudge.judge.prompts import STEPWISE_JUDGE_TEMPLATE
from stepjudge.judge.warmup import (
    NO_CHECK_LINE,
    WarmupConfig,
    build_warmup_rows,
    check_line,
    compact_judge_messages,
    find_equations,
    judge_fields,
    recompute_completion,
    reference_completion,
    verdict_completion,
    warmup_prompt,
)


def _record(pid: str, chunks: list[str], labels: list[int]) -> dict:
    return {"status": "annotated", "problem_id": pid, "problem": f"Start with 13. Add 3. ({pid})",
            "chunks": chunks, "labels": {"abs-q": labels}, "sample_index": 0}


# 8 problems x 2 chunks, 11 Positive and 5 Negative chunks in all; a Negative second chunk is off by one.
LABELS = [[0, 0], [1, 1], [1, 0], [1, 1], [0, 1], [1, 1], [1, 0], [1, 1]]
RECORDS = [_record(f"p{i}", [f"13 + {i} = {13 + i}", f"{13 + i} + 3 = {16 + i + 1 - lab[1]}"], lab)
           for i, lab in enumerate(LABELS)]


def _rows(records=RECORDS) -> list[dict]:
    """Judge rows exactly as build_judge_datasets writes them (prompt only, no chunk fields)."""
    return to_grpo_rows(chunk_examples(records, "abs-q"))


def _text(row: dict) -> str:
    return row["completion"][0]["content"]


# ------------------------------------------------------------------------------------ completions


def test_recompute_completion_is_exact():
    assert recompute_completion("13 + 3 = 26", "Negative") == (
        "Check: 13 + 3 = 16. The step says 26.\nVerdict: \\boxed{Negative}")
    # the verdict is the row's MC label, not the exact truth: right arithmetic, Negative label
    assert recompute_completion("<chunk>13 + 3 = 16</chunk>", "Negative") == (
        "Check: 13 + 3 = 16. The step says 16.\nVerdict: \\boxed{Negative}")
    assert recompute_completion("So we add the numbers.", "Positive") == (
        f"{NO_CHECK_LINE}\nVerdict: \\boxed{{Positive}}")
    assert recompute_completion("4 × 5 = 21, then 21 − 9 = 12 and 12 / 8 = 1.5", "Negative", max_checks=2) == (
        "Check: 4 * 5 = 20. The step says 21.\nCheck: 21 - 9 = 12. The step says 12.\n"
        "Verdict: \\boxed{Negative}")
    assert verdict_completion("Positive") == "\\boxed{Positive}"


def test_reference_variant_writes_the_tasks_check_then_the_label():
    # p2: "13 + 2 = 15" (labelled Positive, though the problem adds 3), then "15 + 3 = 19" (Negative)
    rows = [r for r in _rows() if r["problem_id"] == "p2"]
    built = build_warmup_rows(rows, WarmupConfig(variant="reference", balance=False), heldout=[])["rows"]
    assert [_text(r) for r in built] == [
        "Expected: 13 + 3 = 16.\nThe step says: 13 + 2 = 15.\nMatch: no.\nVerdict: \\boxed{Positive}",
        "Expected: no calculation is left.\nThe step says: 15 + 3 = 19.\nMatch: no.\nVerdict: \\boxed{Negative}"]
    content = built[0]["prompt"][0]["content"]
    assert content.startswith("Check the new step") and "Write: Expected:" in content
    assert content.endswith("New step: 13 + 2 = 15")
    # a problem the task cannot read falls back to the recompute check lines
    assert reference_completion("What is 2 + 2?", [], "2 + 2 = 5", "Negative") == (
        "Check: 2 + 2 = 4. The step says 5.\nVerdict: \\boxed{Negative}")


def test_find_equations_skips_fragments_and_never_evaluates(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("model text must never be evaluated")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert [check_line(e) for e in find_equations("10 / 4 = 2 and 10 / 3 = 3.33 and 7 - 9 = -2")] == [
        "Check: 10 / 4 = 2.5. The step says 2.", "Check: 10 / 3 = 3.3333. The step says 3.33.",
        "Check: 7 - 9 = -2. The step says -2."]
    assert find_equations("2 * 13 + 3 = 29") == []  # fragment of a longer expression
    assert find_equations("13 + 3 = 16 + 1") == []
    assert find_equations("1 / 0 = 5") == []
    assert find_equations("__import__('os').system('touch /tmp/x') + 1 = 2") == []
    assert find_equations("2 ** 10 = 1024") == []
    eq = find_equations("99999999999 * 99999999999 = 1")[0]
    assert eq.value == 99999999999 ** 2 and not eq.correct
    assert recompute_completion("open('f').read() = 3", "Positive").startswith(NO_CHECK_LINE)


# ---------------------------------------------------------------------------------------- prompts


def test_prompts_full_compact_keep():
    row = _rows()[1]  # p0, chunk 1: history = chunk 0
    assert judge_fields(row) == ("Start with 13. Add 3. (p0)", ["13 + 0 = 13"], "13 + 3 = 17")
    assert judge_fields(_rows()[0])[1] == []  # first chunk: no history
    compact = warmup_prompt(row, WarmupConfig(prompt="compact"))
    assert compact == compact_judge_messages("Start with 13. Add 3. (p0)", ["13 + 0 = 13"], "13 + 3 = 17")
    assert compact[0]["content"].endswith(
        "Problem: Start with 13. Add 3. (p0)\nEarlier steps: 13 + 0 = 13\nNew step: 13 + 3 = 17")
    assert "Check: <calculation> = <your result>. The step says <its result>." in compact[0]["content"]
    assert len(compact[0]["content"]) * 2 < len(STEPWISE_JUDGE_TEMPLATE)
    assert warmup_prompt(row, WarmupConfig(prompt="full")) == row["prompt"]  # the StepWiser prompt
    verdict_only = warmup_prompt(row, WarmupConfig(prompt="compact", variant="verdict"))[0]["content"]
    assert "Answer only \\boxed{Positive}" in verdict_only and "Check:" not in verdict_only
    assert "Do not explain" in warmup_prompt(row, WarmupConfig(prompt="full", variant="verdict"))[0]["content"]
    assert warmup_prompt({"prompt": [{"role": "user", "content": "x"}]}, WarmupConfig(prompt="keep")) == [
        {"role": "user", "content": "x"}]
    with pytest.raises(DataError, match="StepWiser layout"):
        judge_fields({"prompt": [{"role": "user", "content": "no layout"}]})


def test_terse_prompt_is_one_system_line_and_the_three_inputs():
    row = _rows()[1]
    terse = warmup_prompt(row, WarmupConfig(prompt="terse", variant="reference"))
    assert terse == [
        {"role": "system", "content": "Compare the new step with the problem's expected calculation, then answer "
                                      "\\boxed{Positive} or \\boxed{Negative}."},
        {"role": "user", "content": "Problem: Start with 13. Add 3. (p0)\nEarlier steps: 13 + 0 = 13\n"
                                    "New step: 13 + 3 = 17"}]
    first = warmup_prompt(_rows()[0], WarmupConfig(prompt="terse", variant="verdict"))
    assert first[0]["content"].startswith("Answer \\boxed{Positive} if the new step is right")
    assert "Earlier steps: (none)" in first[1]["content"]
    recompute = warmup_prompt(row, WarmupConfig(prompt="terse"))[0]["content"]
    assert recompute.startswith("Check the new step's calculations")
    compact = warmup_prompt(row, WarmupConfig(prompt="compact", variant="reference"))
    assert len(terse[0]["content"] + terse[1]["content"]) * 2 < len(compact[0]["content"])


# ------------------------------------------------------------------------------- balance, held-out


def test_balance_is_exact_and_seeded():
    rows = _rows()
    assert class_counts(rows) == {"positive": 11, "negative": 5, "total": 16}
    out = build_warmup_rows(rows, {"variant": "recompute", "seed": 0}, heldout=[])
    assert out["stats"]["before_balance"] == {"positive": 11, "negative": 5, "total": 16}
    assert out["stats"]["after_balance"] == {"positive": 5, "negative": 5, "total": 10}
    assert [r["label"] for r in out["rows"]].count("Negative") == 5
    for r in out["rows"]:  # every row is TRL prompt-completion, completion built from the row's own chunk
        chunk = judge_fields(next(x for x in rows if (x["problem_id"], x["chunk_index"]) ==
                                  (r["problem_id"], r["chunk_index"])))[2]
        assert _text(r) == recompute_completion(chunk, r["label"])
        assert r["completion"][0]["role"] == "assistant" and r["prompt"][0]["role"] == "user"
    again = build_warmup_rows(rows, {"variant": "recompute", "seed": 0}, heldout=[])
    assert again == out
    other = build_warmup_rows(rows, {"variant": "recompute", "seed": 3}, heldout=[])
    key = [(r["problem_id"], r["chunk_index"]) for r in out["rows"]]
    assert key != [(r["problem_id"], r["chunk_index"]) for r in other["rows"]]
    unbalanced = build_warmup_rows(rows, {"variant": "verdict", "balance": False}, heldout=[])
    assert [_text(r) for r in unbalanced["rows"]] == [verdict_completion(r["label"]) for r in rows]


def test_heldout_problems_are_refused_or_filtered(tmp_path):
    path = tmp_path / "annotations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    data = build_judge_datasets(JudgeDatasetConfig(annotations=str(path), scheme="abs-q", heldout_problems=3,
                                                   max_prompt_tokens=None, balance=False, seed=1))
    held_ids = {r["problem_id"] for r in data["heldout"]}
    assert len(held_ids) == 3
    out = build_warmup_rows(data["train"], WarmupConfig(), heldout=data["heldout"])
    assert not {r["problem_id"] for r in out["rows"]} & held_ids
    assert out["stats"]["heldout_rows_dropped"] == 0

    everything = data["train"] + data["heldout"]
    with pytest.raises(DataError, match="3 held-out problems"):
        build_warmup_rows(everything, WarmupConfig(), heldout=sorted(held_ids))
    filtered = build_warmup_rows(everything, WarmupConfig(on_heldout="filter", balance=False),
                                 heldout=sorted(held_ids))
    assert filtered["stats"]["heldout_rows_dropped"] == len(data["heldout"]) == 6
    assert [(r["problem_id"], r["chunk_index"]) for r in filtered["rows"]] == [
        (r["problem_id"], r["chunk_index"]) for r in data["train"]]
    with pytest.raises(DataError, match="problem_id"):
        build_warmup_rows([{"prompt": [], "label": "Positive"}], WarmupConfig(), heldout=[])


# ----------------------------------------------------------------------------- rejection sampling


def test_rejection_sampling_keeps_exactly_the_matching_samples():
    rows = _rows()[:4]  # p0: chunk0 Negative, chunk1 Negative; p1: Positive, Positive
    assert [r["label"] for r in rows] == ["Negative", "Negative", "Positive", "Positive"]
    samples = [
        ["Wrong sum. \\boxed{Negative}", "\\boxed{Positive}", "Looks off: \\boxed{negative}"],
        ["no verdict at all", "\\boxed{Positive}"],
        ["\\boxed{Negative} ... on reflection \\boxed{Positive}", "\\boxed{Positive}"],
        ["\\boxed{17} fine, \\boxed{Positive}"],
    ]
    cfg = {"variant": "rejection-sampling", "balance": False, "samples_per_prompt": 2}
    out = build_warmup_rows(rows, cfg, heldout=[], samples=samples)
    assert [(r["chunk_index"], r["problem_id"], _text(r)) for r in out["rows"]] == [
        (0, "p0", "Wrong sum. \\boxed{Negative}"), (0, "p0", "Looks off: \\boxed{negative}"),
        (0, "p1", "\\boxed{Negative} ... on reflection \\boxed{Positive}"), (0, "p1", "\\boxed{Positive}"),
        (1, "p1", "\\boxed{17} fine, \\boxed{Positive}")]
    assert out["stats"]["samples"] == {"total": 8, "kept": 5, "wrong_verdict": 2, "unparsed": 1}
    one = build_warmup_rows(rows, {**cfg, "samples_per_prompt": 1}, heldout=[], samples=samples)
    assert [_text(r) for r in one["rows"]] == ["Wrong sum. \\boxed{Negative}",
                                               "\\boxed{Negative} ... on reflection \\boxed{Positive}",
                                               "\\boxed{17} fine, \\boxed{Positive}"]
    balanced = build_warmup_rows(rows, {**cfg, "balance": True}, heldout=[], samples=samples)
    assert balanced["stats"]["after_balance"] == {"positive": 2, "negative": 2, "total": 4}
    assert [r["label"] for r in balanced["rows"]].count("Negative") == 2
    with pytest.raises(ValueError, match="one list per row"):
        build_warmup_rows(rows, cfg, heldout=[], samples=samples[:3])
    with pytest.raises(ValueError, match="only for"):
        build_warmup_rows(rows, cfg, heldout=[])
    with pytest.raises(ValueError, match="only for"):
        build_warmup_rows(rows, WarmupConfig(), heldout=[], samples=samples)


def test_config_is_typed():
    assert WarmupConfig().model_dump() == {"variant": "recompute", "task": "arith", "prompt": "compact", "balance": True,
                                           "seed": 0, "max_checks": 3, "samples_per_prompt": 1,
                                           "on_heldout": "error"}
    for bad in ({"variant": "cot"}, {"prompt": "short"}, {"max_checks": 0}, {"heldout": []}):
        with pytest.raises(ValidationError):
            WarmupConfig(**bad)
