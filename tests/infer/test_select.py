"""Data selection: exact judge / outcome-only picks, the two SFT sets from a rerank run, the CLI."""

import importlib.util
import json
import random
import re
from pathlib import Path

import pytest

from stepjudge.errors import DataError
from stepjudge.infer.select import (
    build_selection_sets,
    eligible,
    load_samples,
    select_judge_best,
    select_outcome_only,
)


def _best_of_n_test_helpers():
    """The scripted policy and arithmetic judge of test_best_of_n.py, loaded by path (works with or
    without __init__ files in the test folders)."""
    spec = importlib.util.spec_from_file_location("_bon_test_helpers", Path(__file__).with_name("test_best_of_n.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def S(correct, score, text="t"):
    return {"text": text, "correct": correct, "score": score}


@pytest.mark.parametrize("samples, judge_pick, pool", [
    ([S(True, 0.3), S(False, 0.9), S(True, 0.8), S(True, 0.5)], 2, [0, 2, 3]),  # wrong 0.9 is not eligible
    ([S(True, 0.6), S(True, 0.6), S(True, 0.2)], 0, [0, 1, 2]),                # tie -> lowest index
    ([S(False, 0.2), S(True, 0.4), S(True, 0.4)], 1, [1, 2]),
    ([S(True, None), S(True, 0.1)], 1, [1]),                                  # correct but format broken
    ([S(True, None), S(False, 0.9)], None, []),                               # nothing eligible
    ([S(False, 0.5), S(False, 0.7)], None, []),
    ([S(True, 0.0)], 0, [0]),
])
def test_judge_pick_and_pool(samples, judge_pick, pool):
    assert eligible(samples) == pool
    assert select_judge_best(samples) == judge_pick


def test_outcome_only_picks_are_seeded_and_exact():
    samples = [S(True, 0.9), S(False, 0.1), S(True, 0.2), S(True, 0.5), S(False, 0.3)]
    picks = [select_outcome_only(samples, random.Random(seed)) for seed in range(6)]
    assert picks == [2, 0, 0, 0, 0, 3]  # random.Random(seed).choice([0, 2, 3])
    assert all(p in eligible(samples) for p in picks)
    rng = random.Random(0)
    assert select_outcome_only([S(False, 1.0)], rng) is None
    assert rng.random() == random.Random(0).random()  # no eligible sample: rng untouched
    assert select_outcome_only([S(True, None), S(True, 0.4)], random.Random(5)) == 1


def _record(pid, samples, prompt="Q: 1+1?\n"):
    return {"problem_id": pid, "prompt": prompt, "samples": samples}


def test_build_selection_sets_writes_both_files(tmp_path):
    records = [
        _record("a", [S(True, 0.2, "a0"), S(True, 0.9, "a1"), S(False, 1.0, "a2"), S(True, 0.4, "a3")]),
        _record("b", [S(False, 0.9, "b0"), S(True, None, "b1")]),  # skipped: its only correct sample is unscored
        _record("c", [S(True, 0.7, "c0")], prompt="P: c\n"),
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    stats = build_selection_sets(path, tmp_path / "sel", seed=7)

    judge = [json.loads(x) for x in (tmp_path / "sel" / "sft_judge.jsonl").read_text().splitlines()]
    outcome = [json.loads(x) for x in (tmp_path / "sel" / "sft_outcome.jsonl").read_text().splitlines()]
    assert judge == [{"prompt": "Q: 1+1?\n", "completion": "a1", "problem_id": "a", "sample_index": 1, "score": 0.9},
                     {"prompt": "P: c\n", "completion": "c0", "problem_id": "c", "sample_index": 0, "score": 0.7}]
    o_a = random.Random("7:a").choice([0, 1, 3])  # the per-problem seed rule
    assert [r["sample_index"] for r in outcome] == [o_a, 0]
    assert outcome[0]["completion"] == f"a{o_a}"
    assert stats["problems"] == 3 and stats["selected_problems"] == 2 and stats["skipped_no_eligible_sample"] == 1
    assert stats["correct_but_format_broken"] == 1 and stats["same_pick"] == 1 + (o_a == 1)
    assert json.loads((tmp_path / "sel" / "stats.json").read_text()) == stats

    # records in memory give the same files; the draw for "c" does not depend on "a" being there
    build_selection_sets(records[::-1], tmp_path / "sel2", seed=7)
    assert (tmp_path / "sel2" / "sft_judge.jsonl").read_text().splitlines() == \
        (tmp_path / "sel" / "sft_judge.jsonl").read_text().splitlines()[::-1]


def test_bad_samples_file_names_line_and_field(tmp_path):
    path = tmp_path / "s.jsonl"
    good = _record("a", [S(True, 0.5)])
    path.write_text(json.dumps(good) + "\n" + json.dumps(_record("b", [{"text": "x", "correct": "yes", "score": 1}]))
                    + "\n")
    with pytest.raises(DataError, match=re.escape("s.jsonl:2 field 'samples[0]'")):
        load_samples(path)
    with pytest.raises(DataError, match="not found"):
        load_samples(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="field 'prompt'"):
        build_selection_sets([{"problem_id": "a", "samples": [S(True, 0.5)]}], tmp_path / "o")


def test_selection_from_a_rerank_run_via_the_cli(tmp_path, capsys):
    """One sampling run serves both sets: rerank's samples.jsonl -> `stepjudge select build`."""
    from stepjudge.cli.main import main
    from stepjudge.infer.best_of_n import run_best_of_n

    bon = _best_of_n_test_helpers()
    script = bon.SCRIPT
    run_best_of_n(bon._config(tmp_path / "rr"), policy_engine=bon.ScriptedPolicy(script),
                  judge_engine=bon.ArithmeticJudge(), progress=False)
    assert main(["select", "build", "--samples", str(tmp_path / "rr" / "samples.jsonl"),
                 "--out", str(tmp_path / "sel")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["selected_problems"] == 2 and stats["correct_but_format_broken"] == 1
    rows = [json.loads(x) for x in (tmp_path / "sel" / "sft_judge.jsonl").read_text().splitlines()]
    # P0: only sample 2 is correct and chunked; P1: sample 0 (sample 1 is correct but broke the format)
    assert [r["sample_index"] for r in rows] == [2, 0]
    assert rows[0]["prompt"].endswith("Start with 7. Add 5. Add 7.\n")
    assert rows[0]["completion"] == script["Start with 7. Add 5. Add 7."][2]
    outcome = (tmp_path / "sel" / "sft_outcome.jsonl").read_text()
    assert outcome == (tmp_path / "sel" / "sft_judge.jsonl").read_text()  # one eligible sample each


def test_cli_select_without_action_prints_help(capsys):
    from stepjudge.cli.main import main

    assert main(["select"]) == 2
    assert "sft_outcome.jsonl" in capsys.readouterr().out
