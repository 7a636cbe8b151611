"""`stepjudge pipeline`: stages connect through one run folder, finished stages are skipped."""

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from stepjudge.cli.main import main as cli_main
from stepjudge.data.loaders import find_data_root
from stepjudge.pipeline import Pipeline, PipelineConfig

torch.set_num_threads(1)
needs_data = pytest.mark.skipif(find_data_root() is None, reason="../shared/data not found")


def _rec(pid, si, chunks, labels):
    return {"problem_id": pid, "problem": f"Start with {si}. Add 2.", "sample_index": si, "status": "annotated",
            "chunks": chunks, "labels": {"abs-q": labels, "rel-ratio": labels, "rel-effective": labels}}


def _annotated_folder(out: Path) -> None:
    """An annotate stage that already finished (its outputs, as `stepjudge annotate` writes them)."""
    ann = out / "annotate"
    ann.mkdir(parents=True)
    recs = [_rec(f"p{i}", s, [f"{i} + 2 = {i + 2}", f"{i + 2} + 1 = {i + 4}"], [1, 0])
            for i in range(4) for s in range(2)]
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (ann / "report.json").write_text(json.dumps({"problems": 4, "solutions": 8, "solutions_annotated": 8,
                                                 "chunks": 16, "class_balance": {}}))


def _config(out: Path, **kw) -> dict:
    return {"out": str(out), "policy": "tiny-random",
            "stages": ["annotate", "judge_data", "judge", "processbench", "chunk_reset", "report"],
            "annotate": {"arith": {"n": 4}},
            "judge_data": {"format": "no-cot", "heldout_problems": 1},
            "judge": {"max_steps": 1, "num_generations": 2, "per_device_batch_size": 4,
                      "max_completion_length": 4, "max_prompt_length": 512, "heldout_max_tokens": 4,
                      "learning_rate": 1e-3, "save_steps": 50, "use_cpu": True},
            "processbench": {"subsets": ["gsm8k"], "limit": 2, "balanced": True},
            "chunk_reset": {"arith": {"n": 2}, "chunk_max_tokens": 4, "max_chunks": 2},
            **kw}


@needs_data
def test_pipeline_runs_missing_stages_and_skips_finished_ones(tmp_path):
    out = tmp_path / "run"
    _annotated_folder(out)
    state = Pipeline(_config(out), progress=False).run()
    ran = {s: v["last_run"] for s, v in state["stages"].items()}
    assert ran == {"annotate": "skipped", "judge_data": "ran", "judge": "ran", "processbench": "ran",
                   "chunk_reset": "ran", "report": "ran"}
    stats = json.loads((out / "judge_data" / "stats.json").read_text())
    assert stats["train"]["problems"] == 3 and stats["heldout"]["problems"] == 1
    for f in ("judge/final/model.safetensors", "judge/eval_before.json", "judge/eval_after.json",
              "processbench_before/summary.json", "processbench_after/summary.json", "report.html",
              "report.md", "results.json", "summary.png"):
        assert (out / f).exists(), f
    pb_after = json.loads((out / "processbench_after" / "run.json").read_text())["config"]
    assert pb_after["judge"] == str(out / "judge" / "final") and pb_after["response_prefix"] == "\\boxed{"
    assert pb_after["judge_prompt"] == "no-cot"
    # Chunk-Reset rejects below the cut fitted on the judge's train split, recorded in its run folder
    cut = json.loads((out / "judge" / "eval_after.json").read_text())["calibrated"]["threshold"]
    solve_cfg = json.loads((out / "chunk_reset" / "run.json").read_text())["config"]
    assert solve_cfg["judge_spec"]["threshold"] == cut and solve_cfg["reset"] is True
    assert solve_cfg["judge"] == str(out / "judge" / "final")

    model = out / "judge" / "final" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    state = Pipeline(_config(out), progress=False).run()  # everything done: only the report is rebuilt
    assert {s: v["last_run"] for s, v in state["stages"].items()} == {
        "annotate": "skipped", "judge_data": "skipped", "judge": "skipped", "processbench": "skipped",
        "chunk_reset": "skipped", "report": "ran"}
    assert model.stat().st_mtime_ns == stamp
    assert state["stages"]["judge"]["seconds"] > 0  # the time of the run that did it is kept

    (out / "processbench_after" / "summary.json").unlink()  # a stage interrupted before its end
    state = Pipeline(_config(out), progress=False).run()
    assert state["stages"]["processbench"]["last_run"] == "ran" and state["stages"]["judge"]["last_run"] == "skipped"
    assert model.stat().st_mtime_ns == stamp


def test_changed_settings_under_a_finished_run_are_refused(tmp_path):
    from stepjudge.errors import RunFolderError

    out = tmp_path / "run"
    _annotated_folder(out)
    cfg = _config(out, stages=["annotate"])
    Pipeline(cfg, progress=False).run()
    with pytest.raises(RunFolderError, match="judge_data"):
        Pipeline({**cfg, "judge_data": {"format": "no-cot", "scheme": "abs-q"}}, progress=False).run()


def test_typos_in_stage_sections_fail_before_anything_runs(tmp_path):
    with pytest.raises(ValidationError, match="rollotus"):
        PipelineConfig(**_config(tmp_path, annotate={"rollotus": 4}))
    with pytest.raises(ValidationError, match="learning_rat"):
        PipelineConfig(**_config(tmp_path, judge={"learning_rat": 1e-5}))


def test_cli_help_and_report_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["pipeline", "--help"])
    assert e.value.code == 0
    assert "skipped" in capsys.readouterr().out
    out = tmp_path / "run"
    _annotated_folder(out)
    cfg = tmp_path / "p.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(_config(out)))
    assert cli_main(["pipeline", str(cfg), "--stages", "report", "--no-progress"]) == 0
    assert (out / "report.html").exists() and not (out / "judge").exists()
    assert "Annotation" in (out / "report.md").read_text()


def test_selection_stage_fine_tunes_on_both_sets_and_scores_each_policy(tmp_path):
    """best_of_n's samples -> judge / outcome SFT sets -> two fine-tuned policies -> accuracy of all three."""
    out = tmp_path / "run"
    (out / "best_of_n").mkdir(parents=True)
    recs = []
    for i in range(3):
        texts = [f"<chunk>{i} + 1 = {i + 1}</chunk>\n\\boxed{{{i + 1}}}", f"<chunk>{i} + 1 = {i + 2}</chunk>"]
        recs.append({"problem_id": f"arith-{i}", "prompt": f"Start with {i}. Add 1.\n",
                     "samples": [{"text": texts[0], "correct": True, "score": 0.9},
                                 {"text": texts[0], "correct": True, "score": 0.4},
                                 {"text": texts[1], "correct": False, "score": 0.2}]})
    recs.append({"problem_id": "arith-9", "prompt": "Start with 9. Add 1.\n",
                 "samples": [{"text": "no", "correct": False, "score": None}]})
    (out / "best_of_n" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (out / "best_of_n" / "summary.json").write_text("{}")
    cfg = {"out": str(out), "policy": "tiny-random", "stages": ["selection", "report"],
           "selection": {"seed": 0, "sft": {"max_steps": 1, "per_device_batch_size": 2,
                                            "gradient_accumulation_steps": 1, "learning_rate": 1e-3},
                         "eval": {"arith": {"n": 2}, "chunk_max_tokens": 4, "max_chunks": 1}}}
    Pipeline(cfg, progress=False).run()
    summary = json.loads((out / "selection" / "summary.json").read_text())
    sets = summary["sets"]
    assert (sets["problems"], sets["selected_problems"], sets["skipped_no_eligible_sample"]) == (4, 3, 1)
    rows = {name: [json.loads(x) for x in (out / "selection" / "sets" / f"sft_{name}.jsonl").read_text().splitlines()]
            for name in ("judge", "outcome")}
    assert [r["sample_index"] for r in rows["judge"]] == [0, 0, 0]  # the judge's favourite correct sample
    assert [r["sample_index"] for r in rows["outcome"]] == [1, 1, 0]  # a seeded draw among the correct ones
    assert sets["same_pick"] == 1 and sets["mean_score_judge_pick"] == 0.9
    assert sets["mean_score_outcome_pick"] == pytest.approx((0.4 + 0.4 + 0.9) / 3)
    # Each policy is scored on the same 2 new problems without a judge, and the summary carries the numbers
    # its own eval run measured: a 4-token single chunk from a random model never reaches an answer.
    final = {name: str(out / "selection" / f"sft_{name}" / "final") for name in ("judge", "outcome")}
    assert summary["policies"] == {
        "base": {"model": "tiny-random", "sft_rows": 0, "accuracy": 0.0, "problems": 2, "mean_accepted_tokens": 4.0},
        "judge": {"model": final["judge"], "sft_rows": 3, "accuracy": 0.0, "problems": 2,
                  "mean_accepted_tokens": 4.0},
        "outcome": {"model": final["outcome"], "sft_rows": 3, "accuracy": 0.0, "problems": 2,
                    "mean_accepted_tokens": 4.0}}
    for name in ("judge", "outcome"):
        assert (Path(final[name]) / "model.safetensors").exists()
    for name in ("base", "judge", "outcome"):
        ev = json.loads((out / "selection" / f"eval_{name}" / "summary.json").read_text())
        assert ev["primary"] == "baseline" and ev["methods"]["baseline"]["status"] == {"truncated": 2}
        assert ev["methods"]["baseline"]["judge_calls"] == 0
    report = (out / "report.md").read_text()
    assert "| base policy (no SFT) | 0 | 0.0 | 4.0 |" in report
    assert "| SFT on judge-selected samples | 3 | 0.0 | 4.0 |" in report
    assert "| problems with an eligible sample: 3 of 4; same pick by both rules: 1 |  |  |  |" in report
    headline = json.loads((out / "results.json").read_text())["headline"]
    assert headline == {"policy accuracy after SFT (%)": {"base": 0.0, "judge-selected": 0.0, "outcome-only": 0.0}}
