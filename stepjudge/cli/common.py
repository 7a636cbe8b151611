"""Helpers shared by CLI verbs: YAML configs whose keys the command-line flags override."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stepjudge.errors import DataError


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DataError("config file not found", path=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(f"invalid YAML: {getattr(e, 'problem', e)}", path=str(path),
                        line=(mark.line + 1) if mark else None) from None
    if not isinstance(data, dict):
        raise DataError("a config file must hold a mapping of option names to values", path=str(path))
    return data


def merge_flags(base: dict[str, Any], args: argparse.Namespace, keys: dict[str, str]) -> dict[str, Any]:
    """Copy flags the user actually gave (not None) over ``base``; ``keys`` maps arg name -> dotted key."""
    out = dict(base)
    for arg, dotted in keys.items():
        value = getattr(args, arg, None)
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=["hf", "openai"], help="hf: run the model in-process (default); "
                   "openai: call an OpenAI-compatible server (vLLM, SGLang, llama.cpp, stepjudge serve)")
    g.add_argument("--base-url", help="server URL for --engine openai (default http://127.0.0.1:8000/v1)")
    g.add_argument("--api-key-env", help="environment variable holding the server's API key "
                   "(default OPENAI_API_KEY; the key itself is never logged)")
    g.add_argument("--max-concurrency", type=int, help="parallel HTTP requests (openai engine)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16", "auto"],
                   help="weights dtype for the hf engine (float32 is fastest on CPU)")
    g.add_argument("--device", help="torch device for the hf engine (cpu, cuda, cuda:1)")
    g.add_argument("--threads", type=int, help="torch CPU threads for the hf engine")
    g.add_argument("--max-batch-rows", type=int, help="sequences decoded at once by the hf engine")


ENGINE_KEYS = {"engine": "engine.kind", "base_url": "engine.base_url", "api_key_env": "engine.api_key_env",
               "max_concurrency": "engine.max_concurrency", "dtype": "engine.dtype", "device": "engine.device",
               "threads": "engine.num_threads", "max_batch_rows": "engine.max_batch_rows"}
