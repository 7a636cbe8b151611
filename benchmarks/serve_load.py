"""Load on ``stepjudge serve``: N requests at concurrency C against a server this script starts on loopback.

Side by side in one run, each arm on a fresh server process:
  * ``batched``: micro-batching on (requests within ``--batch-window-ms`` share one engine call);
  * ``one-at-a-time``: ``--max-batch-prompts 1 --batch-window-ms 0`` (each request its own call);
  * ``shed`` (unless ``--shed-queue 0``): batched with ``--max-queue`` below the concurrency, so the
    server must answer the excess 429 at once; those 429s are the only errors expected anywhere.
For each arm: throughput (requests/s, generated tokens/s), latency p50/p95/p99 of the answered (200)
requests, counts by HTTP status (transport errors as ``"transport"``), the server's RSS before the load
(model loaded and warmed up) and after it plus its peak (VmHWM), whether ``/health`` answers afterwards,
and the 1-minute load average (other processes on the cores distort every figure).

Bounded: at most ``--requests`` per arm and no new request after ``--time-limit-s``; every request has a
client timeout. Every request asks the same sampling parameters (greedy, ``ignore_eos``, exactly
``--max-tokens`` tokens) so all can share a batch and all cost the same.

usage: python benchmarks/serve_load.py [--requests 500] [--concurrency 16] [--model tiny-random]
       [--max-tokens 8] [--threads 1] [--shed-queue 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx


def vm(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least 1
    return ordered[int(rank) - 1]


def start_server(model: str, threads: int, flags: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "stepjudge.cli.main", "serve", "--model", model, "--port", "0",
           "--threads", str(threads), "--log-level", "warning", *flags]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (m := re.search(r"at (http://\S+/v1)", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc, m.group(1)


async def load(url: str, model: str, requests: int, concurrency: int, max_tokens: int, time_limit_s: float,
               timeout_s: float) -> tuple[list[tuple[int | str, float, int]], float]:
    """``requests`` completions from ``concurrency`` clients; (status, seconds, tokens) each, and the wall."""
    results: list[tuple[int | str, float, int]] = []
    next_i = 0
    start = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_i
        while next_i < requests and time.perf_counter() - start < time_limit_s:
            i, next_i = next_i, next_i + 1
            body = {"model": model, "prompt": f"Problem {i}: add {i % 97} and {i % 13}, then check the sum.",
                    "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
            t = time.perf_counter()
            try:
                resp = await http.post("/completions", json=body)
                tokens = resp.json()["usage"]["completion_tokens"] if resp.status_code == 200 else 0
                results.append((resp.status_code, time.perf_counter() - t, tokens))
            except httpx.TransportError:
                results.append(("transport", time.perf_counter() - t, 0))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as http:
        await asyncio.gather(*[client(http) for _ in range(concurrency)])
    return results, time.perf_counter() - start


def run_arm(name: str, flags: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    proc, url = start_server(args.model, args.threads, flags, tmp / f"{name}.log")
    try:
        warm = httpx.post(url + "/completions", timeout=args.timeout_s, json={
            "model": args.model, "prompt": "warm up", "max_tokens": args.max_tokens, "temperature": 0})
        warm.raise_for_status()
        rss_before = vm(proc.pid, "VmRSS")
        load1_before = os.getloadavg()[0]
        results, wall = asyncio.run(load(url, args.model, args.requests, args.concurrency, args.max_tokens,
                                         args.time_limit_s, args.timeout_s))
        rss_after, rss_peak = vm(proc.pid, "VmRSS"), vm(proc.pid, "VmHWM")
        health = httpx.get(url.removesuffix("/v1") + "/health", timeout=30).status_code
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    finally:
        proc.terminate()
        proc.wait(120)
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] for r in ok]
    shed = [r[1] for r in results if r[0] == 429]
    batches = re.search(r"^stepjudge_batch_requests_count ([\d.e+]+)$", metrics, re.M)
    engine_calls = int(float(batches.group(1))) if batches else None
    return {
        "arm": name, "server_flags": flags, "requests_sent": len(results), "wall_s": round(wall, 3),
        "status_counts": {str(k): v for k, v in sorted(Counter(r[0] for r in results).items(), key=str)},
        "throughput_rps": round(len(ok) / wall, 2), "tokens_per_s": round(sum(r[2] for r in ok) / wall, 1),
        "latency_s": {f"p{q}": round(percentile(latencies, q), 4) if latencies else None for q in (50, 95, 99)},
        "latency_429_s_p99": round(percentile(shed, 99), 4) if shed else None,  # how fast excess is refused
        "engine_calls": engine_calls - 1 if engine_calls else None,  # minus the warm-up
        "rss_mb": {"before": round(rss_before / 2**20, 1), "after": round(rss_after / 2**20, 1),
                   "peak": round(rss_peak / 2**20, 1)},
        "health_after": health, "load1": {"before": round(load1_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500, help="requests per arm")
    ap.add_argument("--concurrency", type=int, default=16, help="clients sending at once")
    ap.add_argument("--model", default="tiny-random", help="tiny-random (default) or smollm2-135m (embedded)")
    ap.add_argument("--max-tokens", type=int, default=8, help="tokens generated per request (ignore_eos)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--batch-window-ms", type=float, default=10.0)
    ap.add_argument("--max-queue", type=int, default=256, help="server queue bound of the two main arms")
    ap.add_argument("--shed-queue", type=int, default=4,
                    help="max queue of the shedding arm (below --concurrency); 0 skips that arm")
    ap.add_argument("--time-limit-s", type=float, default=300.0, help="no new request after this, per arm")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="client timeout per request")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    arms = [("batched", ["--batch-window-ms", str(args.batch_window_ms), "--max-queue", str(args.max_queue)]),
            ("one-at-a-time", ["--batch-window-ms", "0", "--max-batch-prompts", "1",
                               "--max-queue", str(args.max_queue)])]
    if args.shed_queue:
        arms.append(("shed", ["--batch-window-ms", str(args.batch_window_ms), "--max-queue", str(args.shed_queue)]))
    with tempfile.TemporaryDirectory() as tmp:
        out = {"model": args.model, "requests": args.requests, "concurrency": args.concurrency,
               "max_tokens": args.max_tokens, "server_threads": args.threads, "cpus": os.cpu_count(),
               "arms": [run_arm(name, flags, args, Path(tmp)) for name, flags in arms]}
    batched, single = out["arms"][0], out["arms"][1]
    if single["throughput_rps"]:
        out["batched_speedup"] = round(batched["throughput_rps"] / single["throughput_rps"], 2)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
