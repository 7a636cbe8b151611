"""``stepjudge eval processbench`` (the official ProcessBench metric), ``stepjudge eval judge`` (held-out chunks),
``eval self-verify`` (LaSeR) and ``eval critique`` (Critique-RL)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command, CommandGroup

if TYPE_CHECKING:
    from stepjudge.eval.critique_run import CritiqueEvalConfig
    from stepjudge.eval.judge_heldout import HeldoutEvalConfig
    from stepjudge.eval.processbench import ProcessBenchEvalConfig
    from stepjudge.eval.self_verify_run import SelfVerifyConfig

DESCRIPTION = """\
Evaluate a judge on ProcessBench (3,400 solutions with the index of their first wrong step).

Protocols:
  critic    the official one: the whole solution in one prompt, the judge answers the earliest
            wrong paragraph index or -1 in \\boxed{}
  stepwise  StepWiser: one prompt per step; the first step judged \\boxed{Negative} is the answer
  prm       a "+"/"-" judge in a multi-turn chat, one step per turn

Metric (per subset): accuracy on erroneous cases, accuracy on correct cases, F1 = their harmonic
mean; the average is the mean of the subset F1s. Results go to --out: predictions.jsonl (with raw
judge outputs), summary.json and report.md. Re-running the same command resumes where it stopped.

examples:
  stepjudge eval processbench --judge smollm2-135m --protocol stepwise --subsets gsm8k,math --limit 10 --out runs/pb
  stepjudge eval processbench --engine.kind openai --engine.base-url http://gpu-box:8000/v1 \\
      --judge Qwen/Qwen2.5-7B-Instruct --protocol critic --votes 8 --out runs/pb-qwen7b
  stepjudge eval processbench --config configs/quickstart.yaml
  stepjudge eval processbench --score my_predictions.jsonl     # lines: {"id": "gsm8k-12", "prediction": 3}
"""

JUDGE_DESCRIPTION = """\
Score a judge on held-out chunk rows from 'stepjudge train judge-data' (generative/no-cot rows, or
discriminative conversations). Prints accuracy, per-class accuracy and their harmonic mean (balanced
F1), and writes metrics.json and the per-chunk predictions.jsonl to --out.

example:
  stepjudge eval judge --judge runs/judge-rl/final --data runs/judge-data/heldout.jsonl \\
      --response-prefix '\\boxed{' --probabilities --calibrate-on runs/judge-data/train.jsonl --out runs/ev
"""


SELF_VERIFY_DESCRIPTION = """\
Score a policy's last-token self-reward (LaSeR) on its own solutions: sample -n solutions per problem,
grade them, and read r_s = beta_v (log pi(z_c | x, y, EOS) - c_ref) with one extra token per finished
solution (the hf engine in-process, or prompt log-probs of a served model with --engine.kind openai).
Reports accuracy, self-verification F1 (all responses, and "filtered": only those with an extractable
answer; predicted correct iff r_s > --threshold), AUROC, ECE with calibration.png, and weighted
majority vote vs majority vote vs pass@1 for k = 1, 2, 4, ... n in voting.png. Writes samples.jsonl,
metrics.json and report.md to --out. c_ref defaults to the training run's c_ref.json.
With --verifier (a StepWiser judge), the same responses are also judged by that external stepwise
judge, scored as `stepjudge rerank` scores solutions (mean chunk P(Positive); --verifier-spec.* says
how it is asked and read), and its F1, AUROC, ECE and weighted vote are reported beside the self-reward's.

examples:
  stepjudge eval self-verify --model runs/laser-cpu/final --out runs/laser-cpu/self-verify
  stepjudge eval self-verify --model runs/laser-cpu/final --verifier runs/judge-rl-cpu-verdict-only/final \\
      --out runs/laser-cpu/sv-vs-judge            # a verdict-only judge: the default --verifier-spec
  stepjudge eval self-verify --model smollm2-135m --c-ref -16.75 -n 4 --arith.n 16 --out runs/sv-base
"""


CRITIQUE_DESCRIPTION = """\
Evaluate a critic with an actor the Critique-RL way (docs/critique_rl.md).
Greedy loop: response -> critique -> refinement for --rounds rounds (this is `stepjudge refine`, run into
--out/greedy, or read from a finished refine folder with --refine-run); per round and overall: Acc, Acc@Refine,
delta, delta c->i, delta i->c (shares of the whole set) and Acc@Dis (parseable verdicts).
Equal budget (-k K > 0): per problem the actor samples (1 + 2 rounds) K responses at --sample-temperature; the
first K start K chains critiqued and refined at the same temperature. Budget = generations per problem: K
chains after round r cost (1 + 2r) K and are compared with the first (1 + 2r) K parallel samples (round 1:
the paper's K vs 3K). MV@K (majority of extracted answers; ties to the answer seen first; no answer =
ignored) and Pass@K for k = 1, 2, 4, ... K.
--out receives samples.jsonl (resumable), summary.json, report.md and accuracy_vs_k.png.

examples:
  stepjudge eval critique --refine-run runs/refine-cpu --actor.model runs/actor-sft/final \\
      --critic.model runs/critic-rl-cpu/stage2/final -k 4 --out runs/eval-critique
  stepjudge eval critique --arith.n 32 --actor.model runs/actor-sft/final --critic.model runs/critic-sft/final \\
      --rounds 2 -k 8 --out runs/eval-critique-sft
"""


def run_critique_eval(config: CritiqueEvalConfig, args: argparse.Namespace) -> int:
    from stepjudge.eval.critique_run import run_critique_eval as run

    summary = run(config, progress=not args.no_progress)
    print(json.dumps({"greedy": summary["greedy"]}, indent=1))
    print(f"report: {config.out}/report.md")
    return 0


def run_self_verify(config: SelfVerifyConfig, args: argparse.Namespace) -> int:
    from stepjudge.eval.self_verify_run import run_self_verify as run

    metrics = run(config)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("calibration",)}, indent=1))
    print(f"report: {config.out}/report.md")
    return 0


def run_judge_eval(config: HeldoutEvalConfig, args: argparse.Namespace) -> int:
    from stepjudge.eval.judge_heldout import evaluate_heldout

    print(json.dumps(evaluate_heldout(config), indent=1))
    return 0


def run_processbench(config: ProcessBenchEvalConfig, args: argparse.Namespace) -> int:
    from stepjudge.eval.metrics import summary_markdown
    from stepjudge.eval.processbench import ProcessBenchRun, score_predictions_file

    if args.score:
        print(json.dumps(score_predictions_file(args.score, source=config.source), indent=2))
        return 0
    run = ProcessBenchRun(config, progress=not args.no_progress)
    summary = run.run()
    print(summary_markdown(summary, title=f"ProcessBench ({config.protocol} judge: {config.judge})"))
    print(f"run folder: {run.out} (report.md, summary.json, predictions.jsonl)")
    return 0


def _score_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--score", metavar="PREDICTIONS.jsonl",
                        help="only score a predictions file (against --source) and print the summary as JSON")


COMMANDS = (
    Command("processbench", "ProcessBench (official metric; critic/stepwise/prm protocols)", DESCRIPTION,
            "stepjudge.eval.processbench:ProcessBenchEvalConfig", run_processbench, progress=True,
            extra_flags=_score_flag),
    Command("judge", "judge accuracy and class-balanced F1 on held-out chunks", JUDGE_DESCRIPTION,
            "stepjudge.eval.judge_heldout:HeldoutEvalConfig", run_judge_eval),
    Command("self-verify", "LaSeR self-verification: F1, AUROC, ECE and weighted voting of a policy's self-reward",
            SELF_VERIFY_DESCRIPTION, "stepjudge.eval.self_verify_run:SelfVerifyConfig", run_self_verify),
    Command("critique", "Critique-RL: refinement metrics per round, MV@K / Pass@K vs parallel sampling",
            CRITIQUE_DESCRIPTION, "stepjudge.eval.critique_run:CritiqueEvalConfig", run_critique_eval, progress=True),
)

VERBS = (CommandGroup("eval", "evaluate judges on benchmarks", COMMANDS),)
