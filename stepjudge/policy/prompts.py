"""The solver prompts: the chunked chat prompt (StepWiser Table 11 layout; the wording is ours) and the
few-shot raw-text prompt.

They live apart from the segmentation code because three stages must show the policy the *same*
prompt: the segmentation SFT data (what the policy learns to answer), solution sampling for
annotation, and Chunk-Reset search. A drift between them would train one format and sample another.
Which prompt a problem gets is decided by its task (:meth:`stepjudge.tasks.Task.solver_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence

from stepjudge.data.records import Problem
from stepjudge.engines.base import ChatMessages

__all__ = ["CHUNKED_SOLVER_INSTRUCTION", "FEWSHOT_EXAMPLES", "chunked_solver_messages", "fewshot_prompt"]

CHUNKED_SOLVER_INSTRUCTION = (
    "You are a helpful assistant that solves math problems step by step. Split your reasoning into "
    "parts and you MUST wrap each part in <chunk> and </chunk> tags, one tagged chunk after another. "
    "After the last chunk, give the final answer in \\boxed{}."
)


def chunked_solver_messages(problem: str, *, system_role: bool = True) -> ChatMessages:
    """Chat prompt asking for a ``<chunk>``-tagged solution of ``problem``.

    ``system_role=False`` folds the instruction into the user turn, for chat templates that reject a
    system message.
    """
    user = f"Problem: {problem}"
    if system_role:
        return [{"role": "system", "content": CHUNKED_SOLVER_INSTRUCTION},
                {"role": "user", "content": user}]
    return [{"role": "user", "content": f"{CHUNKED_SOLVER_INSTRUCTION}\n\n{user}"}]


# Two worked arith examples: short enough for a 135M base model to continue in the same format.
FEWSHOT_EXAMPLES = (
    "Start with 2. Add 5. Add 1.\n<chunk>2 + 5 = 7</chunk>\n<chunk>7 + 1 = 8</chunk>\n\\boxed{8}",
    "Start with 6. Add 2. Add 3.\n<chunk>6 + 2 = 8</chunk>\n<chunk>8 + 3 = 11</chunk>\n\\boxed{11}",
)


def fewshot_prompt(problem: str | Problem, examples: Sequence[str] = FEWSHOT_EXAMPLES) -> str:
    """Raw text for a base-style continuation: worked examples, then the problem on its own line.

    Stop generation at ``"\\n\\n"``: a blank line means the model is starting a new problem.
    """
    text = problem.problem if isinstance(problem, Problem) else problem
    return "\n\n".join([*examples, text]) + "\n"
