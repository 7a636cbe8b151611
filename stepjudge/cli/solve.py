"""``stepjudge solve``: Chunk-Reset Reasoning, a stepwise judge vetting each chunk as the policy writes it."""

from __future__ import annotations

import argparse
import json

from stepjudge.cli.common import ENGINE_KEYS, add_engine_flags, load_yaml, merge_flags

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
(--judge-score token-prob, hf engine, verdict-only judge); use --judge-score votes --judge-prompt
stepwise --judge-response-prefix "" --judge-max-tokens 512 for a judge that reasons first.

Output folder: run.json, solutions.jsonl (one line per problem: chunks, tries, rejected tries,
tokens, judge calls, grade), baseline_solutions.jsonl, summary.json, report.md.

examples:
  stepjudge solve --config configs/solve_arith.yaml
  stepjudge solve --policy smollm2-135m --judge runs/judge-rl-cpu-verdict-only/final --reset \\
      --problems arith --arith-n 32 --temperature 0.5 --out runs/solve
  stepjudge solve --policy smollm2-135m --problems arith --limit 8      # no-judge baseline only
  stepjudge solve --engine openai --base-url http://gpu0:8000/v1 --policy my-chunk-policy \\
      --judge-engine hf --judge runs/judge/final --reset --problems math500
"""

KEYS = {"problems": "problems", "limit": "limit", "policy": "policy", "judge": "judge", "reset": "reset",
        "compare_baseline": "compare_baseline", "max_tries": "max_tries", "max_chunks": "max_chunks",
        "chunk_max_tokens": "chunk_max_tokens", "temperature": "temperature", "top_p": "top_p",
        "seed": "seed", "prompt_style": "prompt_style", "out": "out",
        "arith_n": "arith.n", "arith_steps": "arith.steps", "arith_ops": "arith.ops",
        "arith_max_operand": "arith.max_operand", "arith_seed": "arith.seed",
        "judge_prompt": "judge_spec.prompt", "judge_score": "judge_spec.score",
        "judge_response_prefix": "judge_spec.response_prefix", "judge_votes": "judge_spec.votes",
        "judge_temperature": "judge_spec.temperature", "judge_max_tokens": "judge_spec.max_tokens",
        "judge_threshold": "judge_spec.threshold", **ENGINE_KEYS}
JUDGE_ENGINE_KEYS = {"judge_engine": "kind", "judge_base_url": "base_url", "judge_device": "device"}


def register(subparsers) -> None:
    p = subparsers.add_parser("solve", help="Chunk-Reset Reasoning: a judge vets each chunk as it is written",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with any of the options below (flags override it)")
    p.add_argument("--problems", help="arith | gsm8k[:split] | math500 | math-test | a JSON/JSONL/Parquet file | hub id")
    p.add_argument("--limit", type=int, help="first N problems")
    p.add_argument("--policy", help="model that writes the chunks (default smollm2-135m)")
    p.add_argument("--judge", help="judge model: local checkpoint, built-in name or hub id (served name with openai)")
    p.add_argument("--reset", action=argparse.BooleanOptionalAction, default=None,
                   help="judge every chunk and re-sample rejected ones (needs --judge); default off = baseline")
    p.add_argument("--compare-baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="with --reset, also run the no-judge baseline on the same problems and seed (default on)")
    p.add_argument("--max-tries", type=int, help="tries per chunk; the last is kept even if rejected (default 5)")
    p.add_argument("--max-chunks", type=int, help="a solution stops, unanswered, after this many chunks (default 8)")
    p.add_argument("--chunk-max-tokens", type=int, help="policy tokens per try (default 64)")
    p.add_argument("--temperature", type=float, help="policy sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="sampling seed (default 0); each round derives its own from it")
    p.add_argument("--prompt-style", choices=["fewshot", "chat"],
                   help="fewshot (arith worked examples, raw text) or chat (StepWiser solver prompt, hf engine)")
    p.add_argument("--out", help="run folder (default runs/solve)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g = p.add_argument_group("judge (JudgeSpec; YAML key judge_spec)")
    g.add_argument("--judge-prompt", choices=["stepwise", "no-cot"], help="default no-cot (verdict only)")
    g.add_argument("--judge-score", choices=["token-prob", "votes"],
                   help="P(Positive) from the verdict token (default) or from sampled votes")
    g.add_argument("--judge-response-prefix", help='pre-filled answer start (default "\\boxed{"; "" to reason first)')
    g.add_argument("--judge-votes", type=int, help="votes mode: judgements per chunk (default 1)")
    g.add_argument("--judge-temperature", type=float, help="votes mode: sampling temperature")
    g.add_argument("--judge-max-tokens", type=int, help="votes mode: judge output tokens (default 8)")
    g.add_argument("--judge-threshold", type=float, help="Positive when P(Positive) >= this (default 0.5)")
    g.add_argument("--judge-engine", choices=["hf", "openai"],
                   help="the judge's engine (default: the policy's engine settings)")
    g.add_argument("--judge-base-url", help="server URL for --judge-engine openai")
    g.add_argument("--judge-device", help="torch device for the judge (hf)")
    a = p.add_argument_group("arith task")
    a.add_argument("--arith-n", type=int, help="number of generated problems")
    a.add_argument("--arith-steps", type=int, help="operations per problem")
    a.add_argument("--arith-ops", nargs="+", help="add subtract multiply")
    a.add_argument("--arith-max-operand", type=int)
    a.add_argument("--arith-seed", type=int)
    add_engine_flags(p)  # the policy's engine
    p.set_defaults(func=run_solve)


def config_from_args(args: argparse.Namespace) -> dict:
    """YAML config (if any) with the given flags on top; judge engine flags start from the policy engine."""
    base = load_yaml(args.config) if args.config else {}
    merged = merge_flags(base, args, KEYS)
    judge_flags = {k: getattr(args, k, None) for k in JUDGE_ENGINE_KEYS}
    if any(v is not None for v in judge_flags.values()):
        judge_engine = dict(merged.get("judge_engine") or merged.get("engine") or {})
        for arg, key in JUDGE_ENGINE_KEYS.items():
            if judge_flags[arg] is not None:
                judge_engine[key] = judge_flags[arg]
        merged["judge_engine"] = judge_engine
    return merged


def run_solve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepjudge.infer.chunk_reset import ChunkResetConfig, run_chunk_reset

    config = ChunkResetConfig(**config_from_args(args))
    summary = run_chunk_reset(config, progress=not args.no_progress)
    print((Path(config.out) / "report.md").read_text())
    short = {name: {k: m[k] for k in ("accuracy", "mean_accepted_tokens", "mean_rejected_tokens",
                                      "judge_calls_per_problem", "resets", "kept_after_max")}
             for name, m in summary["methods"].items()}
    print(json.dumps(short, indent=1))
    print(f"run folder: {config.out}")
    return 0
