"""Final-answer extraction: these expectations are the behaviour downstream scoring relies on."""

import pytest

from stepjudge.grading import (
    extract_answer,
    extract_answer_is,
    extract_boxed,
    extract_gsm8k,
    extract_int_boxed,
    extract_verdict,
    iter_boxed,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{\left\{1,2\right\}}", r"\left\{1,2\right\}"),
        (r"\boxed{a_{b_{c}}}", r"a_{b_{c}}"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),
        (r"The answer is \boxed 5", "5"),
        (r"The answer is \boxed 5.", "5"),
        (r"\fbox{42}", "42"),
        (r"\boxed{1} and then \fbox{x+1}", "x+1"),
        (r"\boxed {7}", "7"),
        (r"\boxed{ 3 }", "3"),
        (r"\boxed{\boxed{4}}", "4"),
        (r"\boxed{\{1\}}", r"\{1\}"),  # escaped braces do not count for matching
        (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        # unterminated last box -> the earlier complete one
        (r"\boxed{12} ... wait, \boxed{\frac{1}{3}", "12"),
        (r"\boxed{\frac{1}{3}", None),
        (r"\boxed{}", None),
        ("no box here", None),
        (r"\boxedfoo{3}", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_iter_boxed_is_top_level_and_ordered():
    assert iter_boxed(r"\boxed{x=\boxed{3}} and \fbox{y}") == [r"x=\boxed{3}", "y"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays 3 * 400 = 1200.\n#### 1,234", "1234"),
        ("#### 1,234,567", "1234567"),
        ("#### 72\n", "72"),
        ("#### 1\nmore text\n#### 2", "2"),
        ("#### -3.5", "-3.5"),
        ("####", None),
        ("no marker", None),
    ],
)
def test_extract_gsm8k(text, expected):
    assert extract_gsm8k(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
        ("So the final answer is: 3.5. I hope it is correct.", "3.5"),
        ("THE ANSWER IS 7", "7"),
        ("The answer is 1.\nLater: the answer is 2.", "2"),
        (r"the final answer is $\boxed{x^2}$.", "x^2"),
        (r"The answer is \boxed{10}", "10"),
        ("The answer is **12**.", "12"),
        ("The answer is (1, 2).", "(1, 2)"),
        ("The answer is 5\nbut the answer is:", "5"),  # empty last match -> earlier one
        ("nothing to see", None),
    ],
)
def test_extract_answer_is(text, expected):
    assert extract_answer_is(text) == expected


def test_extract_answer_priority_and_formats():
    text = "The answer is 3.\n#### 4\n" + r"\boxed{5}"
    assert extract_answer(text) == "5"
    assert extract_answer("The answer is 3.\n#### 4") == "4"
    assert extract_answer("The answer is 3.") == "3"
    assert extract_answer(text, formats=("answer_is",)) == "3"
    assert extract_answer(text, formats=("gsm8k", "boxed")) == "4"
    assert extract_answer("nothing") is None
    with pytest.raises(ValueError, match="unknown answer format"):
        extract_answer(text, formats=("latex",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The step is fine. \boxed{Positive}", "Positive"),
        (r"\boxed{Negative}", "Negative"),
        (r"\boxed{positive}", "Positive"),
        (r"\boxed{ NEGATIVE }", "Negative"),
        (r"\boxed{\text{Positive}}", "Positive"),
        (r"\boxed{\text{ negative }}", "Negative"),
        (r"$\boxed{\textbf{Positive}}$.", "Positive"),
        (r"First \boxed{Negative}, on reflection \boxed{Positive}", "Positive"),
        (r"\boxed{Positive} then the value \boxed{3}", "Positive"),  # non-verdict boxes are ignored
        (r"\boxed{Maybe}", None),
        ("Positive", None),
        ("", None),
    ],
)
def test_extract_verdict(text, expected):
    assert extract_verdict(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The earliest error is in step \boxed{3}.", 3),
        (r"\boxed{-1}", -1),
        (r"\boxed{ 3 }", 3),
        (r"\boxed{\text{3}}", 3),
        (r"\boxed{ \text{ -1 } }", -1),
        (r"$\boxed{{2}}$", 2),
        (r"\boxed{1} then \boxed{4}", 4),
        (r"\boxed{2.5}", None),
        (r"\boxed{\text{none}}", None),
        (r"\boxed{3} then \boxed{x}", None),  # only the last box counts
        ("step 3", None),
    ],
)
def test_extract_int_boxed(text, expected):
    assert extract_int_boxed(text) == expected
