"""The runner: the registered stages, in the configured order, into one run folder.

Each stage writes into its own sub-folder of ``out`` and is skipped when its done-marker files exist
(so a re-run after a crash, or after adding a stage, redoes only what is missing; each stage is also
resumable inside, as its own command is). What the stages are, what marks them done and what they
report is declared once per stage in the registry (:mod:`stepjudge.pipeline.registry`); this module
knows no stage by name.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from stepjudge.pipeline.registry import PipelineConfig, StageContext, StageRegistry
from stepjudge.utils.io import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["PipelineConfig", "Pipeline", "run_pipeline"]


class Pipeline:
    """Runs the configured stages in order; ``pipeline.json`` records each stage's status and time.

    ``registry`` (default: the config's, i.e. the built-in stages) decides which stages exist; a dict
    config is validated against it.
    """

    def __init__(self, config: PipelineConfig | dict, progress: bool = True, registry: StageRegistry | None = None):
        if not isinstance(config, PipelineConfig):
            config = PipelineConfig.model_validate(config, context={"registry": registry})
        elif registry is not None and registry is not config.registry:
            config = PipelineConfig.model_validate(config.model_dump(), context={"registry": registry})
        self.config = config
        self.registry = config.registry
        self.out = Path(config.out)
        self.progress = progress
        self.state_path = self.out / "pipeline.json"

    def is_done(self, stage: str) -> bool:
        return self.registry[stage].is_done(self.out)

    def _state(self) -> dict:
        from stepjudge.utils.io import read_json

        if not self.state_path.exists():
            return {"stages": {}}
        state = read_json(self.state_path, what="pipeline state")
        if not isinstance(state.get("stages"), dict):
            from stepjudge.errors import DataError

            raise DataError("expected an object of stage statuses", path=str(self.state_path), field="stages")
        return state

    def run(self) -> dict:
        """Run the missing stages while holding the folder's lock (the config was checked on load)."""
        from stepjudge.utils.runfolder import run_folder

        settings = self.config.model_dump(mode="json")
        # The sections that decide the outputs; changing one under a finished stage would mix runs.
        deciding = [s.name for s in self.registry if s.decides_results and s.section_help is not None]
        with run_folder(self.out, "pipeline", settings, ("policy", "judge_base", *deciding)):
            return self._run_stages()

    def _run_stages(self) -> dict:
        state = self._state()
        for name in self.config.stages:
            stage = self.registry[name]
            if stage.is_done(self.out):
                log.info("pipeline: %s already done, skipped", name)
                state["stages"].setdefault(name, {})["last_run"] = "skipped"
                continue
            log.info("pipeline: running %s", name)
            t0 = time.perf_counter()
            stage.run(StageContext(config=self.config, out=self.out, progress=self.progress,
                                   state=json.loads(json.dumps(state))))
            seconds = time.perf_counter() - t0
            state["stages"][name] = {"last_run": "ran", "seconds": round(seconds, 1)}
            atomic_write_json(self.state_path, state)
        atomic_write_json(self.state_path, state)
        return state


def run_pipeline(config: PipelineConfig | dict, progress: bool = True,
                 registry: StageRegistry | None = None) -> dict:
    """Python twin of ``stepjudge pipeline CONFIG``: runs what is missing, returns pipeline.json."""
    return Pipeline(config, progress=progress, registry=registry).run()
