"""HFEngine's ``on_tokens`` hook: one event per live sample and decode step, the same tokens as the result."""

from __future__ import annotations

import pytest
import torch

from stepjudge.engines.base import Capability, SamplingParams, TokenEvent
from stepjudge.engines.hf import HFEngine

PROMPTS = ["Start with 2.", "Add 9 and then some more words here.", "x"]


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    torch.set_num_threads(1)
    return HFEngine("tiny-random", max_batch_rows=4)  # 3 prompts x n=2 -> two decode batches


def _collect(engine: HFEngine, prompts, params) -> tuple[list, list[list[TokenEvent]]]:
    steps: list[list[TokenEvent]] = []
    results = engine.generate(prompts, params, on_tokens=steps.append)
    return results, steps


def _per_sample(steps: list[list[TokenEvent]]) -> dict[tuple[int, int], list[TokenEvent]]:
    out: dict[tuple[int, int], list[TokenEvent]] = {}
    for step in steps:
        for ev in step:
            out.setdefault((ev.prompt, ev.sample), []).append(ev)
    return out


def test_hf_engine_declares_token_streaming(engine):
    assert engine.supports(Capability.TOKEN_STREAMING)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_events_rebuild_every_sample_exactly(engine, share_prefix):
    eng = engine if share_prefix else HFEngine(engine.model, engine.tokenizer, share_prefix=False, max_batch_rows=4)
    params = SamplingParams(n=2, temperature=1.0, max_tokens=7, seed=5, logprobs=True, ignore_eos=True)
    results, steps = _collect(eng, PROMPTS, params)
    samples = _per_sample(steps)
    assert set(samples) == {(i, k) for i in range(3) for k in range(2)}
    for (i, k), events in samples.items():
        c = results[i].completions[k]
        assert [e.token_id for e in events] == c.token_ids
        assert [e.logprob for e in events] == pytest.approx(c.logprobs, abs=1e-6)
        assert [e.finish_reason for e in events] == [None] * 6 + ["length"]
    # every call is one decode step of one batch: never more events than rows in the batch
    assert max(len(s) for s in steps) <= 4 and len(steps) == 7 * 2


def test_the_hook_does_not_change_what_is_sampled(engine):
    params = SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=11)
    plain = engine.generate(PROMPTS, params)
    hooked, _ = _collect(engine, PROMPTS, params)
    assert [r.texts for r in hooked] == [r.texts for r in plain]


def test_a_sample_ending_on_eos_gets_a_tokenless_last_event(engine):
    greedy = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    ids = engine.generate([PROMPTS[0]], greedy)[0].completions[0].token_ids
    end = ids[2]  # make the third greedy token an end-of-sequence id
    first = ids.index(end)
    params = SamplingParams(temperature=0, max_tokens=6, stop_token_ids=(end,))
    results, steps = _collect(engine, [PROMPTS[0]], params)
    events = _per_sample(steps)[(0, 0)]
    assert results[0].completions[0].token_ids == ids[:first]
    assert [e.token_id for e in events] == [*ids[:first], None]
    assert events[-1].finish_reason == "stop" and all(e.finish_reason is None for e in events[:-1])
    assert len(steps) == first + 1  # the batch stopped with its only sample


def test_a_stop_string_ends_the_sample_on_its_token(engine):
    greedy = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    text = engine.generate([PROMPTS[1]], greedy)[0].completions[0].text
    stop = text[3:6]
    results, steps = _collect(engine, [PROMPTS[1]], SamplingParams(temperature=0, max_tokens=8, stop=(stop,)))
    events = _per_sample(steps)[(0, 0)]
    c = results[0].completions[0]
    assert c.finish_reason == "stop" and events[-1].finish_reason == "stop"
    assert [e.token_id for e in events] == c.token_ids  # the token holding the stop string is reported
