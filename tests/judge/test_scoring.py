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
