"""The checks every request passes before the app sees it: shutdown, the API key, the body size; and
the request counters and latency of :mod:`stepjudge.serve.metrics`.

Why a plain ASGI middleware (not FastAPI dependencies): it covers every route, unknown ones and
``/metrics`` included, in one place, and it reads the body itself with a byte budget, so a 20 MB
prompt is refused before anything buffers or parses it. A body over the budget is still read to its
end (discarded, chunk by chunk): HTTP clients send the whole body before reading the answer, and
closing the socket on them mid-upload would show them a broken pipe instead of the 413.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from pydantic import SecretStr

from stepjudge.serve.metrics import ServeMetrics

__all__ = ["Gate", "error_body"]

OPEN_PATHS = frozenset({"/health"})
_DRAIN_LIMIT_BYTES = 256 * 1024 * 1024  # past this an oversized body is not read further: the socket closes


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def key_matches(header: str, api_key: str) -> bool:
    """``Authorization: Bearer <key>`` compared in constant time (no timing hint about the key)."""
    scheme, _, token = header.partition(" ")
    ok = secrets.compare_digest(token.strip().encode(), api_key.encode())
    return scheme.lower() == "bearer" and ok


class Gate:
    """ASGI middleware: 503 while draining, 401 without the key, 413 over ``max_request_bytes``."""

    def __init__(self, app: Any, *, metrics: ServeMetrics, draining: threading.Event,
                 api_key: SecretStr | None, max_request_bytes: int) -> None:
        # A SecretStr, so no repr of the middleware stack (Starlette keeps these kwargs) shows the key.
        self.app, self.metrics, self.draining = app, metrics, draining
        self._api_key, self.max_request_bytes = api_key, max_request_bytes

    def __repr__(self) -> str:  # never show the key
        return f"Gate(auth={'on' if self._api_key else 'off'}, max_request_bytes={self.max_request_bytes})"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_seen(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_seen)
        finally:
            self.metrics.observe_request(scope["path"], status[0], time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.draining.is_set():
            if path == "/health":
                await _reply(send, 503, {"status": "draining"})
            else:
                await _reply(send, 503, error_body("the server is shutting down; retry on another replica",
                                                   "server_error", "shutting_down"))
            return
        if self._api_key is not None and path not in OPEN_PATHS and \
                not key_matches(headers.get("authorization", ""), self._api_key.get_secret_value()):
            await _reply(send, 401, error_body("invalid or missing API key: send 'Authorization: Bearer <key>'",
                                               "invalid_request_error", "invalid_api_key"))
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, size, more = bytearray(), 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = bool(message.get("more_body"))
            if size <= self.max_request_bytes:
                body += chunk
            elif size > _DRAIN_LIMIT_BYTES:
                break
            else:
                body = bytearray()  # over the limit: keep reading to the end, keep nothing
        if size > self.max_request_bytes:
            shown = f"over {size} bytes" if more else f"{size} bytes"  # more: reading stopped early
            await _reply(send, 413, error_body(
                f"the request body ({shown}) is over this server's limit max_request_bytes="
                f"{self.max_request_bytes} (--max-request-bytes)", "invalid_request_error",
                "request_too_large", "max_request_bytes"))
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later calls: wait for the client to go away, as Starlette expects

        await self.app(scope, replay, send)


async def _reply(send: Any, status: int, content: dict) -> None:
    data = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
