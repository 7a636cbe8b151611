"""stepjudge: judge LLM reasoning step by step.

The package mirrors the pipeline: ``data`` -> ``engines`` (generation) -> ``grading`` -> ``judge``
(prompts and verdict parsing) -> ``eval`` (benchmarks such as ProcessBench) -> ``serve``.
"""

__version__ = "0.1.0"
