"""``stepjudge train <target>``: fine-tuning entry points (TRL under the hood).

Targets so far: ``segment`` (SFT a policy to write ``<chunk>`` blocks) and ``segment-data`` (build
that SFT data with a segmenter LLM). Each target is one ``_register_*`` function plus a handler, so a
new one (e.g. ``train judge``) is added beside them without touching the others.
``judge`` (GRPO training of a generative stepwise judge) was added that way.
``disc-sft`` (SFT of the discriminative "+"/"-" judge baseline) too.
"""

from __future__ import annotations

import argparse
import json

from stepjudge.cli.common import ENGINE_KEYS, add_engine_flags, load_yaml, merge_flags

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
  stepjudge train segment --config configs/segment_sft.yaml --learning-rate 2e-5
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
  stepjudge train segment-data --engine openai --base-url http://gpu-box:8000/v1 \\
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

DISC_SFT_KEYS = {k: k for k in (
    "model", "train_data", "out", "learning_rate", "epochs", "max_steps", "per_device_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "logging_steps", "save_steps", "save_total_limit",
    "use_cpu", "bf16", "gradient_checkpointing")}

SEGMENT_KEYS = {k: k for k in (
    "model", "data", "out", "learning_rate", "epochs", "max_steps", "per_device_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "logging_steps", "save_steps", "save_total_limit",
    "use_cpu", "bf16", "gradient_checkpointing")}

JUDGE_KEYS = {k: k for k in (
    "model", "train_data", "eval_data", "out", "learning_rate", "num_generations", "per_device_batch_size",
    "gradient_accumulation_steps", "steps_per_generation", "num_processes", "max_steps", "epochs",
    "max_prompt_length", "max_completion_length", "temperature", "top_p", "epsilon", "epsilon_high", "beta",
    "loss_type", "scale_rewards", "seed", "logging_steps", "save_steps", "save_total_limit", "eval_steps",
    "per_device_eval_batch_size", "use_vllm", "vllm_mode", "vllm_server_base_url",
    "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "bf16", "gradient_checkpointing", "use_cpu",
    "heldout_data", "heldout_max_tokens", "stratify_batches", "response_prefix",
    "reward", "log_completions")}

SEGMENT_DATA_KEYS = {**{k: k for k in ("solutions", "segmenter", "out", "tries", "temperature", "max_tokens",
                                       "seed", "batch_size", "limit")}, **ENGINE_KEYS}


def register(subparsers) -> None:
    p_train = subparsers.add_parser("train", help="fine-tune policies and judges",
                                    description="Fine-tune policies and judges (TRL).")
    sub = p_train.add_subparsers(dest="train_target", metavar="<target>")
    _register_segment(sub)
    _register_segment_data(sub)
    _register_judge(sub)
    _register_disc_sft(sub)
    _register_judge_data(sub)
    p_train.set_defaults(func=lambda a: p_train.print_help() or 2)


def add_sft_run_flags(p: argparse.ArgumentParser, unit: str, default_max_length: int) -> None:
    """The optimisation/checkpoint flags of every SFT-style target (fields of ``SFTRunConfig``)."""
    p.add_argument("--learning-rate", type=float, help="default 1e-5 (paper)")
    p.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    p.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs (default -1: off)")
    p.add_argument("--per-device-batch-size", type=int, help=f"{unit}s per forward pass (default 4)")
    p.add_argument("--gradient-accumulation-steps", type=int, help="default 8 (global batch 32 as the paper)")
    p.add_argument("--max-length", type=int,
                   help=f"tokens per {unit}, longer ones cut (default {default_max_length})")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--logging-steps", type=int, help="log every N steps (default 1)")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 50; always at the end)")
    p.add_argument("--save-total-limit", type=int, help="checkpoints kept (default 2)")
    p.add_argument("--use-cpu", action=argparse.BooleanOptionalAction, default=None,
                   help="train on CPU (default: yes when no CUDA GPU is visible)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 mixed precision (default: on for a bf16-capable GPU, off on CPU)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations to save memory (default off)")


def _register_segment(sub) -> None:
    p = sub.add_parser("segment", help="SFT a policy to write <chunk>-tagged reasoning",
                       description=SEGMENT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--model", help="policy to fine-tune: smollm2-135m (default), a checkpoint dir, a hub id")
    p.add_argument("--data", help="JSONL of prompt-completion records (from 'train segment-data')")
    p.add_argument("--out", help="run folder (checkpoints, final/, train_log.json)")
    add_sft_run_flags(p, "example", 1024)
    p.set_defaults(func=run_segment)


def _register_segment_data(sub) -> None:
    p = sub.add_parser("segment-data", help="tag correct solutions with a segmenter LLM -> SFT records",
                       description=SEGMENT_DATA_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--solutions", help='JSONL lines {"problem": ..., "solution": ...}')
    p.add_argument("--segmenter", help="model that inserts the tags (default smollm2-135m; with --engine "
                   "openai the served model name)")
    p.add_argument("--out", help="output JSONL of SFT records (written atomically)")
    p.add_argument("--tries", type=int, help="taggings sampled per solution (default 8, as the paper)")
    p.add_argument("--temperature", type=float, help="segmenter sampling temperature (default 0.7)")
    p.add_argument("--max-tokens", type=int, help="per tagging (default 1024)")
    p.add_argument("--seed", type=int, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=int, help="solutions per engine call (default: all at once)")
    p.add_argument("--limit", type=int, help="first N solutions only")
    add_engine_flags(p)
    p.set_defaults(func=run_segment_data)


def _register_judge(sub) -> None:
    p = sub.add_parser("judge", help="RL-train a generative stepwise judge (GRPO, verdict reward)",
                       description=JUDGE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--model", help="judge to train: smollm2-135m (default), a checkpoint dir, a hub id")
    p.add_argument("--train-data", help='JSONL rows {"prompt": [messages], "label": "Positive"|"Negative"}')
    p.add_argument("--eval-data", help="held-out rows in the same format (eval reward = verdict accuracy)")
    p.add_argument("--out", help="run folder (checkpoints, final/, train_log.json, curves.png, report.md)")
    p.add_argument("--heldout-data", help="held-out rows scored before and after training (report tables)")
    p.add_argument("--heldout-max-tokens", type=int, help="judge tokens when scoring held-out rows (256)")
    p.add_argument("--response-prefix", help='pre-filled start of the judge answer, e.g. "\\boxed{" (verdict-only)')
    g = p.add_argument_group("algorithm")
    g.add_argument("--learning-rate", type=float, help="default 1e-6 (paper)")
    g.add_argument("--num-generations", type=int, help="samples per prompt (default 4, paper)")
    g.add_argument("--temperature", type=float, help="rollout sampling temperature (default 1.0)")
    g.add_argument("--top-p", type=float, help="rollout nucleus sampling (default 1.0)")
    g.add_argument("--epsilon", type=float, help="lower clip bound eps_low (default 0.2)")
    g.add_argument("--epsilon-high", type=float, help="upper clip bound, clip-higher (default 0.28)")
    g.add_argument("--beta", type=float, help="KL coefficient (default 0: no reference model)")
    g.add_argument("--loss-type", choices=["dapo", "grpo", "dr_grpo", "bnpo"],
                   help="token aggregation of the loss (default dapo = verl's token-mean)")
    g.add_argument("--scale-rewards", choices=["group", "batch", "none"],
                   help="divide advantages by the group (default), batch or no std")
    g.add_argument("--reward", choices=["verdict", "verdict+format"],
                   help="verdict (default) | verdict+format: add the no-CoT ablation's -1 format penalty")
    g = p.add_argument_group("batch and schedule (batch sizes count completions)")
    g.add_argument("--per-device-batch-size", type=int,
                   help="completions per device per micro-step (default 8)")
    g.add_argument("--gradient-accumulation-steps", type=int,
                   help="micro-steps per optimizer update (default 1)")
    g.add_argument("--stratify-batches", action=argparse.BooleanOptionalAction, default=None,
                   help="every rollout batch keeps the data's class mix (default off: random mixes)")
    g.add_argument("--steps-per-generation", type=int,
                   help="micro-steps served by one rollout (default: = accumulation, 1 update per rollout)")
    g.add_argument("--num-processes", type=int,
                   help="GPUs the batch arithmetic assumes (warned if different)")
    g.add_argument("--max-steps", type=int, help="optimizer updates; overrides --epochs (default -1: off)")
    g.add_argument("--epochs", type=float, help="passes over the prompts (default 1)")
    g.add_argument("--max-prompt-length", type=int, help="longer prompts are dropped (default 3096)")
    g.add_argument("--max-completion-length", type=int, help="judge output tokens (default 3096)")
    g.add_argument("--seed", type=int, help="default 0")
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--logging-steps", type=int, help="log every N updates (default 1)")
    g.add_argument("--save-steps", type=int,
                   help="checkpoint every N updates (default 50; always at the end)")
    g.add_argument("--save-total-limit", type=int, help="checkpoints kept (default 2)")
    g.add_argument("--eval-steps", type=int, help="evaluate every N updates (default: --save-steps)")
    g.add_argument("--per-device-eval-batch-size", type=int,
                   help="eval completions per device (default: train size rounded up to whole groups)")
    g.add_argument("--log-completions", action=argparse.BooleanOptionalAction, default=None,
                   help="print sample completions with their rewards at each log")
    g = p.add_argument_group("hardware")
    g.add_argument("--use-cpu", action=argparse.BooleanOptionalAction, default=None,
                   help="train on CPU (default: yes when no CUDA GPU is visible)")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 mixed precision (default: on for a bf16-capable GPU, off on CPU)")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations to save memory (default off)")
    g.add_argument("--use-vllm", action=argparse.BooleanOptionalAction, default=None,
                   help="generate rollouts with vLLM (GPU; default off)")
    g.add_argument("--vllm-mode", choices=["colocate", "server"],
                   help="colocate (default): vLLM in each training process; server: a `trl vllm-serve`")
    g.add_argument("--vllm-server-base-url", help="server mode: e.g. http://gen-node:8000")
    g.add_argument("--vllm-gpu-memory-utilization", type=float, help="colocate: vLLM's GPU share (0.3)")
    g.add_argument("--vllm-tensor-parallel-size", type=int, help="colocate: GPUs per vLLM engine (1)")
    p.set_defaults(func=run_judge)


def run_segment(args: argparse.Namespace) -> int:
    from stepjudge.train.segment import SegmentSFTConfig, train_segment

    base = load_yaml(args.config) if args.config else {}
    config = SegmentSFTConfig(**merge_flags(base, args, SEGMENT_KEYS))
    final = train_segment(config)
    print(f"model: {final}\ntraining log: {final.parent / 'train_log.json'}")
    return 0


def run_segment_data(args: argparse.Namespace) -> int:
    from stepjudge.segment.self_segment import SegmentDataConfig, segment_solutions_file

    base = load_yaml(args.config) if args.config else {}
    config = SegmentDataConfig(**merge_flags(base, args, SEGMENT_DATA_KEYS))
    stats = segment_solutions_file(config)
    print(json.dumps(stats, indent=2))
    return 0


def run_judge(args: argparse.Namespace) -> int:
    from stepjudge.train.judge import JudgeRLConfig, train_judge

    base = load_yaml(args.config) if args.config else {}
    config = JudgeRLConfig(**merge_flags(base, args, JUDGE_KEYS))
    final = train_judge(config)
    print(f"model: {final}\ntraining log: {final.parent / 'train_log.json'}\n"
          f"curves: {final.parent / 'curves.png'}\nreport: {final.parent / 'report.md'}")
    return 0


def _register_disc_sft(sub) -> None:
    p = sub.add_parser("disc-sft", help='SFT a discriminative "+"/"-" stepwise judge (baseline)',
                       description=DISC_SFT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--model", help="judge to train: smollm2-135m (default), a checkpoint dir, a hub id")
    p.add_argument("--train-data", help='JSONL rows {"messages": [...]} with "+"/"-" assistant turns')
    p.add_argument("--out", help="run folder (checkpoints, final/, train_log.json)")
    add_sft_run_flags(p, "conversation", 2048)
    p.set_defaults(func=run_disc_sft)


def run_disc_sft(args: argparse.Namespace) -> int:
    from stepjudge.train.disc_sft import DiscSFTConfig, train_disc_sft

    base = load_yaml(args.config) if args.config else {}
    config = DiscSFTConfig(**merge_flags(base, args, DISC_SFT_KEYS))
    final = train_disc_sft(config)
    print(f"model: {final}\ntraining log: {final.parent / 'train_log.json'}")
    return 0


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

JUDGE_DATA_KEYS = {"annotations": "annotations", "scheme": "scheme", "balance": "balance",
                   "heldout_fraction": "heldout_fraction", "heldout_problems": "heldout_problems",
                   "max_prompt_tokens": "max_prompt_tokens", "tokenizer": "tokenizer", "seed": "seed",
                   "format": "format"}


def _register_judge_data(sub) -> None:
    p = sub.add_parser("judge-data", help="annotations -> balanced judge train/held-out sets",
                       description=JUDGE_DATA_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with any of the options below (flags override it)")
    p.add_argument("--annotations", nargs="+", help="annotations.jsonl file(s)")
    p.add_argument("--scheme", choices=["abs-q", "rel-ratio", "rel-effective"], help="default rel-effective")
    p.add_argument("--balance", action=argparse.BooleanOptionalAction, default=None,
                   help="down-sample the train majority class to 50/50 (default on)")
    p.add_argument("--heldout-fraction", type=float, help="share of problems held out (default 0.2)")
    p.add_argument("--heldout-problems", type=int, help="exact number of held-out problems")
    p.add_argument("--max-prompt-tokens", type=int, help="drop longer prompts (default 1024)")
    p.add_argument("--tokenizer", help="model whose tokenizer measures prompts (default smollm2-135m)")
    p.add_argument("--seed", type=int)
    p.add_argument("--format", choices=["generative", "discriminative", "no-cot"])
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run_judge_data)


def run_judge_data(args: argparse.Namespace) -> int:
    from stepjudge.judge.dataset import JudgeDatasetConfig, build_judge_datasets, write_datasets

    base = load_yaml(args.config) if args.config else {}
    config = JudgeDatasetConfig(**merge_flags(base, args, JUDGE_DATA_KEYS))
    result = build_judge_datasets(config)
    write_datasets(result, args.out)
    print(json.dumps(result["stats"], indent=1))
    print(f"wrote {args.out}/train.jsonl ({len(result['train'])} rows), heldout.jsonl ({len(result['heldout'])} rows)")
    return 0
