"""P(Positive) from the verdict token: token ids after the prefix, and the renormalised probability."""

import math

import pytest
import torch

from stepjudge.engines.base import Capability, Completion, Engine, GenerationResult
from stepjudge.engines.hf import HFEngine
from stepjudge.errors import EngineCapabilityError
from stepjudge.judge.scoring import positive_probabilities, prefill_answer, verdict_token_ids


@pytest.fixture(scope="module")
def engine():
    return HFEngine("tiny-random")


def test_verdict_tokens_are_the_first_tokens_after_the_prefix(engine):
    tok = engine.tokenizer
    pos, neg = verdict_token_ids(tok)
    prefix = tok("\\boxed{", add_special_tokens=False).input_ids
    assert tok("\\boxed{Positive}", add_special_tokens=False).input_ids[len(prefix)] == pos
    assert tok("\\boxed{Negative}", add_special_tokens=False).input_ids[len(prefix)] == neg
    assert pos != neg


def test_positive_probability_is_the_two_way_softmax_of_the_verdict_logits(engine):
    chats = [[{"role": "user", "content": "Is 2 + 2 = 4 right?"}],
             [{"role": "user", "content": "Chunk: 13 + 3 = 26"}]]
    probs = positive_probabilities(engine, chats)
    pos, neg = verdict_token_ids(engine.tokenizer)
    for chat, p in zip(chats, probs, strict=True):
        text = engine.render(chat) + "\\boxed{"
        enc = engine.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = engine.model(**enc).logits[0, -1].float()
        expected = 1 / (1 + math.exp(float(logits[neg] - logits[pos])))
        assert p == pytest.approx(expected, abs=1e-5)
        assert 0 < p < 1


class Remote(Engine):
    """A real engine with generation only (like a server that gives no token log-probs)."""

    model_name = "remote-judge"

    def generate(self, prompts, params):
        return [GenerationResult([Completion("\\boxed{Positive}", 3, "stop")] * params.n) for _ in prompts]


def test_an_engine_without_token_probabilities_is_refused():
    with pytest.raises(EngineCapabilityError) as info:
        positive_probabilities(Remote(), [[{"role": "user", "content": "x"}]])
    assert str(info.value) == ("Remote (remote-judge) has no next-token log-probs (needed for P(Positive) from "
                               "the verdict token; use the hf engine or score with sampled votes)")


def test_an_engine_that_renders_but_has_no_tokenizer_is_refused_naming_it():
    class Renders(Remote):
        capabilities = frozenset({Capability.NEXT_TOKEN_LOGPROBS, Capability.CHAT_RENDERING})

    with pytest.raises(EngineCapabilityError, match=r"^Renders \(remote-judge\) has no tokenizer \(needed for"):
        positive_probabilities(Renders(), ["x"])


def test_prefill_answer_needs_chat_rendering_unless_there_is_no_prefix():
    chats = [[{"role": "user", "content": "x"}]]
    assert prefill_answer(Remote(), chats, "") == chats
    with pytest.raises(EngineCapabilityError, match=r"has no chat rendering \(needed for a pre-filled judge"):
        prefill_answer(Remote(), chats, "\\boxed{")


def test_calibrated_threshold_separates_shifted_probabilities():
    from stepjudge.judge.scoring import calibrate_threshold

    # every chunk looks "Positive" at 0.5, but the negatives sit lower: the cut goes between them
    probs = [0.95, 0.93, 0.91, 0.88, 0.86, 0.84]
    labels = [True, True, True, False, False, False]
    assert calibrate_threshold(probs, labels) == pytest.approx((0.91 + 0.88) / 2)
    assert calibrate_threshold([0.9, 0.7, 0.8, 0.6], [True, False, True, False]) == pytest.approx(0.75)
    # two equally good cuts (balanced accuracy 5/6 at 0.35 and at 0.775): the one nearer 0.5 wins
    assert calibrate_threshold([0.2, 0.3, 0.4, 0.75, 0.8, 0.9], [False, False, True, False, True, True]) \
        == pytest.approx(0.35)
    # 0.6 (Positive) below both negatives: the best cut (3/4) keeps only 0.9 above it
    assert calibrate_threshold([0.9, 0.6, 0.8, 0.7], [True, True, False, False]) == pytest.approx(0.85)


def test_uninformative_scores_keep_the_default_cut():
    from stepjudge.judge.scoring import calibrate_threshold

    assert calibrate_threshold([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        calibrate_threshold([0.2, 0.3], [True, True])
