"""``stream: true`` through the real ``openai`` client and raw SSE, against a real server on loopback."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch

from stepjudge.serve import create_app, serve_in_thread
from stepjudge.serve.stream import text_pieces

torch.set_num_threads(1)

MODEL = "tiny-judge"
KEY = "sk-stream-test"
PROMPT = "The answer is"
MESSAGES = [{"role": "user", "content": "Is 2 + 2 = 4?"}]


@pytest.fixture(scope="module")
def url(engine):
    with serve_in_thread(create_app(engine, MODEL, api_key=KEY, batch_window_ms=20)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)


def test_completion_stream_joins_to_the_plain_answer(client):
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0,
                                            stream=True))
    assert all(c.object == "text_completion" and c.model == MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert len(chunks) == 8 + 1  # one delta per token (8 tokens of non-empty text here), then the finish


def test_chat_stream_role_content_finish_and_usage(client):
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content for c in middle) == plain.choices[0].message.content
    assert finish.choices[0].finish_reason == "length" and finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == \
        plain.usage.model_dump(include={"prompt_tokens", "completion_tokens"})


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0,
                                                 stream=True))
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)


def test_stream_of_prompt_list_with_n_keeps_each_choice_apart(client):
    plain = client.completions.create(model=MODEL, prompt=[PROMPT, "Two"], n=2, max_tokens=4, seed=3,
                                      temperature=1.0)
    chunks = list(client.completions.create(model=MODEL, prompt=[PROMPT, "Two"], n=2, max_tokens=4, seed=3,
                                            temperature=1.0, stream=True))
    joined = {i: "".join(c.choices[0].text for c in chunks if c.choices[0].index == i) for i in range(4)}
    assert joined == {c.index: c.text for c in plain.choices}
    assert sorted(c.choices[0].index for c in chunks if c.choices[0].finish_reason) == [0, 1, 2, 3]


def test_stream_with_logprobs_carries_one_token_per_chunk(client):
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=0)
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=0,
                                            stream=True))
    tokens = [c.choices[0] for c in chunks if c.choices[0].finish_reason is None]
    assert [t.logprobs.tokens[0] for t in tokens] == plain.choices[0].logprobs.tokens
    assert [t.logprobs.token_logprobs[0] for t in tokens] == \
        pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-6)
    offsets = [t.logprobs.text_offset[0] for t in tokens]
    assert offsets == [sum(len(t.text) for t in tokens[:i]) for i in range(len(tokens))]


def test_stream_echo_sends_the_prompt_first(client):
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2, temperature=0, echo=True,
                                            stream=True))
    assert chunks[0].choices[0].text == PROMPT


def test_raw_sse_lines_end_with_done(url):
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", url + "/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    assert [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-2]][-1] == "length"


def test_stream_errors_before_the_stream_are_plain_json(url):
    resp = httpx.post(url + "/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                      json={"model": MODEL, "prompt": PROMPT, "stream": True, "echo": True, "logprobs": 0})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "stream"


# ---------------------------------------------------------------------- the deltas themselves
def _decode(engine):
    return lambda ids: engine.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("text", ["héllo wörld, 2 + 2 = 4", "emoji 🙂🙂 and 中文字符 mixed", "  spaced\n\nlines"])
def test_text_pieces_one_per_token_join_exactly(engine, text):
    ids = engine.tokenizer(text, add_special_tokens=False).input_ids
    full = _decode(engine)(ids)
    pieces = text_pieces(_decode(engine), ids, full)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == full
    assert not any("\ufffd" in p for p in pieces)


def test_text_pieces_are_cut_where_the_engine_cut_a_stop_string(engine):
    ids = engine.tokenizer("one two three four five", add_special_tokens=False).input_ids
    pieces = text_pieces(_decode(engine), ids, "one two th")
    assert len(pieces) == len(ids) and "".join(pieces) == "one two th"
    assert pieces[:2] == ["one", " two"]


def test_text_pieces_without_tokens_send_the_text_once():
    assert text_pieces(lambda ids: "", [], "whole") == ["whole"]
    assert text_pieces(lambda ids: "", [], "") == []
