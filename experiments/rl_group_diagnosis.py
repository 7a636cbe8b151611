"""Where a judge's GRPO gradient comes from: sample G verdicts per training prompt, as the RL step does, and
split the groups by whether the prompt's Monte-Carlo label agrees with the exact truth.

    python experiments/rl_group_diagnosis.py --judge runs/exp/stepwiser_cpu_answers/seed0/warmup-cot/final \\
        --train runs/exp/stepwiser_cpu_answers/data/balanced/train.jsonl --per-kind 96 --out logs/rl_groups.json

A group carries gradient only when its rewards disagree (GRPO's group-normalised advantage is 0 otherwise,
and dynamic sampling drops it). If most label-truth disagreements give mixed groups while the judge already
agrees with the truth, RL from that judge is pulled toward the labels' noise. Prints, per kind (``noisy``:
label != truth, ``clean``: label == truth), the number of mixed groups and the mean reward, and writes every
group's verdicts, rewards and first sample to ``--out``.
"""
from __future__ import annotations

import argparse
import random
from collections import Counter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", required=True, help="the judge checkpoint (e.g. a warm-up's final/)")
    ap.add_argument("--train", required=True, help="the RL train split (judge-data rows with `truth`)")
    ap.add_argument("--per-kind", type=int, default=96, help="prompts drawn per kind (noisy / clean)")
    ap.add_argument("--group-size", type=int, default=8, help="G samples per prompt")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--variant", default="reference", help="the warm-up variant the judge was taught")
    ap.add_argument("--prompt", default="compact", help="the warm-up prompt the judge was taught")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine
    from stepjudge.grading.extract import extract_verdict
    from stepjudge.judge.warmup import with_warmup_prompts
    from stepjudge.utils.io import atomic_write_json, read_jsonl

    rows = [r for r in read_jsonl(args.train) if r.get("truth") is not None]
    rng = random.Random(args.seed)
    noisy = [r for r in rows if r["truth"] != r["label"]]
    clean = [r for r in rows if r["truth"] == r["label"]]
    pick = rng.sample(noisy, min(args.per_kind, len(noisy))) + rng.sample(clean, min(args.per_kind, len(clean)))
    pick = with_warmup_prompts(pick, {"variant": args.variant, "prompt": args.prompt})
    engine = HFEngine(args.judge)
    try:
        results = engine.generate([r["prompt"] for r in pick], SamplingParams(
            n=args.group_size, temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed))
    finally:
        engine.close()
    stats: Counter = Counter()
    groups = []
    for row, res in zip(pick, results, strict=True):
        votes = [extract_verdict(t) for t in res.texts]
        rewards = [float(v == row["label"]) for v in votes]
        kind = "noisy" if row["truth"] != row["label"] else "clean"
        stats[kind, "n"] += 1
        stats[kind, "mixed"] += 0 < sum(rewards) < len(rewards)
        stats[kind, "reward"] += sum(rewards) / len(rewards)
        groups.append({"kind": kind, "label": row["label"], "truth": row["truth"], "votes": votes,
                       "rewards": rewards, "texts": res.texts})
    summary = {kind: {"prompts": stats[kind, "n"], "mixed_groups": stats[kind, "mixed"],
                      "mean_reward": round(stats[kind, "reward"] / stats[kind, "n"], 3) if stats[kind, "n"] else None,
                      "label_truth": dict(Counter(f"{g['label']}/{g['truth']}" for g in groups if g["kind"] == kind))}
               for kind in ("noisy", "clean")}
    print(summary)
    atomic_write_json(args.out, {"args": vars(args), "summary": summary, "groups": groups})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
