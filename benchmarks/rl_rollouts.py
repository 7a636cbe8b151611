"""GRPO rollout generation: TRL's ``model.generate`` path vs ``engine_rollouts`` (stepjudge's hf engine).

Builds one GRPO trainer on the embedded model with judge prompts (the compact reference prompt of the
experiment's judge rows, ~150 tokens), then times ``_generate_single_turn`` for both paths on the
same prompt batches (P prompts x G samples, TRL's layout), alternating the two so machine load hits
both alike, and one whole update (generation + scoring + loss + step) with each. Prints ratios and
the 1-minute load average; writes JSON with ``--json``.

usage: python benchmarks/rl_rollouts.py [--prompts 4] [--generations 8] [--max-tokens 48] [--reps 3]
       [--rows runs/exp/stepwiser_cpu/data/balanced/train.jsonl] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", default=None, help="judge rows (JSONL); default: built-in arith judge prompts")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from stepjudge.judge.warmup import WarmupConfig, with_warmup_prompts
    from stepjudge.train.core import RLRunConfig, build_rl_trainer
    from stepjudge.utils.io import read_jsonl

    torch.set_num_threads(args.threads)
    if args.rows:
        rows = list(read_jsonl(args.rows))[: 4 * args.prompts]
    else:
        rows = [{"problem": f"Start with {i}. Add {i % 7 + 1}. Add 3.", "history": [],
                 "chunk": f"{i} + {i % 7 + 1} = {2 * i % 13}", "label": "Positive"} for i in range(4 * args.prompts)]
    rows = [{"prompt": r["prompt"], "label": r["label"]} for r in
            with_warmup_prompts(rows, WarmupConfig(variant="reference", prompt="compact"))]
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "rows.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    g, p = args.generations, args.prompts
    cfg = RLRunConfig(model=args.model, train_data=path, out=os.path.join(tmp, "run"), rewards=["verdict"],
                      max_steps=2, num_generations=g, per_device_batch_size=g * p, max_completion_length=args.max_tokens,
                      max_prompt_length=512, use_cpu=True, save_steps=100, logging_steps=1, engine_rollouts=True)
    trainer = build_rl_trainer(cfg, train_rows=rows)
    tok = trainer.processing_class
    batches = []
    for b in range(args.reps):
        ids = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True)
               for r in rows[b * p % len(rows):][:p]]
        ids = [list(x["input_ids"]) if hasattr(x, "keys") else list(x) for x in ids]
        batches.append([x for x in ids for _ in range(g)])
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.train()
    base = type(trainer).__mro__[2]  # the GRPOTrainer under the mixin
    times = {"trl_generate": [], "engine": []}
    tokens = {"trl_generate": 0, "engine": 0}
    trainer._generate_single_turn(batches[0][:g], None, {}, g)  # warm both paths
    base._generate_single_turn(trainer, batches[0][:g], None, {}, g)
    for batch in batches:
        for name in ("trl_generate", "engine"):
            t = time.perf_counter()
            if name == "engine":
                out, _ = trainer._generate_single_turn(batch, None, {}, g)
            else:
                out, _ = base._generate_single_turn(trainer, batch, None, {}, g)
            times[name].append(time.perf_counter() - t)
            tokens[name] += sum(len(c) for c in out)
    result = {"model": args.model, "prompts": p, "generations": g, "max_tokens": args.max_tokens,
              "reps": args.reps, "threads": args.threads, "load1": os.getloadavg()[0],
              "seconds": {k: sum(v) for k, v in times.items()}, "tokens": tokens,
              "tok_per_s": {k: tokens[k] / sum(times[k]) for k in times},
              "speedup_per_call": sum(times["trl_generate"]) / sum(times["engine"])}
    print(f"rollouts of {p} prompts x G={g}, up to {args.max_tokens} tokens, {args.reps} reps "
          f"(load1={result['load1']:.2f}):")
    for k in times:
        print(f"  {k:13s} {sum(times[k]) / args.reps:6.2f} s/call  {result['tok_per_s'][k]:7.1f} tok/s")
    print(f"  engine / trl generate: {result['speedup_per_call']:.2f}x faster per rollout call")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
