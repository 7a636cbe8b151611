"""`stepjudge annotate` end to end on the embedded model: records, report, shards, resume, Ray, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepjudge.annotate.labels import assign_labels
from stepjudge.annotate.pipeline import AnnotateConfig, annotate
from stepjudge.errors import DataError, EngineError
from stepjudge.tasks.arith import check_steps, generate_problems

pytestmark = pytest.mark.embedded

SMALL = dict(problems="arith", arith={"n": 4, "steps": 2, "seed": 0}, policy="smollm2-135m",
             samples_per_problem=2, sample_temperature=0.5, sample_max_tokens=32, rollouts=4,
             rollout_temperature=0.5, rollout_max_tokens=24, group_size=1, seed=0,
             engine={"kind": "hf", "num_threads": 1, "max_batch_rows": 64})


def _cfg(out, **kw):
    return AnnotateConfig(**{**SMALL, "out": str(out), **kw})


def _records(out) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / "annotations.jsonl").read_text().splitlines()]


def _counts(summary: dict) -> dict:
    """A report summary without its wall-clock figures (which differ between runs)."""
    timing = ("seconds", "rollouts_per_s", "rollout_tokens_per_s")
    return {**summary, "compute": {k: v for k, v in summary["compute"].items() if k not in timing}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    summary = annotate(_cfg(out), progress=False)
    return out, summary


def test_records_report_and_label_consistency(reference):
    out, summary = reference
    recs = _records(out)
    problems = {p.id: p for p in generate_problems(n=4, steps=2, seed=0)}
    assert len(recs) == 4 * 2 and [r["problem_id"] for r in recs][::2] == [f"arith-s0-{i}" for i in range(4)]
    annotated = [r for r in recs if r["status"] == "annotated"]
    assert annotated, "the embedded model should keep the chunk format in some samples"
    for r in annotated:
        h = len(r["chunks"])
        assert len(r["q"]) == h and r["rollouts"] == 4 * (h + 1) and len(r["rollout_successes"]) == h + 1
        assert r["q_init"] == r["rollout_successes"][0] / 4
        for scheme in ("abs-q", "rel-ratio", "rel-effective"):
            assert r["labels"][scheme] == assign_labels(r["q"], q_init=r["q_init"], scheme=scheme,
                                                        gamma=0.7, alpha=0.8, n=4)
        # the exact first wrong chunk of this very solution, as the arith checker computes it
        truth = check_steps(problems[r["problem_id"]], r["chunks"])
        assert r["truth"] == {"first_error": truth.first_error, "reason": truth.reason}
        assert r["policy"] == "smollm2-135m" and r["rollout"]["m"] == 4 and r["rollout"]["adaptive"] is False
    assert all("truth" not in r for r in recs if r["status"] != "annotated")
    assert summary["solutions"] == 8 and summary["compute"]["rollouts"] == sum(r["rollouts"] for r in annotated)
    assert (out / "report.md").read_text().startswith("# Annotation report")
    assert (out / "q_trajectories.png").stat().st_size > 1000
    assert summary["truth_agreement"]["abs-q"]["solutions"] == len(annotated)


def test_shards_merge_to_the_single_process_result(reference, tmp_path):
    ref_out, ref_summary = reference
    # Shards run in any order; a shard that finds others unfinished returns None and writes no merge,
    # the one that completes the set merges and returns the same numbers as a single process.
    assert annotate(_cfg(tmp_path, num_shards=2, shard=1), progress=False) is None
    assert not (tmp_path / "annotations.jsonl").exists()
    assert _counts(annotate(_cfg(tmp_path, num_shards=2, shard=0), progress=False)) == _counts(ref_summary)
    again = annotate(_cfg(tmp_path, num_shards=2), progress=False)  # nothing left to do: merges again
    assert _counts(again) == _counts(ref_summary)
    assert len(list((tmp_path / "shards").glob("*.jsonl"))) == 2
    assert _records(tmp_path) == _records(ref_out)


def test_killed_run_resumes_without_loss_or_duplicates(reference, tmp_path):
    ref_out, _ = reference
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({**SMALL, "out": str(tmp_path / "run")}))
    cmd = [sys.executable, "-m", "stepjudge.cli.main", "annotate", "--config", str(cfg_file), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = tmp_path / "run" / "shards" / "shard-00000-of-00001.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (shard.exists() and shard.read_text().count("\n") >= 1):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = shard.read_text().count("\n")
    assert 1 <= done < 4, "the run should have been killed part-way"
    with open(shard, "a") as f:
        f.write('{"group": 3, "problems": [')  # and a torn line, as if killed mid-write
    from stepjudge.cli.main import main

    assert main(cmd[3:]) == 0
    groups = [json.loads(x)["group"] for x in shard.read_text().splitlines()]
    assert sorted(groups) == [0, 1, 2, 3]
    assert _records(tmp_path / "run") == _records(ref_out)  # same as an uninterrupted run


def test_ray_two_workers_match_single_process(reference, tmp_path):
    pytest.importorskip("ray")
    ref_out, _ = reference
    annotate(_cfg(tmp_path, ray=True, ray_workers=2, num_shards=2), progress=False)
    assert _records(tmp_path) == _records(ref_out)


def test_malformed_problem_file_names_file_and_line(tmp_path):
    bad = tmp_path / "problems.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n')
    with pytest.raises(DataError, match=r"problems.jsonl:2"):
        annotate(_cfg(tmp_path / "out", problems=str(bad), prompt_style="chat"), progress=False)
    assert not (tmp_path / "out" / "annotations.jsonl").exists()


def test_unreachable_engine_server_is_a_clear_error_and_keeps_outputs(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(tmp_path, engine={"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0,
                                 "timeout_s": 5})
    with pytest.raises(EngineError, match=f"127.0.0.1:{port}"):
        annotate(cfg, progress=False)
    shard = tmp_path / "shards" / "shard-00000-of-00001.jsonl"
    assert not shard.exists() or shard.read_text() == ""


def test_annotation_key_changes_with_the_records_only():
    from stepjudge.annotate.groups import RESUME_KEYS, AnnotateConfig, annotation_key

    base = AnnotateConfig(problems="arith", rollouts=4, out="runs/a")
    key = annotation_key(base)
    assert len(key) == 16 and int(key, 16) >= 0
    # where it is written and how fast it runs do not change the records
    assert annotation_key(base.model_copy(update={"out": "elsewhere"})) == key
    assert annotation_key(base.model_copy(update={"engine": base.engine.model_copy(update={"num_threads": 1})})) == key
    # every record-changing setting does
    for field, value in (("rollouts", 8), ("seed", 1), ("samples_per_problem", 2), ("arith", {"n": 3})):
        assert field in RESUME_KEYS
        assert annotation_key(base.model_copy(update={field: value})) != key
