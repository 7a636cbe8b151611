"""Bad input never corrupts a run: every verb that reads a user's file, fed a corpus of bad files.

Each case asserts what a user relies on: a non-zero exit, one ``stepjudge: error:`` line naming the
file (and the line and field where there is one), no traceback, and a run folder that was already
there left byte-identical (no ``run.json`` for a run that could not start, no empty result written over a
good one). The CLI runs in-process through ``main(argv)`` (every case fails before a model loads), plus
two real subprocess runs at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import pytest

from stepjudge.cli.main import main

ARITH_OK = {"problem": "What is 1 + 1?", "answer": "2"}
LABELS = {"abs-q": [1, 1, 0], "rel-ratio": [1, 0, 0], "rel-effective": [1, 1, 0]}
ANNOTATED = {"problem_id": "p0", "problem": "Start with 0.", "sample_index": 0, "status": "annotated",
             "chunks": ["a", "b", "c"], "labels": LABELS}
PROBLEM_JSON = json.dumps({"id": "p", "problem": "1 + 1?", "answer": "2", "source": "x", "meta": {}})
JUDGE_ROW = {"prompt": [{"role": "user", "content": "Is 1 + 1 = 2?"}], "label": "Positive"}
DISC_ROW = {"messages": [{"role": "user", "content": "1 + 1 = 2"}, {"role": "assistant", "content": "+"}]}
SEGMENT_ROW = {"prompt": [{"role": "user", "content": "1 + 1?"}],
               "completion": [{"role": "assistant", "content": "<chunk>2</chunk> \\boxed{2}"}]}
CRITIC_ROW = {"prompt": [{"role": "user", "content": "Critique: 1 + 1 = 2"}], "truth": True, "response": "2",
              "problem_json": PROBLEM_JSON}

# Files a verb writes; the run folder of every case starts with all of them holding a good result.
SENTINELS = ("summary.json", "report.md", "solutions.jsonl", "baseline_solutions.jsonl", "train.jsonl",
             "heldout.jsonl", "stats.json", "metrics.json", "predictions.jsonl", "annotations.jsonl",
             "samples.jsonl", "groups.jsonl", "sft_judge.jsonl", "refine.jsonl", "pipeline.json")


@dataclass(frozen=True)
class Verb:
    """How to call one verb with its input file ``F`` and run folder ``O`` (and an optional config)."""

    name: str
    argv: Callable[[str, str], list[str]]
    good: dict                      # one valid record of its input file
    missing: tuple[dict, str]       # a record without a required field, and that field
    wrong_type: tuple[dict, str]    # a record with a wrongly typed field, and that field
    typed_key: str                  # a config key whose YAML value gets the wrong type
    run_json: bool = False          # keeps a run.json (corrupt run.json case)
    in_folder: str | None = None    # the input file lives in a folder given on the command line
    config_flag: bool = True
    extra_files: dict[str, dict] = dc_field(default_factory=dict)  # other good input files beside it


def _problems(verb: str, *extra: str) -> Callable[[str, str], list[str]]:
    return lambda f, o: [verb, "--problems", f, "--policy", "tiny-random", *extra, "--out", o, "--no-progress"]


VERBS = [
    Verb("annotate", _problems("annotate"), ARITH_OK, ({"foo": 1}, "problem"),
         ({"problem": 5, "answer": "2"}, "problem"), "limit", run_json=True),
    Verb("solve", _problems("solve"), ARITH_OK, ({"foo": 1}, "problem"),
         ({"problem": 5, "answer": "2"}, "problem"), "limit", run_json=True),
    Verb("rerank", _problems("rerank", "--judge", "tiny-random"), ARITH_OK, ({"foo": 1}, "problem"),
         ({"problem": ["x"], "answer": "2"}, "problem"), "limit", run_json=True),
    Verb("refine", lambda f, o: ["refine", "--rows", f, "--out", o, "--no-progress"],
         {"problem_json": PROBLEM_JSON, "response": "2", "truth": True},
         ({"response": "2", "truth": True}, "problem_json"),
         ({"problem_json": PROBLEM_JSON, "response": 2, "truth": True}, "response"), "rounds"),
    Verb("train judge-data", lambda f, o: ["train", "judge-data", "--annotations", f, "--tokenizer", "tiny-random",
                                           "--out", o],
         ANNOTATED, ({k: v for k, v in ANNOTATED.items() if k != "status"}, "status"),
         ({**ANNOTATED, "chunks": "abc"}, "chunks"), "seed"),
    Verb("eval judge", lambda f, o: ["eval", "judge", "--judge", "tiny-random", "--data", f, "--out", o],
         {"prompt": [{"role": "user", "content": "Is 1 + 1 = 2?"}], "label": "Positive"},
         ({"label": "Positive"}, "prompt"), ({"prompt": 5, "label": "Positive"}, "prompt"), "votes"),
    Verb("eval processbench --score", lambda f, o: ["eval", "processbench", "--score", f, "--out", o],
         {"id": "gsm8k-0", "prediction": -1}, ({"prediction": 1}, "id"),
         ({"id": "gsm8k-0", "prediction": "x"}, "prediction"), "votes"),
    Verb("select build", lambda f, o: ["select", "build", "--samples", f, "--out", o],
         {"problem_id": "p", "prompt": "x", "samples": [{"text": "t", "correct": True, "score": 0.5}]},
         ({"prompt": "x", "samples": []}, "problem_id"),
         ({"problem_id": "p", "prompt": "x", "samples": "none"}, "samples"), "seed"),
    Verb("eval critique", lambda f, o: ["eval", "critique", "--refine-run", str(Path(f).parent), "-k", "0",
                                        "--out", o, "--no-progress"],
         {"id": "a", "problem": {"id": "a"}, "rounds": [], "truth": True},
         ({"problem": {"id": "a"}, "rounds": []}, "id"), ({"id": "a", "problem": {"id": "a"}, "rounds": 5}, "rounds"),
         "rounds", run_json=True, in_folder="refine.jsonl"),
    Verb("train judge", lambda f, o: ["train", "judge", "--model", "tiny-random", "--train-data", f, "--out", o],
         JUDGE_ROW, ({"label": "Positive"}, "prompt"), ({**JUDGE_ROW, "label": 5}, "label"), "seed"),
    Verb("train judge-warmup", lambda f, o: ["train", "judge-warmup", "--model", "tiny-random", "--train-data", f,
                                             "--out", o],
         JUDGE_ROW, ({"prompt": JUDGE_ROW["prompt"]}, "label"), ({**JUDGE_ROW, "prompt": "hi"}, "prompt"), "seed"),
    Verb("train judge-warmup --heldout-data", lambda f, o: [
        "train", "judge-warmup", "--model", "tiny-random", "--train-data", str(Path(f).parent / "train.jsonl"),
        "--heldout-data", f, "--out", o],
         JUDGE_ROW, ({"prompt": JUDGE_ROW["prompt"]}, "label"), ({**JUDGE_ROW, "prompt": "hi"}, "prompt"), "seed",
         extra_files={"train.jsonl": JUDGE_ROW}),
    Verb("train disc-sft", lambda f, o: ["train", "disc-sft", "--model", "tiny-random", "--train-data", f,
                                         "--out", o],
         DISC_ROW, ({"foo": 1}, "messages"), ({"messages": "+"}, "messages"), "seed"),
    Verb("train segment", lambda f, o: ["train", "segment", "--model", "tiny-random", "--data", f, "--out", o],
         SEGMENT_ROW, ({"prompt": SEGMENT_ROW["prompt"]}, "completion"),
         ({**SEGMENT_ROW, "completion": "x"}, "completion"), "seed"),
    Verb("train segment-data", lambda f, o: ["train", "segment-data", "--solutions", f, "--segmenter",
                                             "tiny-random", "--out", str(Path(o) / "sft.jsonl")],
         {"problem": "1 + 1?", "solution": "2"}, ({"problem": "1 + 1?"}, "solution"),
         ({"problem": "1 + 1?", "solution": 2}, "solution"), "tries"),
    Verb("train critic", lambda f, o: ["train", "critic", "--model", "tiny-random", "--actor.model", "tiny-random",
                                       "--train-data", f, "--out", o],
         CRITIC_ROW, ({k: v for k, v in CRITIC_ROW.items() if k != "truth"}, "truth"),
         ({**CRITIC_ROW, "response": 3}, "response"), "seed"),
    Verb("train laser", lambda f, o: ["train", "laser", "--model", "tiny-random", "--train-data", f, "--out", o],
         ARITH_OK, ({"foo": 1}, "problem"), ({"problem": 5, "answer": "2"}, "problem"), "seed"),
    Verb("select train", lambda f, o: ["select", "train", "--model", "tiny-random", "--data", f, "--out", o],
         {"prompt": "1 + 1?", "completion": "2"}, ({"prompt": "1 + 1?"}, "completion"),
         ({"prompt": "1 + 1?", "completion": 2}, "completion"), "seed"),
]


@dataclass
class Case:
    verb: Verb
    kind: str
    content: bytes | None = None       # the input file (None: not created)
    config: bytes | None = None        # a --config file (None: none)
    config_is_dir: bool = False
    line: int | None = None            # the line the message must name
    field: str | None = None           # the field (or YAML key) the message must name
    input_is_dir: bool = False
    corrupt_run_json: bool = False
    names: list[str] = dc_field(default_factory=list)  # other text the message must hold


def _line(rec: dict) -> bytes:
    return (json.dumps(rec) + "\n").encode()


def _cases() -> list[Case]:
    cases = []
    for v in VERBS:
        good = _line(v.good)
        cases += [
            Case(v, "empty file", b""),
            Case(v, "blank lines only", b"\n  \n"),
            Case(v, "malformed line", good + b'{"oops": \n' + good, line=2),
            Case(v, "missing field", _line(v.missing[0]), line=1, field=v.missing[1]),
            Case(v, "wrong type", _line(v.wrong_type[0]), line=1, field=v.wrong_type[1]),
            Case(v, "not UTF-8", good + b'{"problem": "\xff\xfe caf\xe9"}\n', line=2),
            Case(v, "not an object", good + b"[1, 2]\n", line=2),
            Case(v, "nonexistent path", None),
        ]
        if v.in_folder is None:
            cases.append(Case(v, "a folder as the input file", None, input_is_dir=True))
        if v.config_flag:
            cases += [
                Case(v, "unknown YAML key", good, config=b"votse: 3\n", field="votse"),
                Case(v, "wrong-typed YAML value", good, config=f"{v.typed_key}: [1, 2]\n".encode(), field=v.typed_key),
                Case(v, "invalid YAML", good, config=b"seed: [unclosed\n", line=2),  # the list is open at the end
                Case(v, "non-UTF-8 YAML", good, config=b"# caf\xe9\nseed: 1\n", line=1),
                Case(v, "a folder as --config", good, config_is_dir=True),
            ]
        if v.run_json:
            cases.append(Case(v, "corrupt run.json", good, corrupt_run_json=True, names=["run.json"]))
    return cases


CASES = _cases()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _prepare(case: Case, tmp: Path) -> tuple[list[str], Path, Path]:
    """The argv, the run folder (pre-filled with good results) and the file the message must name."""
    out = tmp / "out"
    out.mkdir()
    for name in SENTINELS:
        (out / name).write_text(f"GOOD {name}\n")
    if case.corrupt_run_json:
        (out / "run.json").write_text('{"task": "x", "config": {"seed": ')
    folder = tmp / "in"
    folder.mkdir()
    if case.verb.in_folder:
        (folder / "summary.json").write_text("{}\n")
        data = folder / case.verb.in_folder
    else:
        data = folder / "input.jsonl"
    for name, rec in case.verb.extra_files.items():
        (folder / name).write_text(json.dumps(rec) + "\n")
    if case.input_is_dir:
        data.mkdir()
    elif case.content is not None:
        data.write_bytes(case.content)
    argv = case.verb.argv(str(data), str(out))
    named = out / "run.json" if case.corrupt_run_json else data
    if case.config is not None or case.config_is_dir:
        cfg = tmp / "bad-config.yaml"
        cfg.mkdir() if case.config_is_dir else cfg.write_bytes(case.config)
        argv += ["--config", str(cfg)]
        named = cfg
    return argv, out, named


@pytest.mark.parametrize("case", CASES, ids=[f"{c.verb.name}: {c.kind}" for c in CASES])
def test_bad_input_is_one_clear_error_and_changes_nothing(case: Case, tmp_path, capsys):
    argv, out, named = _prepare(case, tmp_path)
    before = _snapshot(out)
    rc = main(argv)  # an exception escaping main() is the traceback a user would see: the test fails
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("stepjudge: error:")]
    assert len(errors) == 1, err
    msg = errors[0]
    assert str(named) in msg, msg
    if case.line is not None:
        assert f"{named}:{case.line}" in msg, msg
    if case.field is not None:
        assert case.field in msg, msg
    for text in case.names:
        assert text in msg, msg
    assert _snapshot(out) == before  # byte-identical: nothing written, nothing replaced, no run.json


def test_corpus_covers_every_verb_and_kind():
    """The corpus is what the report counts: 18 verb forms (9 run verbs, 9 training ones), every kind of bad
    input for each."""
    assert len({c.verb.name for c in CASES}) == 18
    assert {c.verb.name for c in CASES if c.verb.name.startswith("train ")} >= {
        "train judge", "train judge-warmup", "train disc-sft", "train segment", "train critic", "train laser"}
    assert len(CASES) == 255
    kinds = {c.kind for c in CASES}
    assert {"empty file", "malformed line", "missing field", "wrong type", "not UTF-8", "nonexistent path",
            "unknown YAML key", "wrong-typed YAML value", "a folder as --config", "corrupt run.json"} <= kinds


PIPELINE_CASES = {
    "unknown key": (b"out: OUT\nvotse: 3\n", "votse"),
    "wrong-typed value": (b"out: OUT\nstages: 5\n", "stages"),
    "wrong-typed section key": (b"out: OUT\nstages: [annotate]\nannotate: {rollouts: many}\n", "annotate.rollouts"),
    "invalid YAML": (b"out: OUT\nstages: [unclosed\n", None),
    "non-UTF-8": (b"out: OUT\n# caf\xe9\n", None),
    "corrupt run.json": (b"out: OUT\nstages: [report]\n", "run.json"),
}


@pytest.mark.parametrize("kind", list(PIPELINE_CASES))
def test_pipeline_bad_config(kind, tmp_path, capsys):
    text, key = PIPELINE_CASES[kind]
    out = tmp_path / "out"
    out.mkdir()
    for name in SENTINELS:
        (out / name).write_text(f"GOOD {name}\n")
    if kind == "corrupt run.json":
        (out / "run.json").write_text("{not json")
    cfg = tmp_path / "pipe.yaml"
    cfg.write_bytes(text.replace(b"OUT", str(out).encode()))
    before = _snapshot(out)
    assert main(["pipeline", str(cfg), "--no-progress"]) != 0
    err = capsys.readouterr().err
    msg = [line for line in err.splitlines() if line.startswith("stepjudge: error:")]
    assert len(msg) == 1 and "Traceback" not in err, err
    assert (str(out / "run.json") if kind == "corrupt run.json" else str(cfg)) in msg[0]
    if key:
        assert key in msg[0]
    assert _snapshot(out) == before


@pytest.mark.parametrize("config", ["folder", "missing"])
def test_pipeline_config_that_is_not_a_file(config, tmp_path, capsys):
    cfg = tmp_path / "pipe.yaml"
    if config == "folder":
        cfg.mkdir()
    assert main(["pipeline", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stepjudge: error: {cfg}") and err.count("\n") == 1


def test_a_typo_does_not_pin_the_run_folder(tmp_path, capsys):
    """A wrong input path leaves no run.json, so the corrected command with other settings is accepted
    (here: it gets as far as the corrupt-free folder check and the run)."""
    out = tmp_path / "run"
    assert main(["solve", "--problems", str(tmp_path / "typo.jsonl"), "--policy", "tiny-random", "--out", str(out),
                 "--no-progress"]) == 1
    assert not out.exists()
    assert "typo.jsonl" in capsys.readouterr().err


def test_a_second_writer_is_refused(tmp_path, capsys):
    from stepjudge.utils.io import RunFolderLock

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps(ARITH_OK) + "\n")
    out = tmp_path / "run"
    with RunFolderLock(out):  # another process holds the folder
        rc = main(["solve", "--problems", str(data), "--policy", "tiny-random", "--out", str(out), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{out} is in use by another stepjudge process (pid {os.getpid()}" in err
    assert not (out / "run.json").exists()


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "stepjudge.cli.main", *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_real_process_non_utf8_problems_and_missing_rows(tmp_path):
    bad = tmp_path / "problems.jsonl"
    bad.write_bytes(_line(ARITH_OK) + b'{"problem": "\xff"}\n')
    r = _cli("solve", "--problems", str(bad), "--policy", "tiny-random", "--out", str(tmp_path / "o"),
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"stepjudge: error: {bad}:2: not UTF-8 text")
    assert not (tmp_path / "o").exists()
    r = _cli("eval", "judge", "--judge", "tiny-random", "--data", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"stepjudge: error: {tmp_path / 'nope.jsonl'}: held-out rows: "
                                                 "no such file")
