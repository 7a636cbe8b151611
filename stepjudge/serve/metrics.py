"""Prometheus metrics of one server, exposed at ``GET /metrics`` in the text format.

Why a registry per app (not prometheus_client's global one): several servers can live in one process
(tests, notebooks), and each must count only its own requests. Names follow vLLM's where one exists
(``*_prompt_tokens_total``, ``*_generation_tokens_total``, requests waiting/running), so an existing
dashboard needs only the prefix changed.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ROUTES", "ServeMetrics", "CONTENT_TYPE_LATEST"]

# Paths counted under their own label; any other path is counted as "other" so a scanner probing
# random URLs cannot grow the label set without bound.
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """The counters, gauges and histograms of one server, on their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("stepjudge_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=r)
        self.latency = Histogram("stepjudge_request_latency_seconds",
                                 "time from the request's arrival to the end of its response (streams included)",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("stepjudge_queue_depth",
                                 "requests admitted and waiting for the engine (not yet in a batch)", registry=r)
        self.running = Gauge("stepjudge_requests_running", "requests in the batch the engine is running",
                             registry=r)
        self.batch_requests = Histogram("stepjudge_batch_requests", "requests merged into one engine call",
                                        buckets=_SIZE_BUCKETS, registry=r)
        self.batch_prompts = Histogram("stepjudge_batch_prompts", "prompts in one engine call",
                                       buckets=_SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("stepjudge_batch_seconds", "time of one engine call",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("stepjudge_prompt_tokens", "prompt tokens of the requests answered",
                                     registry=r)
        self.generation_tokens = Counter("stepjudge_generation_tokens", "tokens generated", registry=r)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from ``depth()`` at each scrape (no bookkeeping on the hot path)."""
        self.queue_depth.set_function(depth)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.requests.labels(route=route, code=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_batch(self, requests: int, prompts: int, seconds: float, prompt_tokens: int,
                      generation_tokens: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_prompts.observe(prompts)
        self.batch_seconds.observe(seconds)
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(generation_tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric above."""
        return generate_latest(self.registry)
