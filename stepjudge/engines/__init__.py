"""Generation engines behind one interface: :class:`Engine.generate(prompts, SamplingParams)`, plus the
abilities an engine declares in :attr:`Engine.capabilities` (see :class:`Capability`)."""

from stepjudge.engines.base import (
    Capability,
    ChatMessages,
    Completion,
    Engine,
    EngineStats,
    GenerationResult,
    Prompt,
    SamplingParams,
    TextLogprobs,
    TokenCallback,
    TokenEvent,
)

__all__ = ["Capability", "TextLogprobs", "TokenCallback", "TokenEvent", "ChatMessages", "Completion", "Engine", "EngineStats", "GenerationResult", "Prompt",
           "SamplingParams", "HFEngine", "OpenAIEngine", "EngineConfig", "make_engine"]


def __getattr__(name: str):  # heavy imports (torch, openai) only when used
    if name == "HFEngine":
        from stepjudge.engines.hf import HFEngine

        return HFEngine
    if name == "OpenAIEngine":
        from stepjudge.engines.openai import OpenAIEngine

        return OpenAIEngine
    if name in ("EngineConfig", "make_engine"):
        from stepjudge.engines import factory

        return getattr(factory, name)
    raise AttributeError(name)
