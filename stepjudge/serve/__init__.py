"""Serve any engine (normally a judge on :class:`HFEngine`) behind an OpenAI-compatible HTTP API."""

from stepjudge.serve.app import BatchWorker, create_app, make_server, serve, serve_in_thread, server_url

__all__ = ["BatchWorker", "create_app", "make_server", "serve", "serve_in_thread", "server_url"]
