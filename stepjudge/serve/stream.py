"""Server-sent events in OpenAI's chunk format (``stream: true``), for completions and chat.

A choice is sent as text deltas while its tokens are decoded (the engine's ``on_tokens`` hook feeds a
:class:`ChoiceStream` per choice on the engine's thread), then a chunk with its ``finish_reason``; with
``stream_options: {"include_usage": true}`` a last chunk carries the usage; ``data: [DONE]`` ends the
stream. :class:`StreamWriter` turns those events into chunks. The deltas join to exactly the
non-streamed text: a delta is only released once it is stable (a character split over tokens is held
until complete; text that may be the start of a stop string is held until it is known not to be one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

__all__ = ["DONE", "ChoiceStream", "IncrementalDetokenizer", "StreamWriter", "sse", "text_pieces"]

DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class IncrementalDetokenizer:
    """Token ids in, the text each one adds out, without re-decoding the whole sequence each time.

    Decoding each token alone is wrong for byte-level and sentencepiece tokenizers (a character split
    over two tokens, a leading space that depends on the token before), so a token's text is what it
    adds to a short window of the tokens before it, and held back (``""``) while that ends in an
    incomplete character; it comes out with the token that completes it."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self._prefix = self._read = 0  # window start; tokens before _read are already emitted

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        before, after = self.decode(self.ids[self._prefix:self._read]), self.decode(self.ids[self._prefix:])
        if after.endswith("\ufffd") or not after.startswith(before):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """What is still held back (an incomplete character at the very end decodes as U+FFFD)."""
        before, after = self.decode(self.ids[self._prefix:self._read]), self.decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return after[len(before):] if after.startswith(before) else ""


class ChoiceStream:
    """One streamed choice: its text released as it becomes final, and cut at the first stop string
    (the engine cuts its text there too), so what was sent plus :meth:`finish` is the completion's text.

    Text that could be the beginning of a stop string is held back until a later token shows it is
    not; after a stop string every token adds nothing."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()):
        self.detok = IncrementalDetokenizer(decode)
        self.stop = tuple(s for s in stop if s)
        self.sent = ""  # all text released so far
        self.finished = False
        self._pending = ""
        self._stopped = False

    def push(self, token_id: int) -> str:
        """The text that may be sent now for this new token (often all of it, sometimes ``""``)."""
        if self._stopped:
            return ""
        self._pending += self.detok.push(token_id)
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the text, once the choice has ended."""
        self.finished = True
        if not self._stopped:
            self._pending += self.detok.flush()
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        text, cut = self._pending, -1
        for s in self.stop:
            i = text.find(s)
            if i >= 0 and (cut < 0 or i < cut):
                cut = i
        if cut >= 0:
            out, self._stopped = text[:cut], True
        elif final:
            out = text
        else:
            hold = max((k for s in self.stop for k in range(1, min(len(s), len(text) + 1))
                        if text.endswith(s[:k])), default=0)
            out = text[:len(text) - hold]
        self._pending = "" if self._stopped else text[len(out):]
        self.sent += out
        return out


def text_pieces(decode: Callable[[list[int]], str], token_ids: Sequence[int], text: str) -> list[str]:
    """One text delta per token of a finished completion, joining to exactly ``text``: the stream of an
    engine that cannot report tokens as it decodes them (see :class:`IncrementalDetokenizer`).
    The engine's ``text`` has stop strings cut; the deltas are clipped to it and whatever is left (or
    every character, when ``token_ids`` is empty) goes into the last piece."""
    detok = IncrementalDetokenizer(decode)
    raw = [detok.push(t) for t in token_ids]
    pieces, at = [], 0
    for piece in raw:
        if text.startswith(piece, at):
            pieces.append(piece)
            at += len(piece)
        else:  # past a stop string, or the window decoded differently: the rest goes at the end
            pieces.extend("" for _ in range(len(raw) - len(pieces)))
            break
    if not pieces:
        return [text] if text else []
    pieces[-1] += text[at:]
    return pieces


class StreamWriter:
    """Chunks of one streamed response, event by event; ``kind`` picks the completions or chat shape.

    Per choice: :meth:`start` (chat: the assistant role; completions: the echoed prompt, if any), then
    :meth:`delta` per token, then :meth:`finish`; at the end :meth:`usage` (when asked) and :data:`DONE`.
    With log-probs every token gets its own chunk (even one adding no text yet), as OpenAI sends them."""

    def __init__(self, kind: Literal["completion", "chat"], *, id_: str, created: int, model: str,
                 logprobs: bool = False):
        self.kind, self.logprobs = kind, logprobs
        self._head = {"id": id_, "object": "text_completion" if kind == "completion" else "chat.completion.chunk",
                      "created": created, "model": model}
        self._offsets: dict[int, int] = {}  # completions with logprobs: text_offset of the next token

    def _chunk(self, index: int, text: str | None, finish: str | None, logprobs: dict | None = None) -> bytes:
        if self.kind == "completion":
            choice = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
        else:
            choice = {"index": index, "delta": {"content": text} if text is not None else {},
                      "logprobs": logprobs, "finish_reason": finish}
        return sse({**self._head, "choices": [choice]})

    def start(self, index: int, echo: str | None = None) -> bytes | None:
        if self.kind == "chat":
            return sse({**self._head, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                                   "logprobs": None, "finish_reason": None}]})
        return self._chunk(index, echo, None) if echo else None

    def delta(self, index: int, text: str, token: str | None = None, logprob: float | None = None) -> bytes | None:
        """One token's delta; None when there is nothing to send (no text and no log-prob asked)."""
        if not self.logprobs:
            return self._chunk(index, text, None) if text else None
        if self.kind == "completion":
            offset = self._offsets.get(index, 0)
            self._offsets[index] = offset + len(text)
            lp = {"tokens": [token], "token_logprobs": [logprob], "top_logprobs": None, "text_offset": [offset]}
        else:
            lp = {"content": [{"token": token, "logprob": logprob, "bytes": None, "top_logprobs": []}],
                  "refusal": None}
        return self._chunk(index, text, None, lp)

    def finish(self, index: int, text: str, finish_reason: str) -> bytes:
        """The choice's end; ``text`` is what was still held back (usually empty)."""
        return self._chunk(index, text if text or self.kind == "completion" else None, finish_reason)

    def usage(self, usage: dict[str, int]) -> bytes:
        return sse({**self._head, "choices": [], "usage": usage})

    def error(self, message: str, type_: str = "server_error", code: str | None = None) -> bytes:
        """A failure after the stream began (the status line is already sent): an error event."""
        return sse({"error": {"message": message, "type": type_, "param": None, "code": code}})
