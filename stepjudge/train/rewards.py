"""Reward functions for RL training, with TRL's reward-function signature, and their registry.

Run configs name rewards in YAML (``rewards: [verdict, format]``): a name registered with
:func:`register_reward`, or an import path ``package.module:function`` for a user's own reward;
:func:`resolve_reward` turns either into the callable. The registry is this module's one table,
filled by the decorator where each reward is defined.

TRL's :class:`~trl.GRPOTrainer` calls each reward function with keyword arguments ``prompts``,
``completions``, ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric`` and every
dataset column except ``prompt`` (here ``label``, ``problem_id``, ``chunk_index``, ...), and wants one
float per completion. Both functions below accept and ignore what they do not use, so they work with
any dataset that has a ``label`` column, and with plain-text or conversational completions.

* :func:`verdict_reward`: StepWiser's judge reward (§3.3): 1 when the last boxed verdict equals the
  chunk's label, else 0. An output with no parseable verdict earns 0, the same as a wrong verdict:
  the paper does not say (§1(g) of our spec), and anything higher would pay the judge for dodging.
* :func:`format_penalty_reward`: the no-CoT ablation's extra term (App. A.4): -1 unless the whole
  output is one boxed verdict, so the judge cannot smuggle reasoning into a "verdict only" answer.
* :func:`verifiable_reward` / :class:`VerifiableReward`: the RLVR reward r_v in {0, 1} of policy
  training (LaSeR): exactly one ``\\boxed{}`` (the released code's format check), graded by the
  row's task against the row's ``answer``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from stepjudge.grading.extract import extract_verdict, iter_boxed

__all__ = ["RewardFunc", "VerifiableReward", "canonical_label", "verifiable_reward", "completion_text", "format_penalty_reward", "register_reward",
           "registered_rewards", "resolve_reward", "resolve_rewards", "unregister_reward", "verdict_reward"]

RewardFunc = Callable[..., list[float]]
_REGISTRY: dict[str, RewardFunc] = {}


def register_reward(name: str) -> Callable[[RewardFunc], RewardFunc]:
    """Decorator: make ``func`` available to configs as ``name``; a name is registered once."""

    def add(func: RewardFunc) -> RewardFunc:
        if _REGISTRY.get(name, func) is not func:
            raise ValueError(f"reward name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = func
        return func

    return add


def unregister_reward(name: str) -> RewardFunc:
    """Remove ``name`` (a test's or a notebook's temporary reward); returns what it named."""
    return _REGISTRY.pop(name)


def registered_rewards() -> list[str]:
    """The names a config may use, sorted."""
    return sorted(_REGISTRY)


def resolve_reward(spec: str) -> RewardFunc:
    """The reward callable for a registered name or an import path ``package.module:function``."""
    import importlib

    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" not in spec:
        raise ValueError(f"unknown reward {spec!r}: registered rewards are {registered_rewards()}, "
                         "or give an import path 'package.module:function'")
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"reward {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"reward {spec!r} is not callable")
    return obj


def resolve_rewards(specs: Sequence[str]) -> list[RewardFunc]:
    """Every configured reward, in order (TRL sums them with weight 1 each)."""
    return [resolve_reward(s) for s in specs]

_VERDICTS = {"positive": "Positive", "negative": "Negative"}
# The whole output is one box holding a verdict, optionally as \text{...}; whitespace anywhere around.
_VERDICT_ONLY_RE = re.compile(
    r"\s*\\boxed\s*\{\s*(?:positive|negative|\\text\s*\{\s*(?:positive|negative)\s*\})\s*\}\s*",
    re.IGNORECASE,
)


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The text a judge wrote: a plain string, or the assistant content of a conversational completion.

    TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``; the content may
    also be a list of ``{"type": "text", "text": ...}`` blocks (multimodal processors).
    """
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block.get("text", "") for block in content if isinstance(block, dict))
    return "".join(parts)


def canonical_label(label: Any) -> str:
    """``Positive``/``Negative`` whatever the case; anything else is a data bug worth stopping for."""
    value = _VERDICTS.get(str(label).strip().lower()) if isinstance(label, str) else None
    if value is None:
        raise ValueError(f"judge labels must be 'Positive' or 'Negative', got {label!r}")
    return value


@register_reward("verdict")
def verdict_reward(prompts: Sequence[Any], completions: Sequence[Any], label: Sequence[str],
                   log_metric: Callable[[str, float], None] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the completion's last boxed verdict equals ``label``, else 0.0 (unparseable -> 0.0).

    A ``response_prefix`` column (the pre-filled start of the answer, see ``JudgeRLConfig``) is put
    back in front of each completion before the verdict is read.

    With TRL's ``log_metric`` it also logs, per batch, the share of Positive / Negative / unparsed
    verdicts and the accuracy on each label class: a judge drifting to one verdict (the "optimistic"
    failure of unbalanced training) shows up there long before it shows in the mean reward.
    """
    if len(completions) != len(label):
        raise ValueError(f"{len(completions)} completions but {len(label)} labels")
    prefixes = kwargs.get("response_prefix") or [""] * len(completions)
    verdicts = [extract_verdict(pre + completion_text(c)) for pre, c in zip(prefixes, completions, strict=True)]
    labels = [canonical_label(y) for y in label]
    rewards = [1.0 if v == y else 0.0 for v, y in zip(verdicts, labels, strict=True)]
    if log_metric is not None and verdicts:
        n = len(verdicts)
        log_metric("verdict/positive_share", verdicts.count("Positive") / n)
        log_metric("verdict/negative_share", verdicts.count("Negative") / n)
        log_metric("verdict/unparsed_share", verdicts.count(None) / n)
        for cls in ("Positive", "Negative"):  # only classes present in this batch, so no 0/0
            hits = [r for r, y in zip(rewards, labels, strict=True) if y == cls]
            if hits:
                log_metric(f"verdict/accuracy_{cls.lower()}", sum(hits) / len(hits))
    return rewards


@register_reward("format")
def format_penalty_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """-1.0 unless the output is exactly one boxed verdict (``\\boxed{Positive}``, spaces allowed), else 0.0.

    Case and a ``\\text{}`` wrapper are accepted because :func:`extract_verdict` accepts them: the
    penalty is about *extra text*, not about a spelling the verdict reward already credits.
    """
    prefixes = kwargs.get("response_prefix") or [""] * len(completions)
    return [0.0 if _VERDICT_ONLY_RE.fullmatch(pre + completion_text(c)) else -1.0
            for pre, c in zip(prefixes, completions, strict=True)]


class VerifiableReward:
    """r_v in {0, 1}: 1 iff the completion has exactly one ``\\boxed{}`` and the row's task grades it correct.

    Rows carry ``answer`` (the reference) and ``task`` (a ``problems:`` source such as ``arith``; the
    task decides how answers are compared). The object holds one :class:`~stepjudge.grading.Grader`
    (its math-verify worker lives as long as the object; :meth:`close` it, or use ``with``).
    """

    __name__ = "verifiable"

    def __init__(self, grade_timeout_s: float = 5.0) -> None:
        self.grade_timeout_s = grade_timeout_s
        self._grader: Any = None

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str],
                 task: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
        from stepjudge.data.records import Problem
        from stepjudge.grading import Grader
        from stepjudge.tasks import get_task

        if self._grader is None:
            self._grader = Grader(timeout_s=self.grade_timeout_s)
        texts = [completion_text(c) for c in completions]
        sources = list(task) if task is not None else ["arith"] * len(texts)
        out = [0.0] * len(texts)
        by_task: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if len(iter_boxed(text)) == 1:
                by_task.setdefault(sources[i], []).append(i)
        for source, rows in by_task.items():
            pairs = [(texts[i], Problem(id=str(i), problem="", answer=str(answer[i]), source=source)) for i in rows]
            for i, result in zip(rows, get_task(source).grade(self._grader, pairs), strict=True):
                out[i] = 1.0 if result.correct else 0.0
        return out

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()
            self._grader = None

    def __enter__(self) -> VerifiableReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@register_reward("verifiable")
def verifiable_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str],
                      task: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """:class:`VerifiableReward` with a grader for this call only (training holds one for the run)."""
    with VerifiableReward() as reward:
        return reward(prompts, completions, answer, task)
