"""Generation over HTTP from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ``stepjudge serve``).

Why a private event loop? The official async client gives us timeouts and cheap concurrency, but callers of :meth:`OpenAIEngine.generate` are plain sync code,
code already inside a running event loop (notebooks, async trainers) and worker threads. A loop
owned by a daemon thread serves all three: coroutines are submitted with
``asyncio.run_coroutine_threadsafe`` and the caller just waits on the returned future. The HTTP
client lives on that loop only, so it is never shared across loops.

Each prompt is one request (``n`` samples in it); requests run concurrently up to
``max_concurrency``. Chat prompts go to ``/chat/completions`` and raw text to ``/completions``.

Transient failures (connection refused or reset, a timeout, HTTP 408/409/429/5xx) are retried here, not
by the client library, so the policy is ours and visible: ``max_retries`` tries more, waiting
:func:`retry_delay` between them (exponential from ``retry_backoff_s``, jittered, never more than
``retry_max_backoff_s``; a server's ``Retry-After`` is honoured up to that cap), outside the
concurrency limit so a waiting request does not hold a slot. The total wait is thus bounded by
``max_retries * retry_max_backoff_s`` plus the requests' own ``timeout_s``; after the last try the
error names the server URL, the tries and the time spent.

Prompt log-probs come from ``/completions`` with ``echo`` and ``logprobs`` (vLLM and ``stepjudge
serve`` answer it; OpenAI's own API no longer does): the server scores ``prompt + text`` as one
string and the text's tokens are picked by their ``text_offset``. Chat rendering and tokenizer access
need the served model's tokenizer loaded locally (``tokenizer=``); next-token log-probs of given token
ids are not something the API offers, so that capability is absent.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from stepjudge.engines.base import (
    Capability,
    Completion,
    Engine,
    FinishReason,
    GenerationResult,
    Prompt,
    SamplingParams,
    TextLogprobs,
    render_chat,
    text_token_range,
)
from stepjudge.errors import EngineError

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCAL_API_KEY = "EMPTY"  # what local servers (vLLM, llama.cpp) accept when they check no key
RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx: worth another try after a pause


def retry_delay(attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None = None,
                jitter: float = 1.0) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    The server's ``Retry-After`` wins when it gave one (clipped to ``[0, cap_s]``); otherwise
    ``base_s * 2**attempt``, capped at ``cap_s``, scaled by ``0.5 + 0.5 * jitter`` (``jitter`` uniform in
    [0, 1]) so that clients that failed together do not all come back at the same instant."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), cap_s)
    return min(cap_s, base_s * 2.0 ** attempt) * (0.5 + 0.5 * jitter)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms`` (OpenAI's), else ``Retry-After`` as seconds or
    as an HTTP date; None when absent or unreadable."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


class OpenAIEngine(Engine):
    """An :class:`Engine` backed by an OpenAI-compatible HTTP server.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server serves.
        api_key: the key itself; when None it is read from ``api_key_env`` (``"EMPTY"`` if unset,
            which local servers accept).
        max_concurrency: most requests in flight at once.
        timeout_s: per-request timeout; ``max_retries``: retries of a transient failure (see the module
            docstring), waiting ``retry_backoff_s`` doubled each time, at most ``retry_max_backoff_s``.
        use_chat: send chat prompts to ``/chat/completions``. Without it chat prompts are rendered with
            ``tokenizer``, or refused when there is none (the chat template is then only known to the server).
        tokenizer: the served model's tokenizer, a loaded one or a name/path for
            :func:`stepjudge.models.resolve_model`; it adds chat rendering and tokenizer access.
    """

    capabilities = frozenset({Capability.PROMPT_LOGPROBS})

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", max_concurrency: int = 16, timeout_s: float = 120,
                 max_retries: int = 4, use_chat: bool = True, tokenizer: Any = None,
                 retry_backoff_s: float = 0.5, retry_max_backoff_s: float = 8.0, seed: int | None = None):
        super().__init__()
        if isinstance(tokenizer, (str, os.PathLike)):
            from stepjudge.models import load_tokenizer, resolve_model

            tokenizer = load_tokenizer(resolve_model(tokenizer))
        self._tokenizer = tokenizer
        if tokenizer is not None:
            self.capabilities = self.capabilities | {Capability.CHAT_RENDERING, Capability.TOKENIZER}
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key_env = api_key_env
        self._key_from_env = api_key is None
        self._env_key_set = bool(os.environ.get(api_key_env))
        self._api_key = api_key if api_key is not None else (os.environ.get(api_key_env) or LOCAL_API_KEY)
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        if max_retries < 0 or retry_backoff_s < 0 or retry_max_backoff_s < 0:
            raise ValueError("max_retries, retry_backoff_s and retry_max_backoff_s must be >= 0")
        self.max_retries = max_retries
        self.retry_backoff_s, self.retry_max_backoff_s = retry_backoff_s, retry_max_backoff_s
        self._jitter = random.Random(seed)  # the back-off jitter only; seeded for reproducible tests
        self.use_chat = use_chat
        self._closed = False
        self._loop = asyncio.new_event_loop()
        # The thread must not reference self, or a forgotten engine would never be collected.
        self._thread = threading.Thread(target=_run_loop, args=(self._loop,), name="stepjudge-openai-loop",
                                        daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop)
        self._client, self._sem = self._submit(self._make_client()).result()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEngine(base_url={self.base_url!r}, model={self.model_name!r})"

    # ------------------------------------------------------------------ loop plumbing
    def _submit(self, coro: Coroutine[Any, Any, T]):
        if self._closed:
            coro.close()
            raise EngineError("this OpenAIEngine is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _make_client(self):
        """Built on the private loop so the HTTP client's connections belong to it."""
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout_s,
                             max_retries=0)  # retried in _request, by our policy
        return client, asyncio.Semaphore(self.max_concurrency)

    # ------------------------------------------------------------------ capabilities
    @property
    def tokenizer(self) -> Any:
        self.require(Capability.TOKENIZER, needed_for="tokenizer access; pass tokenizer= to OpenAIEngine")
        return self._tokenizer

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        self.require(Capability.CHAT_RENDERING,
                     needed_for="rendering chat locally; pass the served model's tokenizer= to OpenAIEngine")
        return render_chat(self._tokenizer, prompt)

    def prompt_logprobs(self, prompts: Sequence[Prompt], texts: Sequence[str]) -> list[TextLogprobs]:
        """Per-token log-probs of each text after its prompt, from echo requests (one per pair,
        ``max_concurrency`` at a time). Chat prompts are rendered locally (needs ``tokenizer``)."""
        if len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} texts")
        heads = [self.render(p) for p in prompts]
        return self._wait(self._submit(self._prompt_logprobs(heads, list(texts))))

    # ------------------------------------------------------------------ API
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        """Blocking; safe from plain code, from inside a running event loop and from threads."""
        return self._wait(self._submit(self._generate(list(prompts), params)))

    def _wait(self, future: Any) -> Any:
        if threading.current_thread() is self._thread:
            future.cancel()
            raise EngineError("OpenAIEngine cannot be called from its own loop thread")
        try:
            return future.result()
        except BaseException:  # e.g. KeyboardInterrupt: do not leave requests running
            future.cancel()
            raise

    async def agenerate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        """Awaitable version for callers that run their own event loop."""
        return await asyncio.wrap_future(self._submit(self._generate(list(prompts), params)))

    def close(self) -> None:
        if self._closed:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
        except Exception as e:  # closing is best effort
            log.debug("closing the OpenAI client failed: %s", e)
        self._closed = True
        self._finalizer()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------ requests (private loop)
    async def _generate(self, prompts: list[Prompt], params: SamplingParams) -> list[GenerationResult]:
        if not self.use_chat:
            if any(not isinstance(p, str) for p in prompts) and not self.supports(Capability.CHAT_RENDERING):
                raise EngineError(
                    "got chat messages but use_chat=False: the model's chat template is only known to "
                    "the server, so chat prompts cannot be rendered client-side; set use_chat=True, "
                    "pass the served model's tokenizer=, or pass raw text prompts")
            prompts = [self.render(p) for p in prompts]
        start = time.perf_counter()
        results = await _gather_all([self._one(p, params) for p in prompts])
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(r.prompt_tokens for r in results)
        self.stats.completion_tokens += sum(c.num_tokens for r in results for c in r.completions)
        self.stats.seconds += time.perf_counter() - start
        return results

    async def _one(self, prompt: Prompt, params: SamplingParams) -> GenerationResult:
        kwargs: dict[str, Any] = dict(model=self.model_name, n=params.n, temperature=params.temperature,
                                      top_p=params.top_p, max_tokens=params.max_tokens)
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        chat = not isinstance(prompt, str)
        if chat:
            if params.logprobs:
                kwargs["logprobs"] = True
            resp = await self._request(lambda: self._client.chat.completions.create(messages=prompt, **kwargs))
        else:
            if params.logprobs:
                kwargs["logprobs"] = 1  # legacy API: top-k count; we read only the sampled token
            resp = await self._request(lambda: self._client.completions.create(prompt=prompt, **kwargs))
        return self._to_result(resp, params, chat)

    async def _prompt_logprobs(self, heads: list[str], texts: list[str]) -> list[TextLogprobs]:
        out = await _gather_all([self._score(h, t) for h, t in zip(heads, texts, strict=True)])
        self.stats.prompts += len(out)
        return out

    async def _score(self, head: str, text: str) -> TextLogprobs:
        """One echo request: ``max_tokens=0`` scores the prompt without sampling (vLLM's convention)."""
        full = head + text
        resp = await self._request(lambda: self._client.completions.create(
            model=self.model_name, prompt=full, max_tokens=0, echo=True, logprobs=1, temperature=0))
        lp = resp.choices[0].logprobs
        starts = lp.text_offset if lp is not None else None
        values = lp.token_logprobs if lp is not None else None
        if not starts or values is None or len(starts) != len(values):
            raise EngineError(f"the server at {self.base_url} did not return prompt logprobs with text "
                              f"offsets for an echo request; it cannot score prompts")
        self.stats.prompt_tokens += len(starts)
        span = text_token_range(starts, len(full), len(head))
        return TextLogprobs([lp.tokens[j] for j in span], [starts[j] - len(head) for j in span],
                            [None if values[j] is None else float(values[j]) for j in span])

    async def _request(self, make: Callable[[], Awaitable[T]]) -> T:
        """One API call under the concurrency limit; transient failures retried with back-off, the last
        one (and every other failure) turned into an actionable EngineError."""
        import openai

        started = time.monotonic()
        attempt = 0
        while True:
            async with self._sem:
                try:
                    return await make()
                except openai.AuthenticationError:
                    raise EngineError(self._auth_message()) from None
                except openai.APIStatusError as e:
                    transient = e.status_code in RETRY_STATUSES or e.status_code >= 500
                    if not transient or attempt >= self.max_retries:
                        raise EngineError(f"the server at {self.base_url} returned HTTP {e.status_code}"
                                          f"{self._tries(attempt, started) if transient else ''}: "
                                          f"{_server_message(e)}") from e
                    retry_after = parse_retry_after(e.response.headers)
                    why = f"HTTP {e.status_code}"
                except openai.APIConnectionError as e:
                    if attempt >= self.max_retries:
                        raise EngineError(self._unreachable(e, attempt, started)) from e
                    retry_after = None
                    why = "timeout" if isinstance(e, openai.APITimeoutError) else f"connection error ({_cause(e)})"
                except openai.OpenAIError as e:
                    raise EngineError(f"request to {self.base_url} failed: {e}") from e
            delay = retry_delay(attempt, base_s=self.retry_backoff_s, cap_s=self.retry_max_backoff_s,
                                retry_after_s=retry_after, jitter=self._jitter.random())
            log.info("%s from %s; retry %d of %d in %.2fs", why, self.base_url, attempt + 1, self.max_retries,
                     delay)
            await asyncio.sleep(delay)  # outside the semaphore: a waiting request holds no slot
            attempt += 1

    def _tries(self, retries: int, started: float) -> str:
        return (f" after {retries + 1} tries over {time.monotonic() - started:.1f}s "
                f"(max_retries={self.max_retries})")

    def _unreachable(self, e: Exception, retries: int, started: float) -> str:
        import openai

        if isinstance(e, openai.APITimeoutError):
            return (f"the server at {self.base_url} did not answer within {self.timeout_s:g}s"
                    f"{self._tries(retries, started)}; is it overloaded? raise timeout_s")
        return (f"the server at {self.base_url} is unreachable ({_cause(e)}){self._tries(retries, started)}; "
                f"is it running? check --engine.base-url")

    def _auth_message(self) -> str:
        where = (f"the environment variable {self.api_key_env}" if self._key_from_env
                 else "the api_key passed to OpenAIEngine")
        state = "" if not self._key_from_env or self._env_key_set else " (it is not set)"
        return (f"the server at {self.base_url} rejected the API key (HTTP 401): "
                f"set {where}{state} to the key the server expects")

    # ------------------------------------------------------------------ response mapping
    def _to_result(self, resp: Any, params: SamplingParams, chat: bool) -> GenerationResult:
        choices = sorted(resp.choices, key=lambda c: c.index)
        usage = getattr(resp, "usage", None)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        completions = []
        for k, ch in enumerate(choices):
            if chat:
                text = (ch.message.content if ch.message is not None else None) or ""
                content = getattr(ch.logprobs, "content", None) if ch.logprobs is not None else None
                lps = [t.logprob for t in content] if content is not None else None
            else:
                text = ch.text or ""
                tl = getattr(ch.logprobs, "token_logprobs", None) if ch.logprobs is not None else None
                lps = [float(x) if x is not None else 0.0 for x in tl] if tl is not None else None
            finish: FinishReason = "length" if ch.finish_reason == "length" else "stop"
            completions.append(Completion(text=text, num_tokens=0, finish_reason=finish,
                                          logprobs=lps if params.logprobs else None))
            completions[-1].num_tokens = _count_tokens(ch, lps, k, len(choices), total)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        return GenerationResult(completions, prompt_tokens=prompt_tokens)


async def _gather_all(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """All results in order; when one request fails the others are cancelled, not left running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        raise


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


def _count_tokens(choice: Any, logprobs: list[float] | None, k: int, n: int, total: int) -> int:
    """Tokens of one choice. Exact for n == 1 (usage), for servers that report a per-choice
    ``num_tokens`` (``stepjudge serve`` does; it also counts a final EOS that carries no logprob) and
    when logprobs came back; otherwise usage is split evenly over the choices, which is approximate."""
    if n == 1:
        return total
    extra = getattr(choice, "model_extra", None) or {}
    if isinstance(extra.get("num_tokens"), int):
        return extra["num_tokens"]
    if logprobs is not None:
        return len(logprobs)
    return total // n + (1 if k < total % n else 0)


def _cause(e: BaseException) -> str:
    """The innermost reason of a connection failure, e.g. ``ConnectError: [Errno 111] Connection refused``."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _server_message(e: Any) -> str:
    """The server's own words from an OpenAI-style (or FastAPI-style) error body."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)
        elif isinstance(err, str):
            return err
    return str(getattr(e, "message", "") or e)
