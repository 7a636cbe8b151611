"""OpenAIEngine retries transient failures with bounded, jittered back-off, against real loopback servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stepjudge.engines.base import SamplingParams
from stepjudge.engines.openai import OpenAIEngine, parse_retry_after, retry_delay
from stepjudge.errors import EngineError

MODEL = "tiny-judge"
PARAMS = SamplingParams(temperature=0, max_tokens=2)
ANSWER = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": MODEL,
          "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


# ---------------------------------------------------------------------- the policy, as pure functions
def test_retry_delay_doubles_up_to_the_cap_and_jitter_halves_at_most():
    assert [retry_delay(a, base_s=0.5, cap_s=8, jitter=1.0) for a in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert [retry_delay(a, base_s=0.5, cap_s=8, jitter=0.0) for a in range(6)] == [0.25, 0.5, 1, 2, 4, 4]
    assert retry_delay(1, base_s=0.5, cap_s=8, jitter=0.5) == 0.75


def test_retry_after_wins_but_is_capped():
    assert retry_delay(3, base_s=0.5, cap_s=8, retry_after_s=2.0, jitter=0.0) == 2.0
    assert retry_delay(0, base_s=0.5, cap_s=8, retry_after_s=120.0) == 8
    assert retry_delay(0, base_s=0.5, cap_s=8, retry_after_s=-3.0) == 0


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


# ---------------------------------------------------------------------- a server that fails on script
class _Script:
    """What the server answers, request by request (the last entry repeats), and when each came in."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]):
        self.answers, self.times = answers, []


def _handler(script: _Script):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length") or 0))
            script.times.append(time.monotonic())
            status, headers = script.answers[min(len(script.times), len(script.answers)) - 1]
            body = json.dumps(ANSWER if status == 200 else
                              {"error": {"message": f"scripted {status}", "type": "x", "code": None}}).encode()
            self.send_response(status)
            for k, v in {"content-type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def scripted() -> Iterator:
    servers = []

    def start(answers: list[tuple[int, dict[str, str]]]) -> tuple[str, _Script]:
        script = _Script(answers)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_429_and_503_are_retried_honouring_retry_after(scripted):
    url, script = scripted([(429, {"retry-after-ms": "300"}), (503, {}), (200, {})])
    with OpenAIEngine(url, MODEL, max_retries=3, retry_backoff_s=0.2, retry_max_backoff_s=2, seed=0) as eng:
        out = eng.generate(["hi"], PARAMS)
    assert out[0].texts == ["ok"] and len(script.times) == 3
    first, second = _gaps(script.times)
    assert first >= 0.3  # the server's Retry-After, not the 0.1-0.2 s back-off
    assert second >= 0.2  # attempt 1: 0.4 s scaled by a jitter in [0.5, 1]


def test_retry_after_longer_than_the_cap_waits_the_cap(scripted):
    url, script = scripted([(429, {"retry-after": "30"}), (200, {})])
    with OpenAIEngine(url, MODEL, max_retries=1, retry_backoff_s=0.1, retry_max_backoff_s=0.3) as eng:
        eng.generate(["hi"], PARAMS)
    assert 0.3 <= _gaps(script.times)[0] < 5


def test_a_503_that_stays_fails_clearly_after_max_retries(scripted):
    url, script = scripted([(503, {})])
    start = time.monotonic()
    with OpenAIEngine(url, MODEL, max_retries=2, retry_backoff_s=0.05, retry_max_backoff_s=0.1) as eng, \
            pytest.raises(EngineError) as info:
        eng.generate(["hi"], PARAMS)
    msg = str(info.value)
    assert len(script.times) == 3 and time.monotonic() - start < 10
    assert url in msg and "HTTP 503 after 3 tries" in msg and "(max_retries=2)" in msg and "scripted 503" in msg


def test_a_400_is_not_retried(scripted):
    url, script = scripted([(400, {})])
    with OpenAIEngine(url, MODEL, max_retries=4, retry_backoff_s=0.05) as eng, pytest.raises(EngineError) as info:
        eng.generate(["hi"], PARAMS)
    assert len(script.times) == 1
    assert str(info.value) == f"the server at {url} returned HTTP 400: scripted 400"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_down_then_up_is_waited_for():
    from stepjudge.engines.hf import HFEngine
    from stepjudge.serve import create_app, serve_in_thread

    app = create_app(HFEngine("tiny-random"), MODEL)
    port, stop, up = _free_port(), threading.Event(), threading.Event()

    def later() -> None:
        time.sleep(1.0)
        with serve_in_thread(app, port=port):
            up.set()
            stop.wait(60)

    threading.Thread(target=later, daemon=True).start()
    start = time.monotonic()
    try:
        with OpenAIEngine(f"http://127.0.0.1:{port}/v1", MODEL, max_retries=8, retry_backoff_s=0.2,
                          retry_max_backoff_s=1.0) as eng:
            out = eng.generate(["The answer is"], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    finally:
        stop.set()
    assert up.is_set() and time.monotonic() - start >= 1.0
    assert out[0].completions[0].num_tokens == 3


def test_a_server_that_stays_down_fails_in_bounded_time_naming_its_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    start = time.monotonic()
    with OpenAIEngine(url, MODEL, max_retries=3, retry_backoff_s=0.1, retry_max_backoff_s=0.2) as eng, \
            pytest.raises(EngineError) as info:
        eng.generate(["hi"], PARAMS)
    elapsed = time.monotonic() - start
    msg = str(info.value)
    assert 0.15 <= elapsed < 10  # 3 waits of at most 0.2 s each, plus three refused connects
    assert msg.startswith(f"the server at {url} is unreachable (") and "after 4 tries over" in msg
    assert "(max_retries=3)" in msg and "--engine.base-url" in msg
