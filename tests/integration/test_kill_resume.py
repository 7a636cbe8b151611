"""Long jobs survive ``kill -9``: the real CLI runs as a process on the tiny random model, is SIGKILLed once
some of its work is on disk, and the same command run again finishes the job.

For the record-writing verbs (``annotate``, ``eval processbench``, ``rerank``) the resumed output must be
the output of an uninterrupted run: the same ids in the same order, none twice, none missing, identical
records (each work unit seeds itself, so a resumed unit samples what it would have sampled). For
training (``train disc-sft``) the re-run must continue from the newest checkpoint: every step logged
once, the losses of the uninterrupted run (TRL restores the RNG and data order), and ``final/`` in
place. The reference runs and the resumes call ``main(argv)`` in this process (no second import of
torch); the killed run is a real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stepjudge.cli.main import main
from stepjudge.data.loaders import find_data_root

ROOT = Path(__file__).resolve().parents[2]
needs_data = pytest.mark.skipif(find_data_root() is None, reason="../shared/data not found")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_and_kill(argv: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 240) -> int:
    """Start ``stepjudge ARGV`` as a process, SIGKILL it as soon as ``ready()`` holds; returns its pid.

    Fails the test if the process ends by itself first: then nothing was interrupted."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stepjudge.cli.main", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the process ended (rc {proc.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "no progress on disk before the timeout"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the process finished before the kill landed"
    return proc.pid


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _without(rec: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in rec.items() if k not in keys}


# ------------------------------------------------------------------------------------------------ annotate
ANNOTATE = ["annotate", "--policy", "tiny-random", "--problems", "arith", "--arith.n", "12", "--arith.steps", "2",
            "--samples-per-problem", "2", "--sample-max-tokens", "12", "--rollouts", "2", "--rollout-max-tokens", "6",
            "--group-size", "1", "--seed", "0", "--engine.num-threads", "1", "--no-progress"]


def test_annotate_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    assert main([*ANNOTATE, "--out", str(tmp_path / "whole")]) == 0
    expected = _jsonl(tmp_path / "whole" / "annotations.jsonl")
    assert len(expected) == 24  # 12 problems x 2 samples

    run = tmp_path / "killed"
    shard = run / "shards" / "shard-00000-of-00001.jsonl"
    argv = [*ANNOTATE, "--out", str(run)]
    run_and_kill(argv, tmp_path, lambda: _lines(shard) >= 2)
    groups_before = _lines(shard)
    assert 2 <= groups_before < 12 and not (run / "annotations.jsonl").exists()

    assert main(argv) == 0
    groups = [json.loads(x)["group"] for x in shard.read_text().splitlines()]
    assert sorted(groups) == list(range(12))  # each group once: no loss, no duplicate
    got = _jsonl(run / "annotations.jsonl")
    key = [(r["problem_id"], r["sample_index"]) for r in got]
    assert key == [(r["problem_id"], r["sample_index"]) for r in expected] and len(set(key)) == 24
    assert got == expected


# -------------------------------------------------------------------------------------- eval processbench
PROCESSBENCH = ["eval", "processbench", "--judge", "tiny-random", "--protocol", "stepwise", "--subsets", "gsm8k",
                "--limit", "8", "--balanced", "--max-tokens", "12", "--batch-size", "1", "--engine.num-threads", "1",
                "--no-progress"]


@needs_data
def test_processbench_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    assert main([*PROCESSBENCH, "--out", str(tmp_path / "whole")]) == 0
    expected = _jsonl(tmp_path / "whole" / "predictions.jsonl")
    assert len(expected) == 8

    run = tmp_path / "killed"
    pred = run / "predictions.jsonl"
    argv = [*PROCESSBENCH, "--out", str(run)]
    run_and_kill(argv, tmp_path, lambda: _lines(pred) >= 2)
    assert 2 <= _lines(pred) < 8 and not (run / "summary.json").exists()

    assert main(argv) == 0
    got = _jsonl(pred)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == 8 and sorted(ids) == sorted(r["id"] for r in expected)
    by_id = {r["id"]: _without(r, ("seconds",)) for r in expected}
    assert [_without(r, ("seconds",)) for r in got] == [by_id[i] for i in ids]  # identical but the wall time
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["metrics"] == whole["metrics"] and resumed["stats"] == whole["stats"]
    assert (resumed["metrics"]["gsm8k"]["n_error"], resumed["metrics"]["gsm8k"]["n_correct"]) == (4, 4)


# ------------------------------------------------------------------------------------------------ rerank
RERANK = ["rerank", "--policy", "tiny-random", "--judge", "tiny-random", "-n", "2", "--problems", "arith",
          "--arith.n", "10", "--max-tokens", "8", "--group-size", "1", "--seed", "0",
          "--policy-engine.num-threads", "1", "--judge-engine.num-threads", "1", "--no-progress"]


def test_rerank_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    assert main([*RERANK, "--out", str(tmp_path / "whole")]) == 0
    expected = _jsonl(tmp_path / "whole" / "samples.jsonl")
    assert len(expected) == 10

    run = tmp_path / "killed"
    log = run / "groups.jsonl"
    argv = [*RERANK, "--out", str(run)]
    run_and_kill(argv, tmp_path, lambda: _lines(log) >= 2)
    assert 2 <= _lines(log) < 10 and not (run / "samples.jsonl").exists()

    assert main(argv) == 0
    assert sorted(json.loads(x)["group"] for x in log.read_text().splitlines()) == list(range(10))
    assert _jsonl(run / "samples.jsonl") == expected  # same problems, same order, identical samples
    timing = ("seconds",)
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed = json.loads((run / "summary.json").read_text())
    assert _without(resumed, timing) == _without(whole, timing)


# ------------------------------------------------------------------------------------------------ training
DISC_ROWS = [{"messages": [{"role": "user", "content": f"Start with {i}. Add {i + 1}."},
                           {"role": "assistant", "content": "+" if i % 3 else "-"},
                           {"role": "user", "content": f"{i} + {i + 1} = {2 * i + 1}"},
                           {"role": "assistant", "content": "+"}]} for i in range(16)]


def _disc_argv(data: Path, out: Path) -> list[str]:
    return ["train", "disc-sft", "--model", "tiny-random", "--train-data", str(data), "--out", str(out),
            "--max-steps", "8", "--save-steps", "1", "--save-total-limit", "2", "--per-device-batch-size", "2",
            "--gradient-accumulation-steps", "1", "--max-length", "64", "--learning-rate", "1e-3", "--use-cpu"]


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in json.loads((out / "train_log.json").read_text()) if "loss" in e]


def test_training_killed_then_resumed_continues_from_its_checkpoint(tmp_path, caplog):
    data = tmp_path / "disc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in DISC_ROWS))
    assert main(_disc_argv(data, tmp_path / "whole")) == 0
    expected = _losses(tmp_path / "whole")
    assert [s for s, _ in expected] == list(range(1, 9))

    run = tmp_path / "killed"
    argv = _disc_argv(data, run)

    def checkpointed() -> bool:
        return any((run / f"checkpoint-{k}" / "trainer_state.json").exists() for k in range(2, 8))

    run_and_kill(argv, tmp_path, checkpointed)
    assert not (run / "final").exists()
    done = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")
               if (p / "trainer_state.json").exists())
    assert 2 <= done < 8

    with caplog.at_level("INFO", logger="stepjudge"):
        assert main(argv) == 0
    assert "resuming from" in caplog.text and "checkpoint-" in caplog.text
    got = _losses(run)
    assert [s for s, _ in got] == list(range(1, 9))  # every step once: continued, not restarted
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], rel=1e-4)
    assert (run / "final" / "model.safetensors").exists() and not (run / ".final.tmp").exists()
