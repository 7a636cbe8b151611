"""Record validation: every bad value must surface as a DataError naming the field (and file:line)."""

import pytest

from stepjudge.data import Problem, ProcessBenchCase, Solution
from stepjudge.errors import DataError


def _case(**over):
    d = {"id": "gsm8k-0", "subset": "gsm8k", "generator": "m", "problem": "1+1?",
         "steps": ["1+1=2", "so 2"], "label": -1, "final_answer_correct": True}
    d.update(over)
    return d


def test_problem_round_trip_and_defaults():
    p = Problem(id="a", problem="What is 2+2?", answer="4")
    assert p.source == "" and p.meta == {}
    assert Problem(id="b", problem="x", answer=None).meta is not p.meta  # no shared mutable default
    d = Problem(id="a", problem="q", answer=None, source="s", meta={"level": 3}).to_dict()
    assert d == {"id": "a", "problem": "q", "answer": None, "source": "s", "meta": {"level": 3}}
    assert Problem.from_dict(d) == Problem(id="a", problem="q", answer=None, source="s", meta={"level": 3})


def test_problem_from_dict_minimal_and_extra_keys_ignored():
    p = Problem.from_dict({"id": "a", "problem": "q", "answer": "1", "extra": 5})
    assert (p.answer, p.source, p.meta) == ("1", "", {})


def test_problem_missing_field_names_field_file_and_keys():
    with pytest.raises(DataError) as ei:
        Problem.from_dict({"id": "a", "question": "q"}, path="f.jsonl", line=7)
    msg = str(ei.value)
    assert "f.jsonl:7" in msg and "'problem'" in msg and "question" in msg
    assert ei.value.field == "problem" and ei.value.line == 7


@pytest.mark.parametrize("bad, field", [
    ({"id": 3, "problem": "q", "answer": "1"}, "id"),
    ({"id": "a", "problem": ["q"], "answer": "1"}, "problem"),
    ({"id": "a", "problem": "q", "answer": 4}, "answer"),
    ({"id": "a", "problem": "q", "answer": "1", "meta": [1]}, "meta"),
    ({"id": "a", "problem": "q", "answer": "1", "source": None}, "source"),
])
def test_problem_wrong_types(bad, field):
    with pytest.raises(DataError) as ei:
        Problem.from_dict(bad, path="p.json", line=2)
    assert ei.value.field == field and f"'{field}'" in str(ei.value) and "p.json:2" in str(ei.value)


def test_from_dict_rejects_non_objects():
    with pytest.raises(DataError, match="expected a JSON object"):
        Problem.from_dict(["not", "a", "dict"])


def test_solution_text_and_round_trip():
    s = Solution(problem_id="p1", steps=["Step one.", "Step two."], answer="7")
    assert s.text == "Step one.\n\nStep two."
    assert Solution.from_dict(s.to_dict()) == s
    assert Solution.from_dict({"problem_id": "p", "steps": []}).text == ""


def test_solution_bad_steps():
    with pytest.raises(DataError) as ei:
        Solution.from_dict({"problem_id": "p", "steps": "one step"}, path="s.jsonl", line=4)
    assert ei.value.field == "steps" and "s.jsonl:4" in str(ei.value)
    with pytest.raises(DataError, match="item 1"):
        Solution.from_dict({"problem_id": "p", "steps": ["ok", 2]})


def test_processbench_case_round_trip_and_has_error():
    c = ProcessBenchCase.from_dict(_case())
    assert not c.has_error
    assert ProcessBenchCase.from_dict(c.to_dict()) == c
    assert ProcessBenchCase.from_dict(_case(label=1)).has_error
    assert ProcessBenchCase.from_dict(_case(label=0)).has_error


@pytest.mark.parametrize("label", [2, -2, 99])
def test_processbench_label_out_of_range(label):
    with pytest.raises(DataError) as ei:
        ProcessBenchCase.from_dict(_case(label=label), path="pb.json", line=3)
    assert ei.value.field == "label" and "'label'" in str(ei.value) and str(label) in str(ei.value)


@pytest.mark.parametrize("label", [True, "1", 1.0, None])
def test_processbench_label_must_be_int(label):
    with pytest.raises(DataError) as ei:
        ProcessBenchCase.from_dict(_case(label=label))
    assert ei.value.field == "label"


@pytest.mark.parametrize("steps", ["a single string", None, [1, 2], []])
def test_processbench_bad_steps(steps):
    with pytest.raises(DataError) as ei:
        ProcessBenchCase.from_dict(_case(steps=steps))
    assert ei.value.field == "steps"


def test_processbench_final_answer_correct_must_be_bool():
    with pytest.raises(DataError) as ei:
        ProcessBenchCase.from_dict(_case(final_answer_correct="true"))
    assert ei.value.field == "final_answer_correct"


def test_processbench_direct_construction_checks_label():
    with pytest.raises(DataError) as ei:
        ProcessBenchCase(id="x", subset="math", generator="g", problem="p", steps=["a"], label=1,
                         final_answer_correct=False)
    assert ei.value.field == "label"
