"""Shared by the CLI tests: every verb's parser, and the `stepjudge ...` commands written in help texts,
README.md and docs/*.md (so the tests can check that each one still parses)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from stepjudge.cli.main import build_parser
from stepjudge.config import ConfigArgumentParser

ROOT = Path(__file__).resolve().parents[2]


def leaf_parsers(parser: argparse.ArgumentParser | None = None,
                 path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable verb (a parser without sub-commands), keyed by its words, flags added."""
    parser = parser or build_parser()
    if isinstance(parser, ConfigArgumentParser):
        parser.ensure_config_flags()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for name, child in subs[0].choices.items():
        out.update(leaf_parsers(child, (*path, name)))
    return out


def help_texts() -> dict[str, str]:
    """``--help`` of the program and of every verb and verb group."""
    texts = {"stepjudge": build_parser().format_help()}

    def walk(p: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        texts[" ".join(("stepjudge", *words))] = p.format_help()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, child in a.choices.items():
                    walk(child, (*words, name))

    walk(build_parser(), ())
    return texts


def doc_texts() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
            for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}


_COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*(?:stepjudge|accelerate launch .*-m stepjudge\.cli\.main)\s+(.*)")
_VERBS = {"annotate", "eval", "train", "serve", "models", "rerank", "select", "solve", "pipeline", "critique-data", "refine"}


def _code_lines(text: str, markdown: bool) -> list[str]:
    """Lines of shell examples: fenced code blocks of a markdown file, or a help text's lines."""
    if not markdown:
        return text.splitlines()
    lines, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def example_commands(text: str, markdown: bool = False) -> list[list[str]]:
    """The argument lists of `stepjudge ...` example command lines in ``text`` (continuation lines
    joined, trailing comments and pipes left out)."""
    commands = []
    joined = re.sub(r"\\\s*\n\s*", " ", "\n".join(_code_lines(text, markdown)))
    for line in joined.splitlines():
        m = _COMMAND.match(line)
        if not m:
            continue
        rest = re.split(r"\s#\s|\s\|\s|\s&&\s|\s>\s", m.group(1))[0]
        words = shlex.split(rest)
        if words and words[0] in _VERBS:
            commands.append(words)
    return commands
