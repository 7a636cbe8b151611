"""``stepjudge rerank`` (best-of-N with a stepwise judge) and ``stepjudge select`` (policy training data
chosen by the judge, and the policy SFT on it). One module, two verbs: ``select`` reads what ``rerank``
writes."""

from __future__ import annotations

import argparse
import json

from stepjudge.cli.common import ENGINE_KEYS, add_engine_flags, load_yaml, merge_flags

RERANK_DESCRIPTION = """\
Best-of-N with a stepwise judge (StepWiser): the policy samples N solutions per problem (one engine call
with n=N per group of problems), each is split into <chunk>s, and the judge scores every chunk given the
problem and the earlier chunks -- all chunks of a group in one batched judge call. A solution's score is
the mean over its chunks of P(Positive): by default the verdict token's probability after the
pre-filled "\\boxed{" (judge_spec.score: token-prob, hf engine); with judge_spec.score: votes the share of
Positive among sampled verdicts. A solution that breaks the chunk format keeps no score (counted).

Accuracy is reported for: the first sample (pass@1), plain majority vote, judge best-of-N (answered
samples first, then highest score, ties to the lowest index), judge-weighted majority vote (sum of
scores per answer, ties to the answer seen first), and the oracle (any sample correct); plus the number
of judge calls (chunks judged).

Output folder: run.json, groups.jsonl (one line per finished group; re-running the same command resumes),
samples.jsonl (per problem: samples, chunks, chunk probabilities, scores, answers, correct flags, picks),
summary.json and report.md. 'stepjudge select build' turns samples.jsonl into policy SFT data.
The "engine" flags below (--engine, --device, --threads, ...) set the policy's engine; the judge has its
own --judge-engine / --judge-device / ... flags (YAML: policy_engine, judge_engine, judge_spec).

examples:
  stepjudge rerank --config configs/rerank_arith.yaml
  stepjudge rerank --judge runs/judge-rl/final --policy smollm2-135m --n 8 --problems arith --limit 32 \\
      --temperature 0.5 --max-tokens 48 --out runs/rerank
  stepjudge rerank --judge runs/judge-rl/final --policy runs/seg-sft/final --prompt-style chat \\
      --problems math500 --n 16 --max-tokens 2048 --device cuda --judge-device cuda --out runs/rerank-m500
"""

SELECT_DESCRIPTION = """\
Training data for the policy from a best-of-N run (StepWiser's stepwise rejection sampling, Table 8),
and the policy SFT on it.

  build   from rerank's samples.jsonl write two SFT sets that differ only in which correct sample each
          problem contributes: sft_judge.jsonl (the correct sample the judge scores best) and
          sft_outcome.jsonl (a seeded random correct sample: outcome-only selection). Only correct
          samples in the chunk format are eligible; problems without one are skipped. Rows are TRL
          prompt-completion records {"prompt": the exact prompt text, "completion": the sample}.
  train   SFT the policy on one of those files with TRL (loss on the completion only); resumable;
          --out receives checkpoint-N/, final/ (safetensors + tokenizer) and train_log.json.

examples:
  stepjudge select build --samples runs/rerank/samples.jsonl --out runs/select
  stepjudge select train --data runs/select/sft_judge.jsonl --out runs/policy-sft-judge
  stepjudge select train --data runs/select/sft_outcome.jsonl --out runs/policy-sft-outcome
  stepjudge select train --model tiny-random --data sft.jsonl --out /tmp/try --max-steps 2 \\
      --per-device-batch-size 2 --gradient-accumulation-steps 1
"""

RERANK_KEYS = {
    "problems": "problems", "limit": "limit", "policy": "policy", "prompt_style": "prompt_style", "n": "n",
    "temperature": "temperature", "max_tokens": "max_tokens", "judge": "judge", "group_size": "group_size",
    "seed": "seed", "out": "out", "arith_n": "arith.n", "arith_steps": "arith.steps", "arith_ops": "arith.ops",
    "arith_max_operand": "arith.max_operand", "arith_seed": "arith.seed",
    "judge_score": "judge_spec.score", "judge_prompt": "judge_spec.prompt",
    "judge_response_prefix": "judge_spec.response_prefix", "judge_votes": "judge_spec.votes",
    "judge_temperature": "judge_spec.temperature", "judge_max_tokens": "judge_spec.max_tokens",
    "judge_engine": "judge_engine.kind", "judge_base_url": "judge_engine.base_url",
    "judge_device": "judge_engine.device", "judge_dtype": "judge_engine.dtype",
    "judge_max_batch_rows": "judge_engine.max_batch_rows",
    **{arg: "policy_" + key for arg, key in ENGINE_KEYS.items()},
}

POLICY_SFT_KEYS = {k: k for k in (
    "model", "data", "out", "learning_rate", "epochs", "max_steps", "per_device_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "logging_steps", "save_steps", "save_total_limit",
    "use_cpu", "bf16", "gradient_checkpointing")}


def register(subparsers) -> None:
    _register_rerank(subparsers)
    _register_select(subparsers)


def _register_rerank(subparsers) -> None:
    p = subparsers.add_parser("rerank", help="best-of-N and voting with a stepwise judge (StepWiser)",
                              description=RERANK_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with any of the options below (flags override it)")
    p.add_argument("--judge", help="stepwise judge: checkpoint dir (e.g. runs/judge-rl/final), built-in "
                   "name, hub id, or the served model name with --judge-engine openai")
    p.add_argument("--policy", help="model that writes the solutions (default smollm2-135m)")
    p.add_argument("--n", type=int, help="solutions per problem (default 8)")
    p.add_argument("--problems", help="arith | gsm8k[:split] | math500 | math-test | a JSON/JSONL/Parquet file | hub id")
    p.add_argument("--limit", type=int, help="first N problems")
    p.add_argument("--prompt-style", choices=["fewshot", "chat"],
                   help="fewshot (arith examples, raw text, stop at a blank line) or chat (StepWiser solver prompt)")
    p.add_argument("--temperature", type=float, help="policy sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, help="tokens per solution (default 256)")
    p.add_argument("--group-size", type=int, help="problems per engine call and log line (default 8)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default runs/rerank)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g = p.add_argument_group("judge scoring (judge_spec)")
    g.add_argument("--judge-score", choices=["token-prob", "votes"],
                   help="P(Positive) from the verdict token (default) or from sampled vote shares")
    g.add_argument("--judge-prompt", choices=["no-cot", "stepwise"],
                   help="no-cot: verdict-only prompt (default); stepwise: StepWiser's reason-then-verdict prompt")
    g.add_argument("--judge-response-prefix", help='pre-filled judge answer (default "\\boxed{"; "" for a '
                   "reasoning judge with --judge-score votes)")
    g.add_argument("--judge-votes", type=int, help="votes mode: verdicts sampled per chunk")
    g.add_argument("--judge-temperature", type=float, help="votes mode: sampling temperature")
    g.add_argument("--judge-max-tokens", type=int, help="votes mode: judge output tokens")
    g = p.add_argument_group("judge engine")
    g.add_argument("--judge-engine", choices=["hf", "openai"], help="hf (default) or an OpenAI-compatible server")
    g.add_argument("--judge-base-url", help="server URL for --judge-engine openai")
    g.add_argument("--judge-device", help="torch device of the hf judge")
    g.add_argument("--judge-dtype", choices=["float32", "bfloat16", "float16", "auto"])
    g.add_argument("--judge-max-batch-rows", type=int, help="judge prompts per forward pass")
    g = p.add_argument_group("arith task")
    g.add_argument("--arith-n", type=int, help="number of generated problems")
    g.add_argument("--arith-steps", type=int, help="operations per problem")
    g.add_argument("--arith-ops", nargs="+", help="add subtract multiply")
    g.add_argument("--arith-max-operand", type=int)
    g.add_argument("--arith-seed", type=int)
    add_engine_flags(p)  # the policy engine
    p.set_defaults(func=run_rerank)


def _register_select(subparsers) -> None:
    p = subparsers.add_parser("select", help="judge-selected policy SFT data and the policy SFT (StepWiser)",
                              description=SELECT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="select_action", metavar="<action>")
    b = sub.add_parser("build", help="samples.jsonl -> sft_judge.jsonl + sft_outcome.jsonl",
                       description=SELECT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--samples", required=True, help="samples.jsonl of a 'stepjudge rerank' run")
    b.add_argument("--out", required=True, help="folder for sft_judge.jsonl, sft_outcome.jsonl, stats.json")
    b.add_argument("--seed", type=int, default=0, help="seed of the outcome-only random pick (default 0)")
    b.set_defaults(func=run_select_build)

    t = sub.add_parser("train", help="SFT the policy on a selected set (TRL, completion-only loss)",
                       description=SELECT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", help="YAML with any of the options below (flags override it)")
    t.add_argument("--model", help="policy to fine-tune (default smollm2-135m: the one that wrote the samples)")
    t.add_argument("--data", help="sft_judge.jsonl or sft_outcome.jsonl")
    t.add_argument("--out", help="run folder (checkpoints, final/, train_log.json)")
    from stepjudge.cli.train import add_sft_run_flags

    add_sft_run_flags(t, "example", 1024)
    t.set_defaults(func=run_select_train)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_rerank(args: argparse.Namespace) -> int:
    from stepjudge.infer.best_of_n import METHOD_NAMES, METHODS, BestOfNConfig, BestOfNRun

    base = load_yaml(args.config) if args.config else {}
    config = BestOfNConfig(**merge_flags(base, args, RERANK_KEYS))
    run = BestOfNRun(config, progress=not args.no_progress)
    summary = run.run()
    for m in METHODS:
        acc = summary["accuracy"][m]
        print(f"{METHOD_NAMES[m]:32s} {'n/a' if acc is None else f'{100 * acc:.1f}%'}")
    print(f"judge calls: {summary['judge_calls']}\nrun folder: {run.out} (report.md, summary.json, samples.jsonl)")
    return 0


def run_select_build(args: argparse.Namespace) -> int:
    from stepjudge.infer.select import build_selection_sets

    stats = build_selection_sets(args.samples, args.out, seed=args.seed)
    print(json.dumps(stats, indent=1))
    return 0


def run_select_train(args: argparse.Namespace) -> int:
    from stepjudge.train.policy_sft import PolicySFTConfig, train_policy_sft

    base = load_yaml(args.config) if args.config else {}
    config = PolicySFTConfig(**merge_flags(base, args, POLICY_SFT_KEYS))
    final = train_policy_sft(config)
    print(f"model: {final}\ntraining log: {final.parent / 'train_log.json'}")
    return 0
