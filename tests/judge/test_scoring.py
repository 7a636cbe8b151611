"""P(Positive) from the verdict token: token ids after the prefix, and the renormalised probability."""

import math

import pytest
import torch

from stepjudge.engines.hf import HFEngine
from stepjudge.judge.scoring import positive_probabilities, verdict_token_ids


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


def test_an_engine_without_token_probabilities_is_refused():
    class Remote:
        pass

    with pytest.raises(ValueError, match="cannot read token probabilities"):
        positive_probabilities(Remote(), [[{"role": "user", "content": "x"}]])
