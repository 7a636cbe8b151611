"""``stepjudge eval self-verify --verifier``: an external stepwise judge scores the same responses as
``stepjudge rerank`` would, its metrics sit beside the self-reward's, and without it nothing changes."""

from __future__ import annotations

import json

import pytest

from stepjudge.cli.main import main
from stepjudge.engines.base import Completion, GenerationResult
from stepjudge.engines.hf import HFEngine
from stepjudge.eval.metrics import auroc
from stepjudge.eval.self_verify import self_verification_f1, weighted_majority_vote
from stepjudge.eval.self_verify_run import run_self_verify
from stepjudge.infer.best_of_n import score_solutions, solution_score
from stepjudge.judge.chunk_judge import ChunkJudge, JudgeSpec
from stepjudge.tasks.problems import load_problem_set

ARITH = {"n": 2, "steps": 2, "seed": 0}
PROBLEMS = load_problem_set("arith", ARITH)  # 7 + 5 + 7 = 19 and 8 + 4 + 5 = 17

# (text, finish reason, chunks as rerank parses them or None for a broken format)
SCRIPT = {
    PROBLEMS[0].problem: [
        ("<chunk>7 + 5 = 12</chunk>\n<chunk>12 + 7 = 19</chunk>\n\\boxed{19}", "stop", ["7 + 5 = 12", "12 + 7 = 19"]),
        ("<chunk>7 + 5 = 12</chunk>\n<chunk>12 + 7 = 20</chunk>\n\\boxed{20}", "stop", ["7 + 5 = 12", "12 + 7 = 20"]),
        ("7 and 5 and 7 make \\boxed{19}", "stop", None),
    ],
    PROBLEMS[1].problem: [
        ("<chunk>8 + 4 = 12</chunk>\n<chunk>12 + 5 = 17</chunk>\n\\boxed{17}", "stop", ["8 + 4 = 12", "12 + 5 = 17"]),
        ("<chunk>8 + 4 = 12</chunk>\n<chunk>12 + 5 =", "length", None),  # truncated, an open chunk
        ("<chunk>8 + 3 = 11</chunk>\n\\boxed{16}", "stop", ["8 + 3 = 11"]),
    ],
}


class ScriptedTiny(HFEngine):
    """The real tiny model (chat template, tokenizer, prompt log-probs for r_s) whose samples are
    scripted: the random tiny model never writes chunks, and a verifier needs some to judge."""

    def __init__(self) -> None:
        super().__init__("tiny-random", num_threads=1)
        self.generated = 0

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            rows = SCRIPT[p[-1]["content"]]
            assert params.n == len(rows)
            out.append(GenerationResult([Completion(t, len(t.split()), reason) for t, reason, _ in rows]))
        self.generated += len(prompts)
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same scripted responses evaluated without and with the tiny random model as verifier."""
    policy = ScriptedTiny()
    base = {"model": "tiny-random", "c_ref": -10.0, "n": 3, "arith": ARITH, "new_problems": False}
    root = tmp_path_factory.mktemp("sv")
    plain = run_self_verify({**base, "out": str(root / "plain")}, policy_engine=policy)
    judged = run_self_verify({**base, "out": str(root / "judged"), "verifier": "tiny-random",
                              "verifier_engine": {"num_threads": 1}}, policy_engine=policy)
    assert policy.generated == 4  # two problems, sampled once per run
    return root, plain, judged


def _samples(folder):
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_verifier_scores_are_reranks_solution_scores(runs):
    root, _, judged = runs
    samples = _samples(root / "judged")
    rows = [(p, r) for p in PROBLEMS for r in SCRIPT[p.problem]]
    assert [s["response"] for s in samples] == [text for _, (text, _, _) in rows]
    # What best_of_n's scoring returns for these responses, from a judge of our own.
    judge = ChunkJudge(HFEngine("tiny-random", num_threads=1), JudgeSpec())
    probs = score_solutions(judge, [p.problem for p, _ in rows], [chunks for _, (_, _, chunks) in rows])
    expected = [solution_score(pr) for pr in probs]
    assert [s["verifier_score"] for s in samples] == expected  # same call, same numbers
    assert [s["verifier_chunk_probs"] for s in samples] == [None if c is None else pr
                                                            for (_, (_, _, c)), pr in zip(rows, probs, strict=True)]
    assert [s["verifier_score"] is None for s in samples] == [False, False, True, False, True, False]
    assert [len(s["verifier_chunk_probs"] or []) for s in samples] == [2, 2, 0, 2, 0, 1]
    assert all(0 < x < 1 for x in expected if x is not None)
    # the truncated response has no self-reward (r_s = 0) but the judge still reads it (it has no chunks here)
    assert [s["finished"] for s in samples] == [True, True, True, True, False, True]
    assert samples[4]["r_s"] == 0.0 and samples[4]["logp_z_c"] is None

    ver = judged["verifier"]
    scores = [0.0 if x is None else x for x in expected]  # an unscored response counts 0
    correct = [s["correct"] for s in samples]
    assert correct == [True, False, True, True, False, False]
    assert ver["f1_all"] == pytest.approx(self_verification_f1(scores, correct))
    answered = [i for i, s in enumerate(samples) if s["answer"] is not None]
    assert answered == [0, 1, 2, 3, 5]
    assert ver["f1_filtered"] == pytest.approx(self_verification_f1([scores[i] for i in answered],
                                                                    [correct[i] for i in answered]))
    assert ver["auroc"] == pytest.approx(auroc(correct, scores))
    picks = [weighted_majority_vote([samples[j]["answer"] for j in range(3 * k, 3 * k + 3)], scores[3 * k:3 * k + 3])
             for k in range(2)]
    assert ver["voting"]["k"] == [1, 2, 3]
    assert ver["voting"]["weighted"][-1] == 50.0 * ((picks[0] == "19") + (picks[1] == "17"))
    assert ver["voting"]["majority"] == judged["voting"]["majority"]  # same answers, same draws
    assert (ver["model"], ver["scored"], ver["judge_calls"], judged["scored"]) == ("tiny-random", 4, 7, 5)
    assert ver["spec"] == JudgeSpec().model_dump()


def test_without_a_verifier_nothing_changes(runs):
    root, plain, judged = runs
    assert "verifier" not in plain and "scored" not in plain
    assert {k: v for k, v in judged.items() if k not in ("verifier", "scored")} == plain
    assert json.loads((root / "plain" / "metrics.json").read_text()) == plain
    extra = ("verifier_score", "verifier_chunk_probs")
    assert [{k: v for k, v in s.items() if k not in extra} for s in _samples(root / "judged")] == \
        _samples(root / "plain")
    assert not any(k in s for s in _samples(root / "plain") for k in extra)

    with_v, without = (root / "judged" / "report.md").read_text(), (root / "plain" / "report.md").read_text()
    assert "verifier" not in without
    head, _, tail = with_v.partition("\n\n## Self-reward vs external verifier `tiny-random` (same responses)\n")
    table, _, images = tail.partition("\n\n![calibration]")
    assert head + "\n\n![calibration]" + images == without
    lines = table.splitlines()
    assert lines[:2] == ["", "| metric | self-reward | verifier |"]
    f1 = judged["verifier"]["f1_all"]["f1"]
    assert f"| F1, all | {judged['f1_all']['f1']:.1f} | {'n/a' if f1 is None else f'{f1:.1f}'} |" in lines
    assert lines[-1] == "| responses scored | 5 | 4 |"


def test_cli_verifier_flags(tmp_path, capsys):
    out = tmp_path / "sv"
    assert main(["eval", "self-verify", "--model", "tiny-random", "--c-ref", "-10", "-n", "2", "--arith.n", "2",
                 "--max-tokens", "3", "--verifier", "tiny-random", "--verifier-engine.num-threads", "1",
                 "--verifier-spec.threshold", "0.4", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    samples = _samples(out)
    assert metrics["verifier"]["spec"]["threshold"] == 0.4 and len(samples) == 4
    assert metrics["verifier"]["scored"] == sum(s["verifier_score"] is not None for s in samples)
    assert "## Self-reward vs external verifier `tiny-random`" in (out / "report.md").read_text()
