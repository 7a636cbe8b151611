"""``stepjudge rerank`` (best-of-N with a stepwise judge) and ``stepjudge select`` (policy training data
chosen by the judge, and the policy SFT on it). One module, two verbs: ``select`` reads what ``rerank``
writes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepjudge.cli.common import Command, CommandGroup, print_trained

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
The policy's engine is set by --policy-engine.* flags (e.g. --policy-engine.device cuda), the judge's by
--judge-engine.*, how the judge is asked and read by --judge-spec.* (YAML: policy_engine, judge_engine,
judge_spec mappings).

examples:
  stepjudge rerank --config configs/rerank_arith.yaml
  stepjudge rerank --judge runs/judge-rl/final --policy smollm2-135m -n 8 --problems arith --limit 32 \\
      --temperature 0.5 --max-tokens 48 --judge-spec.score votes --judge-spec.votes 4 --out runs/rerank
  stepjudge rerank --judge runs/judge-rl/final --policy runs/seg-sft/final --prompt-style chat \\
      --problems math500 -n 16 --max-tokens 2048 --policy-engine.device cuda --judge-engine.device cuda \\
      --out runs/rerank-m500
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


def run_rerank(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.infer.best_of_n import METHOD_NAMES, METHODS, BestOfNRun

    run = BestOfNRun(config, progress=not args.no_progress)
    summary = run.run()
    for m in METHODS:
        acc = summary["accuracy"][m]
        print(f"{METHOD_NAMES[m]:32s} {'n/a' if acc is None else f'{100 * acc:.1f}%'}")
    print(f"judge calls: {summary['judge_calls']}\nrun folder: {run.out} (report.md, summary.json, samples.jsonl)")
    return 0


def run_select_build(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.infer.select import build_selection_sets_from_config

    print(json.dumps(build_selection_sets_from_config(config), indent=1))
    return 0


def run_select_train(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.policy_sft import train_policy_sft

    return print_trained(train_policy_sft(config))


SELECT_COMMANDS = (
    Command("build", "samples.jsonl -> sft_judge.jsonl + sft_outcome.jsonl", SELECT_DESCRIPTION,
            "stepjudge.infer.select:SelectionBuildConfig", run_select_build),
    Command("train", "SFT the policy on a selected set (TRL, completion-only loss)", SELECT_DESCRIPTION,
            "stepjudge.train.policy_sft:PolicySFTConfig", run_select_train),
)

VERBS = (Command("rerank", "best-of-N and voting with a stepwise judge (StepWiser)", RERANK_DESCRIPTION,
                 "stepjudge.infer.best_of_n:BestOfNConfig", run_rerank, progress=True),
         CommandGroup("select", "judge-selected policy SFT data and the policy SFT (StepWiser)", SELECT_COMMANDS,
                      description=SELECT_DESCRIPTION))
