"""``stepjudge train <target>``: fine-tuning entry points (TRL under the hood).

Each target is one pydantic config (``SegmentSFTConfig``, ``SegmentDataConfig``, ``JudgeRLConfig``,
``DiscSFTConfig``, ``JudgeDatasetConfig``) and one library call; the flags are derived from the config's
fields (:func:`stepjudge.config.add_config_flags`), so a field added to a config is a flag at once.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import Field

from stepjudge.cli.common import Command, CommandGroup, print_trained
from stepjudge.judge.dataset import JudgeDatasetConfig

SEGMENT_DESCRIPTION = """\
Fine-tune a policy so it writes its reasoning as <chunk>...</chunk> blocks followed by a \\boxed{}
answer (StepWiser's self-segmentation SFT). Uses TRL's SFTTrainer on prompt-completion records
(from 'stepjudge train segment-data'), with the loss on the completion only. Defaults follow the
paper: lr 1e-5, global batch 32 (4 per device x 8 accumulation).

--out receives checkpoint-N/ folders, final/ (a safetensors model any stepjudge command loads) and
train_log.json. Re-running the same command resumes from the newest checkpoint.

examples:
  stepjudge train segment --data runs/seg/sft.jsonl --out runs/seg-sft
  stepjudge train segment --model tiny-random --data sft.jsonl --out /tmp/try --max-steps 2 \\
      --per-device-batch-size 2 --gradient-accumulation-steps 1
  stepjudge train segment --data runs/seg/sft.jsonl --out runs/seg-sft --learning-rate 2e-5 --seed 1
"""


SEGMENT_DATA_DESCRIPTION = """\
Build segmentation SFT data: a segmenter LLM inserts <chunk> tags into correct solutions (several
tries each); a tagging is kept only if it is valid and deleting the tags gives back the original
text exactly. Kept taggings are written as TRL prompt-completion records (the chunked-solver prompt
of the problem -> the tagged solution) for 'stepjudge train segment'; the counts of kept and
rejected taggings are printed as JSON.

Input: JSONL lines {"problem": "...", "solution": "..."} (correct solutions only).

examples:
  stepjudge train segment-data --solutions correct.jsonl --segmenter smollm2-135m --out sft.jsonl --tries 8
  stepjudge train segment-data --engine.kind openai --engine.base-url http://gpu-box:8000/v1 \\
      --segmenter meta-llama/Llama-3.1-70B-Instruct --solutions correct.jsonl --out sft.jsonl
"""


JUDGE_DESCRIPTION = """\
RL-train a generative stepwise judge with TRL's GRPO (StepWiser): the judge analyses a new reasoning
chunk given the problem and earlier chunks, ends with \\boxed{Positive} or \\boxed{Negative}, and earns
reward 1 when that verdict matches the chunk's Monte-Carlo label (0 otherwise, also when unparseable).
Defaults follow the paper: lr 1e-6, 4 samples per prompt, clip-higher eps 0.2 / 0.28, no KL, prompts and
completions up to 3096 tokens. Batch sizes count COMPLETIONS, as in TRL; one rollout serves
steps_per_generation / gradient_accumulation_steps optimizer updates (the paper: 1024 prompts per
rollout, 4 updates of 256). The batch plan (prompts per update and per rollout) is logged at start.

Input: JSONL rows {"prompt": [chat messages], "label": "Positive"|"Negative", ...}; prompts longer than
--max-prompt-length tokens are dropped. --out receives checkpoint-N/ folders, final/ (a safetensors
model that 'stepjudge eval processbench --judge' and 'stepjudge serve --model' load), train_log.json
and curves.png (reward, entropy, verdict shares, frac_reward_zero_std, clip ratios, lengths).
Re-running the same command resumes from the newest checkpoint.

examples:
  stepjudge train judge --config configs/judge_rl_cpu.yaml --train-data runs/judge-data/train.jsonl \\
      --out runs/judge-rl-cpu
  stepjudge train judge --model tiny-random --train-data rows.jsonl --out /tmp/try --max-steps 2 \\
      --num-generations 2 --per-device-batch-size 4 --max-completion-length 16
  accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m stepjudge.cli.main \\
      train judge --config configs/judge_rl_gpu_qwen7b.yaml --train-data train.jsonl --out runs/j7b
"""


DISC_SFT_DESCRIPTION = """\
SFT the discriminative judge baseline (StepWiser App. A.1): a PRM that answers "+" (chunk is fine) or
"-" (chunk has a mistake) after every chunk of a solution. Each input row is one solution as a
multi-turn chat -- user turn = chunk (the first with the problem), assistant turn = its "+"/"-" label
-- as built by stepjudge.judge.dataset.build_judge_datasets with format: discriminative (its
train.jsonl). TRL's SFTTrainer trains with
assistant_only_loss, so only the "+"/"-" tokens and the end-of-turn carry loss; chat templates without
{% generation %} markers (SmolLM2) are patched for training, and final/ keeps the original template.
Defaults follow the paper: lr 1e-5, global batch 32 (4 per device x 8 accumulation).

Input: JSONL rows {"messages": [{"role": "user", ...}, {"role": "assistant", "content": "+"}, ...]}.
--out receives checkpoint-N/ folders, final/ (a safetensors model any stepjudge command loads) and
train_log.json. Re-running the same command resumes from the newest checkpoint. Score it with
stepjudge.eval.judge_heldout.evaluate_judge_rows(..., protocol="discriminative").

examples:
  stepjudge train disc-sft --train-data runs/judge-data-disc/train.jsonl --out runs/disc-sft
  stepjudge train disc-sft --model tiny-random --train-data disc.jsonl --out /tmp/try --max-steps 2 \\
      --per-device-batch-size 2 --gradient-accumulation-steps 1 --max-length 512
"""


JUDGE_WARMUP_DESCRIPTION = """\
Warm a stepwise judge up before RL: SFT on its own output format with both verdicts, from the balanced,
Monte-Carlo-labelled judge rows of `train judge-data`. Without it a small judge answers Positive almost
always, every GRPO group on a Negative chunk agrees, and RL learns nothing (docs/judge_training.md).
Variants (--warmup.variant): verdict (the completion is the boxed verdict: no-CoT judge), recompute (a
short CoT re-computing each `a op b = c` claim of the chunk, then the verdict), rejection-sampling (the
paper's RS-FT: the judge's own samples whose verdict matches the label). --warmup.prompt compact uses a
shorter judge prompt for CPU training. Rows of held-out problems are refused. Then train RL from
--out/final with `prompt_from_warmup` set to the same warm-up settings.

--out receives final/, train_log.json, curves.png, warmup_stats.json and, with --heldout-data,
eval_before.json / eval_after.json (greedy held-out verdicts with the warm-up's prompt).

example:
  stepjudge train judge-warmup --train-data runs/judge-data/train.jsonl \\
      --heldout-data runs/judge-data/heldout.jsonl --warmup.variant recompute --out runs/judge-warmup
"""

JUDGE_DATA_DESCRIPTION = """\
Build judge training data from `stepjudge annotate` output: one StepWiser judge prompt per (problem,
earlier chunks, new chunk), labelled by --scheme, prompts over --max-prompt-tokens dropped, a held-out
split by problem (no problem in both splits), and the train split down-sampled to 50/50 unless
--no-balance. Writes train.jsonl, heldout.jsonl and stats.json to --out.

formats: generative (GRPO rows for `train judge`), no-cot (verdict-only prompts), discriminative
(multi-turn "+"/"-" conversations for `train disc-sft`).

example:
  stepjudge train judge-data --annotations runs/annotate_arith/annotations.jsonl --scheme rel-effective \\
      --out runs/judge-data
"""

CRITIC_DESCRIPTION = """\
Train a critic with Critique-RL (two RL stages on TRL's RLOO, docs/critique_rl.md). The critic reads a
question and an actor's response and writes a step-by-step critique ending with "Correctness of the final
answer: Correct/Wrong". Stage I (--stage1-steps) pays +1 for a right final verdict and -1 for a wrong or
missing one, with a KL penalty to the starting critic. Stage II (--stage2-steps) starts from Stage I and
keeps its KL to it; the frozen actor (--actor.* engine) refines each response with each critique,
greedily, inside the reward, and the critique earns r_refine + 0.2 when its verdict is right, -1 otherwise
(--stage2-reward refine|delta|correction: the indirect baselines). Defaults follow the paper: 4 critiques
per (x, y), lr 5e-7, KL 0.01, T 0.7, 2 inner epochs, critiques up to 1536 tokens, 500 steps per stage.

Input: rl_rows.jsonl of `stepjudge critique-data`. --out receives stage1/ and stage2/ (each: final/,
train_log.json, curves.png with Acc@Dis, c->i / i->c shares, verdict shares, critique length) and
summary.json. Re-running resumes the unfinished stage and skips finished ones.

examples:
  stepjudge train critic --config configs/critic_cpu.yaml
  stepjudge train critic --model runs/critic-sft/final --train-data runs/critique-data/rl_rows.jsonl \\
      --actor.model runs/actor-sft/final --out runs/critic-rl --stage1-steps 100 --stage2-steps 100
"""

LASER_DESCRIPTION = """\
LaSeR (last-token self-rewarding) policy RL on verifiable problems with TRL's GRPO: the reward r_v is 1
for exactly one \\boxed{} answer the task grades correct; after each finished response the policy reads
one reserved token z_c (written after the first EOS) whose log-prob gives the self-reward
r_s = beta_v (log pi(z_c) - c_ref). A class-weighted MSE (alpha) pulls r_s towards r_v after w_r
updates; after w_r + w_sr updates the advantages mix in the group-normalised self-reward (tau, with the
group-std filter). --self-reward off trains plain GRPO with the same settings (the baseline).
Defaults follow the paper: 8 samples per prompt, lr 1e-6, clip 0.2/0.2, beta_v = alpha = tau = T = 0.1.

c_ref: a constant (--c-ref -23 for Qwen2.5-7B, -25 for OctoThinker-3B) or, unset, measured on the
starting model into --out/c_ref.json. --calibrate only measures it: mean +- sd of log pi_ref(z_c | x, y)
over --calibrate-pairs sampled pairs, printed and written to --out/c_ref.json.

--out receives checkpoint-N/, final/, train_log.json and curves.png (reward, self-reward accuracy, mean
r_s per class, MSE, share of groups filtered). Re-running the same command resumes. Score the model with
'stepjudge eval self-verify'. Design, CPU result and GPU recipes: docs/laser.md.

examples:
  stepjudge train laser --config configs/laser_cpu.yaml --out runs/laser-cpu
  stepjudge train laser --config configs/laser_cpu.yaml --out runs/grpo-cpu --self-reward off
  stepjudge train laser --config configs/laser_cpu.yaml --out runs/laser-cpu --calibrate
  accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m stepjudge.cli.main \\
      train laser --config configs/laser_gpu_qwen7b.yaml --out runs/laser-qwen7b
"""


class JudgeDataCommand(JudgeDatasetConfig):
    """``stepjudge train judge-data``: the dataset builder's settings plus where to write the sets."""

    out: str = Field(description="output folder for train.jsonl, heldout.jsonl and stats.json")


def run_segment(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.segment import train_segment

    return print_trained(train_segment(config))


def run_segment_data(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.segment.self_segment import segment_solutions_file

    print(json.dumps(segment_solutions_file(config), indent=2))
    return 0


def run_judge(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.judge import train_judge

    return print_trained(train_judge(config), "report.md")


def run_judge_warmup(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.judge_warmup import train_judge_warmup

    return print_trained(train_judge_warmup(config), "warmup_stats.json")


def run_disc_sft(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.disc_sft import train_disc_sft

    return print_trained(train_disc_sft(config))


def run_critic(config: Any, args: argparse.Namespace) -> int:
    from stepjudge.train.critic import train_critic

    finals = train_critic(config)
    print("\n".join(f"{stage}: {final}" for stage, final in finals.items()))
    print(f"summary: {config.out}/summary.json")
    return 0


def run_laser(config: Any, args: argparse.Namespace) -> int:
    if args.calibrate:
        from pathlib import Path

        from stepjudge.train.laser_run import calibrate_c_ref
        from stepjudge.utils.io import atomic_write_json

        measured = calibrate_c_ref(config)
        Path(config.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(config.out) / "c_ref.json", measured)
        print(f"log pi_ref(z_c | x, y) = {measured['mean']:.3f} +- {measured['sd']:.3f} over {measured['n']} "
              f"pairs (z_c id {measured['z_c']}); written to {Path(config.out) / 'c_ref.json'}")
        return 0
    from stepjudge.train.laser_run import train_laser

    return print_trained(train_laser(config))


def _calibrate_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibrate", action="store_true",
                        help="only measure c_ref (mean +- sd of log pi_ref(z_c | x, y)), print it and write "
                             "--out/c_ref.json; a later run without --c-ref uses it")


def run_judge_data(config: JudgeDataCommand, args: argparse.Namespace) -> int:
    from stepjudge.judge.dataset import build_judge_datasets, write_datasets

    result = build_judge_datasets(JudgeDatasetConfig(**config.model_dump(exclude={"out"})))
    write_datasets(result, config.out)
    print(json.dumps(result["stats"], indent=1))
    print(f"wrote {config.out}/train.jsonl ({len(result['train'])} rows), "
          f"heldout.jsonl ({len(result['heldout'])} rows)")
    return 0


COMMANDS = (
    Command("segment", "SFT a policy to write <chunk>-tagged reasoning", SEGMENT_DESCRIPTION,
            "stepjudge.train.segment:SegmentSFTConfig", run_segment),
    Command("segment-data", "tag correct solutions with a segmenter LLM -> SFT records", SEGMENT_DATA_DESCRIPTION,
            "stepjudge.segment.self_segment:SegmentDataConfig", run_segment_data),
    Command("judge", "RL-train a generative stepwise judge (GRPO, verdict reward)", JUDGE_DESCRIPTION,
            "stepjudge.train.judge:JudgeRLConfig", run_judge),
    Command("judge-warmup", "SFT warm-up of a judge on its own format (before RL)", JUDGE_WARMUP_DESCRIPTION,
            "stepjudge.train.judge_warmup:JudgeWarmupConfig", run_judge_warmup),
    Command("disc-sft", 'SFT a discriminative "+"/"-" stepwise judge (baseline)', DISC_SFT_DESCRIPTION,
            "stepjudge.train.disc_sft:DiscSFTConfig", run_disc_sft),
    Command("laser", "LaSeR: GRPO with last-token self-rewarding (or the plain GRPO baseline)",
            LASER_DESCRIPTION, "stepjudge.train.laser_run:LaserConfig", run_laser, extra_flags=_calibrate_flag),
    Command("judge-data", "annotations -> balanced judge train/held-out sets", JUDGE_DATA_DESCRIPTION,
            "stepjudge.cli.train:JudgeDataCommand", run_judge_data),
    Command("critic", "Critique-RL: train a critic in two RL stages (RLOO)", CRITIC_DESCRIPTION,
            "stepjudge.train.critic:CriticRLConfig", run_critic),
)

VERBS = (CommandGroup("train", "fine-tune policies and judges", COMMANDS,
                      description="Fine-tune policies and judges (TRL)."),)
