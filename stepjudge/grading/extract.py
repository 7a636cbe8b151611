"""Final-answer extraction from model responses (pure string functions, no sympy).

Everything here runs in the caller's process and thread, so it must stay cheap and never hang:
braces are matched with a small scanner instead of regexes, which cannot follow nesting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

__all__ = [
    "ANSWER_FORMATS",
    "extract_answer",
    "extract_answer_is",
    "extract_boxed",
    "extract_gsm8k",
    "extract_int_boxed",
    "extract_verdict",
    "iter_boxed",
]

Verdict = Literal["Positive", "Negative"]

# `\boxed` / `\fbox` as whole control words (so `\boxedfoo` or `\fboxsep` never match).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Brace-less `\boxed 5`: one LaTeX-ish token, stopped by whitespace, math delimiters or braces.
_BARE_TOKEN_RE = re.compile(r"[^\s${}]+")
# Formatting wrappers that carry no meaning for verdicts and integers.
_TEXT_WRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|texttt|mathrm|mathbf|mathit|mbox|emph|bf)\s*(?=\{)"
)
_ANSWER_IS_RE = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\b\s*:?", re.IGNORECASE)
_THOUSANDS_COMMA_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_INT_RE = re.compile(r"[+-]?\d+")


def _group_end(text: str, start: int) -> int | None:
    """Index just past the brace group opened at ``text[start] == '{'``; None when it never closes.

    A backslash escapes the next character, so ``\\{`` and ``\\}`` (literal braces) do not count.
    """
    depth = 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _box_at(text: str, m: re.Match[str]) -> tuple[str, int] | None:
    """Content of the box whose command is ``m`` and the index after it, or None if incomplete."""
    j = m.end()
    n = len(text)
    while j < n and text[j].isspace():
        j += 1
    if j >= n:
        return None
    if text[j] == "{":
        end = _group_end(text, j)
        if end is None:
            return None
        return text[j + 1:end - 1], end
    tok = _BARE_TOKEN_RE.match(text, j)
    if tok is None:
        return None
    return tok.group(0).rstrip(".,;:"), tok.end()


def iter_boxed(text: str) -> list[str]:
    """All complete top-level ``\\boxed``/``\\fbox`` contents, in order of appearance.

    Why top-level: ``\\boxed{x=\\boxed{3}}`` is one answer, not two. An unterminated box is skipped
    (scanning resumes right after its command), so a later typo cannot hide an earlier answer.
    """
    out: list[str] = []
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return out
        got = _box_at(text, m)
        if got is None:
            pos = m.end()
            continue
        content, pos = got
        out.append(_unwrap_box(content.strip()))


def _unwrap_box(s: str) -> str:
    """``\\boxed{\\boxed{5}}`` -> ``5``: a box that is exactly another box means the inner one."""
    while True:
        m = _BOX_RE.match(s)
        if m is None:
            return s
        got = _box_at(s, m)
        if got is None or s[got[1]:].strip():
            return s
        s = got[0].strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``)."""
    for content in reversed(iter_boxed(text)):
        if content:
            return content
    return None


def extract_gsm8k(text: str) -> str | None:
    """Answer after the last ``####`` marker (GSM8K style), commas between thousands removed.

    Only the rest of that line is used; an empty answer gives None.
    """
    idx = text.rfind("####")
    if idx < 0:
        return None
    rest = text[idx:].lstrip("#").split("\n", 1)[0].strip()
    rest = _THOUSANDS_COMMA_RE.sub("", rest)
    rest = rest.rstrip(".").strip()
    return rest or None


def _take_sentence(rest: str) -> str:
    """Prefix of ``rest`` up to the end of its sentence: a period followed by whitespace or the end,
    outside ``$...$`` and braces (so ``3.5`` and ``$x.y$`` survive)."""
    rest = rest.split("\n", 1)[0]
    in_math = False
    depth = 0
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        if c == "\\":
            i += 2
            continue
        if c == "$":
            in_math = not in_math
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        elif c == "." and not in_math and depth == 0 and (i + 1 == n or rest[i + 1].isspace()):
            return rest[:i]
        i += 1
    return rest


def _strip_wrappers(s: str) -> str:
    """Drop the decoration around an answer: spaces, markdown bold, ``$``, ``\\(..\\)``, a final period
    and a ``\\boxed{}`` that encloses all of it."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip().strip("*").strip()
        if s.startswith("$") and s.endswith("$"):
            s = s.strip("$").strip()
        for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(left) and s.endswith(right):
                s = s[len(left):-len(right)].strip()
        s = s.rstrip(".").strip()
        s = _unwrap_box(s)
    return s


def extract_answer_is(text: str) -> str | None:
    """X from the last "The answer is X" / "the final answer is: X" (case-insensitive).

    X runs to the end of its line or sentence; ``$``, a trailing period and a ``\\boxed{}`` around it
    are removed. A match with nothing after it is skipped in favour of an earlier one.
    """
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        x = _strip_wrappers(_take_sentence(text[m.end():]))
        if x:
            return x
    return None


_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": extract_boxed,
    "gsm8k": extract_gsm8k,
    "answer_is": extract_answer_is,
}
ANSWER_FORMATS: tuple[str, ...] = tuple(_EXTRACTORS)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate format names early, so a typo fails at configuration time rather than as 0% accuracy."""
    if isinstance(formats, str):
        formats = (formats,)
    unknown = [f for f in formats if f not in _EXTRACTORS]
    if unknown or not formats:
        raise ValueError(
            f"unknown answer format(s) {unknown or list(formats)}; choose from {list(_EXTRACTORS)}"
        )
    return tuple(formats)


def extract_answer(text: str, formats: Sequence[str] = ANSWER_FORMATS) -> str | None:
    """First answer found by trying ``formats`` in the given priority order (default: boxed, gsm8k,
    answer_is)."""
    for name in check_formats(formats):
        got = _EXTRACTORS[name](text)
        if got is not None:
            return got
    return None


def _unwrap_text(s: str) -> str:
    """Peel ``$``, ``\\text{..}``-style wrappers and bare outer braces that enclose the whole string."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip().strip("$").strip()
        m = _TEXT_WRAP_RE.match(s)
        start = m.end() if m else (0 if s.startswith("{") else -1)
        if start >= 0:
            end = _group_end(s, start)
            if end == len(s):
                s = s[start + 1:-1]
    return s.strip()


def extract_verdict(text: str) -> Verdict | None:
    """The last boxed ``Positive``/``Negative`` verdict (any case, spaces, ``\\text{}`` inside the box).

    Boxes holding anything else are ignored, so a judge may box intermediate values before its verdict.
    """
    for content in reversed(iter_boxed(text)):
        v = _unwrap_text(content).rstrip(".").strip().lower()
        if v == "positive":
            return "Positive"
        if v == "negative":
            return "Negative"
    return None


def extract_int_boxed(text: str) -> int | None:
    """The last boxed content as an integer (``\\boxed{-1}``, ``\\boxed{ 3 }``, ``\\boxed{\\text{3}}``).

    Only the last box counts: if it does not hold an integer the critic gave no usable index -> None.
    """
    content = extract_boxed(text)
    if content is None:
        return None
    v = _unwrap_text(content).replace("\u2212", "-").replace(" ", "")
    return int(v) if _INT_RE.fullmatch(v) else None
