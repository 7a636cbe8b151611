"""int8 engines (``engine.quantize: int8``): PyTorch's dynamic int8 Linear layers, inference only."""

from __future__ import annotations

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from stepjudge.cli.main import parse_config
from stepjudge.engines.base import SamplingParams
from stepjudge.engines.factory import EngineConfig, make_engine
from stepjudge.engines.hf import HFEngine
from stepjudge.engines.quantize import QUANTIZE_MODES, quantize_for_inference
from stepjudge.serve.config import ServeConfig

PROMPTS = ["Start with 4. Add 3. Add 5.", "Add 9."]
TEXTS = [" Then add 2 more and the total is 14.", " The answer is 9."]
# Largest |log p(int8) - log p(fp32)| allowed on the tiny random model's per-token prompt log-probs. It
# measured 0.011 there (mean 0.003 over 19 tokens); 0.1 nats leaves room for kernel
# differences across CPUs while still failing if a layer were left random or scaled wrongly.
LOGPROB_TOLERANCE = 0.1


@pytest.fixture(scope="module")
def engines() -> tuple[HFEngine, HFEngine]:
    torch.set_num_threads(1)
    fp32 = HFEngine("tiny-random", max_batch_rows=16)
    return fp32, HFEngine(fp32.model, fp32.tokenizer, max_batch_rows=16, quantize="int8")


def test_int8_swaps_every_linear_and_leaves_the_callers_model_alone(engines):
    fp32, int8 = engines
    linears = [n for n, m in fp32.model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears and "lm_head" in linears
    for name in linears:
        assert isinstance(int8.model.get_submodule(name), DynamicInt8Linear), name
        assert type(fp32.model.get_submodule(name)) is torch.nn.Linear, name  # the caller's model is unchanged
    # the tied head: the fp32 model keeps its tie; the int8 head is its own copy, the embeddings stay fp32
    tied = fp32.model.lm_head.weight is fp32.model.model.embed_tokens.weight
    assert tied == bool(fp32.model.config.tie_word_embeddings)
    assert int8.model.model.embed_tokens.weight.dtype == torch.float32
    assert int8.quantize == "int8" and fp32.quantize == "none"


def test_int8_sampling_is_deterministic_under_a_seed(engines):
    fp32, int8 = engines
    p = SamplingParams(n=3, temperature=1.0, max_tokens=8, seed=7, ignore_eos=True, logprobs=True)
    a, b = int8.generate(PROMPTS, p), int8.generate(PROMPTS, p)
    again = HFEngine(fp32.model, fp32.tokenizer, max_batch_rows=16, quantize="int8").generate(PROMPTS, p)
    for x, y, z in zip(a, b, again, strict=True):
        assert [c.token_ids for c in x.completions] == [c.token_ids for c in y.completions] \
            == [c.token_ids for c in z.completions]
        assert [c.logprobs for c in x.completions] == [c.logprobs for c in z.completions]


def test_int8_greedy_equals_generate_of_the_same_quantized_model(engines):
    _fp32, int8 = engines
    tok = int8.tokenizer
    ids = tok(PROMPTS[0], return_tensors="pt")
    ref = int8.model.generate(**ids, do_sample=False, max_new_tokens=10, min_new_tokens=10,
                              pad_token_id=tok.pad_token_id)[0, ids.input_ids.shape[1]:].tolist()
    out = int8.generate([PROMPTS[0]], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
    assert out[0].completions[0].token_ids == ref


def test_int8_logprobs_stay_close_to_fp32(engines):
    fp32, int8 = engines
    ref, got = fp32.prompt_logprobs(PROMPTS, TEXTS), int8.prompt_logprobs(PROMPTS, TEXTS)
    diffs = [abs(a - b) for r, g in zip(ref, got, strict=True)
             for a, b in zip(r.logprobs, g.logprobs, strict=True) if a is not None]
    assert len(diffs) >= 10
    assert max(diffs) < LOGPROB_TOLERANCE
    assert max(diffs) > 0  # the int8 path really ran
    nxt = [int8.tokenizer.convert_tokens_to_ids(t) for t in ("1", "2", "+")]
    for a, b in zip(fp32.next_token_logprobs(PROMPTS, nxt), int8.next_token_logprobs(PROMPTS, nxt), strict=True):
        assert a == pytest.approx(b, abs=LOGPROB_TOLERANCE)


def test_int8_is_refused_for_training_and_off_cpu_dtypes(engines):
    fp32, _ = engines
    fp32.model.train()
    try:
        with pytest.raises(ValueError, match="inference only"):
            HFEngine(fp32.model, fp32.tokenizer, quantize="int8")
    finally:
        fp32.model.eval()
    with pytest.raises(ValueError, match="float32"):
        quantize_for_inference(torch.nn.Linear(4, 4).to(torch.bfloat16).eval(), "int8")
    with pytest.raises(ValueError, match="unknown quantize mode"):
        quantize_for_inference(torch.nn.Linear(4, 4).eval(), "int4")
    lin = torch.nn.Linear(4, 4).eval()
    assert quantize_for_inference(lin, "none") is lin


def test_the_setting_flows_from_yaml_and_flags_to_the_engine(tmp_path):
    assert set(EngineConfig.model_fields["quantize"].annotation.__args__) == set(QUANTIZE_MODES)
    (tmp_path / "a.yaml").write_text("engine:\n  quantize: int8\n")
    from_yaml, _ = parse_config(["annotate", "--config", str(tmp_path / "a.yaml")])
    from_flag, _ = parse_config(["solve", "--engine.quantize", "int8", "--judge", "j"])
    rerank, _ = parse_config(["rerank", "--policy-engine.quantize", "int8", "--judge", "j"])
    served, _ = parse_config(["serve", "--quantize", "int8"])
    assert from_yaml.engine.quantize == "int8"
    assert from_flag.policy_engine_config().quantize == "int8"
    assert rerank.policy_engine.quantize == "int8" and rerank.judge_engine.quantize == "none"
    assert isinstance(served, ServeConfig) and served.engine_config().quantize == "int8"
    assert parse_config(["annotate"])[0].engine.quantize == "none"
    engine = make_engine(from_yaml.engine.model_copy(update={"model": "tiny-random"}))
    assert engine.quantize == "int8"
    assert isinstance(engine.model.lm_head, DynamicInt8Linear)
