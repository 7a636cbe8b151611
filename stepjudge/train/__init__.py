"""Training entry points, all on TRL: chunk-format SFT of the policy (``segment``), RL of the
generative stepwise judge with GRPO + clip-higher (``judge``), and the discriminative "+"/"-" SFT
baseline (``disc_sft``)."""

from stepjudge.train.segment import SegmentSFTConfig, find_last_checkpoint, load_sft_records, train_segment

__all__ = ["SegmentSFTConfig", "find_last_checkpoint", "load_sft_records", "train_segment", "JudgeRLConfig",
           "train_judge", "DiscSFTConfig", "train_disc_sft"]


def __getattr__(name: str):  # the GRPO trainer imports are heavy: load them on first use
    import importlib

    if name in ("JudgeRLConfig", "train_judge"):
        return getattr(importlib.import_module("stepjudge.train.judge"), name)
    if name in ("DiscSFTConfig", "train_disc_sft"):
        return getattr(importlib.import_module("stepjudge.train.disc_sft"), name)
    raise AttributeError(name)
