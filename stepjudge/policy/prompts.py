"""The chunked-solver prompt (StepWiser Table 11 layout; the wording is ours).

It lives apart from the segmentation code because three stages must show the policy the *same*
prompt: the segmentation SFT data (what the policy learns to answer), solution sampling for
annotation, and Chunk-Reset search. A drift between them would train one format and sample another.
"""

from __future__ import annotations

from stepjudge.engines.base import ChatMessages

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
