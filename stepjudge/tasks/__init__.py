"""Problem sources as registered tasks (``arith``, ``gsm8k``, ``math500``, ``math-test``, a user's file).

Importing this package registers the built-in tasks; :func:`get_task` resolves a ``problems:`` string.
"""

from stepjudge.tasks.arith import ArithConfig, ArithTask
from stepjudge.tasks.base import (
    DEFAULT_SOURCE,
    PromptStyle,
    StepTruth,
    Task,
    get_task,
    new_problems_options,
    register_task,
    registered_tasks,
    task_of,
    unregister_task,
)
from stepjudge.tasks.datasets import FileTask, Gsm8kTask, Math500Task, MathTestTask
from stepjudge.tasks.problems import load_problem_set

__all__ = [
    "DEFAULT_SOURCE",
    "ArithConfig",
    "ArithTask",
    "FileTask",
    "Gsm8kTask",
    "Math500Task",
    "MathTestTask",
    "PromptStyle",
    "StepTruth",
    "Task",
    "get_task",
    "load_problem_set",
    "new_problems_options",
    "register_task",
    "registered_tasks",
    "task_of",
    "unregister_task",
]
