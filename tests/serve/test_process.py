"""``stepjudge serve`` as a process, as an operator runs it: the key from $STEPJUDGE_API_KEY, a 20 MB
prompt and ``max_tokens: 1e9`` refused with the server's memory bounded, and SIGTERM draining."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

KEY = "sk-process-test-9f8e7d6c"
MODEL = "tiny-random"


def rss_peak_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture()
def server(tmp_path, launch_server):
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = {**os.environ, "STEPJUDGE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "stepjudge.cli.main", "serve", "--model", MODEL, "--port", "0", "--threads", "1",
           "--log-level", "info", "--shutdown-timeout-s", "60"]
    proc, url = launch_server(cmd, out, err, env)
    try:
        yield proc, url, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory from /proc")
def test_served_process_keys_limits_memory_and_sigterm(server):
    proc, url, out, err = server
    assert url.startswith("http://127.0.0.1:")  # loopback unless --host says otherwise
    assert "clients must send the key from $STEPJUDGE_API_KEY" in out.read_text()
    keyed = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="not-it", max_retries=0).models.list()
    assert [m.id for m in keyed.models.list()] == [MODEL]
    text = "".join(c.choices[0].text for c in keyed.completions.create(
        model=MODEL, prompt="2 + 2 =", max_tokens=4, temperature=0, stream=True))
    assert text == keyed.completions.create(model=MODEL, prompt="2 + 2 =", max_tokens=4, temperature=0).choices[0].text

    with pytest.raises(openai.APIStatusError) as e:
        keyed.completions.create(model=MODEL, prompt="x" * (20 * 1024 * 1024), max_tokens=1)
    assert e.value.status_code == 413 and e.value.body["param"] == "max_request_bytes"
    with pytest.raises(openai.BadRequestError) as e:
        keyed.completions.create(model=MODEL, prompt="x", max_tokens=10**9)
    assert e.value.body["param"] == "max_tokens" and "max_tokens_limit=4096" in e.value.body["message"]
    assert rss_peak_bytes(proc.pid) < 1024**3

    # SIGTERM while a request decodes: it finishes; the listening socket closes; the process exits.
    answers: list = []
    slow = threading.Thread(target=lambda: answers.append(keyed.completions.create(
        model=MODEL, prompt="count", max_tokens=300, temperature=0, extra_body={"ignore_eos": True})))
    slow.start()
    metrics = {"Authorization": f"Bearer {KEY}"}
    root = url.removesuffix("/v1")
    while "stepjudge_requests_running 1.0" not in httpx.get(root + "/metrics", headers=metrics).text:
        assert slow.is_alive(), "the slow request ended before SIGTERM"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:
        refused = httpx.get(root + "/health", timeout=5).status_code
    except httpx.TransportError:
        refused = "connection refused"
    assert refused in (503, "connection refused")
    slow.join(120)
    assert len(answers) == 1 and answers[0].choices[0].num_tokens == 300  # type: ignore[attr-defined]
    assert answers[0].choices[0].finish_reason == "length"
    assert proc.wait(60) == -signal.SIGTERM  # uvicorn re-raises the signal once drained
    logs = out.read_text() + err.read_text()
    assert "Shutting down" in logs and KEY not in logs
