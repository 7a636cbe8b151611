"""The chunked solution format: reasoning as ``<chunk>…</chunk>`` blocks, then the answer.

StepWiser's policy writes its chain of thought as a sequence of tagged chunks and ends with a
``\\boxed{}`` answer. Every later stage (Monte-Carlo annotation, judge prompts, Chunk-Reset search)
works on the chunk list, so the parser is strict: a malformed output must fail loudly here, with the
character offset of the problem, instead of silently producing a wrong step boundary downstream.

Format accepted by :func:`parse_chunks`::

    [whitespace] <chunk>c_1</chunk> [whitespace] <chunk>c_2</chunk> ... <chunk>c_k</chunk> [answer text]

Only whitespace may sit before the first chunk and between chunks; anything may follow the last
``</chunk>`` (usually ``\\boxed{..}``) except another tag. Chunk contents are returned stripped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stepjudge.errors import StepJudgeError

OPEN, CLOSE = "<chunk>", "</chunk>"
_TAG = re.compile(r"</?chunk>")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")  # a line holding only whitespace (plus any that follow)

SegmentMode = Literal["auto", "tags", "blank"]

__all__ = ["ChunkFormatError", "ChunkedSolution", "parse_chunks", "split_blank_lines", "segment",
           "format_chunks", "prefix_text", "OPEN", "CLOSE"]


class ChunkFormatError(StepJudgeError, ValueError):
    """Text that does not follow the ``<chunk>…</chunk>`` format; ``offset`` is where it breaks."""

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message if offset is None else f"{message} (at character offset {offset})")
        self.offset = offset


@dataclass
class ChunkedSolution:
    """A parsed solution: stripped chunk texts, the text after the last ``</chunk>``, the input."""

    chunks: list[str]
    answer_text: str
    raw: str


def _snippet(text: str, width: int = 30) -> str:
    return repr(text[:width] + ("…" if len(text) > width else ""))


def parse_chunks(text: str) -> ChunkedSolution:
    """Parse tagged text strictly; raises :class:`ChunkFormatError` naming the problem and its offset."""
    chunks: list[str] = []
    open_at: int | None = None  # offset of the currently open <chunk>, None when outside a chunk
    pos = 0  # end of the last tag seen
    for m in _TAG.finditer(text):
        tag = m.group()
        if tag == OPEN:
            if open_at is not None:
                raise ChunkFormatError(f"nested <chunk> inside the chunk opened at offset {open_at}",
                                       m.start())
            gap = text[pos:m.start()]
            if gap.strip():
                where = "before the first <chunk>" if not chunks else "between chunks"
                first = pos + len(gap) - len(gap.lstrip())
                raise ChunkFormatError(f"text outside a chunk {where}: {_snippet(gap.strip())}", first)
            open_at = m.start()
        else:
            if open_at is None:
                raise ChunkFormatError("</chunk> without an open <chunk>", m.start())
            body = text[pos:m.start()].strip()
            if not body:
                raise ChunkFormatError(f"chunk {len(chunks)} is empty", open_at)
            chunks.append(body)
            open_at = None
        pos = m.end()
    if open_at is not None:
        raise ChunkFormatError("<chunk> is never closed: missing </chunk> at the end", open_at)
    if not chunks:
        raise ChunkFormatError("no <chunk>…</chunk> block in the text", 0)
    return ChunkedSolution(chunks=chunks, answer_text=text[pos:].strip(), raw=text)


def split_blank_lines(text: str) -> list[str]:
    """Paragraphs between blank lines (the plain ``"\\n\\n"`` split), stripped, empty ones dropped."""
    return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]


def segment(text: str, mode: SegmentMode = "auto") -> list[str]:
    """Steps of a solution: by chunk tags, by blank lines, or (``auto``) tags when the text has any."""
    if mode == "tags":
        return parse_chunks(text).chunks
    if mode == "blank":
        return split_blank_lines(text)
    if mode == "auto":
        return parse_chunks(text).chunks if OPEN in text else split_blank_lines(text)
    raise ValueError(f"unknown segmentation mode {mode!r}; choose auto, tags or blank")


def format_chunks(chunks: Sequence[str], answer: str | None = None) -> str:
    """Canonical tagged text: one ``<chunk>c</chunk>`` per line, then ``\\boxed{answer}`` if given."""
    if isinstance(chunks, str):
        raise TypeError("format_chunks takes a list of chunk texts, not a string")
    if not chunks:
        raise ValueError("no chunks to format")
    parts = []
    for i, c in enumerate(chunks):
        body = c.strip()
        if not body:
            raise ValueError(f"chunk {i} is empty")
        if _TAG.search(body):
            raise ValueError(f"chunk {i} contains a <chunk> or </chunk> tag: {body[:40]!r}")
        parts.append(f"{OPEN}{body}{CLOSE}")
    text = "\n".join(parts)
    if answer is not None:
        text += f"\n\\boxed{{{answer}}}"
    return text


def prefix_text(chunks: Sequence[str], i: int) -> str:
    """Canonical text of the first ``i`` chunks plus a newline: the point a rollout continues from."""
    if not 0 <= i <= len(chunks):
        raise ValueError(f"prefix length {i} is outside 0..{len(chunks)}")
    return format_chunks(chunks[:i]) + "\n" if i else ""
