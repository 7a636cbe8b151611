"""``stepjudge train <target>``: fine-tuning entry points (TRL under the hood).

Targets so far: ``segment`` (SFT a policy to write ``<chunk>`` blocks) and ``segment-data`` (build
that SFT data with a segmenter LLM). Each target is one ``_register_*`` function plus a handler, so a
new one (e.g. ``train judge``) is added beside them without touching the others.
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

SEGMENT_KEYS = {k: k for k in (
    "model", "data", "out", "learning_rate", "epochs", "max_steps", "per_device_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "logging_steps", "save_steps", "save_total_limit",
    "use_cpu", "bf16", "gradient_checkpointing")}

SEGMENT_DATA_KEYS = {**{k: k for k in ("solutions", "segmenter", "out", "tries", "temperature", "max_tokens",
                                       "seed", "batch_size", "limit")}, **ENGINE_KEYS}


def register(subparsers) -> None:
    p_train = subparsers.add_parser("train", help="fine-tune policies and judges",
                                    description="Fine-tune policies and judges (TRL).")
    sub = p_train.add_subparsers(dest="train_target", metavar="<target>")
    _register_segment(sub)
    _register_segment_data(sub)
    p_train.set_defaults(func=lambda a: p_train.print_help() or 2)


def _register_segment(sub) -> None:
    p = sub.add_parser("segment", help="SFT a policy to write <chunk>-tagged reasoning",
                       description=SEGMENT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--model", help="policy to fine-tune: smollm2-135m (default), a checkpoint dir, a hub id")
    p.add_argument("--data", help="JSONL of prompt-completion records (from 'train segment-data')")
    p.add_argument("--out", help="run folder (checkpoints, final/, train_log.json)")
    p.add_argument("--learning-rate", type=float, help="default 1e-5 (paper)")
    p.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    p.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs (default -1: off)")
    p.add_argument("--per-device-batch-size", type=int, help="examples per forward pass (default 4)")
    p.add_argument("--gradient-accumulation-steps", type=int, help="default 8 (global batch 32 as the paper)")
    p.add_argument("--max-length", type=int, help="tokens per example, longer ones truncated (default 1024)")
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
