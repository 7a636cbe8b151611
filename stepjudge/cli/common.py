"""What CLI verbs share: one declaration per command, the YAML-only settings, and the flags that are not
config settings.

Every command is a :class:`Command` (its name, help, description, config model and handler); a verb's
module lists its commands in ``VERBS`` (commands, or a :class:`CommandGroup` of them) and
:func:`add_verbs` builds the parsers, so the parser wiring is written once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepjudge.config import add_config_flags

# Config fields without a command-line flag, per verb (tests/cli checks that every other field of every
# verb's config has one). None today: the pipeline's stage sections are not fields but entries of the
# stage registry, read from the YAML.
YAML_ONLY: dict[str, tuple[str, ...]] = {}

Handler = Callable[[Any, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One ``stepjudge`` command: flags come from ``config`` (an import path ``package.module:Model``)."""

    name: str
    help: str
    description: str
    config: str | None
    run: Handler
    progress: bool = False  # offer --no-progress
    epilog: str | None = None
    config_flag: bool = True  # offer --config YAML (off where the YAML is a positional argument)
    extra_flags: Callable[[argparse.ArgumentParser], None] | None = None  # non-config flags/positionals


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: a display choice, not a setting of the run (so not in the config)."""
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_commands(subparsers: Any, commands: Sequence[Command], verb: str | None = None) -> None:
    """A parser per command, with its config's flags; ``verb`` names the group (for YAML_ONLY)."""
    for cmd in commands:
        p = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.description, epilog=cmd.epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd.extra_flags is not None:
            cmd.extra_flags(p)
        if cmd.config is not None:
            key = " ".join(filter(None, (verb, cmd.name)))
            add_config_flags(p, cmd.config, yaml_only=YAML_ONLY.get(key, ()), config_flag=cmd.config_flag)
        if cmd.progress:
            add_progress_flag(p)
        p.set_defaults(func=cmd.run)


@dataclass(frozen=True)
class CommandGroup:
    """``stepjudge <name> <command>``: a verb made of commands; its bare form prints its help."""

    name: str
    help: str
    commands: Sequence[Command]
    description: str | None = None


def add_verbs(subparsers: Any, verbs: Sequence[Command | CommandGroup]) -> None:
    """Parsers for a module's ``VERBS``: plain commands and command groups."""
    for verb in verbs:
        if isinstance(verb, Command):
            add_commands(subparsers, [verb])
            continue
        group = subparsers.add_parser(verb.name, help=verb.help,
                                      description=verb.description or verb.help[:1].upper() + verb.help[1:] + ".",
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        sub = group.add_subparsers(dest="action", metavar="<command>")
        add_commands(sub, verb.commands, verb=verb.name)
        group.set_defaults(func=lambda config, args, group=group: group.print_help() or 2)


def print_trained(final: Path, *extra: str) -> int:
    """What every training command prints: the model, its log and any extra outputs beside it (rank 0
    only under a multi-process launch, so the closing summary shows once)."""
    from stepjudge.train.core.finalize import is_main_process

    if not is_main_process():
        return 0
    lines = [f"model: {final}", f"training log: {final.parent / 'train_log.json'}",
             f"curves: {final.parent / 'curves.png'}"]
    lines += [f"{name}: {final.parent / name}" for name in extra]
    print("\n".join(lines))
    return 0
