"""The optional judge_warmup stage: SFT warm-up, then RL from its final model, every later stage asking
the judge the warm-up's way, and the report showing untrained / warm-up / RL held-out scores."""

import json
from pathlib import Path

import pytest
import torch

from stepjudge.data.loaders import find_data_root
from stepjudge.judge.warmup import compact_judge_messages
from stepjudge.pipeline import Pipeline, PipelineConfig
from stepjudge.pipeline.stepwiser import _judge_cfg, _processbench_cfgs, judge_spec

torch.set_num_threads(1)
needs_data = pytest.mark.skipif(find_data_root() is None, reason="../shared/data not found")

WARMUP = {"variant": "reference", "prompt": "compact"}


def _annotated_folder(out: Path) -> None:
    """A finished annotate stage: 4 arith problems x 2 samples, chunk 0 right (Positive), chunk 1 wrong."""
    ann = out / "annotate"
    ann.mkdir(parents=True)
    recs = [{"problem_id": f"p{i}", "problem": f"Start with {i}. Add 2. Add 1.", "sample_index": s,
             "status": "annotated", "chunks": [f"{i} + 2 = {i + 2}", f"{i + 2} + 1 = {i + 4}"],
             "labels": {"rel-effective": [1, 0]}} for i in range(4) for s in range(2)]
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (ann / "report.json").write_text(json.dumps({"problems": 4, "solutions": 8, "solutions_annotated": 8,
                                                 "chunks": 16, "class_balance": {}}))


def _config(out: Path) -> dict:
    return {"out": str(out), "policy": "tiny-random",
            "stages": ["annotate", "judge_data", "judge_warmup", "judge", "processbench", "chunk_reset", "report"],
            "annotate": {"arith": {"n": 4}},
            "judge_data": {"format": "generative", "heldout_problems": 1},
            "judge_warmup": {"warmup": WARMUP, "max_steps": 2, "per_device_batch_size": 2,
                             "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "max_length": 256,
                             "sample_max_tokens": 4, "save_steps": 50, "use_cpu": True},
            "judge": {"max_steps": 1, "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 4,
                      "max_prompt_length": 512, "heldout_max_tokens": 4, "learning_rate": 1e-3, "save_steps": 50,
                      "use_cpu": True, "dynamic_sampling": {"mode": "drop"}},
            "processbench": {"subsets": ["gsm8k"], "limit": 2, "balanced": True},
            "chunk_reset": {"arith": {"n": 2}, "chunk_max_tokens": 4, "max_chunks": 2}}


def test_without_the_section_the_judge_is_asked_as_before(tmp_path):
    cfg = PipelineConfig(out=str(tmp_path), judge_data={"format": "generative"}, judge={"max_completion_length": 48},
                         stages=["judge", "chunk_reset"])
    assert not cfg.has_section("judge_warmup")
    judge = _judge_cfg(cfg, tmp_path)
    assert judge.model == "smollm2-135m" and judge.prompt_from_warmup is None and judge.response_prefix == ""
    assert judge_spec(cfg) == {"prompt": "stepwise", "response_prefix": "", "score": "votes", "votes": 1,
                               "temperature": 0.0, "max_tokens": 48}
    assert _processbench_cfgs(cfg, tmp_path)[1].prompt_from_warmup is None


def test_a_verdict_warmup_keeps_the_prefilled_verdict_and_section_keys_win(tmp_path):
    cfg = PipelineConfig(out=str(tmp_path), judge_warmup={"warmup": {"variant": "verdict"}},
                         judge={"model": "tiny-random"}, stages=["judge_warmup", "judge", "processbench"])
    warm = cfg.section("judge_warmup")["warmup"]
    judge = _judge_cfg(cfg, tmp_path)
    assert judge.model == "tiny-random" and judge.response_prefix == "\\boxed{"  # the section's model wins
    assert judge.prompt_from_warmup.variant == "verdict" and judge.prompt_from_warmup.prompt == "compact"
    spec = judge_spec(cfg)
    assert (spec["prompt"], spec["response_prefix"], spec["score"]) == ("no-cot", "\\boxed{", "token-prob")
    assert spec["warmup"]["variant"] == warm["variant"]
    after = _processbench_cfgs(cfg, tmp_path)[1]
    assert after.max_tokens == 4 and after.prompt_from_warmup.variant == "verdict"
    keep = PipelineConfig(out=str(tmp_path), judge_data={"format": "no-cot"},
                          judge_warmup={"warmup": {"variant": "verdict", "prompt": "keep"}}, stages=["judge"])
    assert "warmup" not in judge_spec(keep)  # 'keep': the judge data's own prompt is the one asked
    assert _judge_cfg(keep, tmp_path).prompt_from_warmup.prompt == "keep"


@needs_data
def test_warmup_stage_runs_feeds_rl_and_every_later_stage_and_is_reported(tmp_path):
    out = tmp_path / "run"
    _annotated_folder(out)
    state = Pipeline(_config(out), progress=False).run()
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {
        "annotate": "skipped", "judge_data": "ran", "judge_warmup": "ran", "judge": "ran", "processbench": "ran",
        "chunk_reset": "ran", "report": "ran"}
    warm_final = out / "judge_warmup" / "final"
    assert (warm_final / "model.safetensors").exists()
    stats = json.loads((out / "judge_warmup" / "warmup_stats.json").read_text())
    # 3 training problems x 2 samples x (1 Positive + 1 Negative); the held-out problem's rows are not in it
    assert stats["after_balance"] == {"positive": 6, "negative": 6, "total": 12} and stats["problems"] == 3
    summary = json.loads((out / "judge_warmup" / "summary.json").read_text())
    assert summary["final"] == str(warm_final) and summary["scored_heldout"] is True

    # RL starts from the warm-up's final model and asks as the warm-up did
    report_md = (out / "judge" / "report.md").read_text()
    assert f"- model: `{warm_final}`" in report_md and "prompt compact (reference warm-up form)" in report_md
    w_before, w_after, before, after = (json.loads((out / p).read_text()) for p in (
        "judge_warmup/eval_before.json", "judge_warmup/eval_after.json", "judge/eval_before.json",
        "judge/eval_after.json"))
    assert before == w_after  # the RL start is the warm-up's end, scored once
    from stepjudge.train.judge import evaluate_heldout

    rescored = evaluate_heldout(_judge_cfg(PipelineConfig(**_config(out)), out), str(warm_final))
    assert [p["raw"] for p in rescored["predictions"]] == [p["raw"] for p in w_after["predictions"]]
    assert {k: rescored[k] for k in ("n", "accuracy", "balanced_f1")} == {k: w_after[k] for k in
                                                                           ("n", "accuracy", "balanced_f1")}
    assert (w_before["n"], w_before["n_positive"], w_before["n_negative"]) == (4, 2, 2)
    assert w_before["model"] != w_after["model"] == str(warm_final)

    # ProcessBench (base and trained judge) and Chunk-Reset ask with the warm-up's prompt
    for name in ("processbench_before", "processbench_after"):
        pb = json.loads((out / name / "run.json").read_text())["config"]
        assert (pb["prompt_from_warmup"]["variant"], pb["prompt_from_warmup"]["prompt"]) == ("reference", "compact")
        assert pb["response_prefix"] == "" and pb["max_tokens"] == 4 and pb["judge_prompt"] == "stepwise"
    pred = json.loads((out / "processbench_after" / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["judge_calls"] >= 1
    solve = json.loads((out / "chunk_reset" / "run.json").read_text())["config"]
    spec = solve["judge_spec"]
    assert (spec["score"], spec["response_prefix"], spec["max_tokens"], spec["prompt"]) == (
        "reasoned-prob", "", 4, "stepwise")
    assert (spec["warmup"]["variant"], spec["warmup"]["prompt"]) == ("reference", "compact")
    assert spec["threshold"] == 0.5  # a CoT judge has no train-calibrated verdict-token cut
    from stepjudge.engines.hf import HFEngine
    from stepjudge.judge.chunk_judge import ChunkJudge, ChunkQuery

    engine = HFEngine("tiny-random")
    try:
        asked = ChunkJudge(engine, spec).messages(ChunkQuery("Start with 1. Add 2.", ("x",), "1 + 2 = 3"))
    finally:
        engine.close()
    assert asked == compact_judge_messages("Start with 1. Add 2.", ["x"], "1 + 2 = 3", reference=True)

    # results.json and the report carry the warm-up's numbers with their sample sizes
    results = json.loads((out / "results.json").read_text())
    assert results["judge_warmup_before"]["n"] == 4 and "predictions" not in results["judge_warmup_after"]
    assert results["judge_warmup_data"]["after_balance"]["total"] == 12
    panel = results["headline"]["held-out judge balanced F1"]
    assert list(panel) == ["untrained", "warm-up", "after RL"]
    assert panel["warm-up"] == (w_after["balanced_f1"] or 0.0) and panel["after RL"] == (after["balanced_f1"] or 0.0)
    md = (out / "report.md").read_text()
    assert ("## Judge on held-out chunks (4: 2 Positive / 2 Negative): untrained, after the warm-up "
            "(12 SFT rows, 6 Positive / 6 Negative), after RL") in md
    assert "| metric | untrained | after warm-up | after RL |" in md  # the RL start = the warm-up's end
    assert "| held-out chunks (Positive / Negative) | 4 (2 / 2) | 4 (2 / 2) | 4 (2 / 2) |" in md
    # a CoT judge's P(Positive) is read after its own check: an AUROC row for all three judges, exactly
    # the held-out scores' values; no train-fitted cut (that needs a pre-filled verdict)
    aurocs = [w_before["auroc"], w_after["auroc"], after["auroc"]]
    assert all(a is not None for a in aurocs)
    assert "| AUROC of P(Positive) | " + " | ".join(f"{a:.3f}" for a in aurocs) + " |" in md
    assert "cut fitted" not in md
    assert "](judge_warmup/curves.png)" in md and "](judge/curves.png)" in md

    stamp = (warm_final / "model.safetensors").stat().st_mtime_ns
    state = Pipeline(_config(out), progress=False).run()
    assert state["stages"]["judge_warmup"]["last_run"] == "skipped" and state["stages"]["judge"]["last_run"] == "skipped"
    assert (warm_final / "model.safetensors").stat().st_mtime_ns == stamp
