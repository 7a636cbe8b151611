"""Splitting solutions into steps: the ``<chunk>`` format, blank-line fallback, self-segmentation data."""

from stepjudge.segment.chunks import (
    ChunkedSolution,
    ChunkFormatError,
    format_chunks,
    parse_chunks,
    prefix_text,
    segment,
    split_blank_lines,
)
from stepjudge.segment.self_segment import (
    SEGMENTATION_RULES,
    SegmentDataConfig,
    build_segmentation_sft,
    check_tagging,
    reconstructs_exactly,
    segment_solutions_file,
    segmentation_messages,
    strip_tags,
)

__all__ = [
    "SEGMENTATION_RULES",
    "ChunkFormatError",
    "ChunkedSolution",
    "SegmentDataConfig",
    "build_segmentation_sft",
    "check_tagging",
    "format_chunks",
    "parse_chunks",
    "prefix_text",
    "reconstructs_exactly",
    "segment",
    "segment_solutions_file",
    "segmentation_messages",
    "split_blank_lines",
    "strip_tags",
]
