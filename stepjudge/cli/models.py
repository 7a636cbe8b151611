"""``stepjudge models``: list built-in model names and materialize them into the cache."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list built-in models or resolve/materialize one",
        description="Built-in models and the cache. 'stepjudge models resolve smollm2-135m' de-quantizes the "
                    "embedded GGUF once into $STEPJUDGE_CACHE (default ~/.cache/stepjudge) and prints the path.")
    sub = p.add_subparsers(dest="action", metavar="<action>")
    sub.add_parser("list", help="built-in model names").set_defaults(func=_list)
    r = sub.add_parser("resolve", help="print the local checkpoint directory of a model (downloads/builds it)")
    r.add_argument("name", help="built-in name, local path or hub id")
    r.set_defaults(func=_resolve)
    p.set_defaults(func=_list)


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
