"""Datasets as typed records: one place that knows file layouts, so later stages never touch raw dicts."""

from stepjudge.data import loaders
from stepjudge.data.loaders import *  # noqa: F403  (the loaders' public API, as loaders.__all__ lists it)
from stepjudge.data.records import Problem, ProcessBenchCase, Solution

__all__ = [*loaders.__all__, "Problem", "ProcessBenchCase", "Solution"]
