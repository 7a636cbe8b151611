"""What CLI verbs share: the declared YAML-only settings and the flags that are not config settings."""

from __future__ import annotations

import argparse

# The only config fields without a command-line flag, per verb: free-form mappings that are set in
# YAML (tests/cli checks that every other field of every verb's config has a flag).
YAML_ONLY: dict[str, tuple[str, ...]] = {
    "pipeline": ("annotate", "judge_data", "judge", "processbench", "chunk_reset", "best_of_n", "selection"),
}


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: a display choice, not a setting of the run (so not in the config)."""
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
