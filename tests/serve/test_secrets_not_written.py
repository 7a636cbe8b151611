"""A configured API key is never written anywhere a user might share: not in the run folder (``run.json``,
records, reports, the lock file), not in the client's output or logs, not in the server's logs.

The real setup: ``stepjudge serve`` as a process with ``--api-key`` (the key on the command line, the
riskiest way to give it), and ``stepjudge annotate`` against it through the ``openai`` engine with the key
in ``--engine.api-key-env``'s variable, both with ``-v`` (debug logs). Then every byte they left is
searched for the key; with a wrong key the failed run is searched for both keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-secret-0b1c2d3e4f5a6b7c"
WRONG = "sk-wrong-9z8y7x6w5v4u"
MODEL = "tiny-random"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture()
def served(tmp_path, launch_server):
    """``stepjudge serve --api-key KEY -v`` on loopback; yields its URL and its log folder."""
    logs = tmp_path / "server-logs"
    logs.mkdir()
    out, err = logs / "stdout.log", logs / "stderr.log"
    cmd = [sys.executable, "-m", "stepjudge.cli.main", "-v", "serve", "--model", MODEL, "--port", "0",
           "--threads", "1", "--api-key", KEY, "--log-level", "debug"]
    proc, url = launch_server(cmd, out, err, _env())
    try:
        yield url, logs
    finally:
        proc.terminate()
        proc.wait(60)


def _annotate(url: str, out: Path, key: str, logs: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "stepjudge.cli.main", "-v", "annotate", "--policy", MODEL, "--problems", "arith",
            "--arith.n", "2", "--samples-per-problem", "2", "--sample-max-tokens", "8", "--rollouts", "2",
            "--rollout-max-tokens", "4", "--engine.kind", "openai", "--engine.base-url", url,
            "--engine.api-key-env", "STEPJUDGE_TEST_CLIENT_KEY", "--engine.tokenizer", MODEL,
            "--engine.max-retries", "0", "--out", str(out), "--no-progress"]
    r = subprocess.run(argv, capture_output=True, env=_env(STEPJUDGE_TEST_CLIENT_KEY=key), timeout=300)
    (logs / "stdout.log").write_bytes(r.stdout)
    (logs / "stderr.log").write_bytes(r.stderr)
    return r


def files_holding(folders: list[Path], secrets: list[str]) -> list[str]:
    """``path: secret`` for every file under ``folders`` whose bytes contain one of ``secrets``."""
    return [f"{p}: {s}" for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()
            for s in secrets if s.encode() in p.read_bytes()]


def test_a_configured_key_is_in_no_run_folder_log_or_report(served, tmp_path):
    url, server_logs = served
    run, client_logs = tmp_path / "run", tmp_path / "client-logs"
    client_logs.mkdir()
    r = _annotate(url, run, KEY, client_logs)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    written = {p.name for p in run.iterdir()}
    assert {"run.json", "annotations.jsonl", "report.json", "report.md", "shards"} <= written
    assert b"STEPJUDGE_TEST_CLIENT_KEY" in (run / "run.json").read_bytes()  # the variable's name, not its value
    assert b"DEBUG" in (client_logs / "stderr.log").read_bytes()  # debug logging was on: the check means something
    assert files_holding([run, client_logs, server_logs], [KEY]) == []


def test_a_refused_key_is_not_echoed_either(served, tmp_path):
    url, server_logs = served
    run, client_logs = tmp_path / "run", tmp_path / "client-logs"
    client_logs.mkdir()
    r = _annotate(url, run, WRONG, client_logs)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "Traceback" not in err and "STEPJUDGE_TEST_CLIENT_KEY" in err  # names where the key came from
    folders = [client_logs, server_logs] + ([run] if run.exists() else [])
    assert files_holding(folders, [KEY, WRONG]) == []
