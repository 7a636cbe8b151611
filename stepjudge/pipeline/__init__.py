"""The end-to-end StepWiser loop (``stepjudge pipeline CONFIG``) and its report."""

from stepjudge.pipeline.run import STAGES, Pipeline, PipelineConfig, run_pipeline

__all__ = ["STAGES", "Pipeline", "PipelineConfig", "run_pipeline"]
