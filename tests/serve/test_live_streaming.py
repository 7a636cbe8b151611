"""Token-by-token streaming: deltas leave while the batch still decodes, and join to the plain answer.

The incremental detokenizer is checked on the real tokenizer; the timing with the real ``openai`` client
on a real loopback server."""

from __future__ import annotations

import threading
import time

import openai
import pytest
import torch

from stepjudge.engines.base import Capability, truncate_at_stop
from stepjudge.engines.hf import HFEngine
from stepjudge.serve import create_app, serve_in_thread
from stepjudge.serve.stream import ChoiceStream, IncrementalDetokenizer

torch.set_num_threads(1)

MODEL = "tiny-judge"
PROMPT = "The answer is"


@pytest.fixture(scope="module")
def client(engine):
    with serve_in_thread(create_app(engine, MODEL, batch_window_ms=5)) as base:
        yield openai.OpenAI(base_url=base, api_key="EMPTY", max_retries=0, timeout=120)


def _decode(engine):
    return lambda ids: engine.tokenizer.decode(ids, skip_special_tokens=True)


# ---------------------------------------------------------------------- the detokenizer
@pytest.mark.parametrize("text", ["emoji 🙂🙂 and 中文字符 mixed", "héllo wörld\n\n  2 + 2 = 4", "ǅ𝔘𝔫𝔦"])
def test_incremental_detokenizer_holds_split_characters_until_complete(engine, text):
    ids = engine.tokenizer(text, add_special_tokens=False).input_ids
    detok = IncrementalDetokenizer(_decode(engine))
    pieces = [detok.push(t) for t in ids]
    assert "".join(pieces) + detok.flush() == text
    assert not any("\ufffd" in p for p in pieces)
    if len(ids) > len(text.encode()) // 4 and any(ord(ch) > 0xFFFF for ch in text):
        assert "" in pieces  # a 4-byte character spread over tokens waited for its last byte


def test_choice_stream_never_sends_a_stop_string_or_what_follows(engine):
    text = "one two three four five"
    ids = engine.tokenizer(text, add_special_tokens=False).input_ids
    stream = ChoiceStream(_decode(engine), stop=("thr", "zzz"))
    sent = [stream.push(t) for t in ids]
    assert "".join(sent) + stream.finish() == "one two "
    assert all("t" not in p for p in sent[2:])  # "t" of "two"/"three" was held until it was not "thr"


def test_choice_stream_releases_a_false_stop_prefix(engine):
    text = "one two thirty"
    ids = engine.tokenizer(text, add_special_tokens=False).input_ids
    stream = ChoiceStream(_decode(engine), stop=("thr",))
    joined = "".join(stream.push(t) for t in ids) + stream.finish()
    assert joined == text and stream.sent == text


def test_choice_stream_matches_the_engine_cut_on_random_token_runs(engine):
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        ids = torch.randint(0, len(engine.tokenizer), (40,), generator=gen).tolist()
        full = _decode(engine)(ids)
        stop = (full[10:13],) if len(full) > 13 else ()
        stream = ChoiceStream(_decode(engine), stop=stop)
        joined = "".join(stream.push(t) for t in ids) + stream.finish()
        assert joined == truncate_at_stop(full, stop)[0]


# ---------------------------------------------------------------------- the live server
def _timed(chunks) -> list[tuple[float, object]]:
    return [(time.perf_counter(), c) for c in chunks]


def test_first_delta_arrives_long_before_the_last_token(client):
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=300, temperature=0, extra_body={"ignore_eos": True})
    plain = client.completions.create(**kw).choices[0].text
    t0 = time.perf_counter()
    timed = _timed(client.completions.create(stream=True, **kw))
    text_times = [t for t, c in timed if c.choices[0].text]
    end = timed[-1][0]
    assert "".join(c.choices[0].text for _, c in timed) == plain
    # Whole-answer-at-once would put every delta within a few ms of the end. Here the first delta
    # comes in the first quarter of the request, and the deltas are spread over its whole duration.
    assert text_times[0] - t0 < 0.25 * (end - t0)
    assert end - text_times[0] > 0.5 * (end - t0)
    assert len({round(t, 2) for t in text_times}) > 10  # many separate reads, not one burst


def test_chat_stream_with_stop_and_n_joins_per_choice(client):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Count."}], n=3, max_tokens=40, seed=7,
              temperature=1.0)
    plain = client.chat.completions.create(**kw)
    stop = plain.choices[0].message.content[5:8]
    plain = client.chat.completions.create(stop=[stop], **kw)
    chunks = list(client.chat.completions.create(stop=[stop], stream=True, **kw))
    joined = {k: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == k)
              for k in range(3)}
    assert joined == {c.index: c.message.content for c in plain.choices}
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason}
    assert finishes == {c.index: c.finish_reason for c in plain.choices}
    assert finishes[0] == "stop"


def test_streamed_and_plain_requests_merged_in_one_batch(engine):
    app = create_app(engine, MODEL, batch_window_ms=400)
    with serve_in_thread(app) as base:
        cl = openai.OpenAI(base_url=base, api_key="EMPTY", max_retries=0, timeout=120)
        kw = dict(model=MODEL, max_tokens=30, temperature=0, extra_body={"ignore_eos": True})
        out: dict[str, str] = {}

        def plain() -> None:
            out["plain"] = cl.completions.create(prompt="Two", **kw).choices[0].text

        before = app.state.batches_run
        thread = threading.Thread(target=plain)
        thread.start()
        streamed = "".join(c.choices[0].text for c in cl.completions.create(prompt=PROMPT, stream=True, **kw))
        thread.join()
        assert app.state.batches_run == before + 1  # one generate call served both
        alone = cl.completions.create(prompt=PROMPT, **kw).choices[0].text
        assert streamed == alone and out["plain"] == cl.completions.create(prompt="Two", **kw).choices[0].text


class _NoStreamingEngine(HFEngine):
    capabilities = frozenset(Capability) - {Capability.TOKEN_STREAMING}


def test_engine_without_token_streaming_still_streams_the_answer(engine):
    eng = _NoStreamingEngine(engine.model, engine.tokenizer)
    with serve_in_thread(create_app(eng, MODEL)) as base:
        cl = openai.OpenAI(base_url=base, api_key="EMPTY", max_retries=0, timeout=120)
        kw = dict(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=0)
        plain = cl.completions.create(**kw).choices[0]
        chunks = list(cl.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == plain.text
    assert [c.choices[0].logprobs.tokens[0] for c in chunks if c.choices[0].finish_reason is None] == \
        plain.logprobs.tokens
