"""The policy side: prompts for a solver that writes its reasoning as ``<chunk>`` blocks."""

from stepjudge.policy.prompts import CHUNKED_SOLVER_INSTRUCTION, chunked_solver_messages

__all__ = ["CHUNKED_SOLVER_INSTRUCTION", "chunked_solver_messages"]
