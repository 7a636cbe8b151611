"""Serve any engine (normally a judge on :class:`HFEngine`) behind an OpenAI-compatible HTTP API."""

from stepjudge.serve.app import (
    BatchWorker,
    create_app,
    make_server,
    resolve_api_key,
    serve,
    serve_in_thread,
    server_url,
)
from stepjudge.serve.config import ServeLimits

__all__ = ["BatchWorker", "ServeLimits", "create_app", "make_server", "resolve_api_key", "serve",
           "serve_in_thread", "server_url"]
