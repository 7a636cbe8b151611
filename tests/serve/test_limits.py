"""Auth, limits, load shedding, draining and /metrics of a real server on loopback (real openai client)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import httpx
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from stepjudge.engines.base import Completion, Engine, GenerationResult, Prompt, SamplingParams
from stepjudge.errors import StepJudgeError
from stepjudge.serve import ServeLimits, create_app, resolve_api_key, serve_in_thread
from stepjudge.serve.config import ServeConfig

torch.set_num_threads(1)

MODEL = "tiny-judge"
KEY = "sk-limits-test-0123456789"
PROMPT = "The answer is"


@pytest.fixture(scope="module")
def url(engine):
    limits = ServeLimits(max_request_bytes=64 * 1024, max_tokens_limit=100, max_n=4, max_model_len=48)
    with serve_in_thread(create_app(engine, MODEL, api_key=KEY, limits=limits)) as base:
        yield base


def client(url: str, key: str | None = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key or "none", max_retries=0, timeout=60)


def error_of(e: openai.APIStatusError) -> dict:
    assert set(e.body) == {"message", "type", "param", "code"}
    return e.body


# ---------------------------------------------------------------------- the key
def test_openai_client_gets_401_without_the_key_and_200_with_it(url):
    with pytest.raises(openai.AuthenticationError) as e:
        client(url, "wrong-key").completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
    assert e.value.status_code == 401 and error_of(e.value)["code"] == "invalid_api_key"
    assert KEY not in str(e.value.body)
    ok = client(url).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
    assert ok.choices[0].finish_reason in ("length", "stop")


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/v1/no-such-route", "/docs"])
def test_every_route_but_health_needs_the_key(url, path):
    root = url.removesuffix("/v1")
    resp = httpx.get(root + path)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(root + "/health").json() == {"status": "ok"}
    assert httpx.get(root + path, headers={"Authorization": f"Bearer {KEY}"}).status_code != 401


def test_key_precedence_flag_then_named_variable_then_stepjudge_api_key():
    env = {"STEPJUDGE_API_KEY": "from-default", "MINE": "from-named"}
    assert resolve_api_key("from-flag", "MINE", env) == "from-flag"
    assert resolve_api_key(None, "MINE", env) == "from-named"
    assert resolve_api_key(None, None, env) == "from-default"
    assert resolve_api_key(None, None, {}) is None
    with pytest.raises(StepJudgeError, match="UNSET"):
        resolve_api_key(None, "UNSET", env)


def test_the_app_does_not_show_the_key(engine):
    app = create_app(engine, MODEL, api_key=KEY)
    assert KEY not in repr(app.user_middleware) and KEY not in repr(vars(app.state))


def test_config_hides_the_key_and_binds_loopback_by_default():
    config = ServeConfig(api_key="s3cret-value")
    assert "s3cret-value" not in repr(config) and "s3cret-value" not in str(config.model_dump())
    assert config.host == "127.0.0.1"
    assert config.limits() == ServeLimits()


# ---------------------------------------------------------------------- limits
def test_max_tokens_of_a_billion_is_400_naming_the_limit(url):
    with pytest.raises(openai.BadRequestError) as e:
        client(url).completions.create(model=MODEL, prompt=PROMPT, max_tokens=10**9)
    err = error_of(e.value)
    assert err["param"] == "max_tokens" and err["code"] == "limit_exceeded"
    assert err["message"] == ("max_tokens=1000000000 is over this server's limit max_tokens_limit=100 "
                              "(--max-tokens-limit)")
    with pytest.raises(openai.BadRequestError) as e:
        client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                            max_completion_tokens=10**9)
    assert error_of(e.value)["param"] == "max_completion_tokens"


def test_n_over_the_limit_is_400(url):
    with pytest.raises(openai.BadRequestError) as e:
        client(url).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2, n=5)
    assert error_of(e.value)["message"] == "n=5 is over this server's limit max_n=4 (--max-n)"
    assert error_of(e.value)["param"] == "n"


def test_prompt_and_max_tokens_must_fit_the_context(url, engine):
    prompt = " ".join(["seven"] * 30)
    length = len(engine.encode(prompt))
    assert 20 < length < 48
    with pytest.raises(openai.BadRequestError) as e:
        client(url).completions.create(model=MODEL, prompt=prompt, max_tokens=48 - length + 1)
    err = error_of(e.value)
    assert err["code"] == "context_length_exceeded" and err["param"] == "max_tokens"
    assert err["message"].startswith(
        f"this model's maximum context length is 48 tokens (max_model_len, --max-model-len); the request asks "
        f"for 49 ({length} in the prompt, {48 - length + 1} in the completion (max_tokens))")
    ok = client(url).completions.create(model=MODEL, prompt=prompt, max_tokens=48 - length, temperature=0)
    assert ok.usage.prompt_tokens == length
    with pytest.raises(openai.BadRequestError) as e:  # the prompt alone is too long
        client(url).completions.create(model=MODEL, prompt=prompt * 2, max_tokens=0, echo=True)
    assert error_of(e.value)["param"] == "prompt"


def test_large_body_is_413_naming_the_limit(url):
    with pytest.raises(openai.APIStatusError) as e:
        client(url).completions.create(model=MODEL, prompt="x" * (100 * 1024), max_tokens=1)
    assert e.value.status_code == 413
    err = error_of(e.value)
    assert err["param"] == "max_request_bytes" and "max_request_bytes=65536" in err["message"]


def test_large_chunked_body_without_length_is_413(url):
    def body():
        yield b'{"model": "tiny-judge", "prompt": "'
        for _ in range(200):
            yield b"y" * 1024
        yield b'"}'

    resp = httpx.post(url + "/completions", content=body(), timeout=30,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["message"] == ("the request body (204837 bytes) is over this server's "
                                              "limit max_request_bytes=65536 (--max-request-bytes)")


# ---------------------------------------------------------------------- load shedding, draining, metrics
class GatedEngine(Engine):
    """A real (trivial) engine whose ``generate`` waits until the test opens the gate."""

    model_name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.entered = threading.Event(), threading.Event()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        self.entered.set()
        self.gate.wait(30)
        return [GenerationResult([Completion(text="ok", num_tokens=2, finish_reason="stop")] * params.n,
                                 prompt_tokens=3) for _ in prompts]


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_full_queue_sheds_with_429_and_metrics_count_it():
    eng = GatedEngine()
    app = create_app(eng, "gated", batch_window_ms=0, limits=ServeLimits(max_queue=2))
    body = {"model": "gated", "prompt": "p", "max_tokens": 2}
    with serve_in_thread(app) as url:
        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=30) as ac:
                first = asyncio.create_task(ac.post("/completions", json=body))
                await asyncio.get_running_loop().run_in_executor(None, eng.entered.wait, 10)
                second = asyncio.create_task(ac.post("/completions", json={**body, "max_tokens": 3}))
                while app.state.worker.admitted < 2:
                    await asyncio.sleep(0.01)
                depth = metric(url, "stepjudge_queue_depth"), metric(url, "stepjudge_requests_running")
                shed = await ac.post("/completions", json=body)
                eng.gate.set()
                return depth, shed, await first, await second

        (waiting, running), shed, first, second = asyncio.run(scenario())
        assert (waiting, running) == (1.0, 1.0)
        assert shed.status_code == 429 and shed.headers["retry-after"] == "1"
        assert shed.json()["error"] == {
            "message": "the server is at its limit of 2 requests waiting or running (max_queue, --max-queue); "
                       "retry later", "type": "rate_limit_error", "param": "max_queue", "code": "queue_full"}
        assert first.status_code == second.status_code == 200
        assert metric(url, "stepjudge_requests_total", route="/v1/completions", code="200") == 2
        assert metric(url, "stepjudge_requests_total", route="/v1/completions", code="429") == 1
        assert metric(url, "stepjudge_generation_tokens_total") == 4  # 2 requests x 2 tokens
        assert metric(url, "stepjudge_prompt_tokens_total") == 6
        assert metric(url, "stepjudge_batch_requests_count") == 2
        assert metric(url, "stepjudge_queue_depth") == 0 and app.state.worker.admitted == 0


def test_metrics_are_prometheus_text_per_server(engine):
    app = create_app(engine, MODEL, batch_window_ms=200)
    with serve_in_thread(app) as url:
        async def burst():
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                return await asyncio.gather(*[ac.post("/completions", json={
                    "model": MODEL, "prompt": PROMPT, "max_tokens": 3, "temperature": 0}) for _ in range(4)])

        assert [r.status_code for r in asyncio.run(burst())] == [200] * 4
        httpx.post(url + "/completions", json={"model": "nope", "prompt": "x"})
        httpx.get(url + "/random/probe")
        resp = httpx.get(url.removesuffix("/v1") + "/metrics")
        assert resp.headers["content-type"].startswith("text/plain; version=")
        assert metric(url, "stepjudge_requests_total", route="/v1/completions", code="200") == 4
        assert metric(url, "stepjudge_requests_total", route="/v1/completions", code="404") == 1
        assert metric(url, "stepjudge_requests_total", route="other", code="404") == 1
        assert metric(url, "stepjudge_generation_tokens_total") == 12
        assert metric(url, "stepjudge_batch_prompts_sum") == 4
        assert metric(url, "stepjudge_batch_requests_count") == app.state.batches_run < 4
        assert metric(url, "stepjudge_request_latency_seconds_count", route="/v1/completions") == 5


def test_draining_server_refuses_new_requests_with_503(engine):
    app = create_app(engine, MODEL)
    with serve_in_thread(app) as url:
        app.state.draining.set()
        resp = httpx.post(url + "/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 1})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "shutting_down"
        health = httpx.get(url.removesuffix("/v1") + "/health")
        assert health.status_code == 503 and health.json() == {"status": "draining"}
