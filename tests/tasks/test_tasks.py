"""The task registry: name resolution, what each built-in task loads, new problems for later stages,
and a toy task (one class) run through annotation's problem loading, prompt, grading and step truth."""

from collections.abc import Sequence

import pytest

from stepjudge.annotate.groups import AnnotateConfig, annotate_group, load_annotation_problems
from stepjudge.data.loaders import find_data_root, load_gsm8k, load_math500, load_math_test
from stepjudge.data.records import Problem
from stepjudge.engines.base import Capability, Completion, Engine, GenerationResult, SamplingParams
from stepjudge.errors import DataError, EngineCapabilityError
from stepjudge.grading import Grader, GradeResult
from stepjudge.policy.prompts import chunked_solver_messages, fewshot_prompt
from stepjudge.tasks import (
    DEFAULT_SOURCE,
    ArithTask,
    FileTask,
    Gsm8kTask,
    Math500Task,
    MathTestTask,
    StepTruth,
    Task,
    get_task,
    load_problem_set,
    new_problems_options,
    register_task,
    registered_tasks,
    task_of,
    unregister_task,
)
from stepjudge.tasks.arith import check_steps, generate_problems, reference_solution


def test_names_resolve_to_tasks_with_their_option():
    cases = {"arith": (ArithTask, None), "gsm8k": (Gsm8kTask, None), "GSM8K:train": (Gsm8kTask, "train"),
             "math500": (Math500Task, None), "math-500": (Math500Task, None), "math-test": (MathTestTask, None),
             "math_test5000": (MathTestTask, None), "my/problems.jsonl": (FileTask, None),
             "owner/name": (FileTask, None), "C:/runs/x:1.jsonl": (FileTask, None)}
    for source, (cls, option) in cases.items():
        task = get_task(source)
        assert (type(task), task.option, task.source) == (cls, option, source), source
    assert DEFAULT_SOURCE == "arith"
    assert {"arith", "gsm8k", "math500", "math-500", "math-test", "math_test", "math_test5000"} <= set(
        registered_tasks())
    with pytest.raises(DataError, match="dataset 'math500' takes no ':<option>'"):
        get_task("math500:x")


def test_registering_a_taken_name_is_refused():
    class Clash(Task):
        name = "gsm8k"

        def read_problems(self, settings=None, *, data_root=None):
            return []

    with pytest.raises(ValueError, match="'gsm8k' is already registered by Gsm8kTask"):
        register_task(Clash)
    assert registered_tasks()["gsm8k"] is Gsm8kTask


def test_arith_task_generates_from_its_settings_and_knows_step_truth():
    settings = {"n": 3, "steps": 2, "seed": 4}
    task = get_task("arith")
    problems = task.load(settings, limit=2)
    assert problems == generate_problems(**settings)[:2]
    assert load_problem_set("arith", settings, 2) == problems
    p = problems[0]
    good = reference_solution(p).split("\n")[:-1]
    assert task.step_truth(p, good) == StepTruth(-1, "ok") == check_steps(p, good)
    assert task.step_truth(p, ["1 + 1 = 2"]) == check_steps(p, ["1 + 1 = 2"])
    assert task.step_truth(p, ["1 + 1 = 2"]).first_error == 0
    other = Problem(id="x", problem="Start with 1.", answer="1", source="arith")  # no ops: not checkable
    assert task.step_truth(other, ["1 + 1 = 2"]) is None
    assert get_task("gsm8k").step_truth(p, good) is None


def test_task_of_a_loose_problem():
    (p,) = generate_problems(n=1, seed=0)
    assert type(task_of(p)) is ArithTask
    assert type(task_of(Problem(id="a", problem="q", answer="1", source="arith"))) is FileTask  # no ops
    assert type(task_of(Problem(id="g", problem="q", answer="1", source="gsm8k"))) is Gsm8kTask
    assert type(task_of(Problem(id="m", problem="q", answer="1", source="math"))) is MathTestTask
    mine = task_of(Problem(id="f", problem="q", answer="1", source="my_file"))
    assert (type(mine), mine.source) == (FileTask, "my_file")


def test_new_problems_options_for_downstream_stages():
    section = {"problems": "arith", "arith": {"n": 16, "steps": 2, "ops": ["add"], "seed": 3}, "rollouts": 8}
    assert new_problems_options(section) == {
        "problems": "arith", "arith": {"n": 16, "steps": 2, "ops": ["add"], "seed": 1003}}
    assert section["arith"]["seed"] == 3  # the annotation's own settings are untouched
    assert new_problems_options({"arith": {"n": 4}}) == {"arith": {"n": 4, "seed": 1000}}  # default source
    assert new_problems_options({"problems": "arith"}) == {"problems": "arith"}
    assert new_problems_options({}) == {}
    assert new_problems_options({"problems": "gsm8k:train"}) == {"problems": "gsm8k:train"}
    assert get_task("my.jsonl").new_problems_options({"problems": "my.jsonl"}) == {"problems": "my.jsonl"}


def test_file_task_reads_a_users_file(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n')
    problems = load_problem_set(str(f), limit=1)
    assert [(p.id, p.problem, p.answer, p.source) for p in problems] == [("mine-0", "2+2?", "4", "mine")]
    f.write_text('{"question": "2+2?"}\n')
    with pytest.raises(DataError, match="1 problems have no reference answer"):
        load_problem_set(str(f))
    assert [p.answer for p in load_problem_set(str(f), need_answers=False)] == [None]


@pytest.fixture
def data_root():
    root = find_data_root()
    if root is None:
        pytest.skip("bundled data (shared/data or STEPJUDGE_DATA) not available")
    return root


def test_dataset_tasks_read_the_bundled_sets(data_root):
    assert get_task("gsm8k").load(limit=3) == load_gsm8k()[:3]
    train = get_task("gsm8k:train").load(limit=2, data_root=str(data_root))
    assert [p.id for p in train] == ["gsm8k-train-0", "gsm8k-train-1"] and train == load_gsm8k("train", limit=2)
    assert len(get_task("math500").load()) == 500 and get_task("math-500").load(limit=1) == load_math500(limit=1)
    first = get_task("math-test").load(limit=1)
    assert first == load_math_test(limit=1) and (first[0].id, first[0].answer) == ("math-0", "2")
    with pytest.raises(DataError, match="processbench"):  # cases, not problems: no task of that name
        get_task("processbench").load()


def test_every_task_prompts_like_before_by_default():
    (p,) = generate_problems(n=1, seed=0)

    class Renders(Engine):
        model_name = "renders"
        capabilities = frozenset({Capability.CHAT_RENDERING})

        def generate(self, prompts, params):
            raise AssertionError("not called")

        def render(self, messages):
            return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    class TextOnly(Renders):
        capabilities = frozenset()

    for source in ("arith", "gsm8k", "math500", "x.jsonl"):
        task = get_task(source)
        assert task.solver_prompt(p, "fewshot", Renders()) == fewshot_prompt(p)
        assert task.solver_prompt(p, "chat", Renders()) == Renders().render(chunked_solver_messages(p.problem))
    with pytest.raises(EngineCapabilityError, match="has no chat rendering"):
        get_task("arith").solver_prompt(p, "chat", TextOnly())


# ------------------------------------------------------------------------------ adding a task


class Countdown(Task):
    """A toy task: count down from n; each chunk must be the next number; the answer is 0."""

    name = "countdown"
    problem_sources = ("countdown",)
    takes_option = True  # countdown:<start>

    def read_problems(self, settings=None, *, data_root=None):
        start = int(self.option or 3)
        return [Problem(id=f"cd-{n}", problem=f"Count down from {n}.", answer="0", source="countdown",
                        meta={"start": n}) for n in range(start, start + 3)]

    def solver_prompt(self, problem, style, engine):
        return f"[{style}] {problem.problem}\n"

    def grade(self, grader, pairs):
        return [GradeResult("correct" if text.rstrip().endswith("\\boxed{0}") else "incorrect", None)
                for text, _ in pairs]

    def step_truth(self, problem, chunks: Sequence[str]):
        for i, chunk in enumerate(chunks):
            if chunk.strip() != str(problem.meta["start"] - 1 - i):
                return StepTruth(i, "wrong number")
        return StepTruth(-1, "ok")


class CountingEngine(Engine):
    """Answers every prompt with the same two-chunk solution; the 2nd chunk is right only when the
    problem starts at 3; records prompts so the test can see which prompt the task gave."""

    model_name = "counting"

    def __init__(self):
        super().__init__()
        self.prompts: list[str] = []

    def generate(self, prompts, params: SamplingParams):
        self.prompts.extend(prompts)
        out = []
        for p in prompts:
            if "</chunk>" in p:  # a rollout from a chunk prefix: finish the count
                text = "\\boxed{0}"
            else:
                text = "<chunk>2</chunk>\n<chunk>1</chunk>\n\\boxed{0}" if "from 3" in p else "<chunk>9</chunk>\n\\boxed{5}"
            out.append(GenerationResult([Completion(text, 3, "stop") for _ in range(params.n)]))
        return out


@pytest.fixture
def countdown():
    register_task(Countdown)
    yield Countdown
    unregister_task(Countdown)
    assert "countdown" not in registered_tasks()


def test_a_new_task_is_one_class_and_annotation_uses_it(countdown):
    cfg = AnnotateConfig(problems="countdown:3", limit=2, samples_per_problem=1, rollouts=2, prompt_style="chat",
                         out="unused")
    problems = load_annotation_problems(cfg)
    assert [p.id for p in problems] == ["cd-3", "cd-4"] and type(task_of(problems[0])) is Countdown
    engine = CountingEngine()
    with Grader() as grader:  # the toy grades itself: the worker is never started
        line = annotate_group(problems, engine, grader, cfg, group=0)
    assert engine.prompts[:2] == ["[chat] Count down from 3.\n", "[chat] Count down from 4.\n"]
    first, second = (e["solutions"][0] for e in line["problems"])
    assert (first["correct"], first["chunks"], first["truth"]) == (
        True, ["2", "1"], {"first_error": -1, "reason": "ok"})
    assert (second["correct"], second["chunks"], second["truth"]) == (
        False, ["9"], {"first_error": 0, "reason": "wrong number"})
    # rollouts from the bare problem repeat the solution (right only from 3); after a chunk they reach 0
    assert first["rollout_successes"] == [2, 2, 2] and second["rollout_successes"] == [0, 2]
    assert len(engine.prompts) == 2 + 5
