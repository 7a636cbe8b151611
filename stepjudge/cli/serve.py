"""``stepjudge serve``: run a model behind an OpenAI-compatible HTTP API (a judge as a reward endpoint)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from stepjudge.cli.common import Command

if TYPE_CHECKING:
    from stepjudge.serve.config import ServeConfig

DESCRIPTION = """\
Serve a model (normally a stepwise judge) behind an OpenAI-compatible HTTP API, a drop-in for
vLLM's server: GET /health, GET /v1/models, GET /metrics (Prometheus), POST /v1/completions and
POST /v1/chat/completions (both with stream: true).

Any OpenAI client can then use it: RL trainers (TRL, verl) as a reward endpoint, eval harnesses,
or stepjudge itself (--engine.kind openai --engine.base-url http://HOST:PORT/v1). Concurrent
requests with the same sampling parameters that arrive within --batch-window-ms are decoded
together in one batch.

It listens on 127.0.0.1 only unless --host says otherwise. With a key (--api-key, --api-key-env, or
$STEPJUDGE_API_KEY) every route but /health needs 'Authorization: Bearer <key>'. Requests over the
limits (--max-request-bytes, --max-tokens-limit, --max-n, --max-model-len) get a 4xx naming the
setting; past --max-queue requests waiting or running, new ones get 429. SIGTERM refuses new
requests and lets in-flight ones finish (--shutdown-timeout-s).
"""

EPILOG = """\
examples:
  stepjudge serve                                   # built-in SmolLM2-135M on 127.0.0.1:8000
  stepjudge serve --model ./runs/judge/final --served-model-name judge --port 8001
  STEPJUDGE_API_KEY=s3cret stepjudge serve --host 0.0.0.0   # open to the network, key required
  JUDGE_KEY=s3cret stepjudge serve --api-key-env JUDGE_KEY
  stepjudge serve --config serve.yaml --port 9000    # flags override the YAML file

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "smollm2-135m", "prompt": "2+2=", "max_tokens": 8, "temperature": 0}'
  curl -N http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "smollm2-135m", "prompt": "2+2=", "max_tokens": 8, "stream": true}'
  curl http://127.0.0.1:8000/metrics

config file: a YAML mapping whose keys are the option names with underscores (ServeConfig), e.g.
  model: smollm2-135m
  port: 8001
  batch_window_ms: 20
"""


def run(config: ServeConfig, args: argparse.Namespace) -> int:
    from stepjudge.serve import serve

    key = config.api_key.get_secret_value() if config.api_key is not None else None
    serve(config.engine_config(), host=config.host, port=config.port, served_model_name=config.served_model_name,
          api_key_env=config.api_key_env, batch_window_ms=config.batch_window_ms, log_level=config.log_level,
          max_batch_prompts=config.max_batch_prompts, api_key=key, limits=config.limits(),
          shutdown_timeout_s=config.shutdown_timeout_s)
    return 0


VERBS = (Command("serve", "serve a model over an OpenAI-compatible HTTP API", DESCRIPTION,
                    "stepjudge.serve.config:ServeConfig", run, epilog=EPILOG),)
