"""Two training processes on CPU (``accelerate launch``, torch's gloo backend) with the real trainers.

What a multi-GPU run relies on, checked without a GPU: every rank trains, rank 0 alone writes the run
folder (``final/``, ``train_log.json``, the report), and a run whose rank died resumes from its last
complete checkpoint to the same final step. A ``sitecustomize`` put on the ranks' path records, through
Python's audit hooks, every file each rank opens for writing, renames, creates or deletes in the run
folder (writes done in native code, e.g. safetensors and ``torch.save``, are not seen; they happen inside
TRL's own rank-0 saving).

Slow (about 1-2 minutes each on 2 shared cores): run with ``-m slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepjudge.judge.dataset import to_discriminative_sft_rows
from stepjudge.utils.io import write_jsonl_atomic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

AUDIT = '''
import atexit, os, sys
_rank, _root = os.environ.get("RANK"), os.environ.get("AUDIT_ROOT")
if _rank is not None and _root:
    _log = open(os.path.join(os.environ["AUDIT_DIR"], f"rank{_rank}-{os.getpid()}.txt"), "a", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if not ((isinstance(mode, str) and any(c in mode for c in "wax+"))
                    or (mode is None and isinstance(flags, int) and flags & _WRITE)):
                return
            paths = [path]
        elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"):
            paths = list(args[:2]) if event == "os.rename" else [args[0]]
        else:
            return
        for p in paths:
            if isinstance(p, (str, os.PathLike)) and os.path.abspath(p).startswith(_root):
                _log.write(f"{event} {os.path.relpath(os.path.abspath(p), _root)}\\n")

    sys.addaudithook(_hook)

    @atexit.register
    def _backend():
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            _log.write(f"backend {dist.get_backend()} world {dist.get_world_size()}\\n")
'''


def _launch(tmp_path: Path, out: Path, verb: list[str]) -> subprocess.Popen:
    """``accelerate launch`` of ``stepjudge train ...`` on 2 CPU processes, audited."""
    audit = tmp_path / "audit"
    audit.mkdir(exist_ok=True)
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "sitecustomize.py").write_text(AUDIT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")]),
           "AUDIT_DIR": str(audit), "AUDIT_ROOT": str(out.resolve()), "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()),
           "-m", "stepjudge.cli.main", "train", *verb, "--out", str(out), "--use-cpu"]
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"the launch did not end in {timeout}s:\n{output[-4000:]}") from None
    return output


def _audit(tmp_path: Path) -> dict[str, list[str]]:
    """Lines recorded per rank (all processes of a rank, across launches)."""
    out: dict[str, list[str]] = {}
    for f in sorted((tmp_path / "audit").glob("rank*.txt")):
        out.setdefault(f.name.split("-")[0], []).extend(f.read_text().splitlines())
    return out


def _steps(out: Path) -> list[int]:
    return [e["step"] for e in json.loads((out / "train_log.json").read_text()) if "loss" in e]


def _check_rank0_wrote_the_run_folder(tmp_path: Path) -> dict[str, list[str]]:
    lines = _audit(tmp_path)
    assert set(lines) == {"rank0", "rank1"}
    for rank in ("rank0", "rank1"):
        assert "backend gloo world 2" in lines[rank]
    rank0 = [x.split(" ", 1) for x in lines["rank0"] if not x.startswith("backend")]
    rank1 = [x.split(" ", 1) for x in lines["rank1"] if not x.startswith("backend")]
    renamed = {path for event, path in rank0 if event == "os.rename"}
    assert {"final", "train_log.json", "curves.png"} <= renamed  # published (swapped in) by rank 0
    # rank 1 only makes folders, with exist_ok: the run folder and the checkpoint folders that hold the
    # RNG state TRL saves per rank (written by torch.save, in native code)
    assert rank1 and all(event == "os.mkdir" and (path == "." or path.startswith("checkpoint-"))
                         for event, path in rank1), rank1
    return lines


def test_grpo_on_two_cpu_processes_writes_once_and_resumes_after_a_rank_dies(tmp_path):
    data = tmp_path / "judge.jsonl"
    write_jsonl_atomic(data, [{"prompt": [{"role": "user", "content": f"Chunk: {i} + 1 = {i + 1 + i % 2}. OK?"}],
                               "label": "Positive" if i % 2 == 0 else "Negative", "problem_id": f"p{i // 2}",
                               "sample_index": 0, "chunk_index": i % 3} for i in range(16)])
    out = tmp_path / "run"
    # 2 processes x 2 completions = 2 prompts x 2 generations per step; a checkpoint every step
    verb = ["judge", "--model", "tiny-random", "--train-data", str(data), "--max-steps", "8",
            "--num-generations", "2", "--per-device-batch-size", "2", "--steps-per-generation", "1",
            "--gradient-accumulation-steps", "1", "--max-completion-length", "8", "--max-prompt-length", "128",
            "--save-steps", "1", "--num-processes", "2", "--learning-rate", "1e-3"]
    t0 = time.perf_counter()
    proc = _launch(tmp_path, out, verb)
    import psutil

    deadline = time.monotonic() + 180
    while not (out / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, _finish(proc)
        assert time.monotonic() < deadline, "no checkpoint-2 within 180 s"
        time.sleep(0.05)
    rank1 = [p for p in psutil.Process(proc.pid).children(recursive=True)
             if p.environ().get("RANK") == "1"]
    assert len(rank1) == 1
    rank1[0].send_signal(signal.SIGKILL)
    output = _finish(proc)
    assert proc.returncode != 0, output[-3000:]
    assert not (out / "final").exists()
    died_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert 2 <= died_at < 8

    output = _finish(_launch(tmp_path, out, verb))  # the same command again
    assert "resuming from" in output and "judge RL done: 8 steps" in output, output[-3000:]
    assert _steps(out) == list(range(1, 9))  # each step once: restored up to the checkpoint, then trained
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert (out / "final" / "model.safetensors").exists() and not (out / ".final.tmp").exists()
    _check_rank0_wrote_the_run_folder(tmp_path)
    print(f"GRPO on 2 CPU processes, killed and resumed: {time.perf_counter() - t0:.0f} s")


def test_sft_on_two_cpu_processes_writes_once(tmp_path):
    def rec(pid: str, chunks: list[str], labels: list[int]) -> dict:
        return {"problem_id": pid, "problem": f"Compute {pid}.", "sample_index": 0, "status": "annotated",
                "chunks": chunks, "labels": {"rel-effective": labels}}

    records = [rec("2+3*4", ["3*4=12.", "2+12=15."], [1, 0]), rec("7-2", ["7-2=5."], [1]),
               rec("6/3+1", ["6/3=2.", "2+1=3.", "So 3."], [1, 1, 1]), rec("5*5", ["5*5=20."], [0])]
    data = tmp_path / "disc.jsonl"
    write_jsonl_atomic(data, to_discriminative_sft_rows(records))
    out = tmp_path / "sft"
    t0 = time.perf_counter()
    output = _finish(_launch(tmp_path, out, ["disc-sft", "--model", "tiny-random", "--train-data", str(data),
                                             "--max-steps", "4", "--per-device-batch-size", "2",
                                             "--gradient-accumulation-steps", "1", "--max-length", "256",
                                             "--learning-rate", "1e-3", "--save-steps", "2"]))
    assert "discriminative SFT done: 4 steps" in output, output[-3000:]
    assert _steps(out) == [1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("checkpoint-")) == \
        ["README.md", "curves.png", "final", "train_log.json"]
    assert (out / "final" / "model.safetensors").exists()
    _check_rank0_wrote_the_run_folder(tmp_path)
    print(f"disc SFT on 2 CPU processes: {time.perf_counter() - t0:.0f} s")
