"""Prompts for the three ways of asking a model to judge reasoning.

* critic: ProcessBench's official protocol. The instruction text is the benchmark's own (QwenLM/
  ProcessBench ``code/run_eval.py``); it is kept verbatim because reported numbers depend on it.
* stepwise: the StepWiser judge (paper Table 3 layout: problem, history, new chunk; analysis first,
  then ``\\boxed{Positive}`` or ``\\boxed{Negative}``). The wording here is ours.
* prm: a discriminative process reward model in a multi-turn chat, one step per user turn and a
  one-token ``+``/``-`` answer per assistant turn (ProcessBench's PRM protocol; StepWiser's
  discriminative baseline format).
"""

from __future__ import annotations

from collections.abc import Sequence

from stepjudge.engines.base import ChatMessages

PROCESSBENCH_CRITIC_TEMPLATE = (
    "The following is a math problem and a solution (split into paragraphs, enclosed with tags and "
    "indexed from 0):\n\n[Math Problem]\n\n{problem}\n\n[Solution]\n\n{tagged_response}\n\n"
    "Your task is to review and critique the solution paragraph by paragraph. Once you identify an error "
    "in a paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return "
    "the index of -1 (which typically denotes \"not found\").\n\n"
    "Please put your final answer (i.e., the index) in \\boxed{{}}."
)


def tag_paragraphs(steps: Sequence[str]) -> str:
    """``<paragraph_i>`` tags, indexed from 0, as the benchmark defines them."""
    return "\n\n".join(f"<paragraph_{i}>\n{s}\n</paragraph_{i}>" for i, s in enumerate(steps))


def critic_messages(problem: str, steps: Sequence[str]) -> ChatMessages:
    text = PROCESSBENCH_CRITIC_TEMPLATE.format(problem=problem, tagged_response=tag_paragraphs(steps))
    return [{"role": "user", "content": text}]


STEPWISE_JUDGE_TEMPLATE = """You are a careful validator of mathematical reasoning. You are given a math problem, the reasoning written so far, and one new chunk of reasoning that continues it. Decide whether the new chunk contains an explicit mistake, taking the problem and the earlier reasoning as given.

Always analyse before you decide:
1. Analysis: say what the new chunk is trying to do, then check its logic, its method and every calculation against the problem and the earlier reasoning. If something is wrong, explain exactly what. A chunk that only restates information or plans the next step, with no computation, is fine.
2. Final Judgment: answer \\boxed{{Positive}} if the new chunk has no mistake, or \\boxed{{Negative}} if it has at least one.

Mathematical Problem:
{problem}

Historical Reasoning Path:
{history}

New Reasoning Chunk:
{chunk}"""

NO_HISTORY = "(none: this is the first chunk)"


def stepwise_judge_messages(problem: str, history: Sequence[str], chunk: str) -> ChatMessages:
    """One judge prompt for chunk ``a_i`` given the history ``a_1..a_{i-1}``."""
    hist = "\n\n".join(history) if history else NO_HISTORY
    return [{"role": "user", "content": STEPWISE_JUDGE_TEMPLATE.format(problem=problem, history=hist,
                                                                        chunk=chunk)}]


def prm_messages(problem: str, steps: Sequence[str], verdicts: Sequence[str] | None = None) -> ChatMessages:
    """Multi-turn PRM chat up to ``steps[-1]``; earlier assistant turns carry ``verdicts`` ("+" default)."""
    msgs: ChatMessages = []
    for i, step in enumerate(steps):
        content = f"{problem}\n\n{step}" if i == 0 else step
        msgs.append({"role": "user", "content": content})
        if i < len(steps) - 1:
            msgs.append({"role": "assistant", "content": (verdicts[i] if verdicts else "+")})
    return msgs
