"""The one small interface every generation backend implements.

A prompt is either raw text to continue or a list of chat messages (``{"role", "content"}``);
each prompt gets ``n`` samples. Engines return, per prompt, the completions with their token
counts and finish reasons (``"stop"``: EOS or a stop string, ``"length"``: hit ``max_tokens``),
and per-token logprobs when asked. Stop strings are cut from the returned text, as in the OpenAI API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

ChatMessages = list[dict[str, str]]
Prompt = Union[str, ChatMessages]  # noqa: UP007 - a runtime alias must work on 3.10
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """What to sample. ``temperature == 0`` means greedy decoding (then ``n`` copies are identical)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    stop_token_ids: tuple[int, ...] = ()  # extra end-of-sequence ids (like vLLM's), cut like EOS
    ignore_eos: bool = False  # keep sampling past EOS (benchmarks; vLLM has the same knob)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    text: str
    num_tokens: int
    finish_reason: FinishReason
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None  # log p(token) under the model's (untempered) distribution


@dataclass
class GenerationResult:
    """All samples of one prompt."""

    completions: list[Completion]
    prompt_tokens: int = 0

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


@dataclass
class EngineStats:
    """Running totals, so callers can report tokens/s without timing every call themselves."""

    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class Engine(ABC):
    """A text generator. Subclasses: :class:`HFEngine` (in-process), :class:`OpenAIEngine` (HTTP)."""

    model_name: str

    def __init__(self) -> None:
        self.stats = EngineStats()

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        """Sample ``params.n`` completions for each prompt, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, HTTP clients, model memory)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; returns the text and whether one was found."""
    cut = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    if cut < 0:
        return text, False
    return text[:cut], True
