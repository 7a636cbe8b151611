"""Server-sent events in OpenAI's chunk format (``stream: true``), for completions and chat.

Each choice is sent as one text delta per generated token, then a chunk with its ``finish_reason``;
with ``stream_options: {"include_usage": true}`` a last chunk carries the usage; ``data: [DONE]`` ends
the stream. The deltas are computed on the engine's thread (:func:`text_pieces`) from the token ids,
and always join to exactly the non-streamed text (stop strings cut, partial UTF-8 held back).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["DONE", "chat_chunks", "completion_chunks", "sse", "text_pieces"]

DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def text_pieces(decode: Callable[[list[int]], str], token_ids: Sequence[int], text: str) -> list[str]:
    """One text delta per token, joining to exactly ``text``.

    Decoding each token alone is wrong for byte-level and sentencepiece tokenizers (a character split
    over two tokens, a leading space that depends on the token before), so each delta is the text a
    token adds to a short window of the tokens before it, and held back while it ends in an incomplete
    character. The engine's ``text`` has stop strings cut; the deltas are clipped to it and whatever is
    left (or every character, when ``token_ids`` is empty) goes into the last piece."""
    ids = list(token_ids)
    raw: list[str] = []
    prefix = read = 0
    for k in range(1, len(ids) + 1):
        before, after = decode(ids[prefix:read]), decode(ids[prefix:k])
        if after.endswith("\ufffd") or not after.startswith(before):
            raw.append("")
            continue
        raw.append(after[len(before):])
        prefix, read = read, k
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


def completion_chunks(*, id_: str, created: int, model: str, choices: list[dict[str, Any]],
                      usage: dict[str, int] | None) -> Iterator[bytes]:
    """``/v1/completions`` as events. ``choices``: ``{"index", "pieces", "finish_reason"}`` plus, with
    logprobs, ``"tokens"`` and ``"token_logprobs"`` (one per piece), and ``"echo"`` (the prompt)."""
    def chunk(index: int, text: str, finish: str | None, logprobs: dict | None = None) -> bytes:
        return sse({"id": id_, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]})

    for c in choices:
        if c.get("echo"):
            yield chunk(c["index"], c["echo"], None)
        with_lps, offset = "token_logprobs" in c, 0
        for k, piece in enumerate(c["pieces"]):
            if not piece and not with_lps:
                continue
            lp = None
            if with_lps:
                lp = {"tokens": [c["tokens"][k]], "token_logprobs": [c["token_logprobs"][k]],
                      "top_logprobs": None, "text_offset": [offset]}
            yield chunk(c["index"], piece, None, lp)
            offset += len(piece)
        yield chunk(c["index"], "", c["finish_reason"])
    if usage is not None:
        yield sse({"id": id_, "object": "text_completion", "created": created, "model": model, "choices": [],
                   "usage": usage})
    yield DONE


def chat_chunks(*, id_: str, created: int, model: str, choices: list[dict[str, Any]],
                usage: dict[str, int] | None) -> Iterator[bytes]:
    """``/v1/chat/completions`` as ``chat.completion.chunk`` events: the role first, then content deltas,
    then an empty delta with the finish reason. ``choices`` as in :func:`completion_chunks`."""
    def chunk(index: int, delta: dict, finish: str | None, logprobs: dict | None = None) -> bytes:
        return sse({"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]})

    for c in choices:
        yield chunk(c["index"], {"role": "assistant", "content": ""}, None)
        with_lps = "token_logprobs" in c
        for k, piece in enumerate(c["pieces"]):
            if not piece and not with_lps:
                continue
            lp = None
            if with_lps:
                lp = {"content": [{"token": c["tokens"][k], "logprob": c["token_logprobs"][k], "bytes": None,
                                   "top_logprobs": []}], "refusal": None}
            yield chunk(c["index"], {"content": piece}, None, lp)
        yield chunk(c["index"], {}, c["finish_reason"])
    if usage is not None:
        yield sse({"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage})
    yield DONE
