"""``stepjudge annotate``: Monte-Carlo step labels for chunked solutions (StepWiser's data engine)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command

if TYPE_CHECKING:
    from stepjudge.annotate.pipeline import AnnotateConfig

DESCRIPTION = """\
Sample K solutions per problem from a policy, split them into <chunk>s, run M rollouts from every chunk
prefix (and from the bare problem), grade them, and label every chunk under the three StepWiser schemes:
  abs-q          positive iff Q after the chunk > 0
  rel-ratio      positive iff Q_after / Q_before > gamma  (Q_before = 0: positive iff Q_after > 0)
  rel-effective  positive iff Q_after + alpha * (Qmu_after - Qmu_before) > 0, Qmu = 1 - (1 - Q)^n
On the synthetic `arith` task the true first wrong chunk is known and the report measures each scheme
against it.

Output folder: annotations.jsonl (one line per solution), report.md / report.json / q_trajectories.png,
shards/ (one line per finished group of problems). Kill it at any point and run the same command again:
finished groups are kept, nothing is duplicated. Every option below is also a YAML key (nested ones
with dots: --engine.kind openai is `engine: {kind: openai}`). Shards: run with --num-shards N --shard i on N machines
(shared folder), then once more without --shard to merge; or --ray to spread shards over a Ray cluster.

examples:
  stepjudge annotate --config configs/annotate_arith.yaml
  stepjudge annotate --problems arith --arith.n 64 --policy smollm2-135m --rollouts 16 --out runs/ann
  stepjudge annotate --config configs/annotate_arith.yaml --ray --ray-workers 2
  stepjudge annotate --problems gsm8k:train --prompt-style chat --engine.kind openai --ray \\
      --worker-base-urls http://gpu0:8000/v1,http://gpu1:8000/v1 --policy Qwen/Qwen2.5-1.5B-Instruct
"""


def run_annotate(config: AnnotateConfig, args: argparse.Namespace) -> int:
    from stepjudge.annotate.pipeline import AnnotationRun

    run = AnnotationRun(config, progress=not args.no_progress)
    summary = run.run()
    if summary is None:
        print(f"shard done; run again without --shard once every shard has finished to merge ({run.out})")
        return 0
    print((run.out / "report.md").read_text())
    print(json.dumps({"class_balance": summary["class_balance"], "truth_agreement": summary["truth_agreement"]},
                     indent=1)[:2000])
    print(f"run folder: {run.out}")
    return 0


VERBS = (Command("annotate", "Monte-Carlo step labels for chunked solutions (StepWiser)", DESCRIPTION,
                    "stepjudge.annotate.pipeline:AnnotateConfig", run_annotate, progress=True),)
