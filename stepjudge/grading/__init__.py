"""Grading: pull the final answer out of a response and check it against the gold answer.

``extract`` holds pure string extractors (boxed / GSM8K / "the answer is", judge verdicts, critic
indices); ``verify`` decides equivalence with math-verify in a worker process under a wall-clock limit.
"""

from stepjudge.grading.extract import (
    ANSWER_FORMATS,
    extract_answer,
    extract_answer_is,
    extract_boxed,
    extract_gsm8k,
    extract_int_boxed,
    extract_verdict,
    iter_boxed,
)
from stepjudge.grading.verify import Grader, GradeResult, grade, normalize_answer

__all__ = [
    "ANSWER_FORMATS",
    "GradeResult",
    "Grader",
    "extract_answer",
    "extract_answer_is",
    "extract_boxed",
    "extract_gsm8k",
    "extract_int_boxed",
    "extract_verdict",
    "grade",
    "iter_boxed",
    "normalize_answer",
]
