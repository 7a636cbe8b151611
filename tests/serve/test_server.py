"""The OpenAI-compatible server, over real HTTP on loopback, with tiny-random behind it."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import httpx
import pytest
import torch

from stepjudge.cli import serve as serve_cli
from stepjudge.engines.base import Completion, Engine, GenerationResult, Prompt, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.errors import StepJudgeError
from stepjudge.serve import BatchWorker, create_app, serve, serve_in_thread

torch.set_num_threads(1)

MODEL = "tiny-judge"
PROMPT = "The answer is"
MESSAGES = [{"role": "user", "content": "Is 2 + 2 = 4?"}]
SECRET = "sk-serve-test-secret"


@pytest.fixture(scope="module")
def served(engine):
    app = create_app(engine, MODEL, batch_window_ms=50)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
        yield app, http


@pytest.fixture(scope="module")
def http(served) -> httpx.Client:
    return served[1]


def error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# ---------------------------------------------------------------------- shapes
def test_models_lists_the_served_name(http):
    body = http.get("/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0]["object"] == "model"


def test_completion_shape_and_usage(http, engine):
    resp = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 6,
                                            "temperature": 0})
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "text_completion" and body["model"] == MODEL
    assert body["id"].startswith("cmpl-") and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["num_tokens"] == 6 and choice["logprobs"] is None
    want = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=6))[0]
    assert choice["text"] == want.completions[0].text
    assert body["usage"] == {"prompt_tokens": want.prompt_tokens, "completion_tokens": 6,
                             "total_tokens": want.prompt_tokens + 6}


def test_completion_default_max_tokens_is_16(http):
    body = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "temperature": 0}).json()
    assert body["choices"][0]["num_tokens"] == 16
    assert body["choices"][0]["finish_reason"] == "length"


def test_prompt_list_with_n_orders_choices_prompt_major(http):
    body = http.post("/completions", json={"model": MODEL, "prompt": [PROMPT, "Two"], "n": 2,
                                            "max_tokens": 3, "seed": 7}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert all(c["num_tokens"] == 3 for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 12


def test_completion_logprobs_legacy_shape(http):
    body = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 5,
                                            "logprobs": 0, "n": 2}).json()
    for c in body["choices"]:
        lp = c["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == c["num_tokens"] == 5
        assert all(isinstance(t, str) and t for t in lp["tokens"])
        assert all(v <= 0 for v in lp["token_logprobs"])


def test_stop_string_as_plain_string(http):
    full = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 10,
                                            "temperature": 0}).json()["choices"][0]["text"]
    stop = full[1:4]
    c = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 10,
                                         "temperature": 0, "stop": stop}).json()["choices"][0]
    assert c["text"] == full[:full.find(stop)]
    assert c["finish_reason"] == "stop"


def test_echo_with_zero_max_tokens_scores_the_prompt(http, engine):
    resp = http.post("/completions", json={"model": MODEL, "prompt": [PROMPT, "Two plus two"], "echo": True,
                                            "logprobs": 1, "max_tokens": 0})
    assert resp.status_code == 200
    body = resp.json()
    want = engine.prompt_logprobs(["", ""], [PROMPT, "Two plus two"])
    assert [c["text"] for c in body["choices"]] == [PROMPT, "Two plus two"]
    for c, w in zip(body["choices"], want, strict=True):
        lp = c["logprobs"]
        assert lp["tokens"] == w.tokens
        assert lp["text_offset"] == w.offsets
        assert lp["token_logprobs"] == pytest.approx(w.logprobs, abs=1e-6)
        assert c["num_tokens"] == 0 and c["finish_reason"] == "length"
    assert body["choices"][0]["logprobs"]["tokens"] == ["The", " answer", " is"]
    assert body["choices"][0]["logprobs"]["text_offset"] == [0, 3, 10]
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["prompt_tokens"] == sum(len(w.tokens) for w in want)


def test_echo_with_generation_returns_prompt_then_completion(http, engine):
    body = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "echo": True, "logprobs": 0,
                                            "max_tokens": 4, "temperature": 0}).json()
    (c,) = body["choices"]
    gen = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=4, logprobs=True))[0].completions[0]
    (scored,) = engine.prompt_logprobs([""], [PROMPT])
    assert c["text"] == PROMPT + gen.text
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == 3 + 4
    assert lp["tokens"][:3] == scored.tokens
    assert lp["token_logprobs"] == pytest.approx(scored.logprobs + gen.logprobs, abs=1e-4)
    # generated tokens follow the prompt: each starts where the previous token's text ends
    assert lp["text_offset"][3] == len(PROMPT)
    assert "".join(lp["tokens"][3:]) == gen.text
    assert [lp["text_offset"][3 + i + 1] - lp["text_offset"][3 + i] for i in range(3)] == \
        [len(t) for t in lp["tokens"][3:6]]


def test_echo_without_logprobs_prepends_the_prompt(http):
    plain = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3,
                                             "temperature": 0}).json()["choices"][0]
    echoed = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3, "echo": True,
                                              "temperature": 0}).json()["choices"][0]
    assert echoed["text"] == PROMPT + plain["text"] and echoed["logprobs"] is None
    only = http.post("/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 0,
                                            "echo": True}).json()["choices"][0]
    assert only["text"] == PROMPT and only["num_tokens"] == 0


def test_chat_shape_and_logprobs(http, engine):
    resp = http.post("/chat/completions", json={"model": MODEL, "messages": MESSAGES, "temperature": 0,
                                                 "max_completion_tokens": 4, "logprobs": True})
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    want = engine.generate([MESSAGES], SamplingParams(temperature=0, max_tokens=4))[0]
    assert choice["message"] == {"role": "assistant", "content": want.completions[0].text}
    assert choice["num_tokens"] == 4 and choice["finish_reason"] == "length"
    content = choice["logprobs"]["content"]
    assert len(content) == 4
    assert all(set(t) == {"token", "logprob", "bytes", "top_logprobs"} and t["logprob"] <= 0
               for t in content)
    assert body["usage"]["prompt_tokens"] == want.prompt_tokens


def test_chat_accepts_content_parts(http):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Is 2 + 2 "},
                                             {"type": "text", "text": "= 4?"}]}]
    a = http.post("/chat/completions", json={"model": MODEL, "messages": messages, "temperature": 0,
                                              "max_tokens": 4}).json()
    b = http.post("/chat/completions", json={"model": MODEL, "messages": MESSAGES, "temperature": 0,
                                              "max_tokens": 4}).json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]


# ---------------------------------------------------------------------- errors
def test_wrong_model_is_404(http):
    resp = http.post("/completions", json={"model": "gpt-9", "prompt": PROMPT})
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["code"] == "model_not_found" and "gpt-9" in err["message"]
    resp = http.post("/chat/completions", json={"model": "gpt-9", "messages": MESSAGES})
    assert resp.status_code == 404


@pytest.mark.parametrize("body", [
    {"model": MODEL},                                         # no prompt
    {"model": MODEL, "prompt": PROMPT, "n": 0},
    {"model": MODEL, "prompt": PROMPT, "max_tokens": 0},
    {"model": MODEL, "prompt": PROMPT, "top_p": 0},
    {"model": MODEL, "prompt": PROMPT, "temperature": -1},
    {"model": MODEL, "prompt": [1, 2, 3]},                    # token ids are not supported
    {"model": MODEL, "prompt": []},
    {"model": MODEL, "prompt": PROMPT, "max_tokens": 0},      # 0 tokens only with echo
    {"model": MODEL, "prompt": PROMPT, "max_tokens": -1, "echo": True},
    {"prompt": PROMPT},                                       # no model
])
def test_bad_completion_body_is_400(http, body):
    resp = http.post("/completions", json=body)
    assert resp.status_code == 400
    assert error_of(resp)["type"] == "invalid_request_error"


def test_bad_chat_body_and_bad_json_are_400(http):
    assert http.post("/chat/completions", json={"model": MODEL, "messages": []}).status_code == 400
    assert http.post("/chat/completions", json={"model": MODEL}).status_code == 400
    resp = http.post("/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    error_of(resp)


def test_unknown_route_uses_error_shape(http):
    resp = http.get("/nope")
    assert resp.status_code == 404
    error_of(resp)


class BrokenEngine(Engine):
    """A real Engine whose generation always fails, to see how failures reach clients."""

    model_name = "broken"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        raise RuntimeError("the GPU caught fire")


def test_engine_failure_is_500_and_server_survives():
    with serve_in_thread(create_app(BrokenEngine(), "broken")) as url:
        for _ in range(2):
            resp = httpx.post(url + "/completions", json={"model": "broken", "prompt": "x"}, timeout=30)
            assert resp.status_code == 500
            err = error_of(resp)
            assert "GPU caught fire" in err["message"] and err["type"] == "server_error"


class PickyEngine(Engine):
    """A real (trivial) Engine that fails whenever a batch contains the prompt "boom"."""

    model_name = "picky"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        if "boom" in prompts:
            raise ValueError("cannot judge 'boom'")
        return [GenerationResult([Completion(text=f"ok:{p}", num_tokens=1, finish_reason="stop")]
                                 * params.n) for p in prompts]


def test_echo_logprobs_from_an_engine_without_prompt_logprobs_is_400():
    with serve_in_thread(create_app(PickyEngine(), "picky")) as url:
        resp = httpx.post(url + "/completions", json={"model": "picky", "prompt": "x", "echo": True,
                                                       "logprobs": 0, "max_tokens": 0}, timeout=30)
        assert resp.status_code == 400
        err = error_of(resp)
        assert err["message"] == "PickyEngine (picky) has no prompt log-probs (needed for echo with logprobs)"
        assert err["code"] == "unsupported_parameter"
        # echo without logprobs needs no capability
        ok = httpx.post(url + "/completions", json={"model": "picky", "prompt": "x", "echo": True}, timeout=30)
        assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "xok:x"


def test_a_failing_request_does_not_fail_its_batch_mates():
    app = create_app(PickyEngine(), "picky", batch_window_ms=300)
    with serve_in_thread(app) as url:
        async def fire():
            async with httpx.AsyncClient(base_url=url, timeout=30) as ac:
                return await asyncio.gather(*[ac.post("/completions", json={"model": "picky", "prompt": p})
                                              for p in ("a", "boom", "b")])

        a, boom, b = asyncio.run(fire())
    assert a.status_code == b.status_code == 200
    assert [a.json()["choices"][0]["text"], b.json()["choices"][0]["text"]] == ["ok:a", "ok:b"]
    assert boom.status_code == 500 and "boom" in error_of(boom)["message"]
    assert app.state.worker.requests_run == 6  # the merged try, then each request alone


# ---------------------------------------------------------------------- auth
def test_api_key_is_required_when_set(engine):
    with serve_in_thread(create_app(engine, MODEL, api_key=SECRET)) as url:
        root = url.removesuffix("/v1")
        assert httpx.get(root + "/health").status_code == 200
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": SECRET}):
            resp = httpx.post(url + "/completions", json=body, headers=headers)
            assert resp.status_code == 401
            assert error_of(resp)["code"] == "invalid_api_key"
            assert SECRET not in resp.text
        assert httpx.get(url + "/models").status_code == 401
        ok = {"Authorization": f"Bearer {SECRET}"}
        assert httpx.post(url + "/completions", json=body, headers=ok).status_code == 200
        assert httpx.get(url + "/models", headers=ok).status_code == 200


# ---------------------------------------------------------------------- micro-batching
def test_concurrent_http_clients_share_engine_calls(served):
    app, http = served
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
    mixed = {**body, "max_tokens": 3}  # different params: must run in its own batch, still answered

    async def fire():
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=60) as ac:
            return await asyncio.gather(*[ac.post("/completions", json=body) for _ in range(8)],
                                        ac.post("/completions", json=mixed))

    before = app.state.batches_run
    resps = asyncio.run(fire())
    ran = app.state.batches_run - before
    assert [r.status_code for r in resps] == [200] * 9
    assert [r.json()["choices"][0]["num_tokens"] for r in resps] == [4] * 8 + [3]
    assert 2 <= ran < 9


def test_worker_merges_only_identical_params(engine):
    worker = BatchWorker(engine, batch_window_ms=300)
    a = SamplingParams(temperature=0, max_tokens=2)
    b = SamplingParams(temperature=0, max_tokens=3)

    async def go():
        return await asyncio.gather(worker.submit(["x"], a, False), worker.submit(["y", "z"], b, True),
                                    worker.submit(["w"], a, False))

    try:
        outs = asyncio.run(go())
    finally:
        worker.stop()
    assert worker.batches_run == 2 and worker.requests_run == 3
    assert [len(o.results) for o in outs] == [1, 2, 1]
    assert [o.results[0].completions[0].num_tokens for o in outs] == [2, 3, 2]


def test_worker_respects_max_batch_prompts(engine):
    worker = BatchWorker(engine, batch_window_ms=300, max_batch_prompts=2)
    p = SamplingParams(temperature=0, max_tokens=1)

    async def go():
        return await asyncio.gather(*[worker.submit([str(i)], p, False) for i in range(4)])

    try:
        outs = asyncio.run(go())
    finally:
        worker.stop()
    assert len(outs) == 4 and worker.batches_run == 2


# ---------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from stepjudge.cli.common import add_verbs

    parser = argparse.ArgumentParser(prog="stepjudge")
    add_verbs(parser.add_subparsers(dest="verb"), serve_cli.VERBS)
    return parser


def test_cli_help_explains_and_gives_examples(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--host", "--port", "--served-model-name", "--api-key-env", "--dtype",
                 "--threads", "--max-batch-rows", "--batch-window-ms", "--config", "--api-key",
                 "--max-request-bytes", "--max-tokens-limit", "--max-n", "--max-model-len", "--max-queue",
                 "--shutdown-timeout-s"):
        assert flag in out
    assert "OpenAI-compatible" in out and "examples:" in out and "curl" in out


def test_cli_config_file_then_flags_override(tmp_path):
    from stepjudge.config import config_from_args
    from stepjudge.serve.config import ServeConfig

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("model: tiny-random\nport: 9001\nbatch_window_ms: 25\nserved_model_name: judge\n")
    args = _parser().parse_args(["serve", "--config", str(cfg), "--port", "9002"])
    assert args.func is serve_cli.run
    config = config_from_args(args)
    assert config == ServeConfig(model="tiny-random", port=9002, batch_window_ms=25, served_model_name="judge")
    assert config.host == "127.0.0.1" and config.api_key_env is None
    assert config.engine_config() == EngineConfig(kind="hf", model="tiny-random", dtype="float32", device="cpu",
                                                  num_threads=None, max_batch_rows=64)


def test_cli_config_unknown_key_is_named(tmp_path):
    from stepjudge.config import config_from_args

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("modle: tiny-random\n")
    args = _parser().parse_args(["serve", "--config", str(cfg)])
    with pytest.raises(StepJudgeError, match="modle"):
        config_from_args(args)


def test_serve_refuses_unset_key_variable(monkeypatch):
    monkeypatch.delenv("STEPJUDGE_NO_SUCH_KEY", raising=False)
    with pytest.raises(StepJudgeError, match="STEPJUDGE_NO_SUCH_KEY"):
        serve(EngineConfig(model="tiny-random"), api_key_env="STEPJUDGE_NO_SUCH_KEY")
