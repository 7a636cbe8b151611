"""An OpenAI-compatible HTTP server over any :class:`~stepjudge.engines.base.Engine`.

Why: RL trainers (TRL, verl) and eval harnesses already speak the OpenAI API, so serving a judge
this way makes it a drop-in reward endpoint. Many clients send small requests at once; answering
each with its own ``engine.generate`` call would waste the batched decoder. So one worker thread
owns the engine (it is not thread-safe) and *micro-batches*: requests that arrive within
``batch_window_ms`` of each other and ask for identical sampling parameters are merged into one
``generate`` call. Async handlers only parse, enqueue and await a future the worker completes.

``echo: true`` on ``/v1/completions`` returns the prompt before the completion; with ``logprobs`` it
also returns each prompt token's log-prob (from the engine's prompt log-probs, on the same worker
thread), and ``max_tokens: 0`` then scores the prompt without generating, as vLLM does. This is what
:meth:`stepjudge.engines.openai.OpenAIEngine.prompt_logprobs` asks for.

Hardening, so it can stand in for vLLM's server: every request first passes :class:`~stepjudge.serve.gate.Gate`
(the API key, the body size, 503 while shutting down); the limits of
:class:`~stepjudge.serve.config.ServeLimits` are answered with a 4xx naming the setting; a full queue
answers 429 at once instead of growing; ``stream: true`` answers server-sent events
(:mod:`stepjudge.serve.stream`) token by token as the batch decodes (engines with the token-streaming
capability report each step through ``generate(..., on_tokens=)``); ``GET /metrics`` is Prometheus text (:mod:`stepjudge.serve.metrics`);
SIGTERM stops accepting, refuses new requests and lets in-flight ones finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from stepjudge.engines.base import (
    Capability,
    Completion,
    Engine,
    GenerationResult,
    Prompt,
    SamplingParams,
    TokenEvent,
)
from stepjudge.errors import EngineCapabilityError, StepJudgeError
from stepjudge.serve.config import API_KEY_VARIABLE, ServeLimits
from stepjudge.serve.gate import Gate, error_body
from stepjudge.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from stepjudge.serve.stream import DONE, ChoiceStream, StreamWriter, text_pieces

if TYPE_CHECKING:
    from stepjudge.engines.base import TextLogprobs
    from stepjudge.engines.factory import EngineConfig

log = logging.getLogger(__name__)

CHAT_DEFAULT_MAX_TOKENS = 512  # OpenAI's chat default is "up to the context"; a bound keeps CPUs sane
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's legacy default


# ---------------------------------------------------------------------- request bodies
class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = False


class _Body(BaseModel):
    # Unknown OpenAI fields (user, presence_penalty, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")

    model: str
    n: int = Field(1, ge=1)  # the upper bound is a server setting (ServeLimits.max_n)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool | None = False  # vLLM's extra knob: sample exactly max_tokens (benchmarks)


class CompletionBody(_Body):
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=0)  # 0 only with echo: score the prompt, generate nothing
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool | None = False


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[_TextPart] | None = None


class ChatBody(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``;
    ``param`` names the request field (or server setting) at fault."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.param, self.headers = param, headers


def _error_response(status: int, message: str, type_: str, code: str | None, param: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(message, type_, code, param), headers=headers)


# ---------------------------------------------------------------------- micro-batching worker
@dataclass
class _Job:
    prompts: list[Prompt]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    want_tokens: bool = False
    generate: bool = True  # False: an echo request with max_tokens 0 (prompt log-probs only)
    want_prompt_logprobs: bool = False
    sink: StreamSink | None = None  # streaming: where this job's deltas go while it decodes

    @property
    def key(self) -> tuple[SamplingParams, bool]:
        """Jobs with equal keys can share one ``generate`` call."""
        return self.params, self.generate


@dataclass
class _JobOutput:
    results: list[GenerationResult]
    token_strings: list[list[list[str]]] = field(default_factory=list)  # [prompt][choice][token]
    prompt_logprobs: list[TextLogprobs] = field(default_factory=list)  # [prompt], when asked


_STOP = object()
_END = object()  # the last item a StreamSink's queue gets


class StreamSink:
    """The bridge from the engine thread to one streaming request's event loop.

    The worker calls :meth:`begin` when the request's batch starts decoding (the handler then answers
    200 and starts the event stream; an error before that is still a plain JSON answer), :meth:`put` with
    the events of each decode step (``("delta", index, text, token, logprob)`` or ``("finish", index,
    text, reason)``), and :meth:`end` after the last. ``choices[index]`` is the :class:`ChoiceStream`
    of choice ``index``, made on the engine thread (it decodes with the engine's tokenizer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.started: asyncio.Future = loop.create_future()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.choices: dict[int, ChoiceStream] = {}
        self.sent_any = False

    def _call(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the client's loop is already closed
            self.loop.call_soon_threadsafe(fn, *args)

    def begin(self) -> None:
        def mark() -> None:
            if not self.started.done():
                self.started.set_result(True)
        self._call(mark)

    def put(self, events: list[tuple]) -> None:
        if events:
            self.sent_any = True
            self._call(self.queue.put_nowait, events)

    def end(self) -> None:
        self._call(self.queue.put_nowait, _END)

    async def wait_started(self, task: asyncio.Future) -> None:
        """Return once decoding began; raise the request's error if it failed before that."""
        await asyncio.wait({self.started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not self.started.done():
            task.result()  # raises the error; a job never ends without starting otherwise

    async def events(self) -> AsyncIterator[list[tuple]]:
        while (item := await self.queue.get()) is not _END:
            yield item


class BatchWorker:
    """The one thread that calls ``engine.generate``; merges compatible requests into a batch.

    ``max_queue`` bounds the requests admitted at once (waiting or running): one more is refused with a
    429 :class:`APIError` instead of queueing, so a burst costs a retry, not memory. ``max_model_len``
    (prompt tokens + ``max_tokens``) is checked here, on the engine's thread, because counting tokens
    needs the engine's tokenizer and can take a while for a long prompt."""

    def __init__(self, engine: Engine, *, batch_window_ms: float = 10, max_batch_prompts: int = 64,
                 max_queue: int | None = None, max_model_len: int | None = None,
                 metrics: ServeMetrics | None = None):
        self.engine = engine
        self.window_s = max(0.0, batch_window_ms / 1000)
        self.max_batch_prompts = max(1, max_batch_prompts)
        self.max_queue, self.max_model_len, self.metrics = max_queue, max_model_len, metrics
        self.batches_run = 0
        self.requests_run = 0
        self.admitted = 0  # requests submitted and not yet answered
        self._queue: queue.Queue = queue.Queue()
        self._pending: deque[_Job] = deque()  # taken from the queue but incompatible with that batch
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.state: Any = None  # e.g. app.state: gets ``batches_run`` kept current
        if metrics is not None:
            metrics.watch_queue(self.waiting)

    def waiting(self) -> int:
        """Requests admitted but not yet taken into a batch (the queue depth)."""
        return self._queue.qsize() + len(self._pending)

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stepjudge-serve-engine",
                                                daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    async def submit(self, prompts: list[Prompt], params: SamplingParams, want_tokens: bool, *,
                     generate: bool = True, want_prompt_logprobs: bool = False,
                     sink: StreamSink | None = None) -> _JobOutput:
        """Run ``prompts`` on the engine thread. ``generate=False`` skips sampling (``params.n`` empty
        completions per prompt); ``want_prompt_logprobs`` adds each prompt's own token log-probs;
        ``sink`` receives each completion's text deltas while it decodes (streaming)."""
        with self._lock:
            if self.max_queue is not None and self.admitted >= self.max_queue:
                raise APIError(429, f"the server is at its limit of {self.max_queue} requests waiting or "
                                    f"running (max_queue, --max-queue); retry later", "rate_limit_error",
                               "queue_full", "max_queue", headers={"Retry-After": "1"})
            self.admitted += 1
        try:
            self.start()
            loop = asyncio.get_running_loop()
            job = _Job(prompts, params, loop, loop.create_future(), want_tokens, generate, want_prompt_logprobs,
                       sink)
            self._queue.put(job)
            return await job.future
        finally:
            with self._lock:
                self.admitted -= 1

    # -------------------------------------------------------------- worker thread
    def _run(self) -> None:
        while True:
            first = self._pending.popleft() if self._pending else self._queue.get()
            if first is _STOP:
                self._fail_all(RuntimeError("the server is shutting down"))
                return
            batch, stopping = self._collect(first)
            self._execute(self._fit_context(batch))
            if stopping:
                self._fail_all(RuntimeError("the server is shutting down"))
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus every compatible job already waiting or arriving within the window."""
        batch, size = [first], len(first.prompts)
        for job in list(self._pending):
            if job.key == first.key and size + len(job.prompts) <= self.max_batch_prompts:
                self._pending.remove(job)
                batch.append(job)
                size += len(job.prompts)
        deadline = time.monotonic() + self.window_s
        while size < self.max_batch_prompts:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            if job.key == first.key and size + len(job.prompts) <= self.max_batch_prompts:
                batch.append(job)
                size += len(job.prompts)
            else:
                self._pending.append(job)
        return batch, False

    def _fit_context(self, batch: list[_Job]) -> list[_Job]:
        """The jobs whose every prompt leaves room for ``max_tokens`` in the context; the others are
        answered 400 now, before they can allocate a cache for a length the model cannot hold."""
        encode = getattr(self.engine, "encode", None)
        if self.max_model_len is None or encode is None:
            return batch
        kept = []
        for job in batch:
            try:
                longest = max(len(encode(p)) for p in job.prompts)
            except Exception as e:  # a prompt the tokenizer or chat template refuses
                _resolve(job, exc=APIError(400, f"the prompt cannot be tokenized: {type(e).__name__}: {e}"))
                continue
            asked = job.params.max_tokens if job.generate else 0
            if longest + asked > self.max_model_len:
                _resolve(job, exc=APIError(
                    400, f"this model's maximum context length is {self.max_model_len} tokens (max_model_len, "
                         f"--max-model-len); the request asks for {longest + asked} ({longest} in the prompt, "
                         f"{asked} in the completion (max_tokens)); shorten the prompt or lower max_tokens",
                    code="context_length_exceeded", param="max_tokens" if asked else "prompt"))
                continue
            kept.append(job)
        return kept

    def _execute(self, batch: list[_Job]) -> None:
        batch = [j for j in batch if not j.future.done()]  # clients that went away
        if not batch:
            return
        prompts = [p for j in batch for p in j.prompts]
        params = batch[0].params
        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.running.set(len(batch))
        streaming = [j for j in batch if j.sink is not None]
        for job in streaming:
            job.sink.choices = {}
            job.sink.begin()
        try:
            if batch[0].generate and streaming and self.engine.supports(Capability.TOKEN_STREAMING):
                results = self.engine.generate(prompts, params,  # type: ignore[call-arg]
                                               on_tokens=self._stream_to(batch, params))
            elif batch[0].generate:
                results = self.engine.generate(prompts, params)
            else:
                results = [GenerationResult([Completion("", 0, "length") for _ in range(params.n)])
                           for _ in prompts]
            scored = [p for j in batch if j.want_prompt_logprobs for p in j.prompts]
            echoes = iter(self.engine.prompt_logprobs([""] * len(scored), scored) if scored else [])
            outputs, i = [], 0
            for job in batch:
                mine = results[i:i + len(job.prompts)]
                i += len(job.prompts)
                lps = [next(echoes) for _ in job.prompts] if job.want_prompt_logprobs else []
                if not job.generate:
                    for r, lp in zip(mine, lps, strict=False):
                        r.prompt_tokens = len(lp.tokens)
                outputs.append(_JobOutput(mine, self._token_strings(mine) if job.want_tokens else [], lps))
                if job.sink is not None:
                    self._close_stream(job, mine)
        except Exception as e:
            self._count(batch)
            if len(batch) == 1:  # reported to the client as a 500
                log.exception("engine.generate failed for a request of %d prompts", len(prompts))
                _resolve(batch[0], exc=e)
                return
            # One bad request must not fail the clients it was merged with; a stream that already sent
            # text cannot be replayed, so it gets the error.
            log.warning("a merged batch failed (%s); running its %d requests one by one", e, len(batch))
            for job in batch:
                if job.sink is not None and job.sink.sent_any:
                    _resolve(job, exc=e)
                else:
                    self._execute([job])
            return
        finally:
            if self.metrics is not None:
                self.metrics.running.set(0)
        self._count(batch)
        if self.metrics is not None:
            self.metrics.observe_batch(len(batch), len(prompts), time.perf_counter() - started,
                                       sum(r.prompt_tokens for r in results),
                                       sum(c.num_tokens for r in results for c in r.completions))
        for job, out in zip(batch, outputs, strict=True):
            _resolve(job, result=out)

    def _count(self, batch: list[_Job]) -> None:
        self.batches_run += 1
        self.requests_run += len(batch)
        if self.state is not None:
            self.state.batches_run = self.batches_run

    def _token_strings(self, results: list[GenerationResult]) -> list[list[list[str]]]:
        """Done here, on the engine's thread, because the tokenizer belongs to the engine."""
        tok = self.engine.tokenizer if self.engine.supports(Capability.TOKENIZER) else None
        out = []
        for r in results:
            per_choice = []
            for c in r.completions:
                n = len(c.logprobs or [])
                if tok is not None and c.token_ids is not None and len(c.token_ids) >= n:
                    per_choice.append([tok.decode([t]) for t in c.token_ids[:n]])
                else:
                    per_choice.append([""] * n)
            out.append(per_choice)
        return out

    def _decode(self):
        """The engine tokenizer's decode, or None (then the text goes out in one piece)."""
        if not self.engine.supports(Capability.TOKENIZER):
            return None
        tok = self.engine.tokenizer
        return lambda ids: tok.decode(ids, skip_special_tokens=True)

    def _stream_to(self, batch: list[_Job], params: SamplingParams):
        """The engine's ``on_tokens`` for this batch: each step's tokens become deltas of the streaming
        jobs (one queue put per job and step), in the merged prompt list's numbering."""
        owner: list[tuple[_Job, int]] = [(job, i) for job in batch for i in range(len(job.prompts))]
        decode = self._decode()
        tok = self.engine.tokenizer if params.logprobs and decode is not None else None

        def on_tokens(events: list[TokenEvent]) -> None:
            out: dict[int, list[tuple]] = {}
            for ev in events:
                job, i = owner[ev.prompt]
                if job.sink is None:
                    continue
                index = i * params.n + ev.sample
                choice = job.sink.choices.get(index)
                if choice is None:
                    choice = job.sink.choices[index] = ChoiceStream(decode, params.stop)
                mine = out.setdefault(id(job), [])
                if ev.token_id is not None:
                    text = choice.push(ev.token_id)
                    token = tok.decode([ev.token_id]) if tok is not None else None
                    mine.append(("delta", index, text, token, ev.logprob))
                if ev.finish_reason is not None:
                    mine.append(("finish", index, choice.finish(), ev.finish_reason))
            for job in batch:
                if job.sink is not None and id(job) in out:
                    job.sink.put(out[id(job)])

        return on_tokens

    def _close_stream(self, job: _Job, results: list[GenerationResult]) -> None:
        """Send what the step events did not: every choice of an engine that cannot stream (one delta
        per token, from the finished completion), and check the streamed text is the completion's."""
        decode = self._decode()
        tok = self.engine.tokenizer if job.params.logprobs and decode is not None else None
        events: list[tuple] = []
        for i, r in enumerate(results):
            for k, c in enumerate(r.completions):
                index = i * job.params.n + k
                choice = job.sink.choices.get(index)
                if choice is not None and choice.finished:
                    if choice.sent != c.text:
                        log.warning("streamed text of choice %d differs from the completion (%r vs %r)",
                                    index, choice.sent, c.text)
                    continue
                ids = (c.token_ids or []) if decode is not None else []
                pieces = text_pieces(decode, ids, c.text) if decode is not None else ([c.text] if c.text else [])
                lps = c.logprobs if job.params.logprobs and c.logprobs is not None else None
                for n, piece in enumerate(pieces):
                    has_lp = lps is not None and n < len(lps) and n < len(ids)
                    events.append(("delta", index, piece, tok.decode([ids[n]]) if tok is not None and has_lp
                                   else None, lps[n] if has_lp else None))
                events.append(("finish", index, "", c.finish_reason))
        job.sink.put(events)

    def _fail_all(self, exc: Exception) -> None:
        while self._pending:
            _resolve(self._pending.popleft(), exc=exc)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                _resolve(job, exc=exc)


def _resolve(job: _Job, *, result: _JobOutput | None = None, exc: BaseException | None = None) -> None:
    def done() -> None:
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the client's loop is already closed
        job.loop.call_soon_threadsafe(done)
    if job.sink is not None:  # after the last events: the queue is FIFO with the callback above
        job.sink.end()


# ---------------------------------------------------------------------- the app
def context_length(engine: Engine) -> int | None:
    """The model's context window (``max_position_embeddings``), when the engine holds a model."""
    config = getattr(getattr(engine, "model", None), "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def create_app(engine: Engine, served_model_name: str, *, api_key: str | None = None,
               batch_window_ms: float = 10, max_batch_prompts: int = 64,
               limits: ServeLimits | None = None) -> FastAPI:
    """Build the FastAPI app. ``app.state.worker`` is the :class:`BatchWorker`;
    ``app.state.batches_run`` counts ``engine.generate`` calls (fewer than requests = batching works);
    ``app.state.metrics`` the :class:`ServeMetrics`; setting ``app.state.draining`` (a
    ``threading.Event``) makes every new request a 503, as on SIGTERM."""
    limits = limits or ServeLimits()
    max_model_len = limits.max_model_len or context_length(engine)
    metrics = ServeMetrics()
    worker = BatchWorker(engine, batch_window_ms=batch_window_ms, max_batch_prompts=max_batch_prompts,
                         max_queue=limits.max_queue, max_model_len=max_model_len, metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, worker.stop)

    app = FastAPI(title="stepjudge OpenAI-compatible server", lifespan=lifespan)
    draining = threading.Event()
    app.add_middleware(Gate, metrics=metrics, draining=draining, api_key=SecretStr(api_key) if api_key else None,
                       max_request_bytes=limits.max_request_bytes)

    app.state.worker = worker
    app.state.batches_run = 0
    worker.state = app.state
    app.state.engine = engine
    app.state.served_model_name = served_model_name
    app.state.metrics = metrics
    app.state.draining = draining
    app.state.limits = limits
    app.state.max_model_len = max_model_len

    def check_model(name: str) -> None:
        if name != served_model_name:
            raise APIError(404, f"the model '{name}' does not exist; this server serves "
                                f"'{served_model_name}'", "invalid_request_error", "model_not_found", "model")

    def check_limits(body: _Body, max_tokens: int | None, field_name: str) -> None:
        if body.n > limits.max_n:
            raise APIError(400, f"n={body.n} is over this server's limit max_n={limits.max_n} (--max-n)",
                           code="limit_exceeded", param="n")
        if max_tokens is not None and max_tokens > limits.max_tokens_limit:
            raise APIError(400, f"{field_name}={max_tokens} is over this server's limit max_tokens_limit="
                                f"{limits.max_tokens_limit} (--max-tokens-limit)", code="limit_exceeded",
                           param=field_name)
        if max_tokens is not None and max_model_len is not None and max_tokens >= max_model_len:
            raise APIError(400, f"{field_name}={max_tokens} leaves no room for the prompt in this model's "
                                f"maximum context length of {max_model_len} tokens (max_model_len, "
                                f"--max-model-len)", code="context_length_exceeded", param=field_name)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return _error_response(e.status, e.message, e.type, e.code, e.param, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        parts, params = [], []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            params.append(loc)
        return _error_response(400, "invalid request: " + "; ".join(parts), "invalid_request_error", None,
                               params[0] if len(params) == 1 and params[0] else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error_response(e.status_code, str(e.detail), "invalid_request_error", None)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": served_model_name, "object": "model",
                                            "created": int(time.time()), "owned_by": "stepjudge",
                                            "max_model_len": max_model_len}]}

    async def run(prompts: list[Prompt], params: SamplingParams, want_tokens: bool, **kw: Any) -> _JobOutput:
        try:
            out = await worker.submit(prompts, params, want_tokens, **kw)
        except APIError:
            raise
        except Exception as e:
            raise APIError(500, f"generation failed: {type(e).__name__}: {e}", "server_error",
                           "engine_error") from e
        return out

    async def stream_answer(kind: Literal["completion", "chat"], prompts: list[Prompt], params: SamplingParams,
                     body: _Body, echo: list[str] | None = None, **kw: Any) -> StreamingResponse:
        """Answer with server-sent events once the request's batch starts decoding; an error before
        that (a full queue, a too-long prompt) is still a plain JSON answer with its status."""
        sink = StreamSink(asyncio.get_running_loop())
        task = asyncio.ensure_future(run(prompts, params, False, sink=sink, **kw))
        try:
            await sink.wait_started(task)
        except asyncio.CancelledError:
            task.cancel()
            raise
        writer = StreamWriter(kind, id_=f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}",
                              created=int(time.time()), model=served_model_name, logprobs=params.logprobs)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[bytes]:
            try:
                for index in range(len(prompts) * params.n):
                    first = writer.start(index, echo[index // params.n] if echo else None)
                    if first is not None:
                        yield first
                async for step in sink.events():
                    for kind_, *args in step:
                        chunk = writer.delta(*args) if kind_ == "delta" else writer.finish(*args)
                        if chunk is not None:
                            yield chunk
                try:
                    out = await task
                except APIError as e:  # the status line is sent: the error goes in the stream
                    yield writer.error(e.message, e.type, e.code)
                    yield DONE
                    return
                if include_usage:
                    yield writer.usage(_usage(out.results))
                yield DONE
            finally:
                if not task.done():  # the client went away: do not keep its job waiting
                    task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionBody) -> dict | StreamingResponse:
        check_model(body.model)
        check_limits(body, body.max_tokens, "max_tokens")
        prompts: list[str] = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise APIError(400, "prompt must not be an empty list", param="prompt")
        echo, want_lps, stream = bool(body.echo), body.logprobs is not None, bool(body.stream)
        if body.max_tokens == 0 and not echo:
            raise APIError(400, "max_tokens 0 is only meaningful with echo=true (score the prompt)",
                           param="max_tokens")
        if echo and want_lps and stream:
            raise APIError(400, "echo with logprobs is not supported with stream=true; send stream=false",
                           code="unsupported_parameter", param="stream")
        if echo and want_lps:
            try:
                engine.require(Capability.PROMPT_LOGPROBS, needed_for="echo with logprobs")
            except EngineCapabilityError as e:
                raise APIError(400, str(e), code="unsupported_parameter", param="echo") from e
        generate = body.max_tokens != 0
        max_tokens = body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS  # a placeholder when not generating
        params = _params(body, max_tokens, want_lps and generate)
        if stream:
            return await stream_answer("completion", list(prompts), params, body, echo=list(prompts) if echo else None,
                                generate=generate)
        out = await run(list(prompts), params, params.logprobs, generate=generate,
                        want_prompt_logprobs=echo and want_lps)
        choices = []
        for i, r in enumerate(out.results):
            for k, c in enumerate(r.completions):
                lp = None
                if want_lps:
                    gen_tokens = out.token_strings[i][k] if generate else []
                    lp = {"tokens": gen_tokens, "token_logprobs": list(c.logprobs or []),
                          "top_logprobs": None, "text_offset": None}
                    if echo:
                        lp = _echo_logprobs(out.prompt_logprobs[i], prompts[i], lp)
                choices.append({"index": i * params.n + k, "text": prompts[i] + c.text if echo else c.text,
                                "finish_reason": c.finish_reason, "logprobs": lp, "num_tokens": c.num_tokens})
        return _response("cmpl", "text_completion", served_model_name, choices, out.results)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatBody) -> dict | StreamingResponse:
        check_model(body.model)
        asked, field_name = ((body.max_completion_tokens, "max_completion_tokens")
                             if body.max_completion_tokens is not None else (body.max_tokens, "max_tokens"))
        check_limits(body, asked, field_name)
        messages = [{"role": m.role, "content": _content_text(m.content)} for m in body.messages]
        max_tokens = asked or min(CHAT_DEFAULT_MAX_TOKENS, limits.max_tokens_limit)
        params = _params(body, max_tokens, bool(body.logprobs))
        if body.stream:
            return await stream_answer("chat", [messages], params, body)
        out = await run([messages], params, params.logprobs)
        choices = []
        for k, c in enumerate(out.results[0].completions):
            lp = None
            if params.logprobs:
                pairs = zip(out.token_strings[0][k], c.logprobs or [], strict=True)
                lp = {"content": [{"token": t, "logprob": v, "bytes": None, "top_logprobs": []}
                                  for t, v in pairs],
                      "refusal": None}
            choices.append({"index": k, "message": {"role": "assistant", "content": c.text},
                            "finish_reason": c.finish_reason, "logprobs": lp, "num_tokens": c.num_tokens})
        return _response("chatcmpl", "chat.completion", served_model_name, choices, out.results)

    return app


def _echo_logprobs(prompt_lps: TextLogprobs, prompt: str, generated: dict[str, Any]) -> dict[str, Any]:
    """Legacy ``logprobs`` of prompt + completion: the prompt's tokens first, every token with its
    character offset in the echoed text (so a client can split prompt from continuation by offset)."""
    offsets, at = list(prompt_lps.offsets), len(prompt)
    for t in generated["tokens"]:
        offsets.append(at)
        at += len(t)
    return {"tokens": [*prompt_lps.tokens, *generated["tokens"]],
            "token_logprobs": [*prompt_lps.logprobs, *generated["token_logprobs"]],
            "top_logprobs": None, "text_offset": offsets}


def _content_text(content: str | list[_TextPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content)


def _params(body: _Body, max_tokens: int, logprobs: bool) -> SamplingParams:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    try:
        return SamplingParams(n=body.n, temperature=1.0 if body.temperature is None else body.temperature,
                              top_p=1.0 if body.top_p is None else body.top_p, max_tokens=max_tokens,
                              stop=stop, seed=body.seed, logprobs=logprobs, ignore_eos=bool(body.ignore_eos))
    except ValueError as e:
        raise APIError(400, f"invalid request: {e}") from e


def _usage(results: list[GenerationResult]) -> dict[str, int]:
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(c.num_tokens for r in results for c in r.completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _response(prefix: str, obj: str, model: str, choices: list[dict],
              results: list[GenerationResult]) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()),
            "model": model, "choices": choices, "usage": _usage(results)}


# ---------------------------------------------------------------------- running it
def make_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
                on_ready=None, shutdown_timeout_s: float | None = 30):
    """A ``uvicorn.Server`` that calls ``on_ready(url)`` once its socket is listening (port 0 works:
    the URL carries the port the OS picked).

    On SIGTERM or SIGINT uvicorn closes the listening socket, lets requests in flight finish (for up to
    ``shutdown_timeout_s``; None waits for ever), then stops the engine; the app's ``draining`` event is
    set first, so a request that still reaches it (a kept-alive connection) is answered 503."""
    import uvicorn

    draining: threading.Event | None = getattr(app.state, "draining", None)

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready(server_url(self))

        def handle_exit(self, sig: int, frame: Any) -> None:
            if draining is not None:
                draining.set()
            super().handle_exit(sig, frame)

    return _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                  timeout_graceful_shutdown=shutdown_timeout_s))


def server_url(server) -> str:
    """Base URL (with ``/v1``) of a started uvicorn server."""
    sock = server.servers[0].sockets[0]
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                    start_timeout_s: float = 60) -> Iterator[str]:
    """Run ``app`` on a daemon thread and yield its base URL once it listens; stop it on exit.
    For tests and notebooks, where the caller's own thread must stay free."""
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    server = make_server(app, host=host, port=port, log_level=log_level, on_ready=on_ready)
    thread = threading.Thread(target=server.run, name="stepjudge-serve-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise StepJudgeError(f"the server on {host}:{port} did not start (see the log above)")
    try:
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(start_timeout_s)


def resolve_api_key(api_key: str | None, api_key_env: str | None, environ: Mapping[str, str]) -> str | None:
    """The key clients must send: ``api_key`` if given, else the variable ``api_key_env`` names (which must
    then be set), else ``$STEPJUDGE_API_KEY``, else None (no authentication)."""
    if api_key:
        return api_key
    if api_key_env:
        value = environ.get(api_key_env)
        if not value:
            raise StepJudgeError(f"--api-key-env names {api_key_env}, but that environment variable is "
                                 f"not set; export it or drop --api-key-env")
        return value
    return environ.get(API_KEY_VARIABLE) or None


def serve(engine_config: EngineConfig, *, host: str = "127.0.0.1", port: int = 8000,
          served_model_name: str | None = None, api_key_env: str | None = None,
          batch_window_ms: float = 10, log_level: str = "info", max_batch_prompts: int = 64,
          api_key: str | None = None, limits: ServeLimits | None = None,
          shutdown_timeout_s: float | None = 30) -> None:
    """Load the engine and serve it until SIGTERM/SIGINT. The key comes from :func:`resolve_api_key`;
    it is never printed or logged."""
    from stepjudge.engines.factory import make_engine

    key = resolve_api_key(api_key, api_key_env, os.environ)
    source = ("--api-key" if api_key else f"${api_key_env}" if api_key_env else f"${API_KEY_VARIABLE}")
    engine = make_engine(engine_config)
    name = served_model_name or engine_config.model
    try:
        app = create_app(engine, name, api_key=key, batch_window_ms=batch_window_ms,
                         max_batch_prompts=max_batch_prompts, limits=limits)

        def ready(url: str) -> None:
            auth = f" (clients must send the key from {source})" if key else " (no API key: anyone may call it)"
            print(f"stepjudge: serving '{name}' at {url}{auth}", flush=True)

        make_server(app, host=host, port=port, log_level=log_level, on_ready=ready,
                    shutdown_timeout_s=shutdown_timeout_s).run()
    finally:
        engine.close()
