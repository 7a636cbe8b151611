"""The real embedded model (SmolLM2-135M-Instruct) through the whole stack.

The default run keeps these short (a few tokens each); ``-m slow`` adds a longer ProcessBench slice.
"""

import json

import pytest
import torch

from stepjudge.data.loaders import find_data_root
from stepjudge.engines.base import SamplingParams
from stepjudge.engines.hf import HFEngine
from stepjudge.grading import Grader

pytestmark = pytest.mark.embedded
needs_data = pytest.mark.skipif(find_data_root() is None, reason="../shared/data not found")
FEW_SHOT = ("Start with 2. Add 5. Add 1.\n<chunk>2 + 5 = 7</chunk>\n<chunk>7 + 1 = 8</chunk>\n\\boxed{8}\n\n"
            "Start with 4. Add 3. Add 5.\n")


@pytest.fixture(scope="module")
def engine():
    return HFEngine("smollm2-135m", max_batch_rows=32)


def test_greedy_matches_transformers_generate(engine):
    tok, model = engine.tokenizer, engine.model
    ids = tok(FEW_SHOT, return_tensors="pt")
    with torch.inference_mode():
        ref = model.generate(**ids, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id)
    ref_text = tok.decode(ref[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    out = engine.generate([FEW_SHOT], SamplingParams(temperature=0, max_tokens=16))[0].completions[0]
    assert out.text == ref_text
    assert out.text.startswith("<chunk>")  # the model follows the few-shot chunk format


def test_rollouts_with_stop_and_grading(engine):
    """n sampled continuations stop at the answer line and are graded against the truth (4+3+5=12)."""
    res = engine.generate([FEW_SHOT], SamplingParams(n=8, temperature=1.0, max_tokens=40, stop=["\n\n"],
                                                     seed=0))[0]
    assert len(res.completions) == 8 and all("\n\n" not in c.text for c in res.completions)
    with Grader(timeout_s=10) as g:
        grades = g.grade_many([(c.text, "12") for c in res.completions])
    assert {r.status for r in grades} <= {"correct", "incorrect", "unparseable"}
    # Every completion that has a boxed 12 is graded correct, and only those.
    for c, r in zip(res.completions, grades, strict=True):
        assert r.correct == ("\\boxed{12}" in c.text.replace(" ", ""))


@needs_data
def test_stepwise_processbench_one_case(tmp_path):
    from stepjudge.cli.main import main

    out = tmp_path / "run"
    assert main(["eval", "processbench", "--judge", "smollm2-135m", "--protocol", "stepwise", "--subsets",
                 "gsm8k", "--limit", "1", "--max-tokens", "8", "--out", str(out), "--no-progress"]) == 0
    rec = json.loads((out / "predictions.jsonl").read_text())
    assert rec["id"] == "gsm8k-0" and rec["judge_calls"] >= 1 and len(rec["judgements"][0]["outputs"][0]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["gsm8k"]["n"] == 1


@pytest.mark.slow
@needs_data
def test_quickstart_slice_runs_all_three_protocols(tmp_path):
    from stepjudge.eval.processbench import evaluate_processbench

    for protocol, max_tokens in (("stepwise", 64), ("critic", 128), ("prm", 4)):
        s = evaluate_processbench({"judge": "smollm2-135m", "protocol": protocol, "subsets": ["gsm8k"],
                                   "limit": 4, "balanced": True, "max_tokens": max_tokens,
                                   "out": str(tmp_path / protocol)}, progress=False)
        assert s["gsm8k"]["n"] == 4 and s["gsm8k"]["n_error"] == 2 and s["average_f1"] is not None
