"""`stepjudge annotate` on a local Ray cluster of 2 workers, one of them killed while it works on a group.

Ray restarts the dead actor and re-runs its group; since a group's seed depends only on its index, the
records equal those of a single process. With ``ray_max_retries: 0`` the same kill stops the run with
an error naming the group, and the finished groups stay for a resume.

Slow (about 1.5 minutes on 2 shared cores, most of it starting Ray and its workers): run with ``-m slow``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from stepjudge.annotate.pipeline import AnnotateConfig, annotate
from stepjudge.errors import StepJudgeError

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

# Long samples, so a worker is busy for a few seconds per group: time to kill it mid-task.
SMALL = dict(problems="arith", arith={"n": 4, "steps": 2, "seed": 0}, policy="tiny-random",
             samples_per_problem=2, sample_temperature=0.5, sample_max_tokens=256, rollouts=2,
             rollout_temperature=0.5, rollout_max_tokens=8, group_size=1, seed=0,
             engine={"kind": "hf", "num_threads": 1, "max_batch_rows": 64})


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (annotate reuses a running one and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "annotations.jsonl").read_text().splitlines()]


def _run_killing_one_worker(cfg: AnnotateConfig) -> tuple[dict, int]:
    """Run ``cfg`` on a thread; SIGKILL the first Ray worker of ours seen running ``annotate``."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = annotate(cfg, progress=False)
        except Exception as e:  # reported to the test below
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    killed, deadline = 0, time.monotonic() + 150
    while thread.is_alive() and not killed and time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):  # only this test's cluster
            try:
                if " ".join(proc.cmdline()).startswith("ray::_Worker.annotate"):
                    proc.send_signal(signal.SIGKILL)
                    killed = proc.pid
                    break
            except psutil.Error:  # gone meanwhile
                continue
        time.sleep(0.05)
    thread.join(240)
    assert not thread.is_alive(), "the Ray run did not end"
    return outcome, killed


def test_a_killed_worker_is_restarted_and_the_records_equal_a_single_process(cluster, tmp_path):
    annotate(AnnotateConfig(**SMALL, out=str(tmp_path / "one")), progress=False)
    t0 = time.perf_counter()
    outcome, killed = _run_killing_one_worker(
        AnnotateConfig(**SMALL, out=str(tmp_path / "ray"), ray=True, ray_workers=2, ray_max_retries=2))
    assert killed, "no worker was seen working, so none was killed"
    assert "error" not in outcome, outcome.get("error")
    assert _records(tmp_path / "ray") == _records(tmp_path / "one")
    assert len(_records(tmp_path / "one")) == 4 * 2
    groups = [json.loads(x)["group"] for x in
              (tmp_path / "ray" / "shards" / "shard-00000-of-00001.jsonl").read_text().splitlines()]
    assert sorted(groups) == [0, 1, 2, 3]  # the re-run group written once
    print(f"Ray, 2 workers, one killed: {time.perf_counter() - t0:.0f} s")


def test_without_retries_the_kill_is_a_clear_error_and_keeps_finished_groups(cluster, tmp_path):
    out = tmp_path / "ray0"
    outcome, killed = _run_killing_one_worker(
        AnnotateConfig(**SMALL, out=str(out), ray=True, ray_workers=2, ray_max_retries=0))
    assert killed
    error = outcome.get("error")
    assert isinstance(error, StepJudgeError), outcome
    assert "failed on a Ray worker" in str(error) and "ray_max_retries" in str(error)
    assert str(out / "shards") in str(error) and "re-run to resume" in str(error)
    assert not (out / "annotations.jsonl").exists()
    done = (out / "shards" / "shard-00000-of-00001.jsonl")
    assert not done.exists() or len(done.read_text().splitlines()) < 4
