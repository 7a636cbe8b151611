"""The one small interface every generation backend implements.

A prompt is either raw text to continue or a list of chat messages (``{"role", "content"}``);
each prompt gets ``n`` samples. Engines return, per prompt, the completions with their token
counts and finish reasons (``"stop"``: EOS or a stop string, ``"length"``: hit ``max_tokens``),
and per-token logprobs when asked. Stop strings are cut from the returned text, as in the OpenAI API.

Abilities beyond ``generate`` (chat rendering, the tokenizer, token log-probs, a prefix cache) are
declared per engine class in :attr:`Engine.capabilities`; callers ask :meth:`Engine.supports` or call the
method and get an :class:`~stepjudge.errors.EngineCapabilityError` naming the engine and the ability.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Union

from stepjudge.errors import EngineCapabilityError

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


class Capability(str, Enum):
    """An ability beyond ``generate``; the value is how error messages name it."""

    CHAT_RENDERING = "chat rendering"  # chat messages -> the prompt text the model continues
    TOKENIZER = "tokenizer"
    NEXT_TOKEN_LOGPROBS = "next-token log-probs"  # log p(candidate token | prompt)
    PROMPT_LOGPROBS = "prompt log-probs"  # per-token log p(text | prompt), as an echo request gives
    PREFIX_CACHE = "prefix cache"  # KV of earlier prompts reused across calls
    TOKEN_STREAMING = "token streaming"  # generate(..., on_tokens=) reports each token as it is decoded


@dataclass(frozen=True)
class TokenEvent:
    """One decoded token of one sample, reported while the batch is still decoding (``on_tokens``).

    ``token_id`` is None on the step a sample ends on an end-of-sequence token (that token is not part
    of the completion); ``finish_reason`` is set on a sample's last event, so a streaming server can
    close that choice before the rest of the batch is done. ``logprob`` is filled when
    ``SamplingParams.logprobs`` is on.
    """

    prompt: int  # index into the prompts of the generate call
    sample: int  # 0 .. n-1
    token_id: int | None
    logprob: float | None = None
    finish_reason: FinishReason | None = None


TokenCallback = Callable[[list[TokenEvent]], None]  # called once per decode step, with that step's events


@dataclass
class TextLogprobs:
    """Per-token log-probs of one text continuing a prompt.

    The text's tokens are those of ``prompt + text`` tokenized as one string that cover at least one
    character of ``text``; a token that straddles the boundary counts (its ``offsets`` entry is then
    negative). ``offsets[i]`` is where token ``i`` starts, in characters from the start of ``text``.
    A token that starts the whole sequence (empty prompt, no BOS) has nothing to condition on: its
    log-prob is None, as in an OpenAI ``echo`` answer.
    """

    tokens: list[str]
    offsets: list[int]
    logprobs: list[float | None]

    @property
    def total(self) -> float:
        """log p(text | prompt): the sum over the text's tokens."""
        if any(v is None for v in self.logprobs):
            raise ValueError("the text starts the sequence, so its first token has no log-prob and the "
                             "text none in total; score it after a non-empty prompt")
        return float(sum(self.logprobs))  # type: ignore[arg-type]


def text_token_range(starts: Sequence[int], end: int, boundary: int) -> range:
    """Indices of the tokens that cover a character of ``[boundary, end)``.

    ``starts`` are the tokens' start offsets (non-decreasing, as tokenizers and the OpenAI echo
    ``text_offset`` give them); a token ends where the next one starts (the last one at ``end``), so
    both the in-process and the echo path classify a straddling token the same way.
    """
    n = len(starts)
    ends = [*starts[1:], end]
    first = next((i for i in range(n) if ends[i] > boundary), n)
    last = first
    while last < n and starts[last] < end:
        last += 1
    return range(first, last)


class Engine(ABC):
    """A text generator. Subclasses: :class:`HFEngine` (in-process), :class:`OpenAIEngine` (HTTP).

    ``capabilities`` is the one declaration of what an engine can do beyond ``generate``: a subclass
    sets it on the class (an instance may widen it where an ability depends on its settings, e.g. an
    OpenAIEngine given a local tokenizer). The optional methods below raise
    :class:`~stepjudge.errors.EngineCapabilityError` unless a subclass implements them and lists them there.
    """

    model_name: str = ""
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self) -> None:
        self.stats = EngineStats()

    # ------------------------------------------------------------------ capabilities
    def supports(self, *capabilities: Capability) -> bool:
        """Whether this engine has every one of ``capabilities``."""
        return set(capabilities) <= self.capabilities

    def require(self, *capabilities: Capability, needed_for: str | None = None) -> None:
        """Raise :class:`EngineCapabilityError` for the first of ``capabilities`` this engine lacks;
        ``needed_for`` says what wanted it, so the message tells the user what to change."""
        for cap in capabilities:
            if cap not in self.capabilities:
                raise self._missing(cap, needed_for)

    def _missing(self, capability: Capability, needed_for: str | None = None) -> EngineCapabilityError:
        name = type(self).__name__ + (f" ({self.model_name})" if self.model_name else "")
        return EngineCapabilityError(name, capability.value, needed_for=needed_for)

    def render(self, prompt: Prompt) -> str:
        """Chat messages -> the prompt text the model continues (raw text is returned unchanged)."""
        raise self._missing(Capability.CHAT_RENDERING)

    @property
    def tokenizer(self) -> Any:
        """The model's (Hugging Face) tokenizer."""
        raise self._missing(Capability.TOKENIZER)

    def next_token_logprobs(self, prompts: Sequence[Prompt], token_ids: Sequence[int]) -> list[list[float]]:
        """log p(token | prompt) for each of ``token_ids`` right after each prompt, without sampling."""
        raise self._missing(Capability.NEXT_TOKEN_LOGPROBS)

    def prompt_logprobs(self, prompts: Sequence[Prompt], texts: Sequence[str]) -> list[TextLogprobs]:
        """Per-token log-probs of each ``texts[i]`` continuing ``prompts[i]`` (see :class:`TextLogprobs`):
        the score of a fixed answer, or of a fixed token after a solution (LaSeR's self-reward)."""
        raise self._missing(Capability.PROMPT_LOGPROBS)

    def clear_prefix_cache(self) -> None:  # noqa: B027 - a no-op is right for engines without a cache
        """Forget reused KV, so the next results cannot depend on earlier calls. Without a prefix cache
        there is nothing to forget, so this never raises."""

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        """Sample ``params.n`` completions for each prompt, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, HTTP clients, model memory)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_chat(tokenizer: Any, prompt: Prompt) -> str:
    """Chat messages -> the model's chat template with the assistant turn opened; text is unchanged."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


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
