"""Datasets as typed records: one place that knows file layouts, so later stages never touch raw dicts."""

from stepjudge.data.loaders import (
    ANSWER_FIELDS,
    DATA_ENV,
    DEFAULT_DATA_DIR,
    PROBLEM_FIELDS,
    PROCESSBENCH_SUBSETS,
    find_data_root,
    load_gsm8k,
    load_math500,
    load_math_test,
    load_problems,
    load_processbench,
)
from stepjudge.data.records import Problem, ProcessBenchCase, Solution

__all__ = [
    "ANSWER_FIELDS",
    "DATA_ENV",
    "DEFAULT_DATA_DIR",
    "PROBLEM_FIELDS",
    "PROCESSBENCH_SUBSETS",
    "Problem",
    "ProcessBenchCase",
    "Solution",
    "find_data_root",
    "load_gsm8k",
    "load_math500",
    "load_math_test",
    "load_problems",
    "load_processbench",
]
