"""`stepjudge eval critique` end to end on tiny random engines: the summary's numbers are the pure metrics of
the records it wrote, the equal-budget pairing is (1 + 2r) K, and the sampled part resumes."""

import json

import pytest

from stepjudge.cli.main import main
from stepjudge.errors import RunFolderError
from stepjudge.eval.critique import mv_at_k, pass_at_k, refinement_metrics
from stepjudge.eval.critique_run import CritiqueEvalConfig, run_critique_eval
from stepjudge.infer.refine import summarize_refine
from stepjudge.judge.critique import parse_final_verdict
from stepjudge.utils.io import read_jsonl

TINY = {"model": "tiny-random"}


def _cfg(tmp_path, **kw):
    return CritiqueEvalConfig(**{"out": str(tmp_path / "ev"), "arith": {"n": 3, "steps": 2, "seed": 4},
                                 "actor": TINY, "critic": TINY, "rounds": 2, "k": 2, "max_tokens": 6,
                                 "critique_max_tokens": 6, "refine_max_tokens": 6, "batch_size": 2, **kw})


def _votes(records, key):
    return [[(s["answer"], s["correct"]) for s in key(r)] for r in records]


def test_summary_is_the_metrics_of_the_written_records_and_resumes(tmp_path):
    cfg = _cfg(tmp_path)
    summary = run_critique_eval(cfg)
    out = tmp_path / "ev"
    greedy = read_jsonl(out / "greedy" / "refine.jsonl")
    assert len(greedy) == 3 and summary["greedy"] == summarize_refine(greedy)
    first = [r["rounds"][0] for r in greedy]
    assert summary["greedy"]["rounds"][0] == refinement_metrics([r["truth"] for r in greedy],
                                                                [x["correct"] for x in first],
                                                                [x["verdict"] for x in first])
    samples = read_jsonl(out / "samples.jsonl")
    assert [r["id"] for r in samples] == [r["id"] for r in greedy]
    for rec in samples:
        assert len(rec["parallel"]) == (1 + 2 * 2) * 2  # the budget of 2 chains after 2 rounds
        assert len(rec["chains"]) == 2 and all(len(c) == 2 for c in rec["chains"])
        assert all(x["verdict"] == parse_final_verdict(x["critique"]) for c in rec["chains"] for x in c)
    s = summary["sampling"]
    parallel = _votes(samples, lambda r: r["parallel"])
    assert (s["k"], s["rounds"], s["parallel_samples"], s["temperature"]) == (2, 2, 10, 0.7)
    assert s["parallel"]["budget"] == [1, 2, 3, 5, 6, 10]
    assert s["parallel"]["mv"] == [mv_at_k(parallel, b) for b in (1, 2, 3, 5, 6, 10)]
    assert s["parallel"]["pass"] == [pass_at_k(parallel, b) for b in (1, 2, 3, 5, 6, 10)]
    for r, curve in enumerate(s["refine"], start=1):
        chains = _votes(samples, lambda rec, r=r: [c[r - 1] for c in rec["chains"]])
        budget = [(1 + 2 * r) * k for k in (1, 2)]
        assert curve == {"round": r, "k": [1, 2], "budget": budget,
                         "mv": [mv_at_k(chains, k) for k in (1, 2)], "pass": [pass_at_k(chains, k) for k in (1, 2)],
                         "parallel_mv": [mv_at_k(parallel, b) for b in budget],
                         "parallel_pass": [pass_at_k(parallel, b) for b in budget]}
    assert json.loads((out / "summary.json").read_text()) == summary
    report = (out / "report.md").read_text()
    assert "| 2 | 2 | 10 |" in report and "![accuracy vs budget](accuracy_vs_k.png)" in report
    assert (out / "accuracy_vs_k.png").stat().st_size > 0

    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text(lines[0] + "\n" + lines[1][:30])  # crashed while writing problem 2
    again = run_critique_eval(cfg)
    resumed = read_jsonl(out / "samples.jsonl")
    assert len(resumed) == 3 and json.dumps(resumed[0]) == json.dumps(samples[0])
    assert again["greedy"] == summary["greedy"]
    assert again["sampling"]["parallel"]["mv"] == [mv_at_k(_votes(resumed, lambda r: r["parallel"]), b)
                                                  for b in (1, 2, 3, 5, 6, 10)]
    with pytest.raises(RunFolderError, match="k: 2 in the folder vs 3 now"):
        run_critique_eval(_cfg(tmp_path, k=3))
    with pytest.raises(RunFolderError, match="critic_model: 'tiny-random' in the folder vs 'other' now"):
        run_critique_eval(_cfg(tmp_path, critic={"model": "other"}))
    threads = run_critique_eval(_cfg(tmp_path, actor={**TINY, "num_threads": 1}))  # not a result-changing setting
    assert threads == again


def test_reads_a_finished_refine_folder(tmp_path):
    run_critique_eval(_cfg(tmp_path, rounds=1, k=0))  # greedy only: out/greedy is a plain `refine` folder
    greedy = tmp_path / "ev" / "greedy"
    summary = run_critique_eval(_cfg(tmp_path, out=str(tmp_path / "ev2"), refine_run=str(greedy), k=1))
    assert summary["greedy"] == summarize_refine(read_jsonl(greedy / "refine.jsonl"))
    assert summary["greedy_source"] == str(greedy) and not (tmp_path / "ev2" / "greedy").exists()
    assert summary["sampling"]["rounds"] == 1 and summary["sampling"]["parallel"]["budget"] == [1, 3]
    assert len(read_jsonl(tmp_path / "ev2" / "samples.jsonl")) == 3
    with pytest.raises(RunFolderError, match="no summary.json"):
        run_critique_eval(_cfg(tmp_path, out=str(tmp_path / "ev3"), refine_run=str(tmp_path / "nothing")))


def test_cli_verb(tmp_path, capsys):
    assert main(["eval", "critique", "--out", str(tmp_path / "c"), "--arith.n", "1", "--actor.model", "tiny-random",
                 "--critic.model", "tiny-random", "--max-tokens", "4", "--critique-max-tokens", "4",
                 "--refine-max-tokens", "4", "-k", "1", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.split("\nreport:")[0])["greedy"]["items"] == 1
    assert (tmp_path / "c" / "report.md").exists() and (tmp_path / "c" / "accuracy_vs_k.png").exists()
