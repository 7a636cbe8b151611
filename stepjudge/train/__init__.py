"""Training entry points, all on TRL: chunk-format SFT of the policy (``segment``), RL of the
generative stepwise judge with GRPO + clip-higher (``judge``), the discriminative "+"/"-" SFT
baseline (``disc_sft``) and policy SFT on selected samples (``policy_sft``). The method-agnostic layer
they stand on (run configs, TRL-args translation, trainer builders, the shared finalisation) is
:mod:`stepjudge.train.core`; reward functions and their registry are :mod:`stepjudge.train.rewards`."""

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
