"""Answer equivalence: exact statuses users rely on, threads, and the per-item wall-clock limit."""

import multiprocessing
import threading

import pytest

from stepjudge.errors import StepJudgeError
from stepjudge.grading import Grader, GradeResult, grade, normalize_answer, verify
from stepjudge.grading.verify import REASON_GOLD_UNPARSEABLE, REASON_NO_ANSWER, REASON_PRED_UNPARSEABLE

# A real input on which sympy never finishes: math-verify parses it instantly, but comparing the
# power tower with 3 evaluates it numerically (observed: > 15 s of CPU with flat memory use).
SLOW_RESPONSE = r"\boxed{9^{9^{9^{9}}}}"


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=10.0) as g:
        yield g


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        # fractions and decimals
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\frac{1}{2}}", "1/2"),
        (r"\boxed{\dfrac12}", r"\frac{1}{2}"),
        (r"\boxed{0.5}", r"\tfrac{1}{2}"),
        (r"\boxed{\frac{4}{2}}", "2"),
        # LaTeX structure
        (r"\boxed{\left(1,2\right)}", "(1,2)"),
        (r"\boxed{( 1, 2 )}", "(1,2)"),
        (r"\boxed{x^2+2x+1}", "(x+1)^2"),
        (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        # roots
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}"),
        # negatives
        (r"\boxed{-3}", "-3"),
        (r"\boxed{-\frac{1}{2}}", "-0.5"),
        # units
        ("The answer is $5$ cm.", "5"),
        (r"\boxed{5\text{ dollars}}", "5"),
        (r"\boxed{5 \text{ cm}^2}", "5"),
        (r"\boxed{\$5}", "5"),
        ("The answer is 12 square feet.", "12"),
        (r"\boxed{5}", r"5\text{ cm}"),
        (r"\boxed{90^\circ}", "90"),
        # percent is removable
        (r"\boxed{5\%}", "5"),
        ("The answer is 5%.", "5"),
        (r"\boxed{5}", r"5\%"),
        # GSM8K style, also with a full reference solution as gold
        ("3 * 400 = 1234\n#### 1,234", "1234"),
        ("#### 1234", "The total is 1,000 + 234.\n#### 1,234"),
        (r"so \boxed{7}", r"Adding up gives $\boxed{7}$."),
        # text answers
        (r"\boxed{\text{Monday}}", "Monday"),
        (r"\boxed{\text{(A)}}", "A"),
    ],
)
def test_correct(grader, response, gold):
    res = grader.grade(response, gold)
    assert res.status == "correct", res
    assert res.correct and res.reason is None


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (r"\boxed{3}", "4"),
        (r"\boxed{3}", "-3"),
        (r"\boxed{\frac{1}{3}}", "0.33"),
        (r"\boxed{\sqrt{2}}", "2"),
        (r"\boxed{(1,2)}", "(2,1)"),
        (r"\boxed{50\%}", "0.5"),  # documented: `%` is dropped, so this is 50 vs 0.5
        ("#### 1,235", "1234"),
    ],
)
def test_incorrect(grader, response, gold):
    res = grader.grade(response, gold)
    assert res == GradeResult("incorrect", res.predicted, None)
    assert not res.correct


def test_no_answer_is_unparseable(grader):
    assert grader.grade("I am not sure.", "3") == GradeResult("unparseable", None, REASON_NO_ANSWER)


def test_garbage_in_box_is_unparseable(grader):
    # Documented choice: when math-verify builds no math object from the prediction -> "unparseable".
    assert grader.grade(r"\boxed{@@@}", "3") == GradeResult("unparseable", "@@@", REASON_PRED_UNPARSEABLE)
    # Words that sympy *can* read (as a product of symbols) are simply wrong.
    assert grader.grade(r"\boxed{hello}", "3").status == "incorrect"


def test_unparseable_gold_falls_back_to_strings(grader):
    assert grader.grade(r"\boxed{@@@}", "@@@") == GradeResult("correct", "@@@", None)
    assert grader.grade(r"\boxed{@@}", "@@@") == GradeResult("incorrect", "@@", REASON_GOLD_UNPARSEABLE)


def test_grade_many_keeps_order(grader):
    pairs = [(r"\boxed{1}", "1"), ("nothing", "2"), (r"\boxed{\frac{6}{4}}", "1.5"), (r"\boxed{3}", "4")]
    assert [r.status for r in grader.grade_many(pairs)] == ["correct", "unparseable", "correct", "incorrect"]
    assert grader.grade_many([]) == []


def test_fast_path_does_not_start_worker():
    g = Grader()
    try:
        assert g.grade(r"The answer is $1,234$.", "1234").correct
        assert g.grade(r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}").correct
        assert g.grade("nothing here", "1").status == "unparseable"
        assert g._proc is None
    finally:
        g.close()


def test_normalize_answer():
    assert normalize_answer(r" $\left( 1, 2 \right)$. ") == "(1,2)"
    assert normalize_answer(r"\dfrac{1}{2}\!") == r"\frac{1}{2}"
    assert normalize_answer("1,234,567") == "1234567"
    assert normalize_answer(r"\pi r^2") == r"\pi r^2"
    assert normalize_answer("3 or 4") == "3 or 4"  # not a unit


def test_threads(grader):
    """math-verify's own signal.alarm timeouts fail off the main thread; ours must not."""
    pairs = [(rf"\boxed{{\frac{{{2 * k}}}{{2}}}}", str(k)) for k in range(1, 9)]
    results: dict[int, GradeResult] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = grader.grade(*pairs[k])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(results[k].correct for k in range(len(pairs))), results


def test_timeout_then_recovers():
    with Grader(timeout_s=1.0) as g:
        first = g.grade(r"\boxed{\frac{1}{2}}", "0.5")
        assert first.correct
        pid = g._proc.pid
        pairs = [(r"\boxed{\sqrt{4}}", "2"), (SLOW_RESPONSE, "3"), (r"\boxed{2\sqrt{2}}", r"\sqrt{8}")]
        out = g.grade_many(pairs)
        assert out == [
            GradeResult("correct", r"\sqrt{4}"),
            GradeResult("incorrect", "9^{9^{9^{9}}}", "timeout"),
            GradeResult("correct", r"2\sqrt{2}"),
        ]
        assert g._proc.pid != pid  # the stuck worker was replaced
        assert g.grade(r"\boxed{-\frac{3}{6}}", "-0.5").correct


def test_close_and_context_manager():
    with Grader() as g:
        assert g.grade(r"\boxed{\frac{2}{4}}", "0.5").correct
        proc = g._proc
        assert proc.is_alive()
    assert g._proc is None and not proc.is_alive()
    g.close()  # idempotent
    with pytest.raises(StepJudgeError, match="closed"):
        g.grade(r"\boxed{\frac{2}{4}}", "0.5")


def test_constructor_validation():
    with pytest.raises(ValueError, match="timeout_s"):
        Grader(timeout_s=0)
    with pytest.raises(ValueError, match="unknown answer format"):
        Grader(formats=("boxd",))


def _grader_workers() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.name == "stepjudge-grader"}


def test_module_level_grade_leaves_no_worker_behind():
    before = _grader_workers()  # e.g. the module fixture's Grader, which owns its own worker
    assert grade(r"\boxed{\frac{1}{2}}", "0.5") == GradeResult("correct", r"\frac{1}{2}")
    assert grade(r"\boxed{2}", "3") == GradeResult("incorrect", "2")
    assert _grader_workers() == before
    assert not hasattr(verify, "_shared")  # no module-level pool


def test_per_item_limit_from_a_thread_that_owns_the_grader():
    """A Grader made and used off the main thread (as in a server) still stops a stuck item."""
    out: dict[str, object] = {}

    def work() -> None:
        with Grader(timeout_s=1.0) as g:
            out["results"] = g.grade_many([(SLOW_RESPONSE, "3"), (r"\boxed{\frac{1}{2}}", "0.5")])
            out["worker"] = g._proc.pid

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert out["results"] == [GradeResult("incorrect", "9^{9^{9^{9}}}", "timeout"),
                              GradeResult("correct", r"\frac{1}{2}")]
    assert out["worker"] not in _grader_workers()  # closed with its owner


def test_formats_respected():
    g = Grader(formats=("gsm8k",))
    try:
        assert g.grade(r"\boxed{5}", "5") == GradeResult("unparseable", None, REASON_NO_ANSWER)
    finally:
        g.close()


def test_worker_crash_is_reported_and_recovered():
    with Grader(timeout_s=30.0) as g:
        assert g.grade(r"\boxed{\frac{1}{2}}", "0.5").correct
        g._proc.kill()  # died while idle: silently replaced
        g._proc.join(5)
        assert g.grade(r"\boxed{\frac{1}{2}}", "0.5").correct
        victim = g._proc
        killer = threading.Timer(0.5, victim.kill)  # dies mid-item (stuck on the slow input)
        killer.start()
        try:
            out = g.grade_many([(SLOW_RESPONSE, "3"), (r"\boxed{\sqrt{9}}", "3")])
        finally:
            killer.cancel()
        assert out == [GradeResult("incorrect", "9^{9^{9^{9}}}", "grading worker crashed"),
                       GradeResult("correct", r"\sqrt{9}")]
