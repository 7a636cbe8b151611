"""`stepjudge refine`: response -> critique -> refinement for several rounds with real (tiny) engines, resumable."""

import json

from stepjudge.cli.main import main
from stepjudge.engines.hf import HFEngine
from stepjudge.eval.critique import refinement_metrics
from stepjudge.grading import Grader
from stepjudge.infer.refine import RefineConfig, refine_items, run_refine, summarize_refine
from stepjudge.judge.critique import parse_final_verdict
from stepjudge.judge.critique_data import critic_rl_row
from stepjudge.judge.critique_loop import critique, refine
from stepjudge.tasks.arith import generate_problems
from stepjudge.utils.io import read_jsonl

TINY = {"model": "tiny-random"}


def _cfg(tmp_path, **kw):
    return RefineConfig(**{"out": str(tmp_path / "r"), "arith": {"n": 3, "steps": 2, "seed": 4}, "actor": TINY,
                           "critic": TINY, "rounds": 2, "max_tokens": 6, "critique_max_tokens": 6,
                           "refine_max_tokens": 6, "batch_size": 2, **kw})


def test_rounds_chain_each_refinement_into_the_next_critique(tmp_path):
    problems = generate_problems(n=2, steps=2, seed=4)
    p = problems[0]
    rows = [critic_rl_row(p, f"The answer is {p.answer}.", True), critic_rl_row(p, "The answer is -1.", False)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, rows=str(path))
    engine = HFEngine("tiny-random")
    with Grader() as grader:
        from stepjudge.infer.refine import _items

        items = _items(cfg)
        assert [it["id"] for it in items] == [f"{p.id}#0", f"{p.id}#1"]
        records = refine_items(cfg, items, engine, engine, grader)
    assert [r["truth"] for r in records] == [True, False]  # the rows' responses, graded again
    for rec in records:
        first, second = rec["rounds"]
        assert first["critique"] == critique(engine, [p], [rec["response"]], max_tokens=6)[0][0]  # greedy
        assert first["refinement"] == refine(engine, [p], [rec["response"]], [first["critique"]], max_tokens=6)[0]
        assert second["critique"] == critique(engine, [p], [first["refinement"]], max_tokens=6)[0][0]
        assert first["verdict"] == parse_final_verdict(first["critique"])
    summary = summarize_refine(records)
    assert summary["rounds"][0] == refinement_metrics([True, False], [r["rounds"][0]["correct"] for r in records],
                                                      [r["rounds"][0]["verdict"] for r in records])
    assert summary["overall"]["acc"] == 50.0


def test_run_refine_writes_a_line_per_item_and_resumes(tmp_path):
    cfg = _cfg(tmp_path)
    summary = run_refine(cfg)
    log = tmp_path / "r" / "refine.jsonl"
    records = read_jsonl(log)
    assert [r["id"] for r in records] == [p.id for p in generate_problems(n=3, steps=2, seed=4)]
    assert all(len(r["rounds"]) == 2 for r in records) and summary["items"] == 3 and len(summary["rounds"]) == 2
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n" + lines[1][:20])  # crashed while writing the second item
    again = run_refine(cfg)
    assert log.read_text().splitlines()[0] == lines[0] and len(read_jsonl(log)) == 3
    assert again == summary  # greedy: the redone items are the same
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == summary


def test_cli_runs_the_loop(tmp_path, capsys):
    assert main(["refine", "--out", str(tmp_path / "c"), "--arith.n", "1", "--actor.model", "tiny-random",
                 "--critic.model", "tiny-random", "--max-tokens", "4", "--critique-max-tokens", "4",
                 "--refine-max-tokens", "4", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 1
