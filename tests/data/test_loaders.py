"""Loaders on the bundled data (exact counts) and on small bad files (errors must name file:line field)."""

import gzip
import json
import sys
from pathlib import Path

import pytest

from stepjudge.data import (
    DATA_ENV,
    PROCESSBENCH_SUBSETS,
    ProcessBenchCase,
    find_data_root,
    load_gsm8k,
    load_math500,
    load_math_test,
    load_problems,
    load_processbench,
)
from stepjudge.errors import DataError


@pytest.fixture
def data_root():
    root = find_data_root()
    if root is None:
        pytest.skip("bundled data (shared/data or STEPJUDGE_DATA) not available")
    return root


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _pb(i, **over):
    d = {"id": f"gsm8k-{i}", "generator": "g", "problem": f"p{i}", "steps": ["a", "b"], "label": -1,
         "final_answer_correct": True}
    d.update(over)
    return d


# ---------------------------------------------------------------------------------------- real data


def test_processbench_counts(data_root):
    cases = load_processbench()
    counts = {s: sum(c.subset == s for c in cases) for s in PROCESSBENCH_SUBSETS}
    assert counts == {"gsm8k": 400, "math": 1000, "olympiadbench": 1000, "omnimath": 1000}
    errors = {s: sum(c.subset == s and c.has_error for c in cases) for s in PROCESSBENCH_SUBSETS}
    assert errors == {"gsm8k": 207, "math": 594, "olympiadbench": 661, "omnimath": 759}  # paper, Table 1


def test_processbench_known_case(data_root):
    first = load_processbench("gsm8k")[0]
    assert isinstance(first, ProcessBenchCase)
    assert first.id == "gsm8k-0" and first.subset == "gsm8k" and first.generator == "Qwen2-7B-Instruct"
    assert isinstance(first.label, int) and first.label == 1 and first.has_error
    assert isinstance(first.steps, list) and len(first.steps) == 4
    assert first.final_answer_correct is False
    # the fixed annotation (README note P1)
    math688 = next(c for c in load_processbench(["math"]) if c.id == "math-688")
    assert math688.label == 0


def test_processbench_limit_keeps_file_order(data_root):
    raw = json.loads((data_root / "processbench" / "math.json").read_text(encoding="utf-8"))
    cases = load_processbench(["math", "omnimath"], limit=5)
    assert [c.id for c in cases[:5]] == [r["id"] for r in raw[:5]]
    assert [c.subset for c in cases] == ["math"] * 5 + ["omnimath"] * 5
    assert load_processbench("gsm8k", limit=0) == []


def test_processbench_source_folder(data_root):
    assert len(load_processbench("gsm8k", source=data_root / "processbench")) == 400
    assert len(load_processbench("gsm8k", source=data_root)) == 400  # the data root works too


def test_gsm8k(data_root):
    problems = load_gsm8k()
    assert len(problems) == 1319
    first_raw = json.loads((data_root / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    expected = first_raw["answer"].split("####")[-1].strip().replace(",", "")
    assert problems[0].answer == expected == "18"
    assert problems[0].id == "gsm8k-test-0" and problems[0].problem == first_raw["question"]
    assert len({p.id for p in problems}) == 1319
    assert all(p.answer and "," not in p.answer for p in problems)
    assert len(load_gsm8k("train")) == 7473


def test_math500(data_root):
    problems = load_math500()
    assert len(problems) == 500 and len({p.id for p in problems}) == 500
    p = problems[0]
    assert p.id == "test/precalculus/807.json"
    assert p.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert p.meta["subject"] == "Precalculus" and p.meta["level"] == 2


def test_math_test(data_root):
    pytest.importorskip("stepjudge.grading.extract")
    problems = load_math_test()
    assert len(problems) == 5000
    assert problems[0].id == "math-0" and problems[0].answer == "2"
    assert problems[0].meta["level"] == "Level 3" and problems[0].meta["type"] == "Algebra"
    # every reference solution has a \boxed{...}; observed: all 5000 give a non-empty answer
    assert sum(bool(p.answer) for p in problems) == 5000


# ---------------------------------------------------------------------------------------- data root


def test_find_data_root_env(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert DATA_ENV == "STEPJUDGE_DATA" and find_data_root() == tmp_path.resolve()
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match="STEPJUDGE_DATA"):
        find_data_root()


def test_explicit_data_root_wins_over_env_and_reaches_the_loaders(tmp_path, monkeypatch):
    root = tmp_path / "mine"
    (root / "gsm8k").mkdir(parents=True)
    _jsonl(root / "gsm8k" / "test.jsonl", [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}])
    monkeypatch.setenv(DATA_ENV, str(tmp_path))  # exists, but the argument comes first
    assert find_data_root(root) == root.resolve()
    (p,) = load_gsm8k(data_root=root)
    assert (p.id, p.problem, p.answer) == ("gsm8k-test-0", "What is 1 + 1?", "2")
    with pytest.raises(DataError, match="data_root='/nowhere'"):
        find_data_root("/nowhere")
    monkeypatch.setenv(DATA_ENV, str(root))  # the environment variable alone reaches them too
    assert [q.answer for q in load_gsm8k()] == ["2"]


def test_find_data_root_walks_up_from_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert find_data_root() == (tmp_path / "shared" / "data").resolve()


def test_default_data_root_for_a_clone_with_shared_beside_it(monkeypatch):
    """CI layout: <dir>/<clone> and <dir>/shared/data; found from the clone's root without settings."""
    import stepjudge

    clone = Path(stepjudge.__file__).resolve().parents[1]
    if not (clone.parent / "shared" / "data").is_dir():
        pytest.skip("no shared/data beside this clone")
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(clone)
    assert find_data_root() == (clone.parent / "shared" / "data").resolve()


# ---------------------------------------------------------------------------------------- bad input


def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"problem": "a"}\n{"problem": "b"}\n{"problem": "c"\n', encoding="utf-8")
    with pytest.raises(DataError) as ei:
        load_problems(f)
    assert "mine.jsonl" in str(ei.value) and ":3" in str(ei.value)


def test_missing_problem_field_names_field_line_and_keys(tmp_path):
    f = _jsonl(tmp_path / "qs.jsonl", [{"problem": "a", "answer": "1"}, {"query": "b", "answer": "2"}])
    with pytest.raises(DataError) as ei:
        load_problems(f)
    msg = str(ei.value)
    assert "qs.jsonl:2" in msg and "'problem'" in msg and "query" in msg and "answer" in msg
    assert ei.value.field == "problem" and ei.value.line == 2


def test_no_problem_field_at_all_lists_candidates(tmp_path):
    f = _jsonl(tmp_path / "qs.jsonl", [{"text": "a"}])
    with pytest.raises(DataError) as ei:
        load_problems(f)
    assert "qs.jsonl:1" in str(ei.value) and "question" in str(ei.value) and "text" in str(ei.value)
    assert load_problems(f, problem_field="text")[0].problem == "a"


def test_processbench_label_out_of_range_names_label_and_record(tmp_path):
    (tmp_path / "gsm8k.json").write_text(json.dumps([_pb(0), _pb(1, label=5)]), encoding="utf-8")
    with pytest.raises(DataError) as ei:
        load_processbench("gsm8k", source=tmp_path)
    msg = str(ei.value)
    assert "gsm8k.json:2" in msg and "'label'" in msg and "record 2" in msg


def test_processbench_steps_not_a_list(tmp_path):
    (tmp_path / "math.jsonl").write_text(json.dumps(_pb(0, steps="one big step")) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        load_processbench(["math"], source=tmp_path)
    assert "'steps'" in str(ei.value) and "math.jsonl:1" in str(ei.value)


def test_processbench_local_folder_and_single_file(tmp_path):
    (tmp_path / "gsm8k.json").write_text(json.dumps([_pb(0), _pb(1, label=0)]), encoding="utf-8")
    cases = load_processbench(["gsm8k"], source=tmp_path)
    assert [c.has_error for c in cases] == [False, True]
    single = load_processbench(source=tmp_path / "gsm8k.json", limit=1)
    assert len(single) == 1 and single[0].subset == "gsm8k"
    with pytest.raises(DataError, match="math"):  # the folder lacks math.json
        load_processbench(["math"], source=tmp_path)


def test_processbench_unknown_subset():
    with pytest.raises(DataError) as ei:
        load_processbench(["gsm8k", "aime"])
    msg = str(ei.value)
    assert "aime" in msg and all(s in msg for s in PROCESSBENCH_SUBSETS)


def test_processbench_duplicate_ids(tmp_path):
    (tmp_path / "gsm8k.json").write_text(json.dumps([_pb(0), _pb(0)]), encoding="utf-8")
    with pytest.raises(DataError, match="duplicate id 'gsm8k-0'"):
        load_processbench("gsm8k", source=tmp_path)


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"question": "What is 2+3?", "final_answer": "5", "level": 1},
            {"question": "What is 10*10?", "final_answer": "100", "level": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "own.parquet")
    problems = load_problems(tmp_path / "own.parquet")
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("own-0", "What is 2+3?", "5"), ("own-1", "What is 10*10?", "100")]
    assert problems[1].meta == {"level": 2} and problems[0].source == "own"


def test_json_data_object_and_array(tmp_path):
    recs = [{"prompt": "p1", "gt": 3}, {"prompt": "p2", "gt": 2.5}, {"prompt": "p3"}]
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": recs, "version": 1}), encoding="utf-8")
    problems = load_problems(tmp_path / "wrapped.json")
    assert [(p.id, p.answer) for p in problems] == [
        ("wrapped-0", "3"), ("wrapped-1", "2.5"), ("wrapped-2", None)]
    (tmp_path / "plain.json").write_text(json.dumps(recs), encoding="utf-8")
    assert len(load_problems(tmp_path / "plain.json", limit=2)) == 2


def test_json_array_errors_say_record(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([{"problem": "a"}, 7]), encoding="utf-8")
    with pytest.raises(DataError) as ei:
        load_problems(tmp_path / "arr.json")
    assert "arr.json:2" in str(ei.value) and "record 2" in str(ei.value)
    (tmp_path / "broken.json").write_text('[\n{"problem": "a"},\n{"problem": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match="broken.json:3"):
        load_problems(tmp_path / "broken.json")
    (tmp_path / "obj.json").write_text(json.dumps({"rows": []}), encoding="utf-8")
    with pytest.raises(DataError, match="'data'"):
        load_problems(tmp_path / "obj.json")


def test_jsonl_gz_and_gsm8k_style_answers(tmp_path):
    f = tmp_path / "mix.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        g.write(json.dumps({"question": "q", "answer": "It costs <<2*500=1000>>1000.\n#### 1,000"}) + "\n")
    (p,) = load_problems(f)
    assert p.id == "mix-0" and p.answer == "1000"
    assert "#### 1,000" in p.meta["answer"]  # the worked solution is kept when the answer is extracted


def test_answer_from_solution_boxed(tmp_path):
    pytest.importorskip("stepjudge.grading.extract")
    f = _jsonl(tmp_path / "sol.jsonl", [{"problem": "q", "solution": "so $\\boxed{\\frac{1}{2}}$."}])
    (p,) = load_problems(f)
    assert p.answer == "\\frac{1}{2}" and "solution" in p.meta


def test_explicit_answer_field_must_exist(tmp_path):
    f = _jsonl(tmp_path / "a.jsonl", [{"problem": "q1", "target": "1"}, {"problem": "q2"}])
    assert [p.answer for p in load_problems(f)] == [None, None]  # auto-detect: no answer is fine
    assert load_problems(f, answer_field="target", limit=1)[0].answer == "1"
    with pytest.raises(DataError) as ei:
        load_problems(f, answer_field="target")
    assert "a.jsonl:2" in str(ei.value) and "'target'" in str(ei.value)


def test_id_field_and_duplicate_ids(tmp_path):
    f = _jsonl(tmp_path / "ids.jsonl", [{"uid": 7, "problem": "a"}, {"uid": "x", "problem": "b"}])
    assert [p.id for p in load_problems(f, id_field="uid")] == ["7", "x"]
    dup = _jsonl(tmp_path / "dup.jsonl", [{"id": "a", "problem": "p"}, {"id": "b", "problem": "p"},
                                          {"id": "a", "problem": "p"}])
    with pytest.raises(DataError) as ei:
        load_problems(dup, id_field="id")
    msg = str(ei.value)
    assert "dup.jsonl:3" in msg and "duplicate id 'a'" in msg and "line 1" in msg


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_problems(tmp_path / "nope.jsonl")
    (tmp_path / "t.csv").write_text("problem\nq\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type"):
        load_problems(tmp_path / "t.csv")
    (tmp_path / "x.parquet").write_text("not parquet", encoding="utf-8")
    with pytest.raises(DataError, match="x.parquet"):
        load_problems(tmp_path / "x.parquet")


def test_folder_source_uses_split(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [{"problem": "a"}])
    _jsonl(tmp_path / "test.jsonl", [{"problem": "b"}, {"problem": "c"}])
    assert len(load_problems(tmp_path)) == 1
    assert [p.id for p in load_problems(tmp_path, split="test")] == ["test-0", "test-1"]


def test_builtin_loaders_accept_a_file(tmp_path):
    f = _jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "x\n#### 12,345"}])
    (p,) = load_gsm8k(source=f)
    assert p.answer == "12345" and p.id == "gsm8k-test-0"
    bad = _jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match="b.jsonl:1 field 'answer'"):
        load_gsm8k(source=bad)


@pytest.fixture
def hub_offline(monkeypatch):
    """Make hub calls fail fast: HF_HUB_OFFLINE is read at import, so patch loaded modules too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for mod in ("huggingface_hub.constants", "datasets.config"):
        if mod in sys.modules:
            monkeypatch.setattr(sys.modules[mod], "HF_HUB_OFFLINE", True)


def test_hub_id_offline_gives_helpful_error(hub_offline):
    pytest.importorskip("datasets")
    with pytest.raises(DataError) as ei:
        load_problems("stepjudge-tests/no-such-dataset", split="test")
    msg = str(ei.value)
    assert "could not load hub dataset 'stepjudge-tests/no-such-dataset'" in msg
    assert "local" in msg and "STEPJUDGE_DATA" in msg


def test_processbench_hub_offline_gives_helpful_error(hub_offline):
    pytest.importorskip("datasets")
    with pytest.raises(DataError) as ei:
        load_processbench("gsm8k", source="stepjudge-tests/no-such-processbench")
    msg = str(ei.value)
    assert "could not load hub dataset" in msg and "STEPJUDGE_DATA" in msg and "{subset}.json" in msg
