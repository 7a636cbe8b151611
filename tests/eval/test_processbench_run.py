"""ProcessBench runner: protocol bookkeeping, run folder, resume after a crash, --score."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepjudge.cli.main import main as cli_main
from stepjudge.data.loaders import find_data_root, load_processbench
from stepjudge.data.records import ProcessBenchCase
from stepjudge.errors import DataError, RunFolderError
from stepjudge.eval.processbench import ProcessBenchEvalConfig, ProcessBenchRun, _advance, _CaseState

needs_data = pytest.mark.skipif(find_data_root() is None, reason="../shared/data not found")
CASE = ProcessBenchCase(id="gsm8k-x", subset="gsm8k", generator="g", problem="P", steps=["a", "b", "c"],
                        label=1, final_answer_correct=False)


def test_stepwise_stops_at_first_negative():
    s = _CaseState(CASE)
    _advance(s, "stepwise", ["ok \\boxed{Positive}"], 5, "Positive")
    assert not s.done and s.step == 1
    _advance(s, "stepwise", ["\\boxed{Negative}", "\\boxed{Negative}", "\\boxed{Positive}"], 9, "Positive")
    assert s.done and s.prediction == 1 and s.calls == 2 and s.tokens == 14
    assert s.record()["match"] is True


def test_stepwise_all_positive_or_unparsed_predicts_minus_one():
    s = _CaseState(CASE)
    for out in (["\\boxed{Positive}"], ["no verdict"], ["\\boxed{Positive}"]):
        _advance(s, "stepwise", out, 1, "Positive")
    assert s.done and s.prediction == -1
    s = _CaseState(CASE)
    _advance(s, "stepwise", ["garbage"], 1, "Negative")
    assert s.done and s.prediction == 0


def test_critic_and_prm_protocols():
    s = _CaseState(CASE)
    _advance(s, "critic", ["\\boxed{1}", "\\boxed{2}", "\\boxed{1}", "x"], 4, "Positive")
    assert s.done and s.prediction == 1
    s = _CaseState(CASE)
    _advance(s, "critic", ["none"], 4, "Positive")
    assert s.done and s.prediction is None
    s = _CaseState(CASE)
    _advance(s, "prm", ["+"], 1, "Positive")
    _advance(s, "prm", ["?"], 1, "Positive")  # anything but "+" flags the step (benchmark convention)
    assert s.done and s.prediction == 1


def _cfg(tmp_path, **kw):
    base = dict(judge="tiny-random", protocol="stepwise", subsets=["gsm8k"], limit=3, max_tokens=4,
                batch_size=2, out=str(tmp_path / "run"))
    base.update(kw)
    return ProcessBenchEvalConfig(**base)


@needs_data
def test_run_folder_outputs_and_resume_skips_finished(tmp_path):
    run = ProcessBenchRun(_cfg(tmp_path), progress=False)
    summary = run.run()
    out = Path(run.out)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[0])
    assert {"id", "subset", "label", "prediction", "judgements", "judge_calls"} <= set(rec)
    assert rec["judgements"][0]["outputs"]  # raw judge outputs are kept
    saved = json.loads((out / "summary.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(summary))
    assert "| gsm8k | 3 |" in (out / "report.md").read_text()
    # A bigger limit judges only the new cases.
    run2 = ProcessBenchRun(_cfg(tmp_path, limit=5), progress=False)
    run2.run()
    ids = [json.loads(x)["id"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert ids[:3] == [json.loads(x)["id"] for x in lines] and len(ids) == len(set(ids)) == 5


@needs_data
def test_resume_refuses_different_settings(tmp_path):
    ProcessBenchRun(_cfg(tmp_path, limit=1), progress=False).run()
    with pytest.raises(RunFolderError, match="protocol"):
        ProcessBenchRun(_cfg(tmp_path, limit=1, protocol="critic"), progress=False).run()


@needs_data
def test_torn_last_line_is_dropped_and_case_rejudged(tmp_path):
    cfg = _cfg(tmp_path, limit=2)
    ProcessBenchRun(cfg, progress=False).run()
    pred = Path(cfg.out) / "predictions.jsonl"
    lines = pred.read_text().splitlines()
    pred.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # crash mid-write
    ProcessBenchRun(cfg, progress=False).run()
    ids = [json.loads(x)["id"] for x in pred.read_text().splitlines()]
    assert sorted(ids) == sorted(c.id for c in load_processbench(["gsm8k"], limit=2))


@needs_data
def test_killed_cli_run_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "stepjudge.cli.main", "eval", "processbench", "--judge", "tiny-random",
           "--protocol", "stepwise", "--subsets", "gsm8k", "--limit", "6", "--max-tokens", "24",
           "--batch-size", "1", "--engine.num-threads", "1", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (pred.exists() and pred.read_text().count("\n") >= 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = pred.read_text().count("\n")
    assert 2 <= done_before < 6, "the run should have been killed part-way"
    assert cli_main(cmd[3:]) == 0
    ids = [json.loads(x)["id"] for x in pred.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6


@needs_data
def test_score_predictions_cli_exact(tmp_path, capsys):
    cases = load_processbench(["gsm8k"])
    err = [c for c in cases if c.label != -1]
    cor = [c for c in cases if c.label == -1]
    # Hit every erroneous case, and exactly half (rounded down) of the correct ones.
    preds = [{"id": c.id, "prediction": c.label} for c in err]
    preds += [{"id": c.id, "prediction": -1 if i < len(cor) // 2 else 0} for i, c in enumerate(cor)]
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in preds))
    assert cli_main(["eval", "processbench", "--score", str(f)]) == 0
    s = json.loads(capsys.readouterr().out)
    acc_cor = 100 * (len(cor) // 2) / len(cor)
    assert s["gsm8k"]["n"] == 400 and len(cor) >= 2 and s["gsm8k"]["acc_error"] == 100.0
    assert s["gsm8k"]["acc_correct"] == pytest.approx(acc_cor)
    assert s["gsm8k"]["f1"] == pytest.approx(2 * 100 * acc_cor / (100 + acc_cor))
    assert s["average_f1"] == pytest.approx(s["gsm8k"]["f1"])


@needs_data
def test_score_rejects_bad_lines(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "gsm8k-0", "prediction": 1}\n{"id": "gsm8k-1"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2 field 'prediction'"):
        from stepjudge.eval.processbench import score_predictions_file

        score_predictions_file(f)
    f.write_text('{"id": "gsm8k-0", "prediction": "one"}\n')
    assert cli_main(["eval", "processbench", "--score", str(f)]) == 1


def _recording_engine():
    """The tiny-random hf engine, keeping every prompt it was asked (``.seen``)."""
    from stepjudge.engines.hf import HFEngine

    class Recording(HFEngine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.seen: list = []

        def generate(self, prompts, params):
            self.seen.extend(prompts)
            return super().generate(prompts, params)

    return Recording("tiny-random")


def test_verdict_only_judge_gets_its_prompt_and_prefilled_answer(tmp_path):
    engine = _recording_engine()
    case = ProcessBenchCase(id="gsm8k-y", subset="gsm8k", generator="g", problem="Start with 4. Add 3.",
                            steps=["4 + 3 = 7", "\\boxed{7}"], label=-1, final_answer_correct=True)
    run = ProcessBenchRun(_cfg(tmp_path, judge_prompt="no-cot", response_prefix="\\boxed{", max_tokens=3),
                          engine=engine, cases=[case], progress=False)
    run.run()
    first = engine.seen[0]
    assert isinstance(first, str) and first.endswith("<|im_start|>assistant\n\\boxed{")
    assert "Reply with only \\boxed{Positive}" in first and "4 + 3 = 7" in first
    rec = json.loads((Path(run.out) / "predictions.jsonl").read_text().splitlines()[0])
    assert all(o.startswith("\\boxed{") for j in rec["judgements"] for o in j["outputs"])


def test_a_warmed_up_judge_is_asked_with_its_warmup_prompt_step_by_step(tmp_path):
    from stepjudge.judge.warmup import compact_judge_messages

    engine = _recording_engine()
    case = ProcessBenchCase(id="gsm8k-z", subset="gsm8k", generator="g", problem="Start with 4. Add 3. Add 5.",
                            steps=["4 + 3 = 7", "7 + 5 = 12"], label=-1, final_answer_correct=True)
    warm = {"variant": "reference", "prompt": "compact"}
    run = ProcessBenchRun(_cfg(tmp_path, prompt_from_warmup=warm, judge_prompt="no-cot", max_tokens=2),
                          engine=engine, cases=[case], progress=False)
    run.run()  # a random judge writes no verdict: unparsed counts as Positive, so both steps are judged
    assert engine.seen == [compact_judge_messages(case.problem, [], "4 + 3 = 7", reference=True),
                           compact_judge_messages(case.problem, ["4 + 3 = 7"], "7 + 5 = 12", reference=True)]
    saved = json.loads((Path(run.out) / "run.json").read_text())["config"]["prompt_from_warmup"]
    assert (saved["variant"], saved["prompt"]) == ("reference", "compact")
    with pytest.raises(ValueError, match="keep"):
        _cfg(tmp_path, prompt_from_warmup={"prompt": "keep"})
