"""ChunkJudge: token-probability and vote scoring on the tiny model, with call/token accounting."""

import math

import pytest

from stepjudge.engines.base import Completion, Engine, GenerationResult
from stepjudge.engines.hf import HFEngine
from stepjudge.errors import EngineCapabilityError
from stepjudge.judge.chunk_judge import ChunkJudge, ChunkQuery, JudgeSpec
from stepjudge.judge.scoring import positive_probabilities

Q = [ChunkQuery("Start with 4. Add 3.", (), "4 + 3 = 7"),
     ChunkQuery("Start with 4. Add 3. Add 5.", ("4 + 3 = 7",), "7 + 5 = 13")]


@pytest.fixture(scope="module")
def engine():
    return HFEngine("tiny-random")


def test_token_prob_verdicts_follow_the_threshold(engine):
    judge = ChunkJudge(engine, {"threshold": 0.5})
    out = judge.judge(Q)
    probs = positive_probabilities(engine, [judge.messages(q) for q in Q])
    assert [v.p_positive for v in out] == pytest.approx(probs)
    assert [v.verdict for v in out] == ["Positive" if p >= 0.5 else "Negative" for p in probs]
    assert judge.calls == 2 and judge.tokens == 0
    strict = ChunkJudge(engine, {"threshold": 1.0}).judge(Q)
    assert [v.verdict for v in strict] == ["Negative", "Negative"]


def test_votes_mode_counts_votes_and_tokens(engine):
    judge = ChunkJudge(engine, JudgeSpec(score="votes", votes=3, max_tokens=3, temperature=1.0))
    out = judge.judge(Q)
    assert judge.calls == 2
    for v in out:
        assert len(v.votes) == 3 and 3 <= v.tokens <= 9
        parsed = [x for x in v.votes if x is not None]
        assert v.p_positive == (sum(x == "Positive" for x in parsed) / len(parsed) if parsed else 1.0)
    assert judge.tokens == sum(v.tokens for v in out)


def test_token_prob_needs_a_prefix():
    with pytest.raises(ValueError, match="response_prefix"):
        ChunkJudge(object(), {"response_prefix": ""})


class VotesOnly(Engine):
    """A real engine with generation only: always votes Positive."""

    model_name = "votes-only"

    def generate(self, prompts, params):
        return [GenerationResult([Completion("\\boxed{Positive}", 4, "stop")] * params.n) for _ in prompts]


def test_token_prob_on_an_engine_without_token_logprobs_fails_at_setup():
    with pytest.raises(EngineCapabilityError) as info:
        ChunkJudge(VotesOnly())
    assert str(info.value) == ("VotesOnly (votes-only) has no next-token log-probs (needed for "
                               "score='token-prob'; use score='votes' with this engine)")
    # votes mode needs only generation when there is no pre-filled answer to render
    out = ChunkJudge(VotesOnly(), JudgeSpec(score="votes", response_prefix="", votes=2)).judge(Q[:1])
    assert [(v.verdict, v.p_positive, v.votes) for v in out] == [("Positive", 1.0, ["Positive", "Positive"])]


def test_reasoned_prob_reads_the_verdict_token_after_the_greedy_reasoning(engine):
    from stepjudge.engines.base import SamplingParams
    from stepjudge.judge.scoring import verdict_token_ids

    spec = JudgeSpec(score="reasoned-prob", response_prefix="", max_tokens=6, warmup={"variant": "reference"})
    judge = ChunkJudge(engine, spec)
    out = judge.judge(Q)
    # the same numbers by hand: greedy reasoning (stopped at "\boxed{"), then the two verdict tokens' log-probs
    rendered = [engine.render(judge.messages(q)) for q in Q]
    gen = engine.generate(rendered, SamplingParams(n=1, temperature=0.0, max_tokens=6, stop=("\\boxed{",)))
    pos, neg = verdict_token_ids(engine.tokenizer)
    lps = engine.next_token_logprobs([t + r.texts[0] + "\\boxed{" for t, r in zip(rendered, gen, strict=True)], [pos, neg])
    expect = [1 / (1 + math.exp(b - a)) for a, b in lps]
    assert [v.p_positive for v in out] == pytest.approx(expect, rel=1e-5)
    assert [v.verdict for v in out] == ["Positive" if p >= 0.5 else "Negative" for p in expect]
    assert judge.tokens == sum(r.completions[0].num_tokens for r in gen) and judge.calls == 2
    # the reference warm-up prompt is what the judge was asked
    assert "Write: Expected:" in rendered[0]
