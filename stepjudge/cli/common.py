"""What CLI verbs share: the declared YAML-only settings and the flags that are not config settings."""

from __future__ import annotations

import argparse

# Config fields without a command-line flag, per verb (tests/cli checks that every other field of every
# verb's config has one). None today: the pipeline's stage sections are not fields but entries of the
# stage registry, read from the YAML.
YAML_ONLY: dict[str, tuple[str, ...]] = {}


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: a display choice, not a setting of the run (so not in the config)."""
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
