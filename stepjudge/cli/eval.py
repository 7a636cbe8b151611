"""``stepjudge eval processbench``: measure a judge with the official ProcessBench metric."""

from __future__ import annotations

import argparse
import json

from stepjudge.cli.common import ENGINE_KEYS, add_engine_flags, load_yaml, merge_flags

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
  stepjudge eval processbench --judge smollm2-135m --protocol stepwise --subsets gsm8k --limit 10 --out runs/pb
  stepjudge eval processbench --engine openai --base-url http://gpu-box:8000/v1 --judge Qwen/Qwen2.5-7B-Instruct \\
      --protocol critic --votes 8 --out runs/pb-qwen7b
  stepjudge eval processbench --config configs/quickstart_processbench.yaml
  stepjudge eval processbench --score my_predictions.jsonl     # lines: {"id": "gsm8k-12", "prediction": 3}
"""

KEYS = {"judge": "judge", "protocol": "protocol", "subsets": "subsets", "limit": "limit", "balanced": "balanced", "votes": "votes",
        "temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens", "seed": "seed",
        "batch_size": "batch_size", "source": "source", "out": "out", "unparsed_as": "unparsed_as",
        "judge_prompt": "judge_prompt", "response_prefix": "response_prefix", **ENGINE_KEYS}


def register(subparsers) -> None:
    p_eval = subparsers.add_parser("eval", help="evaluate judges on benchmarks",
                                   description="Evaluate judges on benchmarks.")
    sub = p_eval.add_subparsers(dest="benchmark", metavar="<benchmark>")
    p = sub.add_parser("processbench", help="ProcessBench (official metric; critic/stepwise/prm protocols)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--score", metavar="PREDICTIONS.jsonl",
                   help="only score a predictions file and print the summary as JSON")
    p.add_argument("--judge", help="judge model: smollm2-135m, a local checkpoint, a hub id, or the served "
                   "model name with --engine openai")
    p.add_argument("--protocol", choices=["critic", "stepwise", "prm"], help="how the judge is asked (default stepwise)")
    p.add_argument("--subsets", nargs="+", help="gsm8k math olympiadbench omnimath (default: all four); commas work too")
    p.add_argument("--limit", type=int, help="first N cases of each subset")
    p.add_argument("--balanced", action="store_true", default=None,
                   help="with --limit N: first N/2 erroneous and N/2 correct cases per subset")
    p.add_argument("--votes", type=int, help="samples per judgement, majority vote (default 1 = greedy)")
    p.add_argument("--temperature", type=float, help="default 0 (1 vote) or 1.0 (voting)")
    p.add_argument("--top-p", type=float, help="default 1.0 (1 vote) or 0.9 (voting)")
    p.add_argument("--max-tokens", type=int, help="per judgement; default critic 2048, stepwise 512, prm 4")
    p.add_argument("--seed", type=int, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=int, help="cases judged together in one engine call (default 16)")
    p.add_argument("--unparsed-as", choices=["Positive", "Negative"],
                   help="stepwise: verdict when no sample has a parseable \\boxed{} verdict (default Positive)")
    p.add_argument("--judge-prompt", choices=["stepwise", "no-cot"],
                   help="stepwise protocol: reason-then-verdict prompt (default) or the verdict-only prompt")
    p.add_argument("--response-prefix", help='stepwise protocol: pre-filled answer start, e.g. "\\boxed{" (hf)')
    p.add_argument("--source", help="ProcessBench folder or hub id (default: ../shared/data/processbench)")
    p.add_argument("--out", help="run folder (default runs/processbench)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_engine_flags(p)
    p.set_defaults(func=run_processbench)

    j = sub.add_parser("judge", help="judge accuracy and class-balanced F1 on held-out chunks",
                       description="Score a judge on held-out chunk rows from 'stepjudge train judge-data' "
                                   "(generative/no-cot rows, or discriminative conversations). Prints accuracy, "
                                   "per-class accuracy and their harmonic mean (balanced F1), and writes the "
                                   "per-chunk predictions to --out.")
    j.add_argument("--judge", required=True, help="model name/path (hf) or served model name (openai)")
    j.add_argument("--data", required=True, help="heldout.jsonl")
    j.add_argument("--protocol", choices=["generative", "discriminative"], default="generative")
    j.add_argument("--votes", type=int, default=1)
    j.add_argument("--max-tokens", type=int, default=256)
    j.add_argument("--response-prefix", default="", help='pre-filled start of the answer, e.g. "\\boxed{"')
    j.add_argument("--probabilities", action="store_true",
                   help="also read P(Positive) from the verdict token after --response-prefix and report "
                        "AUROC (hf engine)")
    j.add_argument("--calibrate-on", metavar="TRAIN.jsonl",
                   help="with --probabilities: also score held-out chunks at the P(Positive) cut that "
                        "maximises balanced accuracy on these (training) rows")
    j.add_argument("--annotations", metavar="ANNOTATIONS.jsonl",
                   help="arith: also score the first Negative chunk of each held-out solution against its "
                        "true first wrong chunk (ProcessBench-style F1), from `stepjudge annotate` output")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--out", help="write metrics.json and predictions.jsonl here")
    add_engine_flags(j)
    j.set_defaults(func=run_judge_eval)
    p_eval.set_defaults(func=lambda a: p_eval.print_help() or 2)


def run_judge_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepjudge.engines.factory import EngineConfig, make_engine
    from stepjudge.eval.judge_heldout import evaluate_judge_rows
    from stepjudge.utils.io import atomic_write_json, read_jsonl, write_jsonl_atomic

    rows = read_jsonl(args.data)
    engine_cfg = EngineConfig(**merge_flags({"model": args.judge}, args, {k: v.split(".", 1)[1]
                                                                          for k, v in ENGINE_KEYS.items()}))
    engine = make_engine(engine_cfg)
    result = evaluate_judge_rows(engine, rows, protocol=args.protocol, votes=args.votes,
                                 max_tokens=args.max_tokens, seed=args.seed, response_prefix=args.response_prefix,
                                 probabilities=args.probabilities)
    if args.calibrate_on:
        if not args.probabilities:
            raise SystemExit("--calibrate-on needs --probabilities")
        from stepjudge.eval.judge_heldout import calibrated_metrics

        result["calibrated"] = calibrated_metrics(engine, read_jsonl(args.calibrate_on), result["predictions"],
                                                  args.response_prefix)
    if args.annotations:
        from stepjudge.eval.judge_heldout import first_error_scores

        ann = read_jsonl(args.annotations)
        result["first_error"] = first_error_scores(result["predictions"], ann)
        if "calibrated" in result:
            result["calibrated"]["first_error"] = first_error_scores(
                result["predictions"], ann, threshold=result["calibrated"]["threshold"])
    preds = result.pop("predictions")
    result.update(judge=args.judge, data=args.data, response_prefix=args.response_prefix)
    if args.out:
        atomic_write_json(Path(args.out) / "metrics.json", result)
        write_jsonl_atomic(Path(args.out) / "predictions.jsonl", preds)
    print(json.dumps(result, indent=1))
    return 0


def run_processbench(args: argparse.Namespace) -> int:
    from stepjudge.eval.metrics import summary_markdown
    from stepjudge.eval.processbench import ProcessBenchEvalConfig, ProcessBenchRun, score_predictions_file

    if args.score:
        print(json.dumps(score_predictions_file(args.score, source=args.source), indent=2))
        return 0
    if args.subsets:
        args.subsets = [s for item in args.subsets for s in item.split(",") if s]
    base = load_yaml(args.config) if args.config else {}
    config = ProcessBenchEvalConfig(**merge_flags(base, args, KEYS))
    run = ProcessBenchRun(config, progress=not args.no_progress)
    summary = run.run()
    print(summary_markdown(summary, title=f"ProcessBench ({config.protocol} judge: {config.judge})"))
    print(f"run folder: {run.out} (report.md, summary.json, predictions.jsonl)")
    return 0
