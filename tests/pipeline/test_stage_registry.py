"""A stage declared once, in a test, joins the pipeline: validated, run, skipped when done, reported."""

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from stepjudge.pipeline import STAGE_REGISTRY, Pipeline, PipelineConfig, Stage, StageContext, StageRegistry
from stepjudge.pipeline.report import fmt, load_json, write_report


class ToyConfig(BaseModel):
    """The toy stage's own command config (what a real stage's builder returns)."""

    model_config = ConfigDict(extra="forbid")
    value: int
    out: str


def _toy_registry(calls: list[int]) -> StageRegistry:
    """The built-in stages plus one toy stage, declared with the decorator as a new method would."""
    registry = STAGE_REGISTRY.copy()

    def build(cfg: PipelineConfig, out: Path) -> ToyConfig:
        return ToyConfig(**cfg.section("toy"), out=str(out / "toy"))

    @registry.register(
        "toy", build=build, done=("toy/summary.json",), section_help="toy options",
        section_default=lambda: {"value": 2},
        results=lambda out: {"toy": load_json(out / "toy" / "summary.json")},
        tables=lambda results, out: [("Toy stage", ["metric", "value"], [["doubled", fmt(results["toy"]["doubled"])]],
                                      [])] if results["toy"] else [],
        headline=lambda results: {"toy doubled": {"value": results["toy"]["doubled"]}} if results["toy"] else {})
    def run_toy(ctx: StageContext) -> None:
        cfg = build(ctx.config, ctx.out)
        calls.append(cfg.value)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "summary.json").write_text(json.dumps({"doubled": 2 * cfg.value}))

    return registry


def test_a_stage_registered_in_a_test_runs_is_skipped_when_done_and_is_reported(tmp_path):
    calls: list[int] = []
    registry = _toy_registry(calls)
    out = tmp_path / "run"
    cfg = {"out": str(out), "stages": ["toy", "report"], "toy": {"value": 21}}

    state = Pipeline(cfg, progress=False, registry=registry).run()
    assert calls == [21]
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {"toy": "ran", "report": "ran"}
    results = json.loads((out / "results.json").read_text())
    assert results["toy"] == {"doubled": 42} and results["headline"] == {"toy doubled": {"value": 42}}
    assert results["annotate"] is None and results["config"]["toy"] == {"value": 21}  # built-ins: not run
    md = (out / "report.md").read_text()
    assert "## Toy stage\n\n| metric | value |\n|---|---|\n| doubled | 42 |\n" in md
    assert "<h2>Toy stage</h2>" in (out / "report.html").read_text()
    assert "![Headline numbers](summary.png)" in md and (out / "summary.png").exists()

    state = Pipeline(cfg, progress=False, registry=registry).run()  # done: skipped, the report rebuilt
    assert calls == [21]
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {"toy": "skipped", "report": "ran"}
    assert "| toy | skipped | " in (out / "report.md").read_text()  # this call's status, not the last one's

    (out / "toy" / "summary.json").unlink()  # the done-marker gone: the stage runs again
    Pipeline(cfg, progress=False, registry=registry).run()
    assert calls == [21, 21]

    write_report(out)  # the built-in registry knows no toy stage: its entry and section are left out
    assert "toy" not in json.loads((out / "results.json").read_text()) and "Toy" not in (out / "report.md").read_text()


def test_stage_names_sections_and_options_are_validated_against_the_registry(tmp_path):
    registry = _toy_registry([])
    ctx = {"registry": registry}
    cfg = PipelineConfig.model_validate({"out": str(tmp_path)}, context=ctx)
    assert cfg.stages == ["annotate", "judge_data", "judge", "processbench", "chunk_reset", "best_of_n",
                          "selection", "toy", "report"]  # a new stage goes before the report
    assert cfg.section("toy") == {"value": 2} and cfg.registry is registry
    with pytest.raises(ValidationError, match="valeu"):
        PipelineConfig.model_validate({"out": str(tmp_path), "stages": ["toy"], "toy": {"valeu": 3}}, context=ctx)
    # The built-in registry is untouched by the copy: neither the stage nor its section is known there.
    with pytest.raises(ValidationError, match=r"unknown stages \['toy'\]"):
        PipelineConfig(out=str(tmp_path), stages=["toy"])
    with pytest.raises(ValidationError, match=r"unknown pipeline keys \['toy'\]"):
        PipelineConfig(out=str(tmp_path), stages=["report"], toy={"value": 3})
    with pytest.raises(ValidationError, match="calibrated_threshold"):
        PipelineConfig(stages=["report"], calibrated_threshold="sometimes")
    with pytest.raises(ValidationError, match="mapping of `judge` options"):
        PipelineConfig(stages=["report"], judge=[1, 2])


def test_builtin_stages_and_config_layout():
    stepwiser = ("annotate", "judge_data", "judge_warmup", "judge", "processbench", "chunk_reset", "best_of_n",
                 "selection", "report")
    names = STAGE_REGISTRY.names()
    assert names[:8] + names[-1:] == stepwiser
    laser = ("laser", "laser_baseline", "self_verify")  # pipeline/laser.py
    critique = ("critique_data", "actor_sft", "critic_data", "critic_sft", "critic_stage1", "critic_stage2",
                "critique_eval")  # pipeline/critique.py
    assert sorted(names[8:-1]) == sorted(laser + critique)
    assert tuple(n for n in names if n in laser) == laser and tuple(n for n in names if n in critique) == critique
    # the other methods' stages are optional: a StepWiser config never runs them
    assert all(STAGE_REGISTRY[n].optional for n in names[8:-1])
    cfg = PipelineConfig(stages=["report"])
    # The dumped config (run.json, results.json) keeps the YAML's layout: stage sections at the top level.
    assert list(cfg.model_dump()) == ["out", "policy", "judge_base", "engine", "stages", "annotate", "judge_data",
                                      "judge", "processbench", "chunk_reset", "calibrated_threshold", "best_of_n",
                                      "selection"]
    assert cfg.section("judge_data") == {"format": "no-cot"} and cfg.option("calibrated_threshold") is True
    assert cfg.section("processbench") == {"subsets": ["gsm8k"], "limit": 12, "balanced": True}
    # judge_warmup is optional: off (no section, not in the default stages) unless its section is given
    assert PipelineConfig().stages == [n for n in stepwiser if n != "judge_warmup"]
    assert not cfg.has_section("judge_warmup")
    on = PipelineConfig(judge_warmup={"max_steps": 2})
    assert on.stages == list(stepwiser) and on.section("judge_warmup") == {"max_steps": 2}
    assert list(on.model_dump())[5:8] == ["annotate", "judge_data", "judge_warmup"]
    named = PipelineConfig(stages=["judge_warmup"])  # named in `stages`: on, with the command's defaults
    assert named.has_section("judge_warmup") and named.section("judge_warmup") == {}


def test_registry_refuses_clashing_names():
    registry = StageRegistry()
    registry.add(Stage("first", run=lambda ctx: None))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Stage("first", run=lambda ctx: None))
    with pytest.raises(ValueError, match="clashes"):
        registry.add(Stage("policy", run=lambda ctx: None))
    with pytest.raises(ValueError, match="no pipeline stage 'nope'"):
        registry.add(Stage("second", run=lambda ctx: None), before="nope")
    registry.add(Stage("last", run=lambda ctx: None, runs_last=True))
    registry.add(Stage("second", run=lambda ctx: None))
    registry.add(Stage("zeroth", run=lambda ctx: None), before="first")
    assert registry.names() == ("zeroth", "first", "second", "last")


def test_the_add_a_stage_example_in_the_docs_runs(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()
    section = text[text.index("## Adding a stage"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n\n`Stage` fields")]
    names = {"run_folder": tmp_path / "run"}
    exec(compile(code, "docs/pipeline.md", "exec"), names)  # noqa: S102  (the docs' own example)
    assert (tmp_path / "run" / "count" / "summary.json").exists() and "count" not in STAGE_REGISTRY
    assert "## Word count" in (tmp_path / "run" / "report.md").read_text()
