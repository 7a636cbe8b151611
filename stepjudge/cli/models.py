"""``stepjudge models``: list built-in model names and materialize them into the cache."""

from __future__ import annotations

import argparse

from stepjudge.cli.common import Command, CommandGroup


def _list(config: None, args: argparse.Namespace) -> int:
    from stepjudge.models import BUILTIN_MODELS, cache_dir

    for name, desc in BUILTIN_MODELS.items():
        print(f"{name:16s} {desc}")
    print(f"\ncache: {cache_dir()}")
    return 0


def _resolve(config: None, args: argparse.Namespace) -> int:
    from stepjudge.models import resolve_model

    print(resolve_model(args.name))
    return 0


def _name_positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="built-in name, local path or hub id")


VERBS = (CommandGroup(
    "models", "list built-in models or resolve/materialize one",
    (Command("list", "built-in model names", "Built-in model names and the cache folder.", None, _list),
     Command("resolve", "print the local checkpoint directory of a model (downloads/builds it)",
             "Print the local checkpoint directory of a model; built-in models are built once into the cache.",
             None, _resolve, extra_flags=_name_positional)),
    description="Built-in models and the cache. 'stepjudge models resolve smollm2-135m' de-quantizes the embedded "
                "GGUF once into $STEPJUDGE_CACHE (default ~/.cache/stepjudge) and prints the path."),)
