"""The <chunk> format: strict parsing with located errors, fallbacks, canonical formatting."""

import pytest

from stepjudge.errors import StepJudgeError
from stepjudge.segment import (
    ChunkedSolution,
    ChunkFormatError,
    format_chunks,
    parse_chunks,
    prefix_text,
    segment,
    split_blank_lines,
)


def test_parse_chunks_returns_stripped_chunks_and_answer():
    text = "  <chunk> 2 + 5 = 7\n</chunk>\n\n<chunk>7 + 1 = 8</chunk>\n\\boxed{8}\n"
    sol = parse_chunks(text)
    assert sol == ChunkedSolution(chunks=["2 + 5 = 7", "7 + 1 = 8"], answer_text="\\boxed{8}", raw=text)


def test_parse_chunks_keeps_inner_newlines_and_allows_no_answer():
    sol = parse_chunks("<chunk>a\n\nb</chunk>")
    assert sol.chunks == ["a\n\nb"] and sol.answer_text == ""


@pytest.mark.parametrize("text, message, offset", [
    ("Let me think.\n<chunk>a</chunk>", "text outside a chunk before the first <chunk>: 'Let me think.'", 0),
    ("<chunk>a</chunk> so <chunk>b</chunk>", "text outside a chunk between chunks: 'so'", 17),
    ("<chunk>a <chunk>b</chunk></chunk>", "nested <chunk> inside the chunk opened at offset 0", 9),
    ("<chunk>a</chunk></chunk>", "</chunk> without an open <chunk>", 16),
    ("b</chunk>", "</chunk> without an open <chunk>", 1),
    ("<chunk>a</chunk>\n<chunk>b", "<chunk> is never closed: missing </chunk> at the end", 17),
    ("Just text, \\boxed{3}", "no <chunk>…</chunk> block in the text", 0),
    ("", "no <chunk>…</chunk> block in the text", 0),
    ("<chunk>a</chunk><chunk> \n </chunk>", "chunk 1 is empty", 16),
    ("<chunk></chunk>", "chunk 0 is empty", 0),
])
def test_parse_chunks_rejections_name_problem_and_offset(text, message, offset):
    with pytest.raises(ChunkFormatError) as e:
        parse_chunks(text)
    assert str(e.value) == f"{message} (at character offset {offset})"
    assert e.value.offset == offset
    assert isinstance(e.value, ValueError) and isinstance(e.value, StepJudgeError)


def test_long_stray_text_is_cut_in_the_message():
    with pytest.raises(ChunkFormatError, match=r"first <chunk>: 'x{30}…' \(at character offset 2\)"):
        parse_chunks("\n " + "x" * 50 + "<chunk>a</chunk>")


def test_text_after_answer_then_a_new_chunk_is_rejected():
    with pytest.raises(ChunkFormatError, match="between chunks"):
        parse_chunks("<chunk>a</chunk>\n\\boxed{1}\n<chunk>b</chunk>")


def test_split_blank_lines():
    text = "\nStep 1: x = 2.\n\n\nStep 2: y = 3.\nSo x + y = 5.\n \n\n"
    assert split_blank_lines(text) == ["Step 1: x = 2.", "Step 2: y = 3.\nSo x + y = 5."]
    assert split_blank_lines("  \n\n ") == []


def test_segment_modes():
    tagged = "<chunk>a\n\nb</chunk>\n<chunk>c</chunk>\n\\boxed{1}"
    plain = "a\n\nb\nc"
    assert segment(tagged) == ["a\n\nb", "c"]  # auto sees tags
    assert segment(plain) == ["a", "b\nc"]  # auto falls back to blank lines
    assert segment(tagged, "tags") == ["a\n\nb", "c"]
    assert segment(tagged, "blank") == ["<chunk>a", "b</chunk>\n<chunk>c</chunk>\n\\boxed{1}"]
    with pytest.raises(ChunkFormatError):
        segment(plain, "tags")
    with pytest.raises(ChunkFormatError):  # auto does not hide a broken tagged text
        segment("<chunk>a")
    with pytest.raises(ValueError, match="unknown segmentation mode"):
        segment(plain, "lines")


def test_format_chunks_canonical_text_and_round_trip():
    chunks = ["2 + 5 = 7", "7 + 1 = 8\nchecked: 8 - 1 = 7"]
    text = format_chunks(chunks, "8")
    assert text == "<chunk>2 + 5 = 7</chunk>\n<chunk>7 + 1 = 8\nchecked: 8 - 1 = 7</chunk>\n\\boxed{8}"
    sol = parse_chunks(text)
    assert sol.chunks == chunks and sol.answer_text == "\\boxed{8}"
    assert parse_chunks(format_chunks(chunks)).chunks == chunks
    assert format_chunks([" padded \n"]) == "<chunk>padded</chunk>"


@pytest.mark.parametrize("chunks, message", [
    ([], "no chunks"),
    (["a", "  "], "chunk 1 is empty"),
    (["a <chunk>b"], "contains a <chunk>"),
])
def test_format_chunks_rejects_what_would_not_round_trip(chunks, message):
    with pytest.raises(ValueError, match=message):
        format_chunks(chunks)


def test_prefix_text():
    chunks = ["a", "b", "c"]
    assert prefix_text(chunks, 0) == ""
    assert prefix_text(chunks, 1) == "<chunk>a</chunk>\n"
    assert prefix_text(chunks, 3) == "<chunk>a</chunk>\n<chunk>b</chunk>\n<chunk>c</chunk>\n"
    # a rollout continues the prefix; the full text parses back to all chunks
    assert parse_chunks(prefix_text(chunks, 2) + "<chunk>c</chunk>").chunks == chunks
    with pytest.raises(ValueError, match="outside 0..3"):
        prefix_text(chunks, 4)
