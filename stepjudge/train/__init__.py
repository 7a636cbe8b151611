"""Training entry points, all on TRL: chunk-format SFT of the policy (``segment``) and RL of the
generative stepwise judge with GRPO + clip-higher (``judge``)."""

from stepjudge.train.segment import SegmentSFTConfig, find_last_checkpoint, load_sft_records, train_segment

__all__ = ["SegmentSFTConfig", "find_last_checkpoint", "load_sft_records", "train_segment", "JudgeRLConfig",
           "train_judge"]


def __getattr__(name: str):  # the GRPO trainer imports are heavy: load them on first use
    if name in ("JudgeRLConfig", "train_judge"):
        import importlib

        return getattr(importlib.import_module("stepjudge.train.judge"), name)
    raise AttributeError(name)
