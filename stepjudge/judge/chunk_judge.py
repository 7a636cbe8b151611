"""One object that judges chunks: the shared core of Chunk-Reset, best-of-N scoring and data selection.

A query is (problem, earlier chunks, new chunk); the answer is a verdict plus a probability of
Positive. Two ways to get that probability, chosen by ``JudgeSpec.score``:

* ``token-prob``: the judge's answer is pre-filled with ``response_prefix`` (``"\\boxed{"``) and the
  verdict token's probability is read from one forward pass (:mod:`stepjudge.judge.scoring`). Cheap and
  deterministic; the natural choice for the verdict-only judge. Verdict = P(Positive) >= ``threshold``.
* ``votes``: sample ``votes`` judgements (the judge reasons first, as StepWiser's generative judge
  does) and take the share of Positive among the parsed ones; the verdict is their majority
  (:func:`stepjudge.judge.verdicts.majority_verdict`). Works with any engine, including remote ones.

Every query costs one "judge call" (``votes`` samples of it in votes mode); the counts and judge
tokens are kept in :attr:`ChunkJudge.calls` / :attr:`ChunkJudge.tokens` for the Chunk-Reset report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.grading.extract import extract_verdict
from stepjudge.judge.dataset import stepwise_verdict_only_messages
from stepjudge.judge.prompts import stepwise_judge_messages
from stepjudge.judge.scoring import (
    TOKEN_PROB_NEEDS,
    positive_probabilities,
    prefill_answer,
    reasoned_positive_probabilities,
)
from stepjudge.judge.verdicts import majority_verdict
from stepjudge.judge.warmup import WarmupConfig, warmup_prompt

__all__ = ["JudgeSpec", "ChunkQuery", "ChunkVerdict", "ChunkJudge"]

PROMPTS = {"stepwise": stepwise_judge_messages, "no-cot": stepwise_verdict_only_messages}


class JudgeSpec(BaseModel):
    """How a trained judge is asked and read. The defaults fit the verdict-only (no-CoT) judge."""

    model_config = ConfigDict(extra="forbid")

    prompt: Literal["stepwise", "no-cot"] = Field(
        "no-cot", description="stepwise = StepWiser's reason-then-verdict prompt; no-cot = verdict only")
    response_prefix: str = Field("\\boxed{", description="pre-filled answer start ('' for a reasoning judge)")
    score: Literal["token-prob", "votes", "reasoned-prob"] = Field(
        "token-prob", description="P(Positive) from the verdict token (hf engine, needs the prefix), from the "
                                  "share of Positive among sampled votes, or (reasoned-prob, hf engine) from the "
                                  "verdict token after the judge's greedy reasoning of up to max_tokens")
    votes: int = Field(1, ge=1, description="votes mode: judgements sampled per chunk")
    temperature: float = Field(1.0, ge=0, description="votes mode: sampling temperature (0 with votes=1)")
    max_tokens: int = Field(8, ge=1, description="votes mode: judge output tokens (raise for a reasoning judge)")
    threshold: float = Field(0.5, ge=0, le=1, description="Positive when P(Positive) >= threshold")
    unparsed_as: Literal["Positive", "Negative"] = Field(
        "Positive", description="votes mode: a chunk with no parseable vote gets this verdict")
    seed: int = Field(0, description="sampling seed of the judge (votes mode)")
    warmup: WarmupConfig | None = Field(
        None, description="ask the judge as its warm-up did (its `prompt` and `variant`, e.g. compact + "
                          "reference); overrides `prompt`. None = the `prompt` above")


@dataclass(frozen=True)
class ChunkQuery:
    problem: str
    history: tuple[str, ...]
    chunk: str


@dataclass
class ChunkVerdict:
    verdict: Literal["Positive", "Negative"]
    p_positive: float
    votes: list[str | None] = field(default_factory=list)  # votes mode: parsed verdict of each sample
    tokens: int = 0  # judge output tokens spent on this query


class ChunkJudge:
    """Judges batches of chunks with one engine call per batch (the engine does the batching)."""

    def __init__(self, engine: Engine, spec: JudgeSpec | dict | None = None):
        self.engine = engine
        self.spec = spec if isinstance(spec, JudgeSpec) else JudgeSpec(**(spec or {}))
        if self.spec.score == "token-prob" and not self.spec.response_prefix:
            raise ValueError("score='token-prob' reads the verdict token after a response_prefix such as "
                             "'\\boxed{'; set one, or use score='votes'")
        if self.spec.score in ("token-prob", "reasoned-prob"):  # fail at setup, not after the policy sampled
            engine.require(*TOKEN_PROB_NEEDS, needed_for="score='token-prob'; use score='votes' with this engine")
        self.calls = 0
        self.tokens = 0

    def messages(self, q: ChunkQuery):
        if self.spec.warmup is not None:
            return warmup_prompt({"problem": q.problem, "history": list(q.history), "chunk": q.chunk},
                                 self.spec.warmup)
        return PROMPTS[self.spec.prompt](q.problem, list(q.history), q.chunk)

    def judge(self, queries: Sequence[ChunkQuery]) -> list[ChunkVerdict]:
        if not queries:
            return []
        prompts = [self.messages(q) for q in queries]
        self.calls += len(queries)
        spec = self.spec
        if spec.score == "token-prob":
            probs = positive_probabilities(self.engine, prompts, spec.response_prefix)
            return [ChunkVerdict("Positive" if p >= spec.threshold else "Negative", p) for p in probs]
        if spec.score == "reasoned-prob":
            probs, _, tokens = reasoned_positive_probabilities(
                self.engine, prompts, max_tokens=spec.max_tokens, response_prefix=spec.response_prefix,
                seed=spec.seed)
            self.tokens += sum(tokens)
            return [ChunkVerdict("Positive" if p >= spec.threshold else "Negative", p, [], t)
                    for p, t in zip(probs, tokens, strict=True)]
        prompts = prefill_answer(self.engine, prompts, spec.response_prefix)
        temp = 0.0 if spec.votes == 1 and spec.temperature == 0 else spec.temperature
        params = SamplingParams(n=spec.votes, temperature=temp, max_tokens=spec.max_tokens, seed=spec.seed)
        out = []
        for res in self.engine.generate(prompts, params):
            votes = [extract_verdict(spec.response_prefix + t) for t in res.texts]
            parsed = [v for v in votes if v is not None]
            p = (sum(v == "Positive" for v in parsed) / len(parsed) if parsed
                 else float(spec.unparsed_as == "Positive"))
            tokens = sum(c.num_tokens for c in res.completions)
            self.tokens += tokens
            out.append(ChunkVerdict(majority_verdict(votes, unparsed_as=spec.unparsed_as), p, votes, tokens))
        return out
