"""OpenAIEngine against a real `stepjudge serve` app on loopback (tiny-random HFEngine behind it)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from stepjudge.engines.base import Capability, SamplingParams
from stepjudge.engines.factory import EngineConfig, make_engine
from stepjudge.engines.hf import HFEngine
from stepjudge.engines.openai import OpenAIEngine
from stepjudge.errors import EngineCapabilityError, EngineError
from stepjudge.judge.scoring import positive_probabilities
from stepjudge.serve import create_app, serve_in_thread

torch.set_num_threads(1)

MODEL = "tiny-judge"
PROMPT = "The answer is"
CHAT = [{"role": "user", "content": "Is 2 + 2 = 4? Answer yes or no."}]
KEY_ENV = "STEPJUDGE_TEST_SERVE_KEY"
SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def served():
    """(app, base_url): tiny-random served with a generous batching window so concurrency merges."""
    engine = HFEngine("tiny-random")
    app = create_app(engine, MODEL, batch_window_ms=50)
    with serve_in_thread(app) as url:
        yield app, url
    engine.close()


@pytest.fixture(scope="module")
def reference() -> HFEngine:
    """A second copy of the same weights, called in-process, to compare against."""
    return HFEngine("tiny-random")


@pytest.fixture(scope="module")
def client(served):
    _, url = served
    with OpenAIEngine(url, MODEL, max_concurrency=8, timeout_s=60, max_retries=1) as eng:
        yield eng


@pytest.fixture(scope="module")
def keyed_url():
    engine = HFEngine("tiny-random")
    with serve_in_thread(create_app(engine, MODEL, api_key=SECRET)) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("prompt", [PROMPT, CHAT], ids=["text", "chat"])
def test_greedy_matches_in_process_engine(client, reference, prompt):
    params = SamplingParams(temperature=0, max_tokens=12, logprobs=True)
    got = client.generate([prompt], params)[0]
    want = reference.generate([prompt], params)[0]
    assert len(got.completions) == 1
    g, w = got.completions[0], want.completions[0]
    assert g.text == w.text
    assert g.num_tokens == w.num_tokens
    assert g.finish_reason == w.finish_reason
    assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
    assert got.prompt_tokens == want.prompt_tokens


def test_n_samples_have_their_own_token_counts(client):
    res = client.generate([PROMPT, CHAT], SamplingParams(n=3, temperature=1.0, max_tokens=6, seed=1))
    assert len(res) == 2
    for r in res:
        assert len(r.completions) == 3
        for c in r.completions:
            assert 1 <= c.num_tokens <= 6
            assert (c.finish_reason == "length") == (c.num_tokens == 6)


def test_stop_string_cuts_text(client):
    full = client.generate([PROMPT], SamplingParams(temperature=0, max_tokens=12))[0].completions[0].text
    stop = full[2:5]
    assert len(stop) == 3
    got = client.generate([PROMPT], SamplingParams(temperature=0, max_tokens=12, stop=(stop,)))[0]
    c = got.completions[0]
    assert c.text == full[:full.find(stop)]
    assert stop not in c.text
    assert c.finish_reason == "stop"


@pytest.mark.parametrize("n", [1, 2])
def test_max_tokens_gives_length(client, n):
    res = client.generate([PROMPT], SamplingParams(n=n, temperature=0, max_tokens=5))[0]
    assert [(c.finish_reason, c.num_tokens) for c in res.completions] == [("length", 5)] * n


@pytest.mark.parametrize("prompt", [PROMPT, CHAT], ids=["text", "chat"])
def test_logprobs_one_per_token_and_nonpositive(client, prompt):
    res = client.generate([prompt], SamplingParams(n=2, temperature=1.0, max_tokens=7, logprobs=True))[0]
    for c in res.completions:
        assert c.logprobs is not None
        # A final EOS counts as a token but carries no logprob (the in-process engine drops it).
        eos = 1 if c.finish_reason == "stop" and len(c.logprobs) == c.num_tokens - 1 else 0
        assert len(c.logprobs) + eos == c.num_tokens
        assert all(lp <= 0 for lp in c.logprobs)
    res = client.generate([prompt], SamplingParams(temperature=0, max_tokens=7, logprobs=True))[0]
    assert len(res.completions[0].logprobs) == res.completions[0].num_tokens == 7


def test_no_logprobs_unless_asked(client):
    c = client.generate([PROMPT], SamplingParams(temperature=0, max_tokens=3))[0].completions[0]
    assert c.logprobs is None


def test_chat_without_use_chat_is_refused(served):
    _, url = served
    with OpenAIEngine(url, MODEL, use_chat=False) as eng:
        with pytest.raises(EngineError, match="use_chat"):
            eng.generate([CHAT], SamplingParams(max_tokens=2))
        assert eng.generate([PROMPT], SamplingParams(max_tokens=2))[0].completions[0].num_tokens == 2


def test_wrong_model_is_an_engine_error_with_status(served):
    _, url = served
    with OpenAIEngine(url, "no-such-model", max_retries=0) as eng, \
            pytest.raises(EngineError, match="404") as info:
        eng.generate([PROMPT], SamplingParams(max_tokens=2))
    assert "no-such-model" in str(info.value)


def test_missing_api_key_names_the_env_var(keyed_url, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with OpenAIEngine(keyed_url, MODEL, api_key_env=KEY_ENV, max_retries=0) as eng, \
            pytest.raises(EngineError) as info:
        eng.generate([PROMPT], SamplingParams(max_tokens=2))
    msg = str(info.value)
    assert KEY_ENV in msg and "401" in msg
    assert SECRET not in msg


def test_wrong_api_key_is_not_leaked(keyed_url, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-42")
    with OpenAIEngine(keyed_url, MODEL, api_key_env=KEY_ENV, max_retries=0) as eng:
        assert "sk-wrong" not in repr(eng)
        with pytest.raises(EngineError) as info:
            eng.generate([PROMPT], SamplingParams(max_tokens=2))
    msg = str(info.value)
    assert KEY_ENV in msg
    assert "sk-wrong-key-42" not in msg and SECRET not in msg


def test_right_api_key_works(keyed_url, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIEngine(keyed_url, MODEL, api_key_env=KEY_ENV) as eng:
        res = eng.generate([PROMPT, CHAT], SamplingParams(temperature=0, max_tokens=3))
    assert [r.completions[0].num_tokens for r in res] == [3, 3]


def test_concurrent_requests_are_merged_into_fewer_engine_calls(served, client, reference):
    app, _ = served
    prompts = ["Step" + " and step" * i + ": the value is" for i in range(8)]  # distinct lengths
    params = SamplingParams(temperature=0, max_tokens=4)
    before = app.state.batches_run
    res = client.generate(prompts, params)
    ran = app.state.batches_run - before
    assert len(res) == 8
    assert all(r.completions[0].num_tokens == 4 for r in res)
    # every answer went back to the request that asked for it
    assert [r.prompt_tokens for r in res] == [len(reference.encode(p)) for p in prompts]
    assert 1 <= ran < 8


def test_identical_concurrent_requests_match_single_request(served, client):
    """Merged prompts of equal length need no padding, so batching must not change greedy output."""
    params = SamplingParams(temperature=0, max_tokens=8)
    single = client.generate([PROMPT], params)[0].completions[0].text
    res = client.generate([PROMPT] * 8, params)
    assert [r.completions[0].text for r in res] == [single] * 8


def test_generate_from_worker_threads(client):
    params = SamplingParams(temperature=0, max_tokens=3)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: client.generate([f"{i} +"], params), range(4)))
    assert all(o[0].completions[0].num_tokens == 3 for o in outs)


def test_generate_inside_running_event_loop(client):
    params = SamplingParams(temperature=0, max_tokens=3)

    async def main():
        sync = client.generate([PROMPT], params)  # blocking call from inside a running loop
        awaited = await client.agenerate([PROMPT, CHAT], params)
        return sync, awaited

    sync, awaited = asyncio.run(main())
    assert sync[0].texts == awaited[0].texts
    assert len(awaited) == 2


def test_stats_are_updated(served):
    _, url = served
    with OpenAIEngine(url, MODEL) as eng:
        eng.generate([PROMPT, PROMPT], SamplingParams(n=2, temperature=0, max_tokens=3))
        assert eng.stats.prompts == 2
        assert eng.stats.completion_tokens == 12
        assert eng.stats.prompt_tokens > 0
        assert eng.stats.seconds > 0


def test_dead_server_is_reported_quickly():
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with OpenAIEngine(url, MODEL, max_retries=1, timeout_s=2) as eng, \
            pytest.raises(EngineError) as info:
        eng.generate([PROMPT], SamplingParams(max_tokens=2))
    assert time.monotonic() - start < 10
    msg = str(info.value)
    assert url in msg and "unreachable" in msg and "--engine.base-url" in msg


def test_factory_builds_openai_engine(served):
    _, url = served
    eng = make_engine(EngineConfig(kind="openai", model=MODEL, base_url=url, max_concurrency=2))
    try:
        assert isinstance(eng, OpenAIEngine)
        assert eng.max_concurrency == 2
        assert eng.generate([PROMPT], SamplingParams(max_tokens=2))[0].completions[0].num_tokens == 2
    finally:
        eng.close()


def test_closed_engine_refuses_work(served):
    _, url = served
    eng = OpenAIEngine(url, MODEL)
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        eng.generate([PROMPT], SamplingParams(max_tokens=2))


# ---------------------------------------------------------------------- capabilities
SCORED = [("The answer is", " yes"),
          ("Start with 4. Add 3. Add 5. Then subtract two", " and the total is 12."),
          ("The answer i", "s yes"),  # a token straddles the boundary: both engines count it
          ("", "Hello there"),
          ("x", "")]


def test_prompt_logprobs_through_echo_equal_the_hf_engine(client, reference):
    assert client.supports(Capability.PROMPT_LOGPROBS)
    got = client.prompt_logprobs([p for p, _ in SCORED], [t for _, t in SCORED])
    want = reference.prompt_logprobs([p for p, _ in SCORED], [t for _, t in SCORED])
    for g, w in zip(got, want, strict=True):
        assert (g.tokens, g.offsets) == (w.tokens, w.offsets)
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
    assert got[0].tokens == [" yes"] and got[2].offsets == [-2, 1] and got[4].logprobs == []
    assert got[3].logprobs[0] is None  # "Hello" starts the sequence: no log-prob, on both paths


def test_without_a_tokenizer_openai_lacks_rendering_tokenizer_and_next_token_logprobs(client):
    assert client.capabilities == frozenset({Capability.PROMPT_LOGPROBS})
    assert client.render(PROMPT) == PROMPT  # raw text needs no template
    name = f"OpenAIEngine ({MODEL})"
    with pytest.raises(EngineCapabilityError, match=rf"^{re.escape(name)} has no chat rendering \(needed for"):
        client.render(CHAT)
    with pytest.raises(EngineCapabilityError, match=rf"^{re.escape(name)} has no tokenizer"):
        _ = client.tokenizer
    with pytest.raises(EngineCapabilityError, match=rf"^{re.escape(name)} has no next-token log-probs$"):
        client.next_token_logprobs([PROMPT], [1])
    with pytest.raises(EngineCapabilityError, match="chat rendering"):
        client.prompt_logprobs([CHAT], [" yes"])  # a chat prompt must be rendered before it is scored
    with pytest.raises(EngineCapabilityError, match="next-token log-probs"):
        positive_probabilities(client, [CHAT])


def test_a_local_tokenizer_adds_chat_rendering(served, reference):
    _, url = served
    with OpenAIEngine(url, MODEL, tokenizer="tiny-random", use_chat=False) as eng:
        assert eng.supports(Capability.CHAT_RENDERING, Capability.TOKENIZER, Capability.PROMPT_LOGPROBS)
        assert not eng.supports(Capability.NEXT_TOKEN_LOGPROBS)
        assert eng.render(CHAT) == reference.render(CHAT)
        assert eng.tokenizer("x").input_ids == reference.tokenizer("x").input_ids
        # use_chat=False: chat is rendered here and sent as text, so it matches the in-process engine
        params = SamplingParams(temperature=0, max_tokens=5)
        assert eng.generate([CHAT], params)[0].texts == reference.generate([CHAT], params)[0].texts
        # a chat prompt scored through echo: the rendered template is sent as text
        (got,) = eng.prompt_logprobs([CHAT], ["\\boxed{Positive}"])
        (want,) = reference.prompt_logprobs([reference.render(CHAT)], ["\\boxed{Positive}"])
        assert got.tokens == want.tokens and got.logprobs == pytest.approx(want.logprobs, abs=1e-4)


def test_factory_passes_the_tokenizer(served):
    _, url = served
    with make_engine(EngineConfig(kind="openai", model=MODEL, base_url=url, tokenizer="tiny-random")) as eng:
        assert eng.supports(Capability.TOKENIZER)
