"""Grading: pull the final answer out of a response and check it against the gold answer.

``extract`` holds pure string extractors (boxed / GSM8K / "the answer is", judge verdicts, critic
indices); ``verify`` decides equivalence with math-verify in a worker process under a wall-clock limit.
"""

from stepjudge.grading import extract
from stepjudge.grading.extract import *  # noqa: F403  (the extractors, as extract.__all__ lists them)
from stepjudge.grading.verify import Grader, GradeResult, grade, normalize_answer

__all__ = [*extract.__all__, "GradeResult", "Grader", "grade", "normalize_answer"]
