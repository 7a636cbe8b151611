"""What every experiment script shares: its command line (a YAML config, a flag per config field, the seeds)."""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from stepjudge.config import add_config_flags, config_from_args


def experiment_parser(doc: str | None, config_model: type[BaseModel],
                      default_seeds: tuple[int, ...] = (0,)) -> argparse.ArgumentParser:
    """``--config YAML``, one flag per field of the script's ExperimentConfig (``--rl.max_steps 10``,
    ``--downstream.arms '["warmup-cot"]'``; flags override the YAML) and ``--seeds S ...``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds), help="training seeds")
    add_config_flags(parser, config_model)
    return parser


def experiment_config(args: argparse.Namespace) -> BaseModel:
    """The YAML of ``--config`` with the given flags merged over it, validated."""
    cfg = config_from_args(args)
    assert cfg is not None
    return cfg
