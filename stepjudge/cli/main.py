"""``stepjudge <verb>``: the command line. Each verb lives in its own module, declared once in its
``VERBS`` (:class:`~stepjudge.cli.common.Command`: name, help, config model, handler; the flags come from
the config through :func:`stepjudge.config.add_config_flags`); the handler ``func(config, args)`` is
stored on the parsed args.
The handler receives the config built by :func:`stepjudge.config.config_from_args` (YAML, then flags)."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import BaseModel

from stepjudge import __version__
from stepjudge.errors import StepJudgeError

VERB_MODULES = ("stepjudge.cli.annotate", "stepjudge.cli.eval", "stepjudge.cli.train", "stepjudge.cli.serve",
                "stepjudge.cli.models", "stepjudge.cli.rerank", "stepjudge.cli.solve",
                "stepjudge.cli.pipeline", "stepjudge.cli.critique")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from stepjudge.cli.common import add_verbs
    from stepjudge.config import ConfigArgumentParser

    parser = ConfigArgumentParser(
        prog="stepjudge",
        description="Judge LLM reasoning step by step: annotate steps, train stepwise judges (GRPO, SFT), "
                    "evaluate them, serve them, and use them for best-of-N and Chunk-Reset reasoning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'stepjudge <verb> --help' for the options of each verb.",
    )
    parser.add_argument("--version", action="version", version=f"stepjudge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="verb", metavar="<verb>")
    for mod in VERB_MODULES:
        add_verbs(subparsers, importlib.import_module(mod).VERBS)
    return parser


def parse_config(argv: list[str]) -> tuple[BaseModel | None, argparse.Namespace]:
    """Parse ``argv`` and build the verb's config exactly as :func:`main` hands it to the verb."""
    from stepjudge.config import config_from_args

    args = build_parser().parse_args(argv)
    return config_from_args(args), args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from pydantic import ValidationError

    from stepjudge.config import config_from_args

    try:
        return int(args.func(config_from_args(args), args) or 0)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        print(f"stepjudge: error: invalid configuration: {problems}", file=sys.stderr)
        return 1
    except StepJudgeError as e:
        print(f"stepjudge: error: {e}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:  # a file the readers did not check: still one line, no traceback
        if args.verbose:
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"stepjudge: error: {where}{what} ({type(e).__name__}; run with -v for the traceback)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stepjudge: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
