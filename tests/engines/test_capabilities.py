"""Engine capabilities: one declaration per engine, a named error for each missing ability, and the
offset rule that decides which tokens belong to a scored text."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stepjudge.engines.base import (
    Capability,
    Completion,
    Engine,
    GenerationResult,
    Prompt,
    SamplingParams,
    TextLogprobs,
    text_token_range,
)
from stepjudge.errors import EngineCapabilityError, EngineError, StepJudgeError


class ParrotEngine(Engine):
    """A real engine with only ``generate``: it answers every prompt with the prompt itself."""

    model_name = "parrot-1"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        return [GenerationResult([Completion(str(p), 1, "stop")] * params.n) for p in prompts]


CHAT = [{"role": "user", "content": "hi"}]


def test_an_engine_declares_nothing_beyond_generate_by_default():
    eng = ParrotEngine()
    assert eng.capabilities == frozenset()
    assert not eng.supports(Capability.TOKENIZER)
    assert eng.supports()  # asking for nothing is always satisfied
    assert eng.generate(["a"], SamplingParams(n=2))[0].texts == ["a", "a"]


@pytest.mark.parametrize(("call", "ability"), [
    (lambda e: e.render(CHAT), "chat rendering"),
    (lambda e: e.tokenizer, "tokenizer"),
    (lambda e: e.next_token_logprobs(["a"], [1, 2]), "next-token log-probs"),
    (lambda e: e.prompt_logprobs(["a"], ["b"]), "prompt log-probs"),
])
def test_each_missing_capability_raises_naming_engine_and_ability(call, ability):
    with pytest.raises(EngineCapabilityError) as info:
        call(ParrotEngine())
    assert str(info.value) == f"ParrotEngine (parrot-1) has no {ability}"
    assert info.value.engine == "ParrotEngine (parrot-1)" and info.value.capability == ability
    assert isinstance(info.value, EngineError) and isinstance(info.value, StepJudgeError)


def test_require_names_the_first_missing_ability_and_what_needed_it():
    eng = ParrotEngine()
    eng.require()  # nothing asked: no error
    with pytest.raises(EngineCapabilityError) as info:
        eng.require(Capability.PROMPT_LOGPROBS, Capability.TOKENIZER, needed_for="LaSeR's self-reward")
    assert str(info.value) == "ParrotEngine (parrot-1) has no prompt log-probs (needed for LaSeR's self-reward)"


def test_an_engine_without_a_model_name_is_named_by_its_class():
    class Bare(Engine):
        def generate(self, prompts, params):
            return []

    with pytest.raises(EngineCapabilityError, match=r"^Bare has no tokenizer$"):
        _ = Bare().tokenizer


def test_clearing_a_prefix_cache_the_engine_lacks_is_a_no_op():
    eng = ParrotEngine()
    eng.clear_prefix_cache()
    assert eng.generate(["x"], SamplingParams())[0].texts == ["x"]


def test_a_subclass_that_declares_a_capability_gets_it():
    class Lower(ParrotEngine):
        capabilities = frozenset({Capability.CHAT_RENDERING})

        def render(self, prompt: Prompt) -> str:
            return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt).lower()

    eng = Lower()
    assert eng.supports(Capability.CHAT_RENDERING)
    assert not eng.supports(Capability.CHAT_RENDERING, Capability.TOKENIZER)
    eng.require(Capability.CHAT_RENDERING)
    assert eng.render([{"role": "user", "content": "Hi THERE"}]) == "hi there"


def test_text_logprobs_total_is_the_sum():
    assert TextLogprobs([" a", "b"], [0, 2], [-1.5, -0.25]).total == -1.75
    assert TextLogprobs([], [], []).total == 0.0
    with pytest.raises(ValueError, match="no log-prob"):
        _ = TextLogprobs(["a", "b"], [0, 1], [None, -1.0]).total


@pytest.mark.parametrize(("starts", "end", "boundary", "want"), [
    ([0, 3, 10, 13], 17, 13, range(3, 4)),        # "The| answer| is| yes" + text " yes": clean boundary
    ([0, 3, 10, 13], 17, 12, range(2, 4)),        # boundary inside " is": the straddling token counts
    ([0, 3, 10, 13], 17, 17, range(4, 4)),        # empty text: no tokens
    ([0, 0, 3], 6, 0, range(1, 3)),               # a zero-length BOS never covers text
    ([0, 3, 10, 13, 17, 19], 17, 13, range(3, 4)),  # tokens generated after the echoed prompt are not text
    ([0, 3], 5, 0, range(0, 2)),                  # empty prompt: the whole sequence is text
])
def test_text_token_range_picks_tokens_covering_the_text(starts, end, boundary, want):
    assert text_token_range(starts, end, boundary) == want
