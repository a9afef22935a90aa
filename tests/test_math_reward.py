"""Final-answer extraction and math-verify equivalence, on answers worked by hand."""

from __future__ import annotations

import pytest

from polyepo.rewards import make_reward
from polyepo.rewards.math import answers_equivalent, extract_answer


@pytest.mark.parametrize("text,answer", [
    ("So the area is \\boxed{\\frac{3}{4}}.", "\\frac{3}{4}"),
    ("\\boxed{1} then corrected: \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("The answer is 12.", "12"),
    ("Thus the final answer is $x^2 + 1$. Done", "x^2 + 1"),
    ("Answer: **42**", "42"),
    ("We get 3, then 4, and finally -1,250.5 apples", "-1,250.5"),
    ("ratio 3/4", "3/4"),
    ("no numbers at all", None),
    ([{"role": "assistant", "content": "The answer is 7"}], "7"),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("pred,gold,same", [
    ("0.75", "\\frac{3}{4}", True),
    ("\\frac{6}{8}", "3/4", True),
    ("1+x^2", "x^2+1", True),
    ("\\sqrt{2}", "2^{1/2}", True),
    ("\\{2, 1\\}", "\\{1, 2\\}", True),
    ("1,000", "1000", True),
    ("3", "4", False),
    ("x^2", "x^3", False),
    ("\\text{(B)}", "B", True),
])
def test_answers_equivalent(pred, gold, same):
    assert answers_equivalent(pred, gold) is same


def test_math_reward_contract_and_stats():
    f = make_reward("math_answer")
    assert f.__name__ == "math_answer"
    completions = ["... \\boxed{\\frac{1}{2}}", "The answer is 0.5", "I give up", "answer: 3",
                   [{"role": "assistant", "content": "\\boxed{2}"}], "42"]
    golds = ["1/2", "\\frac{1}{2}", "1/2", "4", "The solution ... so \\boxed{2}.", None]
    assert f(None, completions, answer=golds) == [1.0, 1.0, 0.0, 0.0, 1.0, None]
    s = f.last_stats
    assert (s["rows"], s["correct"], s["incorrect"], s["no_answer"], s["not_applicable"]) == (6, 3, 1, 1, 1)
    assert s["accuracy"] == 3 / 5


def test_math_reward_answer_column_option():
    f = make_reward("math_answer", answer_column="solution")
    assert f(None, ["\\boxed{5}"], solution=["5"]) == [1.0]
    assert f(None, ["\\boxed{5}"], answer=["5"]) == [None]  # its column is absent: not applicable


def test_a_math_verify_error_is_counted_and_not_applicable_by_default():
    """A real math-verify failure (its own timeout on a tower of powers) is never a silent 0.0."""
    huge = ["\\boxed{10^{10^{10^{10}}}}"]
    f = make_reward("math_answer", timeout_s=1)
    assert f(None, huge, answer=["1"]) == [None]
    assert f.last_stats["verify_errors"] == 1 and f.last_stats["incorrect"] == 0
    assert make_reward("math_answer", timeout_s=1, on_verify_error="zero")(None, huge, answer=["1"]) == [0.0]
    with pytest.raises(RuntimeError, match="math-verify failed comparing"):
        make_reward("math_answer", timeout_s=1, on_verify_error="raise")(None, huge, answer=["1"])
    with pytest.raises(ValueError, match="on_verify_error must be one of none, zero, raise"):
        make_reward("math_answer", on_verify_error="skip")
