"""``stepjudge serve``: run a model behind an OpenAI-compatible HTTP API (a judge as a reward endpoint)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command

if TYPE_CHECKING:
    from stepjudge.serve.config import ServeConfig

DESCRIPTION = """\
Serve a model (normally a stepwise judge) behind an OpenAI-compatible HTTP API:
GET /health, GET /v1/models, POST /v1/completions and POST /v1/chat/completions.

Any OpenAI client can then use it: RL trainers (TRL, verl) as a reward endpoint, eval harnesses,
or stepjudge itself (--engine.kind openai --engine.base-url http://HOST:PORT/v1). Concurrent
requests with the same sampling parameters that arrive within --batch-window-ms are decoded
together in one batch.
"""

EPILOG = """\
examples:
  stepjudge serve                                   # built-in SmolLM2-135M on 127.0.0.1:8000
  stepjudge serve --model ./runs/judge/final --served-model-name judge --port 8001
  JUDGE_KEY=s3cret stepjudge serve --api-key-env JUDGE_KEY --host 0.0.0.0
  stepjudge serve --config serve.yaml --port 9000    # flags override the YAML file

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "smollm2-135m", "prompt": "2+2=", "max_tokens": 8, "temperature": 0}'

config file: a YAML mapping whose keys are the option names with underscores (ServeConfig), e.g.
  model: smollm2-135m
  port: 8001
  batch_window_ms: 20
"""


def run(config: ServeConfig, args: argparse.Namespace) -> int:
    from stepjudge.serve import serve

    serve(config.engine_config(), host=config.host, port=config.port, served_model_name=config.served_model_name,
          api_key_env=config.api_key_env, batch_window_ms=config.batch_window_ms, log_level=config.log_level,
          max_batch_prompts=config.max_batch_prompts)
    return 0


VERBS = (Command("serve", "serve a model over an OpenAI-compatible HTTP API", DESCRIPTION,
                    "stepjudge.serve.config:ServeConfig", run, epilog=EPILOG),)
