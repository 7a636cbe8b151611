"""Judge prompts and verdict aggregation shared by evaluation, training and inference."""

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


def __getattr__(name: str):  # the dataset builder pulls in pydantic/transformers: import it on use
    from stepjudge.judge import dataset

    if name in dataset.__all__ if hasattr(dataset, "__all__") else hasattr(dataset, name):
        return getattr(dataset, name)
    raise AttributeError(name)
