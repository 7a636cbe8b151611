"""The shipped pipeline YAMLs validate, and the pipeline wires stage outputs into the next stages."""

from pathlib import Path

import yaml

from stepjudge.pipeline import PipelineConfig
from stepjudge.pipeline.stepwiser import (
    _annotate_cfg,
    _best_of_n_cfg,
    _chunk_reset_cfg,
    _judge_cfg,
    _judge_data_cfg,
    _judge_warmup_cfg,
    _processbench_cfgs,
)
from stepjudge.train.judge import batch_plan

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> PipelineConfig:
    return PipelineConfig(**yaml.safe_load((ROOT / "configs" / name).read_text()))


def test_quickstart_wires_every_stage_to_the_previous_ones():
    cfg = _load("pipeline_quickstart.yaml")
    out = Path(cfg.out)
    assert cfg.stages == ["annotate", "judge_data", "judge_warmup", "judge", "processbench", "chunk_reset",
                          "best_of_n", "selection", "report"]
    ann = _annotate_cfg(cfg, out)
    assert ann.out == str(out / "annotate") and ann.policy == "smollm2-135m" and ann.engine.num_threads == 2
    assert (ann.arith.n, ann.samples_per_problem, ann.rollouts) == (48, 4, 4)
    data = _judge_data_cfg(cfg, out)
    assert data.annotations == str(out / "annotate" / "annotations.jsonl") and data.format == "generative"
    assert data.heldout_problems == 14 and data.answer_rows  # answer segments are judge rows too
    warm = _judge_warmup_cfg(cfg, out)
    assert (warm.warmup.variant, warm.warmup.prompt) == ("reference", "terse") and warm.model == "smollm2-135m"
    assert (warm.max_steps, warm.per_device_batch_size, warm.gradient_accumulation_steps) == (60, 8, 1)
    assert warm.learning_rate == 2e-4 and warm.train_data == str(out / "judge_data" / "train.jsonl")
    assert warm.out == str(out / "judge_warmup") and warm.heldout_data == str(out / "judge_data" / "heldout.jsonl")
    judge = _judge_cfg(cfg, out)
    assert judge.model == str(out / "judge_warmup" / "final") and judge.prompt_from_warmup == warm.warmup
    assert judge.train_data == str(out / "judge_data" / "train.jsonl")
    assert judge.heldout_data == str(out / "judge_data" / "heldout.jsonl")
    assert judge.response_prefix == "" and judge.stratify_batches and judge.dynamic_sampling.mode == "drop"
    assert judge.engine_rollouts and judge.max_steps == 2
    assert judge.num_generations == 8 and judge.heldout_max_tokens == warm.sample_max_tokens == 64
    before, after = _processbench_cfgs(cfg, out)
    assert before.judge == "smollm2-135m" and after.judge == str(out / "judge" / "final")
    for pb in (before, after):
        assert pb.prompt_from_warmup == warm.warmup and pb.response_prefix == "" and pb.max_tokens == 64
    for stage in (_chunk_reset_cfg(cfg, out), _best_of_n_cfg(cfg, out)):
        assert stage.judge == str(out / "judge" / "final") and stage.policy == "smollm2-135m"
        spec = stage.judge_spec
        assert (spec.score, spec.response_prefix, spec.max_tokens, spec.warmup) == ("reasoned-prob", "", 64,
                                                                                    warm.warmup)
        assert stage.arith.seed == 1  # new problems, not the annotated ones
    assert _chunk_reset_cfg(cfg, out).out == str(out / "chunk_reset")
    assert _chunk_reset_cfg(cfg, out).reset and _chunk_reset_cfg(cfg, out).max_tries == 5
    assert _chunk_reset_cfg(cfg, out).judge_answer  # rejected answer segments are re-sampled


def test_solve_stage_defaults_to_unseen_problems_of_the_annotated_kind(tmp_path):
    cfg = PipelineConfig(out=str(tmp_path), annotate={"arith": {"n": 8, "seed": 3}},
                         stages=["chunk_reset"])
    assert _chunk_reset_cfg(cfg, tmp_path).arith.seed == 1003
    assert _chunk_reset_cfg(cfg, tmp_path).arith.n == 8


def test_gpu_recipe_holds_the_paper_values():
    cfg = _load("pipeline_qwen1.5b_gpu.yaml")
    out = Path(cfg.out)
    judge = _judge_cfg(cfg, out)
    plan = batch_plan(judge)
    assert judge.model == "Qwen/Qwen2.5-1.5B-Instruct" and judge.learning_rate == 1e-6
    assert (judge.epsilon, judge.epsilon_high, judge.num_generations) == (0.2, 0.28, 4)
    assert plan["prompts_per_update"] == 256 and plan["prompts_per_rollout"] == 1024
    assert plan["rollout_steps"] == 800 and judge.use_vllm
    assert _judge_data_cfg(cfg, out).scheme == "rel-effective"
    assert _annotate_cfg(cfg, out).rollouts == 16 and _annotate_cfg(cfg, out).engine.kind == "openai"
    before, after = _processbench_cfgs(cfg, out)
    assert after.engine.device == "cuda" and after.judge_prompt == "stepwise" and after.response_prefix == ""
    spec = _chunk_reset_cfg(cfg, out).judge_spec  # a reasoning judge: its verdict is read after its analysis
    assert spec.score == "votes" and spec.max_tokens == 3096 and spec.temperature == 0.0
