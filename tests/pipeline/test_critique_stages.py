"""Critique-RL's pipeline stages: the quickstart's wiring, and the whole chain end to end on tiny random models
(every stage's files, the report's tables read from the stage outputs, finished stages skipped)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from stepjudge.pipeline import STAGE_REGISTRY, Pipeline, PipelineConfig
from stepjudge.pipeline.critique import actor_model, critic_models, critic_stage_cfg, critique_eval_cfgs
from stepjudge.pipeline.report import fmt

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
STAGES = ["critique_data", "actor_sft", "critic_data", "critic_sft", "critic_stage1", "critic_stage2",
          "critique_eval", "report"]


def test_stages_are_optional_and_a_stepwiser_config_is_unchanged():
    assert [n for n in STAGE_REGISTRY.names() if n in STAGES] == STAGES
    assert all(STAGE_REGISTRY[n].optional for n in STAGES[:-1])
    assert not set(STAGES[:-1]) & set(PipelineConfig().stages)


def test_quickstart_wires_every_stage_to_the_previous_ones():
    cfg = PipelineConfig(**yaml.safe_load((ROOT / "configs" / "pipeline_critique_quickstart.yaml").read_text()))
    out = Path(cfg.out)
    assert cfg.stages == STAGES and cfg.policy == "smollm2-135m"
    actor = str(out / "actor_sft" / "final")
    assert actor_model(cfg, out) == actor
    assert critic_models(cfg, out) == {"critic_sft": str(out / "critic_sft" / "final"),
                                       "critic_stage1": str(out / "critic_stage1" / "stage1" / "final"),
                                       "critic_stage2": str(out / "critic_stage2" / "stage2" / "final")}
    s1, s2 = critic_stage_cfg(cfg, out, 1), critic_stage_cfg(cfg, out, 2)
    assert (s1.model, s1.stage1_steps, s1.stage2_steps, s1.out) == (str(out / "critic_sft" / "final"), 10, 0,
                                                                    str(out / "critic_stage1"))
    assert (s2.stage1_steps, s2.stage2_steps, s2.stage2_start) == (0, 10, str(out / "critic_stage1" / "stage1" /
                                                                              "final"))
    for s in (s1, s2):  # Stage II takes the keys it does not set from Stage I's section
        assert s.train_data == str(out / "critic_data" / "rl_rows.jsonl") and s.actor.model == actor
        assert (s.learning_rate, s.num_generations, s.max_completion_length, s.actor.num_threads) == (5e-6, 4, 160, 2)
    evals = critique_eval_cfgs(cfg, out)
    assert list(evals) == ["critic_sft", "critic_stage1", "critic_stage2"]
    assert [e.k for e in evals.values()] == [0, 0, 2]
    assert all(e.actor.model == actor and e.arith.seed == 1000 and e.arith.n == 16 for e in evals.values())
    assert evals["critic_stage1"].critic.model == str(out / "critic_stage1" / "stage1" / "final")


def test_eval_section_is_checked_at_load_time(tmp_path):
    with pytest.raises(ValidationError, match=r"unknown or unevaluated critics \['critic_x'\]"):
        PipelineConfig(out=str(tmp_path), stages=["critic_sft", "critique_eval"],
                       critique_eval={"critics": ["critic_x"]})
    with pytest.raises(ValidationError, match=r"critics \['critic_stage2'\] are neither part of this run"):
        PipelineConfig(out=str(tmp_path), stages=["critic_sft", "critique_eval"],
                       critique_eval={"critics": ["critic_sft", "critic_stage2"]})
    with pytest.raises(ValidationError, match="no critic to evaluate"):
        PipelineConfig(out=str(tmp_path), stages=["critique_eval"])


def _tiny(out: Path) -> dict:
    sft = {"max_steps": 1, "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 256,
           "save_steps": 50, "use_cpu": True, "learning_rate": 1e-3}
    return {"out": str(out), "policy": "tiny-random", "stages": STAGES,
            "critique_data": {"arith": {"n": 3, "steps": 2, "seed": 0}, "samples": 2, "max_tokens": 4,
                              "heldout_fraction": 0.0},
            "actor_sft": sft, "critic_sft": sft,
            "critic_stage1": {"stage1_steps": 1, "num_generations": 2, "per_device_batch_size": 2,
                              "gradient_accumulation_steps": 1, "max_completion_length": 4,
                              "max_prompt_length": 512, "refine_max_tokens": 4, "num_iterations": 1,
                              "save_steps": 50, "use_cpu": True},
            "critic_stage2": {"stage2_steps": 1},
            "critique_eval": {"arith": {"n": 2, "steps": 2, "seed": 7}, "max_tokens": 4, "critique_max_tokens": 4,
                              "refine_max_tokens": 4, "k": 1, "batch_size": 2}}


def test_the_chain_runs_end_to_end_and_is_reported(tmp_path):
    out = tmp_path / "run"
    state = Pipeline(_tiny(out), progress=False).run()
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {s: "ran" for s in STAGES}
    for f in ("critique_data/stats.json", "critique_data/actor_sft.jsonl", "actor_sft/final/model.safetensors",
              "critic_data/rl_rows.jsonl", "critic_data/critic_sft.jsonl", "critic_sft/final/model.safetensors",
              "critic_stage1/stage1/final/model.safetensors", "critic_stage2/stage2/final/model.safetensors",
              "critique_eval/critic_stage2/accuracy_vs_k.png", "report.md", "report.html", "summary.png"):
        assert (out / f).exists(), f
    assert not (out / "critic_stage1" / "stage2").exists() and not (out / "critic_stage2" / "stage1").exists()
    assert json.loads((out / "critic_stage2" / "summary.json").read_text())["stage2"]["final"] == \
        str(out / "critic_stage2" / "stage2" / "final")

    ev = json.loads((out / "critique_eval" / "summary.json").read_text())
    assert ev["actor"] == str(out / "actor_sft" / "final") and list(ev["critics"]) == STAGES[3:6]
    for name, summary in ev["critics"].items():
        assert summary == json.loads((out / "critique_eval" / name / "summary.json").read_text())
        assert summary["greedy"]["items"] == 2 and (summary["sampling"] is None) == (name != "critic_stage2")
    assert ev["critics"]["critic_stage2"]["sampling"]["parallel"]["budget"] == [1, 3]

    report = (out / "report.md").read_text()
    keys = ("acc", "acc_refine", "delta", "delta_c2i", "delta_i2c", "acc_dis")
    first = ev["critics"]["critic_sft"]["greedy"]["overall"]
    assert f"| no critic | {fmt(first['acc'])} | – | – | – | – | – |" in report
    for name, label in (("critic_sft", "SFT critic"), ("critic_stage1", "Stage I"), ("critic_stage2", "Stage I + II")):
        m = ev["critics"][name]["greedy"]["overall"]
        assert f"| {label} | " + " | ".join(fmt(m[k]) for k in keys) + " |" in report
    c = ev["critics"]["critic_stage2"]["sampling"]["refine"][0]
    assert (f"| Stage I + II | 1 | 1 | 3 | {fmt(c['mv'][0])} | {fmt(c['parallel_mv'][0])} | {fmt(c['pass'][0])} | "
            f"{fmt(c['parallel_pass'][0])} |") in report
    assert "![Critic RL (last logged rollout values, %)](critic_stage1/stage1/curves.png)" in report
    stats = json.loads((out / "critic_data" / "stats.json").read_text())
    assert f"| questions (held out) | {stats['questions']} (0) |" in report
    results = json.loads((out / "results.json").read_text())
    assert results["critique_eval"] == ev and results["headline"]["Critique-RL Acc@Refine (%)"]["no critic"] == \
        first["acc"]

    again = Pipeline(_tiny(out), progress=False).run()
    assert {s: v["last_run"] for s, v in again["stages"].items()} == {**{s: "skipped" for s in STAGES[:-1]},
                                                                      "report": "ran"}
