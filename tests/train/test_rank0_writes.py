"""Under a multi-process launch, the files a training run writes outside the trainer (held-out scores,
warm-up stats, a measured c_ref, the critic's summary) and the CLI's closing lines come from rank 0 only.
The rank is read from the launcher's environment (``is_main_process``); here a single process is told it
is rank 1 or 0 through that variable, which is all the code sees of the launcher."""

from __future__ import annotations

import json

import pytest

from stepjudge.cli.common import print_trained
from stepjudge.train.core import is_main_process


@pytest.mark.parametrize("environ, main", [
    ({}, True),                                           # no launcher: the only process
    ({"RANK": "0", "WORLD_SIZE": "2"}, True),
    ({"RANK": "1", "WORLD_SIZE": "2"}, False),
    ({"RANK": " 3 "}, False),
    ({"OMPI_COMM_WORLD_RANK": "2"}, False),               # accelerate with mpirun
    ({"PMI_RANK": "0"}, True),
    ({"RANK": "0", "OMPI_COMM_WORLD_RANK": "1"}, True),   # torchrun's RANK wins
    ({"RANK": ""}, True),
])
def test_is_main_process_reads_the_launchers_rank(environ, main):
    assert is_main_process(environ) is main


def test_c_ref_is_measured_by_every_rank_and_written_by_rank_0(tmp_path, monkeypatch):
    from stepjudge.train.laser_run import LaserConfig, resolve_c_ref

    cfg = LaserConfig(out=str(tmp_path / "run"), model="tiny-random", arith={"n": 4}, calibrate_pairs=2,
                      max_completion_length=4, use_cpu=True)
    monkeypatch.setenv("RANK", "1")
    on_rank1 = resolve_c_ref(cfg)
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "0")
    on_rank0 = resolve_c_ref(cfg)
    assert json.loads((tmp_path / "run" / "c_ref.json").read_text())["mean"] == on_rank0 == on_rank1


def test_warmup_files_outside_the_trainer_are_rank_0s(tmp_path, monkeypatch):
    from stepjudge.train.judge_warmup import train_judge_warmup

    def rows(path, k):
        path.write_text("".join(json.dumps({
            "problem": f"Start with {i}. Add 1.", "history": [], "chunk": f"{i} + 1 = {i + 1 + i % 2}",
            "prompt": [{"role": "user", "content": f"Judge: {i} + 1 = {i + 1 + i % 2}"}],
            "label": "Negative" if i % 2 else "Positive", "problem_id": f"{k}{i}", "sample_index": 0,
            "chunk_index": 0}) + "\n" for i in range(4)))
        return str(path)

    cfg = {"model": "tiny-random", "train_data": rows(tmp_path / "train.jsonl", "t"),
           "heldout_data": rows(tmp_path / "heldout.jsonl", "h"), "warmup": {"variant": "verdict"}, "max_steps": 1,
           "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "use_cpu": True, "sample_max_tokens": 4,
           "max_length": 256}
    monkeypatch.setenv("RANK", "1")  # seen only by stepjudge: accelerate needs WORLD_SIZE / LOCAL_RANK too
    out = tmp_path / "rank1"
    train_judge_warmup({**cfg, "out": str(out)})
    assert not (out / "warmup_stats.json").exists() and not (out / "eval_before.json").exists()
    monkeypatch.setenv("RANK", "0")
    out = tmp_path / "rank0"
    train_judge_warmup({**cfg, "out": str(out)})
    assert (out / "warmup_stats.json").exists() and (out / "eval_before.json").exists()


def test_the_closing_lines_are_printed_by_rank_0_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert print_trained(tmp_path / "final", "report.md") == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert print_trained(tmp_path / "final", "report.md") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"model: {tmp_path / 'final'}", f"training log: {tmp_path / 'train_log.json'}",
        f"curves: {tmp_path / 'curves.png'}", f"report.md: {tmp_path / 'report.md'}"]
