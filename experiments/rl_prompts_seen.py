"""Which training prompts a StepWiser RL arm saw, and how many of their MC labels disagree with the truth.

    python experiments/rl_prompts_seen.py --config experiments/stepwiser_cpu_answers.yaml --seeds 0 1 2

A 20-update GRPO run of 2 prompts per update sees 40 prompts. With stratified batches TRL reads them in
the order :func:`stepjudge.train.judge.stratified_order` lays out (no shuffling), so the prompts are known
from the data, the seed and the batch plan, without re-running anything. The count that matters is the
*noisy* prompts (an MC label that arith's exact truth contradicts): RL pays the judge for agreeing with
those labels, and each one teaches it to break its check (docs/judge_training.md). Prints one line per
seed and split and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import experiment_config, experiment_parser
from stepwiser_cpu import ExperimentConfig

from stepjudge.utils.io import atomic_write_json


def prompts_seen(rows: list[dict], rl: dict, seed: int) -> list[dict]:
    """The training rows a stratified GRPO run of ``rl`` (``train judge`` options) reads, in order.

    Prompts over ``max_prompt_length`` are not dropped here (the experiment's arith prompts are far
    shorter); the order is the trainer's own (`_stratified_passes` with the run's seed)."""
    from stepjudge.train.core.config import batch_plan
    from stepjudge.train.judge import JudgeRLConfig, _stratified_passes

    cfg = JudgeRLConfig(**{**rl, "model": "unused", "train_data": "unused", "seed": seed, "out": "unused"})
    if not cfg.stratify_batches:
        raise SystemExit("rl.stratify_batches is off: TRL shuffles the prompts, so their order is not known here")
    if cfg.max_steps <= 0:
        raise SystemExit("rl.max_steps must be set: the number of prompts seen comes from it")
    n = round(cfg.max_steps * batch_plan(cfg, 1)["prompts_per_update"])
    ordered, _ = _stratified_passes(rows, cfg, 1)
    return ordered[:n]


def noise_counts(seen: list[dict]) -> dict[str, int]:
    """Prompts seen, by MC label, and how many of them the exact truth contradicts."""
    known = [r for r in seen if r.get("truth") is not None]
    return {"prompts": len(seen),
            "negative": sum(r["label"] == "Negative" for r in seen),
            "with_truth": len(known),
            "noisy": sum(r["truth"] != r["label"] for r in known),
            "negative_but_right": sum(r["label"] == "Negative" and r["truth"] == "Positive" for r in known),
            "positive_but_wrong": sum(r["label"] == "Positive" and r["truth"] == "Negative" for r in known)}


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser(__doc__, ExperimentConfig)
    parser.add_argument("--splits", nargs="+", default=["balanced", "unbalanced"],
                        help="judge-data splits under <out>/data (balanced: stepwiser-cot; unbalanced: -unbal)")
    parser.add_argument("--save", help="write the counts to this JSON file")
    args = parser.parse_args(argv)
    cfg = experiment_config(args)
    report = {}
    for split in args.splits:
        path = Path(cfg.out) / "data" / split / "train.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for seed in args.seeds:
            counts = noise_counts(prompts_seen(rows, cfg.rl, seed))
            report[f"{split}/seed{seed}"] = counts
            print(f"{split:10s} seed {seed}: {json.dumps(counts)}")
    if args.save:
        atomic_write_json(args.save, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
