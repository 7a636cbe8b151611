"""LaSeR's pipeline stages: the quickstart YAML's wiring, the run's judge as verifier, and laser ->
laser_baseline -> self_verify -> report end to end on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from stepjudge.pipeline import STAGE_REGISTRY, Pipeline, PipelineConfig
from stepjudge.pipeline.laser import eval_c_ref, laser_baseline_config, laser_config, self_verify_configs
from stepjudge.pipeline.report import fmt
from stepjudge.pipeline.stepwiser import judge_spec

ROOT = Path(__file__).resolve().parents[2]


def test_laser_stages_are_optional_and_off_in_the_stepwiser_pipeline():
    assert STAGE_REGISTRY.names()[-4:] == ("laser", "laser_baseline", "self_verify", "report")
    cfg = PipelineConfig()
    assert "laser" not in cfg.stages and not cfg.has_section("laser") and not cfg.has_section("self_verify")
    with pytest.raises(ValidationError, match="max_stpes"):
        PipelineConfig(stages=["laser"], laser={"max_stpes": 3})


def test_quickstart_wires_training_baseline_and_evaluation():
    cfg = PipelineConfig(**yaml.safe_load((ROOT / "configs" / "pipeline_laser_quickstart.yaml").read_text()))
    out = Path(cfg.out)
    assert cfg.stages == ["laser", "laser_baseline", "self_verify", "report"]
    laser, grpo = laser_config(cfg, out), laser_baseline_config(cfg, out)
    assert (laser.model, laser.self_reward, laser.out, laser.c_ref) == ("smollm2-135m", "on", str(out / "laser"), -16.75)
    assert (laser.max_steps, laser.num_generations, laser.per_device_batch_size, laser.max_completion_length) == \
        (16, 8, 16, 64)
    assert (grpo.self_reward, grpo.out) == ("off", str(out / "laser_baseline"))
    same = {"self_reward", "out"}
    assert {k: v for k, v in grpo.model_dump().items() if k not in same} == \
        {k: v for k, v in laser.model_dump().items() if k not in same}  # the baseline differs in nothing else
    evals = self_verify_configs(cfg, out)
    assert list(evals) == ["grpo", "laser"]  # score_base: false
    assert [e.model for e in evals.values()] == [str(out / "laser_baseline" / "final"), str(out / "laser" / "final")]
    assert [e.out for e in evals.values()] == [str(out / "self_verify" / "grpo"), str(out / "self_verify" / "laser")]
    ev = evals["laser"]
    assert ev.arith.model_dump() == {**laser.arith.model_dump(), "n": 32}  # merged key by key
    assert (ev.problems, ev.new_problems, ev.prompt_style, ev.max_tokens, ev.n, ev.c_ref) == \
        ("arith", True, "fewshot-chat", 64, 4, -16.75)
    assert ev.engine.num_threads == 2 and ev.verifier is None
    assert eval_c_ref(cfg, out) == -16.75


def test_the_runs_own_judge_is_the_verifier(tmp_path):
    cfg = PipelineConfig(out=str(tmp_path), stages=["judge", "laser", "self_verify"], judge_data={"format": "no-cot"})
    ev = self_verify_configs(cfg, tmp_path)["laser"]
    assert ev.verifier == str(tmp_path / "judge" / "final")
    assert ev.verifier_spec.model_dump() == {**ev.verifier_spec.model_dump(), **judge_spec(cfg)}
    assert (ev.verifier_spec.prompt, ev.verifier_spec.response_prefix) == ("no-cot", "\\boxed{")
    named = PipelineConfig(out=str(tmp_path), stages=["judge", "laser", "self_verify"],
                           self_verify={"verifier": "tiny-random"})
    assert self_verify_configs(named, tmp_path)["laser"].verifier == "tiny-random"  # the section wins
    with pytest.raises(ValidationError, match="no policy to evaluate"):
        PipelineConfig(out=str(tmp_path), stages=["self_verify"])
    with pytest.raises(ValueError, match="no c_ref"):
        eval_c_ref(PipelineConfig(out=str(tmp_path), stages=["laser_baseline", "self_verify"]), tmp_path)


TINY_TRAIN = {"model": "tiny-random", "arith": {"n": 4, "steps": 2, "seed": 0}, "max_steps": 1,
              "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 4,
              "max_prompt_length": 512, "use_cpu": True, "save_steps": 1, "c_ref": None, "calibrate_pairs": 2}


def test_laser_stages_end_to_end_on_the_tiny_model(tmp_path):
    out = tmp_path / "run"
    cfg = {"out": str(out), "policy": "tiny-random", "engine": {"num_threads": 1},
           "stages": ["laser", "laser_baseline", "self_verify", "report"], "laser": TINY_TRAIN, "laser_baseline": {},
           "self_verify": {"score_base": True, "arith": {"n": 2}, "n": 2, "verifier": "tiny-random",
                           "verifier_engine": {"num_threads": 1}}}
    state = Pipeline(cfg, progress=False).run()
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {
        "laser": "ran", "laser_baseline": "ran", "self_verify": "ran", "report": "ran"}

    for name in ("laser", "laser_baseline"):
        for f in ("final/model.safetensors", "train_log.json", "curves.png"):
            assert (out / name / f).exists(), f"{name}/{f}"
    measured = json.loads((out / "laser" / "c_ref.json").read_text())
    assert measured["n"] == 2 and not (out / "laser_baseline" / "c_ref.json").exists()  # GRPO needs no c_ref
    assert any("laser/mse" in e for e in json.loads((out / "laser" / "train_log.json").read_text()))
    assert not any("laser/mse" in e for e in json.loads((out / "laser_baseline" / "train_log.json").read_text()))

    summary = json.loads((out / "self_verify" / "summary.json").read_text())
    assert summary["c_ref"] == measured["mean"] and list(summary["policies"]) == ["base", "grpo", "laser"]
    models = {"base": "tiny-random", "grpo": str(out / "laser_baseline" / "final"), "laser": str(out / "laser" / "final")}
    for name, model in models.items():
        folder = out / "self_verify" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert summary["policies"][name] == {k: v for k, v in metrics.items() if k != "calibration"}
        assert (metrics["model"], metrics["c_ref"], metrics["n_samples"], metrics["voting"]["k"]) == \
            (model, measured["mean"], 4, [1, 2])
        ids = [json.loads(line)["problem_id"] for line in (folder / "samples.jsonl").read_text().splitlines()]
        assert ids == ["arith-s1000-0"] * 2 + ["arith-s1000-1"] * 2  # new problems of the training kind
        assert (folder / "voting.png").exists() and (folder / "report.md").exists()

    md = (out / "report.md").read_text()
    sv = summary["policies"]

    def row(label, m, accuracy):
        auc, ece = m["auroc"], m["ece"]
        return (f"| {label} | {fmt(accuracy)} | {fmt(m['f1_all']['f1'])} | "
                f"{fmt(m['f1_filtered']['f1'])} | {'n/a' if auc is None else f'{auc:.3f}'} | "
                f"{'n/a' if ece is None else f'{ece:.3f}'} | {fmt(m['voting']['weighted'][-1])} | "
                f"{fmt(m['voting']['majority'][-1])} | 4 |")

    title = f"## LaSeR self-verification on 2 new problems x 2 samples (c_ref {fmt(measured['mean'], 3)}; " \
            "votes use all 2 samples)"
    table = "\n".join([title, "", "| policy | accuracy (%) | self-verif. F1 all | F1 filtered | AUROC | ECE | "
                       "weighted vote (%) | majority vote (%) | samples |", "|---|---|---|---|---|---|---|---|---|",
                       *(line for name, label in (("base", "starting model"), ("grpo", "GRPO baseline"),
                                                  ("laser", "LaSeR"))
                         for line in (row(f"{label}: self-reward", sv[name], sv[name]["accuracy"]),
                                      row(f"{label}: verifier `tiny-random`", sv[name]["verifier"],
                                          sv[name]["accuracy"]))),
                       "", "![" + title[3:] + "](self_verify/base/voting.png)"])
    assert table in md
    assert "## LaSeR training (means over the logged updates)\n\n| policy | updates | train reward r_v | " \
           "self-reward accuracy | self-reward MSE |\n|---|---|---|---|---|\n| GRPO baseline | 1 |" in md
    assert "| LaSeR | 1 |" in md and "](laser/curves.png)" in md and "](laser_baseline/curves.png)" in md
    results = json.loads((out / "results.json").read_text())
    assert results["headline"] == {
        "held-out accuracy (%)": {"starting model": sv["base"]["accuracy"], "GRPO baseline": sv["grpo"]["accuracy"],
                                  "LaSeR": sv["laser"]["accuracy"]},
        "self-verification F1 (all)": {k: sv[p]["f1_all"]["f1"] or 0.0 for k, p in
                                       (("starting model", "base"), ("GRPO baseline", "grpo"), ("LaSeR", "laser"))}}
    assert results["laser"]["updates"] == 1 and results["laser"]["c_ref_measured"] == measured["mean"]
    assert results["annotate"] is None and "## Annotation" not in md  # StepWiser's stages did not run

    state = Pipeline(cfg, progress=False).run()  # everything done: only the report is rebuilt
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {
        "laser": "skipped", "laser_baseline": "skipped", "self_verify": "skipped", "report": "ran"}
