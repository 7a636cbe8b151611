"""Configs are the single source of truth: YAML files, command-line flags and help all come from the
pydantic config models.

Every verb of ``stepjudge`` runs from one pydantic model (``AnnotateConfig``, ``JudgeRLConfig``, ...).
A setting is declared once, as a field with a type, a default and a ``description``; this module turns
that declaration into

* command-line flags (:func:`add_config_flags`): the field name in kebab case (``--train-data``), the
  description as help with the default shown, ``--x/--no-x`` for booleans, choices for ``Literal``
  fields, lists as ``--seeds 0,1,2`` or a repeated ``--seeds 3 --seeds 4``, and nested models as dotted
  flags (``--engine.kind openai``, ``--engine.num-threads 2``);
* one merge for every verb (:func:`build_config`): the YAML file (``--config``), then the flags the user
  actually gave, deep-merged, then validated by the model, so an error names the YAML file or the flag
  and the key.

Why pydantic-settings (and not jsonargparse, tyro or cyclopts): our configs already are pydantic
models, and its ``CliSettingsSource(settings_cls, root_parser=...)`` adds a model's fields to an
*existing* argparse parser, so the verb tree (``stepjudge train judge``) stays plain argparse with our
own descriptions and epilogs; after ``parse_args`` the source returns only the flags the user gave, as a
nested dict -- exactly the layer a YAML-then-flags merge needs. The others either own the whole parser
(tyro, cyclopts) or bring a second config system of their own (jsonargparse). Only the CLI source is
used: environment variables are never read as configuration.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, create_model

from stepjudge.errors import DataError, StepJudgeError

__all__ = ["ConfigError", "load_yaml", "deep_merge", "add_config_flags", "given_flags", "build_config",
           "config_from_args", "flag_fields", "import_model", "ConfigArgumentParser", "CONFIG_MODEL",
           "CONFIG_SOURCE"]

M = TypeVar("M", bound=BaseModel)

# Names under which add_config_flags stores the model class and its flag source on the parsed args.
CONFIG_MODEL = "_config_model"
CONFIG_SOURCE = "_config_source"

_CLI_OPTIONS: dict[str, Any] = {"cli_kebab_case": True, "cli_implicit_flags": True, "cli_avoid_json": True,
                                "cli_hide_none_type": True, "cli_enforce_required": False}


class ConfigError(StepJudgeError, ValueError):
    """A configuration value is invalid; the message names the YAML file or the flag, and the key."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; a missing file, a folder or bad YAML is a :class:`DataError`
    naming the file (and line)."""
    import yaml

    p = Path(path)
    if p.is_dir():
        raise DataError("a config file is expected, this is a folder", path=str(path))
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError("config file not found", path=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read the config file ({e.strerror or e})", path=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the config as UTF-8", path=str(path),
                        line=raw[:e.start].count(b"\n") + 1) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(f"invalid YAML: {getattr(e, 'problem', e)}", path=str(path),
                        line=(mark.line + 1) if mark else None) from None
    if not isinstance(data, dict):
        raise DataError("a config file must hold a mapping of option names to values", path=str(path))
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; nested mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _cli_field(info: Any) -> tuple[Any, Any]:
    """A copy of a field for the flag model: a default built by a lambda or a class (``EngineConfig``,
    ``list``) is built now so the help shows the value instead of "default factory: <lambda>"."""
    field = copy.copy(info)
    factory = field.default_factory
    if factory is not None and (isinstance(factory, type) or getattr(factory, "__name__", "") == "<lambda>"):
        field.default, field.default_factory = factory(), None
    return field.annotation, field


def flag_fields(model_cls: type[BaseModel], yaml_only: Iterable[str] = ()) -> list[str]:
    """Top-level fields of ``model_cls`` that get flags (all but the ``yaml_only`` ones)."""
    skip = set(yaml_only)
    return [name for name in model_cls.model_fields if name not in skip]


def import_model(path: str) -> type[BaseModel]:
    """The class named by ``"package.module:ClassName"``."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class ConfigArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that adds a verb's config flags only when that verb parses or shows its
    help, so ``stepjudge --help`` or one verb does not import every verb's config (and its libraries).
    Sub-parsers inherit the class, so the whole verb tree is lazy."""

    _pending_config: tuple[str, dict[str, Any]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: with --x/--no-x pairs for every boolean, an abbreviation is a trap.
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def defer_config_flags(self, model_path: str, **options: Any) -> None:
        self._pending_config = (model_path, options)

    def ensure_config_flags(self) -> None:
        if self._pending_config is not None:
            model_path, options = self._pending_config
            self._pending_config = None
            add_config_flags(self, import_model(model_path), **options)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        self.ensure_config_flags()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.ensure_config_flags()
        return super().format_help()

    def format_usage(self) -> str:
        self.ensure_config_flags()
        return super().format_usage()


def add_config_flags(parser: argparse.ArgumentParser, model_cls: type[BaseModel] | str, *,
                     yaml_only: Iterable[str] = (), config_flag: bool = True) -> None:
    """Add a flag for every field of ``model_cls`` (minus ``yaml_only``) and ``--config YAML`` to ``parser``.

    ``model_cls`` may be an import path ``"package.module:ClassName"``: on a :class:`ConfigArgumentParser`
    the flags are then added when the parser is first used. The parsed args carry the model class and
    the flag source, so :func:`config_from_args` builds the config. Only the CLI source of
    pydantic-settings is used: no environment variable is read.
    """
    if isinstance(model_cls, str):
        if isinstance(parser, ConfigArgumentParser):
            parser.defer_config_flags(model_cls, yaml_only=tuple(yaml_only), config_flag=config_flag)
            return
        model_cls = import_model(model_cls)
    from pydantic_settings import BaseSettings, CliSettingsSource

    if config_flag:
        parser.add_argument("--config", metavar="YAML",
                            help="YAML file with any of the options below (flags given here override it)")
    fields = {name: _cli_field(model_cls.model_fields[name]) for name in flag_fields(model_cls, yaml_only)}
    settings_cls = create_model(  # type: ignore[call-overload]
        f"{model_cls.__name__}Flags", __base__=BaseSettings, __doc__=model_cls.__doc__, **fields)
    source = CliSettingsSource(settings_cls, root_parser=parser, **_CLI_OPTIONS)
    parser.set_defaults(**{CONFIG_MODEL: model_cls, CONFIG_SOURCE: source})


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags the user gave (nested dict, values not yet validated); {} when none.

    Every verb has its own source on its own sub-parser, and argparse puts only the chosen sub-parser's
    values in the namespace (pydantic-settings' flags default to "absent"), so one verb never reads
    another's flags."""
    source = getattr(args, CONFIG_SOURCE, None)
    if source is None:
        return {}
    ours = {k: v for k, v in vars(args).items() if k not in (CONFIG_MODEL, CONFIG_SOURCE)}
    source(parsed_args=ours)
    return dict(source())


def _lookup(data: Mapping[str, Any], loc: tuple) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _describe(err: ValidationError, yaml_path: str | Path | None, yaml_values: Mapping[str, Any],
              flags: Mapping[str, Any]) -> str:
    """One line per problem: ``key: message (where the value came from)``."""
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if isinstance(p, str))
        key = ".".join(map(str, e["loc"]))
        flag = "--" + ".".join(p.replace("_", "-") for p in loc)
        if not loc:
            where = f"from {yaml_path} and the flags" if yaml_path else "from the flags"
        elif _lookup(flags, loc):
            where = f"flag {flag}"
        elif yaml_path is not None and _lookup(yaml_values, loc):
            where = f"in {yaml_path}"
        else:
            where = f"give {flag} or set '{key}' in the --config YAML"
        problems.append(f"{key or 'config'}: {e['msg']} ({where})")
    return "invalid configuration: " + "; ".join(problems)


def build_config(model_cls: type[M], yaml_path: str | Path | None,
                 given: Mapping[str, Any] | None = None) -> M:
    """The one merge every verb uses: the YAML file (if any), then the given flags, deep-merged and
    validated by ``model_cls``. Errors name the YAML file or the flag, and the key."""
    yaml_values = load_yaml(yaml_path) if yaml_path else {}
    flags = dict(given or {})
    try:
        return model_cls.model_validate(deep_merge(yaml_values, flags))
    except ValidationError as e:
        raise ConfigError(_describe(e, yaml_path, yaml_values, flags)) from None


def config_from_args(args: argparse.Namespace) -> BaseModel | None:
    """The config of the verb that was parsed (YAML from ``--config``, then flags); None for a verb
    without a config model."""
    model_cls = getattr(args, CONFIG_MODEL, None)
    if model_cls is None:
        return None
    return build_config(model_cls, getattr(args, "config", None), given_flags(args))
