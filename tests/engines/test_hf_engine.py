"""The hf engine on the tiny model: sampling contract, equivalence with transformers' generate."""

import pytest
import torch

from stepjudge.engines.base import SamplingParams, truncate_at_stop
from stepjudge.engines.hf import HFEngine


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(1)
    return HFEngine("tiny-random", max_batch_rows=16)


def test_greedy_matches_transformers_generate(engine):
    tok, model = engine.tokenizer, engine.model
    prompt = "Start with 4. Add 3. Add 5."
    ids = tok(prompt, return_tensors="pt")
    ref = model.generate(**ids, do_sample=False, max_new_tokens=12, min_new_tokens=12,
                         pad_token_id=tok.pad_token_id)[0, ids.input_ids.shape[1]:].tolist()
    out = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    assert out.completions[0].token_ids == ref
    assert out.completions[0].num_tokens == 12
    assert out.completions[0].finish_reason == "length"
    assert out.prompt_tokens == ids.input_ids.shape[1]


def test_left_padding_does_not_change_greedy_output(engine):
    short, long = "Add 3.", "Start with 4. Add 3. Add 5. Then subtract 2 and add 7 more."
    p = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    alone = engine.generate([short], p)[0].completions[0].token_ids
    batched = engine.generate([long, short], p)
    assert batched[1].completions[0].token_ids == alone
    assert batched[0].completions[0].token_ids == engine.generate([long], p)[0].completions[0].token_ids


def test_n_samples_seeded_and_shared_prefix_matches_copies(engine):
    p = SamplingParams(n=4, temperature=1.0, max_tokens=6, seed=123, ignore_eos=True)
    a = engine.generate(["Start with 2."], p)[0]
    b = engine.generate(["Start with 2."], p)[0]
    assert len(a.completions) == 4
    assert a.texts == b.texts  # same seed, same batch -> same samples
    # Greedy: prefix sharing must give exactly what 4 independent copies give.
    g = SamplingParams(n=3, temperature=0, max_tokens=6, ignore_eos=True)
    shared = engine.generate(["Start with 2.", "Add 9."], g)
    naive = HFEngine(engine.model, engine.tokenizer, share_prefix=False).generate(["Start with 2.", "Add 9."], g)
    assert [r.texts for r in shared] == [r.texts for r in naive]


def test_chat_prompt_uses_chat_template(engine):
    msgs = [{"role": "user", "content": "hi"}]
    rendered = engine.render(msgs)
    assert rendered.startswith("<|im_start|>system") and rendered.endswith("<|im_start|>assistant\n")
    res = engine.generate([msgs], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    assert res[0].prompt_tokens == len(engine.tokenizer(rendered, add_special_tokens=False).input_ids)


def test_stop_string_cut_and_finish_reason(engine):
    # Find what greedy decoding produces, then stop on a piece of it.
    p = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    full = engine.generate(["Start with 4."], p)[0].completions[0]
    stop = full.text[3:6]
    assert stop
    out = engine.generate(["Start with 4."], SamplingParams(temperature=0, max_tokens=10, stop=(stop,),
                                                            ignore_eos=True))[0].completions[0]
    assert out.finish_reason == "stop"
    assert out.text == full.text[:full.text.find(stop)]
    assert out.num_tokens < 10


def test_logprobs_match_a_teacher_forced_forward_pass(engine):
    prompt = "Start with 4. Add 3."
    out = engine.generate([prompt], SamplingParams(temperature=1.0, max_tokens=5, seed=0, logprobs=True,
                                                   ignore_eos=True))[0].completions[0]
    ids = engine.tokenizer(prompt).input_ids
    full = torch.tensor([ids + out.token_ids])
    with torch.no_grad():
        logp = torch.log_softmax(engine.model(full).logits[0].float(), -1)
    expected = [logp[len(ids) - 1 + i, t].item() for i, t in enumerate(out.token_ids)]
    assert out.logprobs == pytest.approx(expected, abs=1e-4)


def test_end_token_ends_a_row_and_is_counted_but_not_returned(engine):
    p = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    full = engine.generate(["Start with 4."], p)[0].completions[0].token_ids
    k = [i for i in range(10) if full[i] not in full[:i]][-1]  # last first-occurrence of a token id
    out = engine.generate(["Start with 4."], SamplingParams(temperature=0, max_tokens=10,
                                                            stop_token_ids=(full[k],)))[0].completions[0]
    assert out.finish_reason == "stop" and out.token_ids == full[:k] and out.num_tokens == k + 1
    assert out.text == engine.tokenizer.decode(full[:k], skip_special_tokens=True)


def test_sampling_params_validation():
    with pytest.raises(ValueError):
        SamplingParams(n=0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    assert SamplingParams(stop="</chunk>").stop == ("</chunk>",)
    assert truncate_at_stop("a</chunk>b<x>", ["<x>", "</chunk>"]) == ("a", True)
    assert truncate_at_stop("abc", ["z"]) == ("abc", False)


def test_stats_count_tokens(engine):
    before = engine.stats.completion_tokens
    engine.generate(["a", "b"], SamplingParams(n=2, temperature=0, max_tokens=3, ignore_eos=True))
    assert engine.stats.completion_tokens - before == 12


def test_prefix_cache_reuses_kv_and_gives_the_same_outputs():
    base = HFEngine("tiny-random", prefix_cache_tokens=0)
    cached = HFEngine(base.model, base.tokenizer, prefix_cache_tokens=4096)
    history = "Start with 4. Add 3 to get 7. Then add 5 to get 12. Subtract 2 to get 10. " * 3
    first = [history + "Step A.", "Unrelated short prompt"]
    second = [history + "Step A. Step B, which is longer.", history + "Other tail", "Unrelated short prompt!"]
    p = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    for prompts in (first, second):
        assert [r.completions[0].token_ids for r in cached.generate(prompts, p)] == \
               [r.completions[0].token_ids for r in base.generate(prompts, p)]
    pc = cached.prefix_cache
    assert pc.hits >= 2 and pc.reused_tokens > len(cached.tokenizer(history).input_ids)
    # n samples on top of a reused prefix still match prefix-free copies (greedy).
    g = SamplingParams(n=2, temperature=0, max_tokens=5, ignore_eos=True)
    assert cached.generate([history + "Step C."], g)[0].texts == base.generate([history + "Step C."], g)[0].texts


def test_prefix_cache_lru_bound():
    from stepjudge.engines.prefix_cache import PrefixCache

    pc = PrefixCache(max_tokens=10, min_match=2)
    kv = [(torch.zeros(1, 6, 2), torch.zeros(1, 6, 2))]
    pc.store([1, 2, 3, 4, 5, 6], kv)
    assert pc.lookup([1, 2, 3, 9])[0] == 3
    assert pc.lookup([1, 2, 3, 4, 5, 6])[0] == 5  # one token is always left to encode
    pc.store([7, 8, 9, 10, 11, 12], kv)  # over budget: the older entry goes
    assert len(pc) == 1 and pc.tokens == 6 and pc.lookup([1, 2, 3, 9])[0] == 0


def test_sampler_follows_the_distribution_and_top_p():
    eng = HFEngine.__new__(HFEngine)  # only the sampler is exercised: no model needed
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    draws = eng._sample(logits, SamplingParams(temperature=1.0), gen)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015, rtol=0)
    # top_p=0.7 keeps {0.5, 0.3} (0.5 < 0.7, the token crossing 0.7 is kept), renormalised to 5/8, 3/8
    draws = eng._sample(logits, SamplingParams(temperature=1.0, top_p=0.7), gen)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.015, rtol=0)
    assert eng._sample(logits[:2], SamplingParams(temperature=0), None).tolist() == [0, 0]


def test_next_token_logprobs_match_a_plain_forward_pass(engine):
    tok, model = engine.tokenizer, engine.model
    prompts = ["Start with 4. Add 3.", "Add 3. \\boxed{", "x"]
    ids = [5, 17, 300]
    got = engine.next_token_logprobs(prompts, ids)
    for prompt, row in zip(prompts, got, strict=True):
        enc = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            ref = torch.log_softmax(model(**enc).logits[0, -1].float(), dim=-1)[ids]
        assert row == pytest.approx(ref.tolist(), abs=1e-4)  # batched with left padding = alone


# ---------------------------------------------------------------------- capabilities
def _forward_logprobs(model, ids: list[int]) -> list[float]:
    """log p(ids[j] | ids[:j]) for j >= 1 from one plain, unpadded transformers forward pass."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return [logp[j - 1, ids[j]].item() for j in range(1, len(ids))]


def test_hf_engine_has_every_capability(engine):
    from stepjudge.engines.base import Capability

    assert engine.capabilities == frozenset(Capability)
    assert engine.supports(*Capability)
    engine.require(*Capability)
    assert engine.tokenizer is engine._tokenizer and engine.tokenizer.is_fast


def test_prompt_logprobs_equal_a_plain_forward_pass(engine):
    tok, model = engine.tokenizer, engine.model
    chat = [{"role": "user", "content": "Is 2 + 2 = 4?"}]
    pairs = [("The answer is", " yes"),
             ("Start with 4. Add 3. Add 5. Then subtract two", " and the total is 12."),
             (chat, "\\boxed{Positive}"),
             ("x", "")]
    small = HFEngine(model, tok, max_batch_rows=3, prefix_cache_tokens=0)  # two batches, left-padded rows
    got = small.prompt_logprobs([p for p, _ in pairs], [t for _, t in pairs])
    whole = engine.prompt_logprobs([p for p, _ in pairs], [t for _, t in pairs])  # one batch
    for a, b in zip(whole, got, strict=True):
        assert (a.tokens, a.offsets) == (b.tokens, b.offsets)
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    for (prompt, text), out in zip(pairs, got, strict=True):
        head = engine.render(prompt)
        ids = tok(head + text, add_special_tokens=isinstance(prompt, str)).input_ids
        n_text = len(ids) - len(tok(head, add_special_tokens=isinstance(prompt, str)).input_ids)
        assert len(out.logprobs) == len(out.tokens) == len(out.offsets) == n_text
        ref = _forward_logprobs(model, ids)[len(ids) - 1 - n_text:]
        assert out.logprobs == pytest.approx(ref, abs=1e-5)
        assert "".join(out.tokens) == text
        assert out.total == pytest.approx(sum(ref), abs=1e-4)
    assert got[0].tokens == [" yes"] and got[0].offsets == [0]
    assert got[1].tokens[:3] == [" and", " the", " total"] and got[1].offsets[:3] == [0, 4, 8]
    assert got[3].tokens == [] and got[3].logprobs == []


def test_prompt_logprobs_straddling_token_and_empty_prompt(engine):
    tok, model = engine.tokenizer, engine.model
    # "The answer i" + "s yes": " is" starts in the prompt but covers text, so it counts (offset -2)
    straddle, empty = engine.prompt_logprobs(["The answer i", ""], ["s yes", "Hello there"])
    ids = tok("The answer is yes").input_ids
    assert straddle.tokens == [" is", " yes"] and straddle.offsets == [-2, 1]
    assert straddle.logprobs == pytest.approx(_forward_logprobs(model, ids)[-2:], abs=1e-5)
    # nothing precedes the text (this tokenizer adds no BOS): its first token has no log-prob
    ids = tok("Hello there").input_ids
    assert empty.tokens == ["Hello", " there"] and empty.offsets == [0, 5]
    assert empty.logprobs[0] is None
    assert empty.logprobs[1:] == pytest.approx(_forward_logprobs(model, ids), abs=1e-5)
    with pytest.raises(ValueError, match="non-empty prompt"):
        _ = empty.total
    with pytest.raises(ValueError, match="2 prompts but 1 texts"):
        engine.prompt_logprobs(["a", "b"], ["c"])


def test_clear_prefix_cache_empties_it(engine):
    engine.generate(["Start with 9. Add 1."], SamplingParams(temperature=0, max_tokens=2))
    assert len(engine.prefix_cache) > 0
    engine.clear_prefix_cache()
    assert len(engine.prefix_cache) == 0
