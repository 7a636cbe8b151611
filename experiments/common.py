"""What every experiment script shares: its command line (a YAML config and the training seeds)."""

from __future__ import annotations

import argparse


def experiment_parser(doc: str | None, default_seeds: tuple[int, ...] = (0,)) -> argparse.ArgumentParser:
    """``--config YAML`` (the script's ExperimentConfig) and ``--seeds S ...``; the script adds its own flags."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (keys: the script's ExperimentConfig)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds), help="training seeds")
    return parser
