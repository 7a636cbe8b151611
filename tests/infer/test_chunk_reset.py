"""Chunk-Reset Reasoning: exact bookkeeping (tries, resets, tokens, judge calls), batching, run folder, CLI.

The tiny random model never writes ``</chunk>``, so the bookkeeping tests give the policy a scripted
engine that writes a known number of chunks per problem (a test double for the policy's *text* only);
the judge is the real :class:`ChunkJudge` on the tiny model, with threshold 1.0 (every verdict Negative)
or 0.0 (every verdict Positive). One test runs the real tiny model end to end through the CLI.
"""

import json
import re

import pytest
import torch

from stepjudge.cli.main import main
from stepjudge.engines.base import Completion, Engine, GenerationResult, SamplingParams
from stepjudge.engines.hf import HFEngine
from stepjudge.errors import RunFolderError
from stepjudge.infer.chunk_reset import (
    ChunkResetConfig,
    _stopped_at_close,
    chunk_reset_solve,
    round_seed,
    run_chunk_reset,
    split_try,
)
from stepjudge.judge.chunk_judge import ChunkJudge, JudgeSpec
from stepjudge.segment.chunks import CLOSE
from stepjudge.tasks.arith import generate_problems

torch.set_num_threads(1)

PROBLEMS = generate_problems(n=5, steps=2, seed=0)


def n_chunks(problem) -> int:
    """How many chunks the scripted policy writes for a problem (1..3, varies across PROBLEMS)."""
    return int(re.search(r"Start with (\d+)", problem.problem).group(1)) % 3 + 1


class ScriptedPolicy(Engine):
    """Writes ``n_chunks`` chunks, then ``\\boxed{19}``; a try's text and token count depend on the round
    seed and the row, so re-sampled tries differ. Logs every call's prompts."""

    model_name = "scripted"

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []
        self.tokens_by_problem: dict[str, int] = {}

    def generate(self, prompts, params: SamplingParams):
        self.calls.append(list(prompts))
        out = []
        for row, prompt in enumerate(prompts):
            tail = prompt.rsplit("\n\n", 1)[-1]  # the problem line and the accepted chunks
            line = tail.split("\n", 1)[0]
            k = tail.count(CLOSE)
            tag = (params.seed + 31 * row) % 97
            if k < int(re.search(r"Start with (\d+)", line).group(1)) % 3 + 1:
                comp = Completion(f"<chunk>step {k} try {tag}", 5 + tag % 4, "stop")
            else:
                comp = Completion("\\boxed{19}", 4, "stop")
            self.tokens_by_problem[line] = self.tokens_by_problem.get(line, 0) + comp.num_tokens
            self.stats.completion_tokens += comp.num_tokens
            out.append(GenerationResult([comp]))
        self.stats.prompts += len(prompts)
        return out


class CountingJudge(ChunkJudge):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches: list[int] = []

    def judge(self, queries):
        self.batches.append(len(queries))
        return super().judge(queries)


@pytest.fixture(scope="module")
def tiny():
    return HFEngine("tiny-random", num_threads=1)


def solve(policy, judge, **kw):
    return chunk_reset_solve(PROBLEMS, policy, judge, **{"max_tries": 3, "seed": 5, **kw})


def test_always_negative_judge_uses_every_try_and_keeps_the_last(tiny):
    policy, judge = ScriptedPolicy(), CountingJudge(tiny, JudgeSpec(threshold=1.0))
    recs = solve(policy, judge)
    for p, r in zip(PROBLEMS, recs, strict=True):
        c = n_chunks(p)
        assert len(r["chunks"]) == c and r["tries"] == [3] * c
        assert r["kept_after_max"] == [True] * c and r["kept_after_max_count"] == c
        assert r["judge_calls"] == 3 * c and r["resets"] == 2 * c == len(r["rejected"])
        assert [(x["index"], x["try"]) for x in r["rejected"]] == [(j, t) for j in range(c) for t in (1, 2)]
        assert r["rejected_tokens"] == sum(x["tokens"] for x in r["rejected"]) > 0
        assert r["final_segment"] == "\\boxed{19}" and r["status"] == "finished" and r["rounds"] == 3 * c + 1
        assert r["correct"] == (p.answer == "19") and r["answer"] == "19"
        assert all(x["p_positive"] < 1.0 for x in r["rejected"])
    assert judge.calls == sum(r["judge_calls"] for r in recs) == 3 * sum(map(n_chunks, PROBLEMS))
    # a rejected try is re-sampled from the same prefix: each prompt is sent max_tries times in a row
    prompts_of = {p.problem: [x for call in policy.calls for x in call if x.rsplit("\n\n", 1)[-1].startswith(p.problem)]
                  for p in PROBLEMS}
    for p in PROBLEMS:
        seq = prompts_of[p.problem]
        c = n_chunks(p)
        assert len(seq) == 3 * c + 1 and all(seq[3 * j] == seq[3 * j + 1] == seq[3 * j + 2] for j in range(c))
        assert len(set(seq)) == c + 1


def test_always_positive_judge_matches_the_no_judge_run(tiny):
    base = solve(ScriptedPolicy(), None)
    judged = solve(ScriptedPolicy(), ChunkJudge(tiny, JudgeSpec(threshold=0.0)))
    keys = ("chunks", "final_text", "answer", "correct", "tries", "accepted_tokens", "status", "rounds")
    assert [{k: r[k] for k in keys} for r in judged] == [{k: r[k] for k in keys} for r in base]
    for b, j in zip(base, judged, strict=True):
        assert j["rejected_tokens"] == 0 and j["resets"] == 0 and j["kept_after_max_count"] == 0
        assert j["judge_calls"] == len(j["chunks"]) and b["judge_calls"] == 0
        assert all(p is not None for p in j["p_positive"]) and b["p_positive"] == [None] * len(b["chunks"])


def test_judge_answer_vets_the_answer_segment_like_a_chunk(tiny):
    """judge_answer: the answer segment is judged too; a rejected one is re-sampled from the same prefix."""
    policy = ScriptedPolicy()
    recs = solve(policy, ChunkJudge(tiny, JudgeSpec(threshold=1.0)), judge_answer=True)
    for p, r in zip(PROBLEMS, recs, strict=True):
        c = n_chunks(p)
        assert r["tries"] == [3] * c and r["answer_tries"] == 3 and r["final_segment"] == "\\boxed{19}"
        answers = [x for x in r["rejected"] if x.get("answer")]
        assert [(x["index"], x["try"]) for x in answers] == [(c, 1), (c, 2)]  # then the 3rd try is kept
        assert r["judge_calls"] == 3 * (c + 1) and r["resets"] == 2 * (c + 1) and r["rounds"] == 3 * (c + 1)
        assert r["status"] == "finished" and r["answer_p_positive"] < 1.0
        assert r["accepted_tokens"] + r["rejected_tokens"] == policy.tokens_by_problem[p.problem]
    # off (the default): the answer is never judged
    plain = solve(ScriptedPolicy(), ChunkJudge(tiny, JudgeSpec(threshold=1.0)))
    assert all(r["answer_tries"] is None and not any(x.get("answer") for x in r["rejected"]) for r in plain)
    assert [r["judge_calls"] for r in plain] == [3 * n_chunks(p) for p in PROBLEMS]


def test_token_accounting_adds_up(tiny):
    policy = ScriptedPolicy()
    recs = solve(policy, ChunkJudge(tiny, JudgeSpec(threshold=1.0)), max_tries=2)
    for p, r in zip(PROBLEMS, recs, strict=True):
        assert r["accepted_tokens"] == sum(r["chunk_tokens"]) + r["final_tokens"]
        assert r["final_tokens"] == 4 and len(r["chunk_tokens"]) == n_chunks(p)
        # every token the policy wrote for this problem is either accepted or rejected
        assert r["accepted_tokens"] + r["rejected_tokens"] == policy.tokens_by_problem[p.problem]
    assert sum(r["accepted_tokens"] + r["rejected_tokens"] for r in recs) == policy.stats.completion_tokens


def test_one_policy_call_and_one_judge_call_per_round(tiny):
    policy, judge = ScriptedPolicy(), CountingJudge(tiny, JudgeSpec(threshold=1.0))
    solve(policy, judge, max_tries=2)
    rounds = [2 * n_chunks(p) + 1 for p in PROBLEMS]  # every try is one round; +1 for the answer
    assert [len(c) for c in policy.calls] == [sum(r > i for r in rounds) for i in range(max(rounds))]
    assert judge.batches == [sum(r - 1 > i for r in rounds) for i in range(max(rounds) - 1)]
    # the round seeds are the documented ones
    assert round_seed(5, 0) != round_seed(5, 1) and round_seed(5, 1) == round_seed(5, 1)


def test_split_try_and_stop_detection(tiny):
    assert split_try("<chunk>4 + 3 = 7", True) == ("chunk", "4 + 3 = 7")
    assert split_try(" 4 + 3 = 7 ", True) == ("chunk", "4 + 3 = 7")  # no opening tag written
    assert split_try("\\boxed{7}\n<chunk>7 + 1 = 8", True) == ("final", "\\boxed{7}")
    assert split_try("<chunk> ", True) == ("final", "<chunk>")
    assert split_try("\\boxed{7}", False) == ("final", "\\boxed{7}")
    stops = ("</chunk>", "\n\n")

    def comp(raw: str, text: str, finish="stop") -> Completion:
        return Completion(text, 3, finish, token_ids=tiny.tokenizer(raw, add_special_tokens=False).input_ids)

    assert _stopped_at_close(tiny, comp("<chunk>4 + 3 = 7</chunk>", "<chunk>4 + 3 = 7"), stops)
    assert not _stopped_at_close(tiny, comp("<chunk>4 + 3 = 7\n\n", "<chunk>4 + 3 = 7"), stops)
    assert not _stopped_at_close(tiny, comp("<chunk>4 + 3", "<chunk>4 + 3", "length"), stops)
    assert not _stopped_at_close(tiny, comp("\\boxed{7}", "\\boxed{7}"), stops)  # EOS
    # without token ids (openai): an opened chunk that stopped is taken as closed
    assert _stopped_at_close(ScriptedPolicy(), Completion("<chunk>x", 2, "stop"), stops)


def test_run_folder_summary_and_baseline(tiny, tmp_path):
    cfg = dict(problems="arith", arith={"n": 5, "steps": 2, "seed": 0}, policy="scripted", judge="tiny-random",
               judge_spec={"threshold": 1.0}, reset=True, max_tries=2, seed=5, out=str(tmp_path / "run"))
    summary = run_chunk_reset(cfg, policy_engine=ScriptedPolicy(), judge_engine=tiny, progress=False)
    out = tmp_path / "run"
    for f in ("run.json", "solutions.jsonl", "baseline_solutions.jsonl", "summary.json", "report.md"):
        assert (out / f).exists(), f
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((out / "run.json").read_text())["task"] == "solve"
    total = sum(map(n_chunks, PROBLEMS))
    reset, base = summary["methods"]["chunk_reset"], summary["methods"]["baseline"]
    for m in (reset, base):
        assert {"accuracy", "mean_accepted_tokens", "mean_rejected_tokens", "judge_calls",
                "judge_calls_per_problem", "resets", "kept_after_max", "seconds", "rounds"} <= set(m)
        assert m["problems"] == 5 and m["accuracy"] == sum(p.answer == "19" for p in PROBLEMS) / 5 == 0.2
    assert reset["judge_calls"] == 2 * total and reset["kept_after_max"] == total and reset["resets"] == total
    assert base["judge_calls"] == 0 and base["resets"] == 0 and base["mean_rejected_tokens"] == 0
    assert reset["mean_accepted_tokens"] > 0 and reset["mean_rejected_tokens"] > 0
    assert reset["arith_truth"]["judged_chunks_with_known_truth"] >= 0
    recs = [json.loads(x) for x in (out / "solutions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [p.id for p in PROBLEMS]
    assert "| Chunk-Reset |" in (out / "report.md").read_text()
    with pytest.raises(RunFolderError):  # other settings into the same folder are refused
        run_chunk_reset({**cfg, "max_tries": 3}, policy_engine=ScriptedPolicy(), judge_engine=tiny, progress=False)


def test_config_checks():
    with pytest.raises(ValueError, match="reset needs a judge"):
        ChunkResetConfig(reset=True)
    with pytest.raises(ValueError, match="response_prefix"):
        ChunkResetConfig(reset=True, judge="j", judge_spec={"response_prefix": ""})
    assert ChunkResetConfig(reset=True, judge="j", judge_spec={"response_prefix": "", "score": "votes"})
    assert ChunkResetConfig(reset=True, judge="j").run_baseline
    assert not ChunkResetConfig(reset=True, judge="j", compare_baseline=False).run_baseline
    assert ChunkResetConfig().run_baseline  # no reset: the baseline is the run


def test_cli_help_and_real_tiny_model_end_to_end(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["solve", "--help"])
    assert e.value.code == 0 and "--reset" in capsys.readouterr().out
    assert main(["solve", "--reset", "--problems", "arith"]) == 1
    assert "reset needs a judge" in capsys.readouterr().err
    out = tmp_path / "cli"
    assert main(["solve", "--policy", "tiny-random", "--judge", "tiny-random", "--reset", "--problems", "arith",
                 "--arith.n", "3", "--chunk-max-tokens", "6", "--max-tries", "2", "--temperature", "1.0",
                 "--engine.num-threads", "1", "--out", str(out), "--no-progress"]) == 0
    assert "Chunk-Reset" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"chunk_reset", "baseline"}
    for name, f in (("chunk_reset", "solutions.jsonl"), ("baseline", "baseline_solutions.jsonl")):
        recs = [json.loads(x) for x in (out / f).read_text().splitlines()]
        m = summary["methods"][name]
        assert len(recs) == 3 and m["judge_calls"] == sum(r["judge_calls"] for r in recs)
        for r in recs:
            assert r["accepted_tokens"] == sum(r["chunk_tokens"]) + r["final_tokens"]
            assert r["judge_calls"] <= 2 * len(r["chunks"]) and r["status"] in ("finished", "truncated", "max_chunks")
            assert r["final_text"].endswith(r["final_segment"])
