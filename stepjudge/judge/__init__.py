"""Judge prompts and verdict aggregation shared by evaluation, training and inference.

Judge training data (from annotations) lives in :mod:`stepjudge.judge.dataset`.
"""

from stepjudge.judge.prompts import (
    PROCESSBENCH_CRITIC_TEMPLATE,
    critic_messages,
    prm_messages,
    stepwise_judge_messages,
)
from stepjudge.judge.verdicts import majority_index, majority_verdict, parse_prm_verdict

__all__ = [
    "PROCESSBENCH_CRITIC_TEMPLATE",
    "critic_messages",
    "majority_index",
    "majority_verdict",
    "parse_prm_verdict",
    "prm_messages",
    "stepwise_judge_messages",
]

