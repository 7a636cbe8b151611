"""``stepjudge critique-data`` and ``stepjudge refine``: Critique-RL's data building and its inference loop."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepjudge.cli.common import Command

DATA_DESCRIPTION = """\
Build every data set Critique-RL needs (docs/critique_rl.md) into --out:
  pool.jsonl          the actor's response pool: --samples responses per question at --temperature (paper
                      10 at T 0.7), graded; correct and incorrect kept; resumable, one line per question
  rl_rows.jsonl       critic RL rows (critic prompt, truth, response, problem) for `stepjudge train critic`
  heldout_rows.jsonl  the same rows for held-out questions (--heldout-fraction), for `stepjudge refine`
  critic_sft.jsonl    critiques written from exact step truth (arith) and, with --teacher.* set, teacher
                      critiques kept only when the actor's refinement with them ends correct
  actor_sft.jsonl     actor solve rows and refine rows (response + critique -> correct solution)
  teacher.jsonl, stats.json
SFT files are chat prompt-completion rows: train them with `stepjudge train segment --data <file>`.

examples:
  stepjudge critique-data --out runs/critique-data --arith.n 200 --samples 10 --actor.model smollm2-135m
  stepjudge critique-data --problems gsm8k:train --actor.model runs/actor-sft/final --out runs/cd-gsm8k \\
      --teacher.kind openai --teacher.model Qwen/Qwen2.5-3B-Instruct --teacher.base-url http://gpu0:8000/v1
"""

REFINE_DESCRIPTION = """\
The Critique-RL loop at inference: the actor's response -> the critic's critique -> the actor's refinement,
for --rounds rounds (iterative refinement), greedy throughout, with any critic and actor engines
(--critic.*, --actor.*; the actor must render chat prompts: for an openai actor give --actor.tokenizer).
Responses come from --rows (critique-data's heldout_rows.jsonl) or are written by the actor for --problems.
--out receives refine.jsonl (one line per item; re-running resumes) and summary.json: Acc, Acc@Refine, delta,
delta c->i, delta i->c (shares of the whole set) and Acc@Dis (parseable verdicts), per round and overall.

examples:
  stepjudge refine --rows runs/critique-data/heldout_rows.jsonl --actor.model runs/actor-sft/final \\
      --critic.model runs/critic-rl-cpu/stage2/final --out runs/refine-cpu --rounds 2
  stepjudge refine --problems math500 --actor.kind openai --actor.base-url http://gpu0:8000/v1 \\
      --actor.model actor --actor.tokenizer Qwen/Qwen2.5-7B --critic.model runs/critic/stage2/final --out runs/r
"""


def run_data(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.judge.critique_data import build_critique_data

    print(json.dumps(build_critique_data(config), indent=1))
    print(f"wrote {config.out}/")
    return 0


def run_refine_verb(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.infer.refine import run_refine

    print(json.dumps(run_refine(config, progress=not args.no_progress), indent=1))
    return 0


VERBS = (
    Command("critique-data", "Critique-RL data: actor pool, critic/actor SFT rows, critic RL rows", DATA_DESCRIPTION,
            "stepjudge.judge.critique_data:CritiqueDataConfig", run_data),
    Command("refine", "response -> critique -> refinement, one or several rounds", REFINE_DESCRIPTION,
            "stepjudge.infer.refine:RefineConfig", run_refine_verb, progress=True),
)
