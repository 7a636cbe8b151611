"""``stepjudge serve``: run a model behind an OpenAI-compatible HTTP API (a judge as a reward endpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stepjudge.errors import StepJudgeError

DESCRIPTION = """\
Serve a model (normally a stepwise judge) behind an OpenAI-compatible HTTP API:
GET /health, GET /v1/models, POST /v1/completions and POST /v1/chat/completions.

Any OpenAI client can then use it: RL trainers (TRL, verl) as a reward endpoint, eval harnesses,
or stepjudge itself (engine kind 'openai' with --base-url). Concurrent requests with the same
sampling parameters that arrive within --batch-window-ms are decoded together in one batch.
"""

EPILOG = """\
examples:
  stepjudge serve                                   # built-in SmolLM2-135M on 127.0.0.1:8000
  stepjudge serve --model ./runs/judge/final --served-model-name judge --port 8001
  JUDGE_KEY=s3cret stepjudge serve --api-key-env JUDGE_KEY --host 0.0.0.0
  stepjudge serve --config serve.yaml --port 9000    # flags override the YAML file

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "smollm2-135m", "prompt": "2+2=", "max_tokens": 8, "temperature": 0}'

config file: a YAML mapping whose keys are the option names with underscores, e.g.
  model: smollm2-135m
  port: 8001
  batch_window_ms: 20
"""

DEFAULTS: dict[str, Any] = {
    "model": "smollm2-135m",
    "host": "127.0.0.1",
    "port": 8000,
    "served_model_name": None,
    "api_key_env": None,
    "dtype": "float32",
    "device": "cpu",
    "threads": None,
    "max_batch_rows": 64,
    "batch_window_ms": 10.0,
    "log_level": "info",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    # Defaults are None here so that a --config file can fill what the command line leaves out.
    p.add_argument("--config", metavar="YAML", help="YAML file of options (keys with underscores)")
    p.add_argument("--model", help=f"built-in name, local path or hub id (default: {DEFAULTS['model']})")
    p.add_argument("--host", help=f"interface to bind; 0.0.0.0 for all (default: {DEFAULTS['host']})")
    p.add_argument("--port", type=int, help=f"TCP port (default: {DEFAULTS['port']})")
    p.add_argument("--served-model-name", help="name clients put in 'model' (default: --model)")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="name of an environment variable holding the key clients must send as "
                        "'Authorization: Bearer <key>' (default: no authentication)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16", "auto"],
                   help=f"weights dtype (default: {DEFAULTS['dtype']})")
    p.add_argument("--device", help=f"torch device, e.g. cpu or cuda (default: {DEFAULTS['device']})")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-batch-rows", type=int,
                   help=f"sequences decoded at once, prompts x n (default: {DEFAULTS['max_batch_rows']})")
    p.add_argument("--batch-window-ms", type=float,
                   help="how long to wait for more requests to batch with the first one "
                        f"(default: {DEFAULTS['batch_window_ms']:g})")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                   help=f"uvicorn log level (default: {DEFAULTS['log_level']})")
    p.set_defaults(func=run)


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < YAML file < flags given on the command line."""
    opts = dict(DEFAULTS)
    if getattr(args, "config", None):
        opts.update(_read_config(Path(args.config)))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    return opts


def _read_config(path: Path) -> dict[str, Any]:
    from stepjudge.cli.common import load_yaml

    data = load_yaml(path)  # names the file (and line) on bad YAML
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in DEFAULTS:
            raise StepJudgeError(f"{path}: unknown option '{key}'; known: {', '.join(DEFAULTS)}")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from stepjudge.engines.factory import EngineConfig
    from stepjudge.serve import serve

    opts = load_options(args)
    try:
        config = EngineConfig(kind="hf", model=opts["model"], dtype=opts["dtype"], device=opts["device"],
                              num_threads=opts["threads"], max_batch_rows=opts["max_batch_rows"])
    except ValidationError as e:
        raise StepJudgeError(f"invalid serve options: {e}") from e
    serve(config, host=opts["host"], port=int(opts["port"]), served_model_name=opts["served_model_name"],
          api_key_env=opts["api_key_env"], batch_window_ms=float(opts["batch_window_ms"]),
          log_level=opts["log_level"])
    return 0
