"""The chunked-solver prompt (StepWiser Table 11 layout; the wording is ours).

It lives apart from the segmentation code because three stages must show the policy the *same*
prompt: the segmentation SFT data (what the policy learns to answer), solution sampling for
annotation, and Chunk-Reset search. A drift between them would train one format and sample another.
"""

from __future__ import annotations

from stepjudge.engines.base import Capability, ChatMessages, Engine

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


def base_prompt(engine: Engine, problem, style: str) -> str:
    """Raw text every sample, rollout or chunk try of ``problem`` continues.

    ``fewshot``: the arith worked examples continued as raw text (any engine); ``chat``: the solver
    prompt above through the model's chat template, rendered locally (needs the hf engine).
    """
    if style == "fewshot":
        from stepjudge.tasks.arith import fewshot_prompt

        return fewshot_prompt(problem)
    engine.require(Capability.CHAT_RENDERING, needed_for="prompt_style 'chat', which continues the rendered "
                                                         "chat prompt; use prompt_style 'fewshot' with this engine")
    text = problem if isinstance(problem, str) else problem.problem
    return engine.render(chunked_solver_messages(text))
