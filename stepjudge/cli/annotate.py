"""``stepjudge annotate``: Monte-Carlo step labels for chunked solutions (StepWiser's data engine)."""

from __future__ import annotations

import argparse
import json

from stepjudge.cli.common import ENGINE_KEYS, add_engine_flags, load_yaml, merge_flags

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
finished groups are kept, nothing is duplicated. Shards: run with --num-shards N --shard i on N machines
(shared folder), then once more without --shard to merge; or --ray to spread shards over a Ray cluster.

examples:
  stepjudge annotate --config configs/annotate_arith.yaml
  stepjudge annotate --problems arith --arith-n 64 --policy smollm2-135m --rollouts 16 --out runs/ann
  stepjudge annotate --config configs/annotate_arith.yaml --ray --ray-workers 2
  stepjudge annotate --problems gsm8k:train --prompt-style chat --engine openai --ray \\
      --worker-base-urls http://gpu0:8000/v1 http://gpu1:8000/v1 --policy Qwen/Qwen2.5-1.5B-Instruct
"""

KEYS = {"problems": "problems", "limit": "limit", "policy": "policy", "prompt_style": "prompt_style",
        "samples": "samples_per_problem", "sample_temperature": "sample_temperature",
        "sample_max_tokens": "sample_max_tokens", "prefilter": "prefilter", "rollouts": "rollouts",
        "rollout_temperature": "rollout_temperature", "rollout_max_tokens": "rollout_max_tokens",
        "gamma": "gamma", "alpha": "alpha", "best_of_n": "best_of_n", "group_size": "group_size",
        "seed": "seed", "num_shards": "num_shards", "shard": "shard", "ray": "ray",
        "ray_address": "ray_address", "ray_workers": "ray_workers", "worker_base_urls": "worker_base_urls",
        "out": "out", "arith_n": "arith.n", "arith_steps": "arith.steps", "arith_ops": "arith.ops",
        "arith_max_operand": "arith.max_operand", "arith_seed": "arith.seed", **ENGINE_KEYS}


def register(subparsers) -> None:
    p = subparsers.add_parser("annotate", help="Monte-Carlo step labels for chunked solutions (StepWiser)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with any of the options below (flags override it)")
    p.add_argument("--problems", help="arith | gsm8k[:split] | math500 | math-test | a JSON/JSONL/Parquet file | hub id")
    p.add_argument("--limit", type=int, help="first N problems")
    p.add_argument("--policy", help="model that writes the solutions (default smollm2-135m)")
    p.add_argument("--prompt-style", choices=["fewshot", "chat"], help="fewshot (arith, raw text) or chat (StepWiser solver prompt)")
    p.add_argument("--samples", type=int, help="K solutions per problem (default 4)")
    p.add_argument("--sample-temperature", type=float)
    p.add_argument("--sample-max-tokens", type=int)
    p.add_argument("--prefilter", action="store_true", default=None, help="drop problems whose K samples are all right or all wrong")
    p.add_argument("--rollouts", type=int, help="M continuations per chunk prefix (default 16)")
    p.add_argument("--rollout-temperature", type=float, help="default 1.0 (paper)")
    p.add_argument("--rollout-max-tokens", type=int)
    p.add_argument("--gamma", type=float, help="Rel-Ratio threshold (default 0.7)")
    p.add_argument("--alpha", type=float, help="Rel-Effective weight (default 0.8)")
    p.add_argument("--best-of-n", type=int, help="Rel-Effective's n (default 4)")
    p.add_argument("--group-size", type=int, help="problems per work unit (default 8)")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-shards", type=int, help="split the groups into N shards")
    p.add_argument("--shard", type=int, help="run only shard i (0-based)")
    p.add_argument("--ray", action="store_true", default=None, help="spread shards over a Ray cluster")
    p.add_argument("--ray-address", help="existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-workers", type=int, help="Ray actors, each with its own engine (default 2)")
    p.add_argument("--worker-base-urls", nargs="+", help="with --engine openai: one server URL per Ray worker")
    g = p.add_argument_group("arith task")
    g.add_argument("--arith-n", type=int, help="number of generated problems")
    g.add_argument("--arith-steps", type=int, help="operations per problem")
    g.add_argument("--arith-ops", nargs="+", help="add subtract multiply")
    g.add_argument("--arith-max-operand", type=int)
    g.add_argument("--arith-seed", type=int)
    p.add_argument("--out", help="run folder (default runs/annotate)")
    p.add_argument("--no-progress", action="store_true")
    add_engine_flags(p)
    p.set_defaults(func=run_annotate)


def run_annotate(args: argparse.Namespace) -> int:
    from stepjudge.annotate.pipeline import AnnotateConfig, AnnotationRun

    base = load_yaml(args.config) if args.config else {}
    config = AnnotateConfig(**merge_flags(base, args, KEYS))
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
