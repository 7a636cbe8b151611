"""The whole StepWiser loop from one YAML: annotate -> judge data -> train judge -> evaluate -> use.

Stages, each writing into its own sub-folder of ``out`` and skipped when its output already exists
(so a re-run after a crash, or after adding a stage, redoes only what is missing; each stage is also
resumable inside, as its own command is):

============== ======================================= =========================================
stage          what                                    done when
============== ======================================= =========================================
annotate       sample K solutions, MC rollouts, labels annotate/report.json
judge_data     judge prompts, balanced train, held-out judge_data/stats.json
judge          GRPO judge + held-out before/after      judge/report.md and judge/final/
processbench   ProcessBench slice, base vs trained     processbench_{before,after}/summary.json
chunk_reset    Chunk-Reset vs the same policy alone    chunk_reset/summary.json
best_of_n      judge best-of-N / weighted vote vs maj. best_of_n/summary.json
selection      SFT on judge- vs outcome-selected samples selection/summary.json
report         report.md + report.html + summary.png   (always rebuilt)
============== ======================================= =========================================

Stage sections of the YAML take the keys of the stage's own command (``stepjudge annotate``, ``train
judge-data``, ``train judge``, ``eval processbench``, ``solve``, ``rerank``); the pipeline fills in
the paths that connect them and the shared policy/engine. Sub-configs are validated when the
pipeline config is loaded, so a typo fails before an hour of annotation, not after it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepjudge.engines.factory import EngineConfig
from stepjudge.utils.io import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["STAGES", "PipelineConfig", "Pipeline", "run_pipeline"]

Stage = Literal["annotate", "judge_data", "judge", "processbench", "chunk_reset", "best_of_n", "selection",
                "report"]
STAGES: tuple[str, ...] = ("annotate", "judge_data", "judge", "processbench", "chunk_reset", "best_of_n",
                           "selection", "report")


class PipelineConfig(BaseModel):
    """One YAML for the StepWiser loop. Stage sections hold that stage's command options."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field("runs/pipeline", description="one run folder for every stage and the report")
    policy: str = Field("smollm2-135m", description="the model that solves problems (annotate, solve, rerank)")
    judge_base: str | None = Field(None, description="model the judge is trained from (default: policy)")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="shared engine settings")
    stages: list[Stage] = Field(default_factory=lambda: list(STAGES), description="stages to run, in order")
    annotate: dict[str, Any] = Field(default_factory=dict, description="`stepjudge annotate` options")
    judge_data: dict[str, Any] = Field(default_factory=lambda: {"format": "no-cot"},
                                       description="`stepjudge train judge-data` options")
    judge: dict[str, Any] = Field(default_factory=dict, description="`stepjudge train judge` options")
    processbench: dict[str, Any] = Field(
        default_factory=lambda: {"subsets": ["gsm8k"], "limit": 12, "balanced": True},
        description="`stepjudge eval processbench` options (the judge is filled in)")
    chunk_reset: dict[str, Any] = Field(default_factory=dict, description="`stepjudge solve` options")
    calibrated_threshold: bool = Field(
        True, description="Chunk-Reset rejects chunks below the trained judge's P(Positive) cut fitted on the "
                          "judge's *train* split (judge/eval_after.json), unless chunk_reset.judge_spec sets "
                          "a threshold; off = the plain 0.5 cut")
    best_of_n: dict[str, Any] = Field(default_factory=dict, description="`stepjudge rerank` options")
    selection: dict[str, Any] = Field(
        default_factory=dict, description="data selection from best_of_n's samples: `seed` (outcome-only "
        "draw), `sft` (`stepjudge select train` options) and `eval` (`stepjudge solve` options for scoring "
        "the base and both fine-tuned policies on new problems, no judge)")

    @model_validator(mode="after")
    def _sub_configs_valid(self) -> PipelineConfig:
        for stage in self.stages:
            builder = _BUILDERS.get(stage)
            if builder is not None:
                builder(self, Path(self.out))  # raises pydantic's error naming the bad key
        return self

    # ------------------------------------------------------------------ derived stage configs
    @property
    def judge_prompt(self) -> str:
        return "no-cot" if self.judge_data.get("format", "generative") == "no-cot" else "stepwise"

    @property
    def response_prefix(self) -> str:
        return self.judge.get("response_prefix", "\\boxed{" if self.judge_prompt == "no-cot" else "")

    def judge_spec(self) -> dict[str, Any]:
        prefix = self.response_prefix
        if prefix:  # verdict-only judge: P(Positive) from the verdict token after the prefix
            return {"prompt": self.judge_prompt, "response_prefix": prefix, "score": "token-prob"}
        # a reasoning judge: greedy, as long as it was trained to write (one vote; raise votes for shares)
        return {"prompt": self.judge_prompt, "response_prefix": "", "score": "votes", "votes": 1,
                "temperature": 0.0, "max_tokens": int(self.judge.get("max_completion_length", 3096))}


def _annotate_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.annotate.pipeline import AnnotateConfig

    return AnnotateConfig(**{"policy": cfg.policy, "engine": cfg.engine.model_dump(), **cfg.annotate,
                             "out": str(out / "annotate")})


def _judge_data_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.judge.dataset import JudgeDatasetConfig

    return JudgeDatasetConfig(**{"tokenizer": cfg.judge_base or cfg.policy, **cfg.judge_data,
                                 "annotations": str(out / "annotate" / "annotations.jsonl")})


def _judge_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.train.judge import JudgeRLConfig

    data = out / "judge_data"
    return JudgeRLConfig(**{"model": cfg.judge_base or cfg.policy, "response_prefix": cfg.response_prefix,
                            "heldout_data": str(data / "heldout.jsonl"), **cfg.judge,
                            "train_data": str(data / "train.jsonl"), "out": str(out / "judge")})


def _processbench_cfgs(cfg: PipelineConfig, out: Path):
    from stepjudge.eval.processbench import ProcessBenchEvalConfig

    base = {"protocol": "stepwise", "judge_prompt": cfg.judge_prompt, "response_prefix": cfg.response_prefix,
            "max_tokens": 4 if cfg.response_prefix else None, "engine": cfg.engine.model_dump(),
            **cfg.processbench}
    before = cfg.judge_base or cfg.policy
    after = str(out / "judge" / "final")
    return (ProcessBenchEvalConfig(**{**base, "judge": before, "out": str(out / "processbench_before")}),
            ProcessBenchEvalConfig(**{**base, "judge": after, "out": str(out / "processbench_after")}))


def _chunk_reset_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.infer.chunk_reset import ChunkResetConfig

    section = {"reset": True, **cfg.chunk_reset}  # the stage exists to compare the judge with no judge
    return ChunkResetConfig(**_with_models(cfg, out, ChunkResetConfig, section, "chunk_reset"))


def _best_of_n_cfg(cfg: PipelineConfig, out: Path):
    from stepjudge.infer.best_of_n import BestOfNConfig

    return BestOfNConfig(**_with_models(cfg, out, BestOfNConfig, cfg.best_of_n, "best_of_n"))


def _with_models(cfg: PipelineConfig, out: Path, model_cls: Any, section: dict, name: str) -> dict:
    """Fill the policy, the trained judge and its prompt settings into a solve/rerank section."""
    fields = model_cls.model_fields
    filled: dict[str, Any] = {}
    engine = cfg.engine.model_dump()
    for key, value in (("policy", cfg.policy), ("judge", str(out / "judge" / "final")),
                       ("judge_spec", cfg.judge_spec()), ("out", str(out / name)), ("engine", engine),
                       ("policy_engine", engine), ("judge_engine", engine)):
        if key in fields:
            filled[key] = value
    if "prompt_style" in fields and "prompt_style" in cfg.annotate:
        filled["prompt_style"] = cfg.annotate["prompt_style"]
    for key in ("problems", "arith"):  # solve the same kind of problems that were annotated ...
        if key in fields and key in cfg.annotate:
            filled[key] = cfg.annotate[key]
    if "arith" in filled:  # ... but new ones: a seed the annotation did not use
        filled["arith"] = {**filled["arith"], "seed": int(filled["arith"].get("seed", 0)) + 1000}
    return {**filled, **section, **({"out": filled["out"]} if "out" in filled else {})}


def _selection_cfgs(cfg: PipelineConfig, out: Path) -> tuple[int, dict, dict]:
    """(seed, PolicySFTConfig kwargs without data/out, ChunkResetConfig kwargs without policy/out)."""
    from stepjudge.infer.chunk_reset import ChunkResetConfig
    from stepjudge.train.policy_sft import PolicySFTConfig

    extra = set(cfg.selection) - {"seed", "sft", "eval"}
    if extra:
        raise ValueError(f"selection: unknown keys {sorted(extra)} (seed, sft, eval)")
    sft = {"model": cfg.policy, **cfg.selection.get("sft", {})}
    PolicySFTConfig(**sft, data="sft.jsonl", out=str(out / "selection"))  # validate now
    ev = _with_models(cfg, out, ChunkResetConfig, {**cfg.selection.get("eval", {}), "reset": False}, "selection")
    ev.pop("judge", None)
    ev.pop("judge_spec", None)
    ChunkResetConfig(**ev)
    return int(cfg.selection.get("seed", 0)), sft, ev


_BUILDERS: dict[str, Callable[[PipelineConfig, Path], Any]] = {
    "annotate": _annotate_cfg, "judge_data": _judge_data_cfg, "judge": _judge_cfg,
    "processbench": _processbench_cfgs, "chunk_reset": _chunk_reset_cfg, "best_of_n": _best_of_n_cfg,
    "selection": _selection_cfgs,
}

_DONE: dict[str, tuple[str, ...]] = {
    "annotate": ("annotate/report.json",),
    "judge_data": ("judge_data/stats.json",),
    "judge": ("judge/report.md", "judge/final/model.safetensors"),
    "processbench": ("processbench_before/summary.json", "processbench_after/summary.json"),
    "chunk_reset": ("chunk_reset/summary.json",),
    "best_of_n": ("best_of_n/summary.json",),
    "selection": ("selection/summary.json",),
}


class Pipeline:
    """Runs the configured stages in order; ``pipeline.json`` records each stage's status and time."""

    def __init__(self, config: PipelineConfig | dict, progress: bool = True):
        self.config = config if isinstance(config, PipelineConfig) else PipelineConfig(**config)
        self.out = Path(self.config.out)
        self.progress = progress
        self.state_path = self.out / "pipeline.json"

    def is_done(self, stage: str) -> bool:
        return all((self.out / p).exists() for p in _DONE.get(stage, ()))

    def _state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {"stages": {}}

    def run(self) -> dict:
        from stepjudge.utils.runfolder import check_or_write_run_json

        self.out.mkdir(parents=True, exist_ok=True)
        settings = self.config.model_dump(mode="json")
        # The stage sections decide the outputs; changing one under a finished stage would mix runs.
        check_or_write_run_json(self.out, "pipeline", settings,
                                ("policy", "judge_base", "annotate", "judge_data", "judge"))
        state = self._state()
        for stage in self.config.stages:
            if stage != "report" and self.is_done(stage):
                log.info("pipeline: %s already done, skipped", stage)
                state["stages"].setdefault(stage, {})["last_run"] = "skipped"
                continue
            log.info("pipeline: running %s", stage)
            t0 = time.perf_counter()
            getattr(self, f"_run_{stage}")()
            seconds = time.perf_counter() - t0
            state["stages"][stage] = {"last_run": "ran", "seconds": round(seconds, 1)}
            atomic_write_json(self.state_path, state)
        atomic_write_json(self.state_path, state)
        return state

    # ------------------------------------------------------------------ stages
    def _run_annotate(self) -> None:
        from stepjudge.annotate.pipeline import annotate

        annotate(_annotate_cfg(self.config, self.out), progress=self.progress)

    def _run_judge_data(self) -> None:
        from stepjudge.judge.dataset import build_judge_datasets, write_datasets

        result = build_judge_datasets(_judge_data_cfg(self.config, self.out))
        write_datasets(result, self.out / "judge_data")

    def _run_judge(self) -> None:
        from stepjudge.train.judge import train_judge

        train_judge(_judge_cfg(self.config, self.out))

    def _run_processbench(self) -> None:
        from stepjudge.eval.processbench import ProcessBenchRun

        for cfg in _processbench_cfgs(self.config, self.out):
            ProcessBenchRun(cfg, progress=self.progress).run()

    def _run_chunk_reset(self) -> None:
        from stepjudge.infer.chunk_reset import run_chunk_reset

        cfg = _chunk_reset_cfg(self.config, self.out)
        explicit = "threshold" in (self.config.chunk_reset.get("judge_spec") or {})
        after = self.out / "judge" / "eval_after.json"
        if self.config.calibrated_threshold and not explicit and after.exists():
            cut = (json.loads(after.read_text()).get("calibrated") or {}).get("threshold")
            if cut is not None:
                log.info("pipeline: Chunk-Reset uses the judge's train-calibrated cut P(Positive) >= %.4f", cut)
                cfg = cfg.model_copy(update={"judge_spec": cfg.judge_spec.model_copy(update={"threshold": cut})})
        run_chunk_reset(cfg)

    def _run_best_of_n(self) -> None:
        from stepjudge.infer.best_of_n import run_best_of_n

        run_best_of_n(_best_of_n_cfg(self.config, self.out))

    def _run_selection(self) -> None:
        """StepWiser's stepwise rejection sampling vs outcome-only selection (Table 8, in miniature):
        fine-tune the policy on each SFT set and score base and both on new problems, no judge."""
        from stepjudge.infer.chunk_reset import ChunkResetConfig, run_chunk_reset
        from stepjudge.infer.select import build_selection_sets
        from stepjudge.train.policy_sft import PolicySFTConfig, train_policy_sft

        seed, sft, ev = _selection_cfgs(self.config, self.out)
        sel = self.out / "selection"
        stats = build_selection_sets(self.out / "best_of_n" / "samples.jsonl", sel / "sets", seed=seed)
        policies: dict[str, dict[str, Any]] = {"base": {"model": self.config.policy, "sft_rows": 0}}
        if stats["selected_problems"]:
            for name in ("judge", "outcome"):
                final = train_policy_sft(PolicySFTConfig(**sft, data=str(sel / "sets" / f"sft_{name}.jsonl"),
                                                         out=str(sel / f"sft_{name}")))
                policies[name] = {"model": str(final), "sft_rows": stats["selected_problems"]}
        else:
            log.warning("selection: no problem has a correct sample in the chunk format; nothing to fine-tune")
        for name, info in policies.items():
            summary = run_chunk_reset(ChunkResetConfig(**{**ev, "policy": info["model"],
                                                          "out": str(sel / f"eval_{name}")}))
            method = summary["methods"][summary["primary"]]
            info.update(accuracy=method["accuracy"], problems=method["problems"],
                        mean_accepted_tokens=method["mean_accepted_tokens"])
        atomic_write_json(sel / "summary.json", {"sets": stats, "policies": policies})

    def _run_report(self) -> None:
        from stepjudge.pipeline.report import write_report

        state = self._state()
        write_report(self.out, state, self.config.model_dump(mode="json"))


def run_pipeline(config: PipelineConfig | dict, progress: bool = True) -> dict:
    """Python twin of ``stepjudge pipeline CONFIG``: runs what is missing, returns pipeline.json."""
    return Pipeline(config, progress=progress).run()
