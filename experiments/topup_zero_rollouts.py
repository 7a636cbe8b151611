"""More Monte-Carlo rollouts where an annotation saw no success: the cheap cure for M = 4's Negative noise.

With M = 4 rollouts a prefix whose true success rate is 0.25 shows Q̂ = 0 a third of the time, and every
label scheme calls the chunk before it Negative. On the arith annotation (experiments/annotate_arith_mc.yaml,
rel-effective) 40 % of the Negative-labelled chunks with a known truth are right chunks, while Positive labels
are 96 % right. GRPO on such labels rewards a judge for writing ``Match: no`` under two identical lines,
which undoes the check the warm-up taught (docs/judge_training.md). The paper uses M = 16 everywhere; this
spends extra rollouts only on prefixes with Q̂ = 0, where a label can still flip, and re-labels:

    python experiments/topup_zero_rollouts.py --annotate experiments/annotate_arith_mc.yaml \\
        --annotations runs/cache/annotate/<hash>/annotations.jsonl --extra 4 --out runs/exp/annotate_topup4

Uses only Monte-Carlo information (no truth). Resumable: finished blocks are appended to
``<out>/progress.jsonl`` and skipped on a re-run; the new ``annotations.jsonl`` is written atomically at the
end, beside a ``topup.json`` with label/truth agreement before and after.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from stepjudge.utils.io import atomic_write_json, atomic_write_text, read_jsonl


def zero_prefixes(records: list[dict]) -> list[tuple[str, int, int]]:
    """(problem_id, sample_index, prefix index) of every annotated prefix with no successful rollout."""
    return [(r["problem_id"], r["sample_index"], i) for r in records if r.get("status") == "annotated"
            for i, w in enumerate(r["rollout_successes"]) if w == 0]


def relabel(record: dict, extra_wins: dict[int, int], extra: int, *, gamma: float, alpha: float, n: int) -> dict:
    """``record`` with ``extra`` more rollouts (``extra_wins[i]`` successes) on the listed prefixes: Q̂ is
    successes / rollouts per prefix and every scheme's labels are recomputed from it."""
    from stepjudge.annotate.labels import all_labels

    m = record["rollout"]["m"]
    used = list(record.get("rollouts_used") or [m] * len(record["rollout_successes"]))
    wins = list(record["rollout_successes"])
    for i, w in extra_wins.items():
        wins[i] += w
        used[i] += extra
    q = [w / d for w, d in zip(wins, used, strict=True)]
    return {**record, "rollout_successes": wins, "rollouts_used": used, "q_init": q[0], "q": q[1:],
            "rollouts": sum(used), "labels": all_labels(q[1:], q_init=q[0], gamma=gamma, alpha=alpha, n=n),
            "topup": {"extra": extra, "prefixes": sorted(extra_wins)}}


def truth_agreement(records: list[dict], scheme: str) -> dict:
    """Counts of (label, truth) over chunks whose exact truth is known (right before the first error,
    wrong at it; after it the truth is undefined)."""
    c: Counter = Counter()
    for r in records:
        if r.get("status") != "annotated" or not r.get("truth"):
            continue
        fe = r["truth"]["first_error"]  # -1: no wrong chunk; None: the task could not tell
        if fe is None:
            continue
        for i, lab in enumerate(r["labels"][scheme]):
            if 0 <= fe < i:
                continue
            truth = 0 if i == fe else 1
            c[f"label{lab}_truth{truth}"] += 1
    neg = c["label0_truth0"] + c["label0_truth1"]
    pos = c["label1_truth1"] + c["label1_truth0"]
    return {**c, "negative_precision": c["label0_truth0"] / neg if neg else None,
            "positive_precision": c["label1_truth1"] / pos if pos else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotate", required=True, help="the annotate YAML the annotations came from")
    ap.add_argument("--annotations", required=True, help="annotations.jsonl to top up")
    ap.add_argument("--out", required=True, help="folder for the topped-up annotations.jsonl")
    ap.add_argument("--extra", type=int, default=4, help="extra rollouts per zero prefix")
    ap.add_argument("--block", type=int, default=256, help="prefixes per engine call (one resume unit)")
    ap.add_argument("--seed", type=int, default=1, help="sampling seed (block b uses seed + b)")
    ap.add_argument("--scheme", default="rel-effective", help="scheme for the agreement report")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from stepjudge.annotate.groups import AnnotateConfig, load_annotation_problems
    from stepjudge.config import build_config
    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine
    from stepjudge.grading import Grader
    from stepjudge.segment.chunks import prefix_text
    from stepjudge.tasks import get_task

    cfg = build_config(AnnotateConfig, args.annotate)
    records = read_jsonl(args.annotations)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = out / "progress.jsonl"
    done: dict[tuple[str, int, int], int] = {}
    if progress.exists():
        for line in read_jsonl(progress, allow_empty=True):
            done[(line["problem_id"], line["sample_index"], line["prefix"])] = line["wins"]
    todo = [z for z in zero_prefixes(records) if z not in done]
    problems = {p.id: p for p in load_annotation_problems(cfg)}
    by_key = {(r["problem_id"], r["sample_index"]): r for r in records}
    task = get_task(cfg.problems)
    engine = HFEngine(cfg.policy, num_threads=cfg.engine.num_threads, max_batch_rows=cfg.engine.max_batch_rows)
    t0 = time.perf_counter()
    tokens = 0
    with Grader() as grader, progress.open("a") as f, tqdm(total=len(todo), desc="top-up prefixes") as bar:
        for b in range(0, len(todo), args.block):
            block = todo[b:b + args.block]
            bases = [task.solver_prompt(problems[pid], cfg.prompt_style, engine) for pid, _, _ in block]
            prefixes = [prefix_text(by_key[(pid, si)]["chunks"], i) for pid, si, i in block]
            results = engine.generate([base + pre for base, pre in zip(bases, prefixes, strict=True)],
                                      SamplingParams(n=args.extra, temperature=cfg.rollout_temperature,
                                                     max_tokens=cfg.rollout_max_tokens, stop=cfg.stop,
                                                     seed=args.seed + b // args.block))
            tokens += sum(c.num_tokens for r in results for c in r.completions)
            pairs = [(pre + c.text, problems[pid]) for (pid, _, _), pre, r in zip(block, prefixes, results, strict=True)
                     for c in r.completions]
            grades = task.grade(grader, pairs)
            for k, (pid, si, i) in enumerate(block):
                wins = sum(g.correct for g in grades[k * args.extra:(k + 1) * args.extra])
                done[(pid, si, i)] = wins
                f.write(json.dumps({"problem_id": pid, "sample_index": si, "prefix": i, "wins": wins}) + "\n")
            f.flush()
            bar.update(len(block))
    engine.close()
    extra_by_record: dict[tuple[str, int], dict[int, int]] = {}
    for (pid, si, i), w in done.items():
        extra_by_record.setdefault((pid, si), {})[i] = w
    new = [relabel(r, extra_by_record[(r["problem_id"], r["sample_index"])], args.extra, gamma=cfg.gamma,
                   alpha=cfg.alpha, n=cfg.best_of_n)
           if (r["problem_id"], r["sample_index"]) in extra_by_record else r for r in records]
    atomic_write_text(out / "annotations.jsonl", "".join(json.dumps(r) + "\n" for r in new))
    summary = {"source": args.annotations, "extra": args.extra, "zero_prefixes": len(done),
               "zero_prefixes_with_a_success": sum(w > 0 for w in done.values()),
               "seconds_this_run": round(time.perf_counter() - t0, 1), "rollout_tokens_this_run": tokens,
               "scheme": args.scheme, "before": truth_agreement(records, args.scheme),
               "after": truth_agreement(new, args.scheme)}
    atomic_write_json(out / "topup.json", summary)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
