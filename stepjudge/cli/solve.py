"""``stepjudge solve``: Chunk-Reset Reasoning, a stepwise judge vetting each chunk as the policy writes it."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command

if TYPE_CHECKING:
    from stepjudge.infer.chunk_reset import ChunkResetConfig

DESCRIPTION = """\
Chunk-Reset Reasoning (StepWiser §4.4). The policy writes its solution one <chunk> at a time
(generation stops at </chunk>); with --reset a judge checks every new chunk, and a rejected chunk is
thrown away and re-sampled from the same prefix, up to --max-tries tries (default 5), after which the
last try is kept and counted as "kept after max". The answer line after the last chunk is not judged.
Without --reset the same loop accepts every chunk: the no-judge baseline. With --reset the baseline
also runs on the same problems and seed (turn off with --no-compare-baseline), and the report shows
both side by side: accuracy, accepted length, rejected length (policy tokens of thrown-away tries),
judge calls per problem.

Work is batched: each round makes one policy call for all unfinished problems and one judge call for
all the chunks it produced. The judge's P(Positive) is read from its verdict token by default
(--judge-spec.score token-prob, hf engine, verdict-only judge); use --judge-spec.score votes
--judge-spec.prompt stepwise --judge-spec.response-prefix "" --judge-spec.max-tokens 512 for a judge
that reasons first. The policy's engine is set by --engine.* flags; the judge runs with the same
engine settings unless --judge-engine.* flags (or a judge_engine YAML mapping) give its own.

Output folder: run.json, solutions.jsonl (one line per problem: chunks, tries, rejected tries,
tokens, judge calls, grade), baseline_solutions.jsonl, summary.json, report.md.

examples:
  stepjudge solve --config configs/solve_arith.yaml
  stepjudge solve --policy smollm2-135m --judge runs/judge-rl-cpu-verdict-only/final --reset \\
      --problems arith --arith.n 32 --temperature 0.5 --out runs/solve
  stepjudge solve --policy smollm2-135m --problems arith --limit 8      # no-judge baseline only
  stepjudge solve --engine.kind openai --engine.base-url http://gpu0:8000/v1 --policy my-chunk-policy \\
      --judge-engine.kind hf --judge runs/judge/final --reset --problems math500
"""


def run_solve(config: ChunkResetConfig, args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepjudge.infer.chunk_reset import run_chunk_reset

    summary = run_chunk_reset(config, progress=not args.no_progress)
    print((Path(config.out) / "report.md").read_text())
    short = {name: {k: m[k] for k in ("accuracy", "mean_accepted_tokens", "mean_rejected_tokens",
                                      "judge_calls_per_problem", "resets", "kept_after_max")}
             for name, m in summary["methods"].items()}
    print(json.dumps(short, indent=1))
    print(f"run folder: {config.out}")
    return 0


VERBS = (Command("solve", "Chunk-Reset Reasoning: a judge vets each chunk as it is written", DESCRIPTION,
                    "stepjudge.infer.chunk_reset:ChunkResetConfig", run_solve, progress=True),)
