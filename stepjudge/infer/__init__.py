"""Inference-time uses of a stepwise judge: Chunk-Reset Reasoning (StepWiser §4.4)."""

from stepjudge.infer.chunk_reset import ChunkResetConfig, chunk_reset_solve, run_chunk_reset, summarize

__all__ = ["ChunkResetConfig", "chunk_reset_solve", "run_chunk_reset", "summarize"]
