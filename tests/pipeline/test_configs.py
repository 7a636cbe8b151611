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
    _processbench_cfgs,
)
from stepjudge.train.judge import batch_plan

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> PipelineConfig:
    return PipelineConfig(**yaml.safe_load((ROOT / "configs" / name).read_text()))


def test_quickstart_wires_every_stage_to_the_previous_ones():
    cfg = _load("pipeline_quickstart.yaml")
    out = Path(cfg.out)
    ann = _annotate_cfg(cfg, out)
    assert ann.out == str(out / "annotate") and ann.policy == "smollm2-135m" and ann.engine.num_threads == 2
    data = _judge_data_cfg(cfg, out)
    assert data.annotations == str(out / "annotate" / "annotations.jsonl") and data.format == "no-cot"
    judge = _judge_cfg(cfg, out)
    assert judge.train_data == str(out / "judge_data" / "train.jsonl")
    assert judge.heldout_data == str(out / "judge_data" / "heldout.jsonl")
    assert judge.response_prefix == "\\boxed{" and judge.stratify_batches
    before, after = _processbench_cfgs(cfg, out)
    assert before.judge == "smollm2-135m" and after.judge == str(out / "judge" / "final")
    assert after.judge_prompt == "no-cot" and after.response_prefix == "\\boxed{" and after.max_tokens == 4
    for stage in (_chunk_reset_cfg(cfg, out), _best_of_n_cfg(cfg, out)):
        assert stage.judge == str(out / "judge" / "final") and stage.policy == "smollm2-135m"
        assert stage.judge_spec.prompt == "no-cot" and stage.judge_spec.score == "token-prob"
        assert stage.arith.seed == 1  # new problems, not the annotated ones
    assert _chunk_reset_cfg(cfg, out).out == str(out / "chunk_reset")
    assert _chunk_reset_cfg(cfg, out).reset and _chunk_reset_cfg(cfg, out).max_tries == 5


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
