"""``stepjudge pipeline CONFIG``: the whole StepWiser loop from one YAML, resumable, with one report."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command

if TYPE_CHECKING:
    from stepjudge.pipeline import PipelineConfig

DESCRIPTION = """\
Run the StepWiser loop from one YAML: annotate (sample solutions, Monte-Carlo rollouts, chunk labels)
-> judge_data (judge prompts, balanced train split, held-out split by problem) -> judge_warmup (only
with a judge_warmup: section: SFT in the judge's own format; the judge then starts from it and every
later stage asks it the warm-up's way) -> judge (GRPO, with held-out scores before and after) ->
processbench (a ProcessBench slice, base vs trained judge) -> chunk_reset (Chunk-Reset reasoning vs
the policy alone) -> best_of_n (judge best-of-N and weighted voting vs majority voting) -> report
(report.html + report.md with every stage's tables and plots). LaSeR's stages are optional (on when
their section is given or they are named in `stages`): laser (train laser) -> laser_baseline (the same
GRPO run with self_reward off) -> self_verify (eval self-verify of each trained policy: accuracy,
self-verification F1, AUROC, weighted vs majority vote), see configs/pipeline_laser_quickstart.yaml.

Everything goes into one run folder (`out:` in the YAML, or --out). Top-level keys have flags
(--out, --policy, --stages, --engine.kind, ...); the stage sections are set in the YAML. A stage whose output already
exists is skipped, so re-running the same command after a crash continues where it stopped, and
`--stages report` rebuilds only the report. Stage sections of the YAML take the options of the
stage's own command (stepjudge annotate / train judge-data / train judge-warmup / train judge /
eval processbench / solve / rerank); the pipeline fills in the paths between them.
"""

EPILOG = """\
examples:
  stepjudge pipeline configs/pipeline_quickstart.yaml            # embedded model, ~15 min on 2 cores
  stepjudge pipeline configs/pipeline_quickstart.yaml --stages report
  stepjudge pipeline configs/pipeline_qwen1.5b_gpu.yaml          # paper-scale recipe (GPUs)
  stepjudge pipeline configs/pipeline_laser_quickstart.yaml      # LaSeR vs GRPO, embedded model, CPU
"""


def run(config: PipelineConfig, args: argparse.Namespace) -> int:
    from stepjudge.pipeline import Pipeline

    pipeline = Pipeline(config, progress=not args.no_progress)
    state = pipeline.run()
    print(json.dumps(state, indent=1))
    print(f"report: {pipeline.out / 'report.html'} (and report.md)")
    return 0


def _config_positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="pipeline YAML (see configs/pipeline_quickstart.yaml); "
                        "the flags below override its keys")


VERBS = (Command("pipeline", "run the whole StepWiser loop from one YAML (resumable)", DESCRIPTION,
                    "stepjudge.pipeline:PipelineConfig", run, progress=True, epilog=EPILOG, config_flag=False,
                    extra_flags=_config_positional),)
