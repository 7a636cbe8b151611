"""Training entry points (TRL-based): segmentation SFT of the policy; judge training comes later."""

from stepjudge.train.segment import SegmentSFTConfig, find_last_checkpoint, load_sft_records, train_segment

__all__ = ["SegmentSFTConfig", "find_last_checkpoint", "load_sft_records", "train_segment"]
