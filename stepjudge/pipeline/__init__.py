"""The end-to-end loop (``stepjudge pipeline CONFIG``), its stage registry and its report.

Importing the package registers the built-in stages: StepWiser's (:mod:`stepjudge.pipeline.stepwiser`),
LaSeR's (optional, :mod:`stepjudge.pipeline.laser`), Critique-RL's (optional,
:mod:`stepjudge.pipeline.critique`) and the report (:mod:`stepjudge.pipeline.report`), which runs last.
"""

from stepjudge.pipeline import critique, laser, report, stepwiser  # noqa: F401  (registers the built-in stages)
from stepjudge.pipeline.registry import (
    STAGE_REGISTRY,
    PipelineConfig,
    Stage,
    StageContext,
    StageRegistry,
    register_stage,
)
from stepjudge.pipeline.run import Pipeline, run_pipeline

__all__ = ["STAGE_REGISTRY", "Pipeline", "PipelineConfig", "Stage", "StageContext", "StageRegistry",
           "register_stage", "run_pipeline"]
