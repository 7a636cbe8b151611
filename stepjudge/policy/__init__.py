"""The policy side: prompts for a solver that writes its reasoning as ``<chunk>`` blocks."""

from stepjudge.policy.prompts import (
    CHUNKED_SOLVER_INSTRUCTION,
    FEWSHOT_EXAMPLES,
    chunked_solver_messages,
    fewshot_prompt,
)

__all__ = ["CHUNKED_SOLVER_INSTRUCTION", "FEWSHOT_EXAMPLES", "chunked_solver_messages", "fewshot_prompt"]
