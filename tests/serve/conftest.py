"""Shared by the server tests: one tiny random model per test module (a real engine, built in seconds)."""

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stepjudge.engines.hf import HFEngine


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    return HFEngine("tiny-random")


@pytest.fixture()
def launch_server() -> Callable[..., tuple[subprocess.Popen, str]]:
    """Start a `stepjudge serve` command (stdout/stderr to the given files) and return (process, /v1 URL).
    The server binds port 0, so the URL is read from its log; a server that exits first fails the test
    with its stderr. The caller stops the process."""

    def launch(cmd: list[str], out: Path, err: Path, env: dict[str, str], timeout_s: float = 120.0):
        with out.open("w") as fo, err.open("w") as fe:
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        deadline = time.monotonic() + timeout_s
        while not (m := re.search(r"at (http://\S+/v1)", out.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(30)
                pytest.fail(f"the server did not start: {err.read_text()[-2000:]}")
            time.sleep(0.1)
        return proc, m.group(1)

    return launch
