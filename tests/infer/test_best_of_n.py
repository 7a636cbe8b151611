"""Best-of-N: exact pick/vote rules, one batched judge call per scoring, the runner's run folder, the CLI."""

import json
import re
from pathlib import Path

import pytest
import torch

from stepjudge.engines.base import Completion, Engine, GenerationResult
from stepjudge.engines.hf import HFEngine
from stepjudge.errors import RunFolderError
from stepjudge.infer.best_of_n import (
    BestOfNConfig,
    accuracy_at_n,
    best_of_n,
    majority_vote,
    run_best_of_n,
    score_solutions,
    solution_score,
    weighted_vote,
)
from stepjudge.judge.chunk_judge import ChunkJudge, ChunkQuery
from stepjudge.tasks.arith import generate_problems

torch.set_num_threads(1)

ARITH = {"n": 2, "steps": 2, "seed": 0}
PROBLEMS = generate_problems(**ARITH)  # "Start with 7. Add 5. Add 7." -> 19, "Start with 8. Add 4. Add 5." -> 17


# ------------------------------------------------------------------------------------------- pure rules
def test_solution_score_is_the_chunk_mean_and_none_without_chunks():
    assert solution_score([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert solution_score([1.0]) == 1.0
    assert solution_score([]) is None


@pytest.mark.parametrize("answers, scores, expected", [
    (["1", "2", "3"], [0.1, 0.9, 0.5], 1),
    (["1", "2", "3"], [0.7, 0.7, 0.7], 0),            # tie -> lowest index
    (["1", "2", "3"], [0.2, 0.8, 0.8], 1),            # tie between 1 and 2 -> 1
    (["1", "2"], [None, 0.0], 1),                     # an unscored sample ranks below any score
    (["1", "2"], [None, None], 0),
    ([None, "2", None], [0.99, 0.1, 0.5], 1),         # answered samples come first
    ([None, None], [0.1, 0.3], 1),                    # no answers at all: score decides
    (["5"], [None], 0),
])
def test_best_of_n_picks_and_ties(answers, scores, expected):
    assert best_of_n(answers, scores) == expected


def test_best_of_n_rejects_bad_input():
    with pytest.raises(ValueError, match="answers but"):
        best_of_n(["1"], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one"):
        best_of_n([], [])


@pytest.mark.parametrize("answers, expected", [
    (["3", "4", "4", "3", "5"], "3"),                 # 2-2 tie -> seen first
    (["4", "3", "3"], "3"),
    ([None, None, "7", None], "7"),                   # None answers are ignored
    ([None, "2", "1", "1", "2"], "2"),
    ([None, None], None),                             # all None -> None
    ([], None),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


@pytest.mark.parametrize("answers, weights, expected", [
    (["3", "4", "3"], [0.2, 0.5, 0.2], "4"),          # 0.5 beats 0.4
    (["3", "4", "3"], [0.25, 0.5, 0.25], "3"),        # 0.5 = 0.5 -> seen first
    (["4", "3", "3"], [0.5, 0.25, 0.25], "4"),
    (["3", None, "4"], [0.1, 5.0, 0.2], "4"),         # a None answer's weight goes nowhere
    (["3", "4"], [None, 0.0], "3"),                   # None weight = 0; 0 = 0 -> seen first
    (["3", "4", "4"], [0.3, None, 0.2], "3"),
    ([None], [1.0], None),
])
def test_weighted_vote(answers, weights, expected):
    assert weighted_vote(answers, weights) == expected


def test_accuracy_at_n_repicks_from_the_first_n_samples():
    def sample(answer, correct, score):
        return {"answer": answer, "correct": correct, "score": score}

    # problem 1: first sample wrong; among the first 2 the judge prefers the right one; majority needs all 4
    p1 = [sample("5", False, 0.2), sample("7", True, 0.9), sample("5", False, 0.1), sample("7", True, 0.8)]
    # problem 2: only the 4th sample is right, and the judge likes it most
    p2 = [sample("1", False, 0.4), sample("2", False, 0.3), sample("3", False, 0.2), sample("4", True, 0.95)]
    records = [{"samples": p1}, {"samples": p2}]
    assert accuracy_at_n(records, 1) == {"first": 0.0, "majority": 0.0, "best_of_n": 0.0, "weighted": 0.0,
                                         "oracle": 0.0}
    assert accuracy_at_n(records, 2) == {"first": 0.0, "majority": 0.0, "best_of_n": 0.5, "weighted": 0.5,
                                         "oracle": 0.5}
    # n=4, problem 1: "5" and "7" tie 2-2 in votes and "5" was seen first; weights 0.3 vs 1.7 pick "7"
    assert accuracy_at_n(records, 4) == {"first": 0.0, "majority": 0.0, "best_of_n": 1.0, "weighted": 1.0,
                                         "oracle": 1.0}
    with pytest.raises(ValueError):
        accuracy_at_n(records, 0)


def test_weighted_vote_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="weights"):
        weighted_vote(["1"], [])


# ------------------------------------------------------------------------------------------- helpers
class ScriptedPolicy(Engine):
    """Returns fixed texts per problem (the random tiny model never writes chunks)."""

    model_name = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        super().__init__()
        self.script, self.calls = script, []

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params))
        out = []
        for p in prompts:
            problem = p.rstrip("\n").rsplit("\n", 1)[-1]
            texts = self.script[problem]
            assert len(texts) == params.n
            out.append(GenerationResult([Completion(t, len(t.split()), "stop") for t in texts]))
        return out


class ArithmeticJudge(Engine):
    """A votes-mode judge engine that knows arithmetic: Positive iff the chunk's equation holds."""

    model_name = "arith-judge"

    def __init__(self):
        super().__init__()
        self.prompts = 0

    def generate(self, prompts, params):
        out = []
        for msgs in prompts:
            self.prompts += 1
            chunk = msgs[-1]["content"].rsplit("New Reasoning Chunk:\n", 1)[-1]
            m = re.fullmatch(r"(\d+) \+ (\d+) = (\d+)", chunk.strip())
            ok = bool(m) and int(m[1]) + int(m[2]) == int(m[3])
            verdict = "\\boxed{Positive}" if ok else "\\boxed{Negative}"
            out.append(GenerationResult([Completion(verdict, 3, "stop")] * params.n))
        return out


def chunked(*equations: str, answer: str | None = None) -> str:
    text = "\n".join(f"<chunk>{e}</chunk>" for e in equations)
    return text + (f"\n\\boxed{{{answer}}}" if answer is not None else "")


# P0: 7 + 5 + 7 = 19.  P1: 8 + 4 + 5 = 17.
SCRIPT = {
    PROBLEMS[0].problem: [
        chunked("7 + 5 = 12", "12 + 7 = 20", answer="20"),   # wrong, score 0.5
        chunked("7 + 5 = 12", "12 + 7 = 20", answer="20"),   # wrong, score 0.5
        chunked("7 + 5 = 12", "12 + 7 = 19", answer="19"),   # right, score 1.0
        "7 and 5 and 7 make \\boxed{20}",                     # broken format, wrong, no score
    ],
    PROBLEMS[1].problem: [
        chunked("8 + 4 = 12", "12 + 5 = 17", answer="17"),   # right, score 1.0
        "It is \\boxed{17.}",                                 # broken format, right, no score
        chunked("8 + 3 = 11", "11 + 5 = 16", answer="16"),   # wrong operand, arithmetic fine: score 1.0
        chunked("8 + 4 = 12", "12 + 5 = 17"),                 # no answer, score 1.0
    ],
}


@pytest.fixture(scope="module")
def tiny():
    return HFEngine("tiny-random", num_threads=1)


# ------------------------------------------------------------------------------------------- scoring
def test_score_solutions_makes_one_call_covering_every_chunk(tiny, monkeypatch):
    judge = ChunkJudge(tiny)
    problems = ["Start with 7. Add 5.", "Start with 7. Add 5.", "Start with 1. Add 1."]
    sols = [["7 + 5 = 12", "so 12"], None, ["1 + 1 = 2", "2 is it", "done"]]
    seen = []
    real = judge.judge
    monkeypatch.setattr(judge, "judge", lambda qs: seen.append(list(qs)) or real(qs))
    probs = score_solutions(judge, problems, sols)

    assert len(seen) == 1 and judge.calls == 5  # one batch, one query per chunk
    assert seen[0] == [ChunkQuery(problems[0], (), "7 + 5 = 12"), ChunkQuery(problems[0], ("7 + 5 = 12",), "so 12"),
                       ChunkQuery(problems[2], (), "1 + 1 = 2"), ChunkQuery(problems[2], ("1 + 1 = 2",), "2 is it"),
                       ChunkQuery(problems[2], ("1 + 1 = 2", "2 is it"), "done")]
    assert [len(p) for p in probs] == [2, 0, 3]
    # each probability lands on its own chunk: judge the chunks one by one and compare
    single = ChunkJudge(tiny)
    alone = [single.judge([q])[0].p_positive for q in seen[0]]
    assert probs[0] + probs[2] == pytest.approx(alone, abs=1e-4)
    assert all(0 < p < 1 for p in alone) and len({round(p, 6) for p in alone}) > 1


def test_score_solutions_checks_lengths(tiny):
    with pytest.raises(ValueError, match="problems but"):
        score_solutions(ChunkJudge(tiny), ["p"], [])


# ------------------------------------------------------------------------------------------- runner
def _config(out, **kw):
    return BestOfNConfig(**{"problems": "arith", "arith": ARITH, "n": 4, "judge": "arith-judge",
                            "judge_spec": {"score": "votes", "response_prefix": "", "votes": 1, "temperature": 0},
                            "group_size": 1, "out": str(out), **kw})


def test_runner_exact_accuracies_and_run_folder(tmp_path):
    policy, judge = ScriptedPolicy(SCRIPT), ArithmeticJudge()
    summary = run_best_of_n(_config(tmp_path), policy_engine=policy, judge_engine=judge, progress=False)

    assert summary["accuracy"] == {"first": 0.5, "majority": 0.5, "best_of_n": 1.0, "weighted": 0.5,
                                   "oracle": 1.0}
    assert summary["judge_calls"] == judge.prompts == 12  # 6 chunked samples x 2 chunks
    assert summary["format_broken_samples"] == 2 and summary["samples_without_answer"] == 1
    assert [c[0] for c in policy.calls] == [1, 1] and all(c[1].n == 4 and c[1].stop == ("\n\n",)
                                                          for c in policy.calls)

    recs = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["problem_id"] for r in recs] == [p.id for p in PROBLEMS]
    r0, r1 = recs
    assert [s["score"] for s in r0["samples"]] == [0.5, 0.5, 1.0, None]
    assert [s["chunk_probs"] for s in r0["samples"]] == [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], None]
    assert [s["answer"] for s in r0["samples"]] == ["20", "20", "19", "20"]
    assert [s["correct"] for s in r0["samples"]] == [False, False, True, False]
    # weighted: "20" = 0.5 + 0.5 + 0 = 1.0 ties "19" = 1.0 -> "20", seen first
    assert r0["picks"] == {"first": 0, "best_of_n": 2, "majority": "20", "weighted": "20"}
    assert r0["correct"] == {"first": False, "majority": False, "best_of_n": True, "weighted": False,
                             "oracle": True}
    assert r0["samples"][3]["format_ok"] is False and r0["samples"][3]["chunks"] is None
    assert r0["prompt"].endswith(PROBLEMS[0].problem + "\n") and r0["judge_calls"] == 6
    # "17" and "17." vote together; best-of-N: s0 and s2 both 1.0 -> s0; the unanswered s3 is passed over
    assert [s["answer"] for s in r1["samples"]] == ["17", "17.", "16", None]
    assert r1["picks"] == {"first": 0, "best_of_n": 0, "majority": "17", "weighted": "17"}
    assert all(r1["correct"].values())

    assert json.loads((tmp_path / "summary.json").read_text())["accuracy"]["best_of_n"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert "| judge best-of-N | 100.0 | 2 / 2 |" in report and "| majority vote | 50.0 | 1 / 2 |" in report
    assert json.loads((tmp_path / "run.json").read_text())["task"] == "rerank"

    # Re-running finds every group done: no engine is touched, same summary.
    class Refuse(Engine):
        def generate(self, prompts, params):
            raise AssertionError("nothing should be regenerated")

    again = run_best_of_n(_config(tmp_path), policy_engine=Refuse(), judge_engine=Refuse(), progress=False)
    assert again["accuracy"] == summary["accuracy"]
    with pytest.raises(RunFolderError, match="n:"):
        run_best_of_n(_config(tmp_path, n=2), policy_engine=Refuse(), judge_engine=Refuse(), progress=False)


def test_runner_with_the_real_tiny_judge(tmp_path, tiny):
    """Token-probability scores from the real tiny model land on the right samples."""
    summary = run_best_of_n(_config(tmp_path, judge="tiny-random", judge_spec={}), policy_engine=ScriptedPolicy(SCRIPT),
                            judge_engine=tiny, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    judge = ChunkJudge(tiny)
    for p, r in zip(PROBLEMS, recs, strict=True):
        for s in r["samples"]:
            if s["chunks"] is None:
                assert s["chunk_probs"] is None and s["score"] is None
                continue
            expect = [v.p_positive for v in judge.judge(
                [ChunkQuery(p.problem, tuple(s["chunks"][:i]), c) for i, c in enumerate(s["chunks"])])]
            assert s["chunk_probs"] == pytest.approx(expect, abs=1e-4)
            assert s["score"] == pytest.approx(sum(expect) / len(expect), abs=1e-4)
        assert r["picks"]["best_of_n"] == best_of_n([s["answer"] for s in r["samples"]],
                                                    [s["score"] for s in r["samples"]])
    assert summary["judge_calls"] == 12
    assert summary["accuracy"]["first"] == 0.5 and summary["accuracy"]["oracle"] == 1.0


def test_cli_rerank_end_to_end_on_the_tiny_model(tmp_path, capsys):
    from stepjudge.cli.main import main

    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 3\nmax_tokens: 4\njudge_spec:\n  threshold: 0.5\n")
    rc = main(["rerank", "--config", str(cfg), "--judge", "tiny-random", "--policy", "tiny-random", "-n", "2",
               "--problems", "arith", "--limit", "2", "--policy-engine.num-threads", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "judge best-of-N" in text and "judge calls:" in text
    run = json.loads((out / "run.json").read_text())["config"]
    assert (run["n"], run["max_tokens"], run["limit"], run["policy_engine"]["num_threads"]) == (2, 4, 2, 1)
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(len(r["samples"]) == 2 for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 4 and summary["judge_calls"] == sum(r["judge_calls"] for r in recs)
    assert (out / "report.md").read_text().startswith("# Best-of-N")


def test_cli_help_and_config_errors(capsys):
    from stepjudge.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["rerank", "--help"])
    assert e.value.code == 0
    assert "stepjudge rerank --config configs/rerank_arith.yaml" in capsys.readouterr().out
    assert main(["rerank", "-n", "2"]) == 1
    assert "judge: Field required" in capsys.readouterr().err


def test_config_file_validates():
    import yaml

    path = Path(__file__).resolve().parents[2] / "configs" / "rerank_arith.yaml"
    cfg = BestOfNConfig(**yaml.safe_load(path.read_text()))
    assert (cfg.policy, cfg.prompt_style, cfg.temperature, cfg.n, cfg.judge) == (
        "smollm2-135m", "fewshot", 0.5, 8, "runs/judge-rl/final")
    assert cfg.judge_spec.score == "token-prob"


def test_chat_prompt_style_renders_the_solver_prompt(tmp_path, tiny):
    from stepjudge.policy.prompts import chunked_solver_messages

    summary = run_best_of_n(_config(tmp_path, n=2, max_tokens=4, prompt_style="chat", judge="tiny-random",
                                    judge_spec={}), policy_engine=tiny, judge_engine=tiny, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert recs[0]["prompt"] == tiny.render(chunked_solver_messages(PROBLEMS[0].problem))
    assert summary["samples"] == 4 and all(s["num_tokens"] <= 4 for r in recs for s in r["samples"])
