"""The code_tests reward function: TRL's contract, columns, statistics and the sandbox-failure policy."""

from __future__ import annotations

import pytest

from _sandbox_helpers import SupervisorKiller
from polyepo.rewards import REWARDS, make_reward
from polyepo.rewards.code import CodeTestsReward
from polyepo.rewards.sandbox import STATUSES, SandboxBroken
from polyepo.rewards.sandbox.pool import shared_pool

TEST = "def check(candidate):\n    assert candidate(3) == 9\n"
GOOD = "```python\ndef square(x):\n    return x * x\n```"
BAD = "```python\ndef square(x):\n    return x + x\n```"


def test_registry_and_contract():
    assert {"code_tests", "math_answer"} <= set(REWARDS.names())
    f = make_reward("code_tests", timeout_s=2)
    assert f.__name__ == "code_tests"
    completions = [GOOD, BAD, "no code here", [{"role": "assistant", "content": GOOD}], GOOD]
    values = f(["p"] * 5, completions, test=[TEST, TEST, TEST, TEST, None],
               entry_point=["square"] * 5, trainer_state=object())
    assert values == [1.0, 0.0, 0.0, 1.0, None]
    s = f.last_stats
    assert (s["rows"], s["runs"], s["passed"], s["failed"], s["no_code"], s["not_applicable"]) == (5, 3, 2, 1, 1, 1)
    assert set(STATUSES) <= set(s) and s["pass_rate"] == 0.5 and s["isolation"] and s["seconds"] > 0
    assert [r.status if r else None for r in f.last_results] == ["passed", "failed", None, "passed", None]


def test_stdio_rows_and_json_cases():
    f = CodeTestsReward(timeout_s=2)
    program = "```python\nprint(int(input()) + 1)\n```"
    cases = [{"input": "1", "output": "2"}, {"input": "41", "output": "42"}]
    values = f(None, [program, program, program], test_cases=[cases, '[{"input": "1", "output": "3"}]',
                                                              {"inputs": ["5"], "outputs": ["6"]}])
    assert values == [1.0, 0.0, 1.0]


def test_options_are_validated():
    with pytest.raises(ValueError, match="extract must be one of"):
        CodeTestsReward(extract="smart")
    with pytest.raises(ValueError, match="on_sandbox_error must be none, zero or raise"):
        CodeTestsReward(on_sandbox_error="ignore")
    with pytest.raises(ValueError, match="column 'test' has 1 values for 2 completions"):
        CodeTestsReward()(None, [GOOD, GOOD], test=[TEST])


def _with_killed_supervisors(reward: CodeTestsReward, completions, times: int):
    pool = shared_pool(reward.config, reward.workers)
    killer = SupervisorKiller(pool, times=times)
    killer.start()
    try:
        return reward(None, completions, test=[TEST] * len(completions), entry_point=["square"] * len(completions))
    finally:
        killer.stop.set()


def test_sandbox_error_is_none_counted_and_not_a_zero():
    slow = "```python\nimport time\ntime.sleep(1.0)\ndef square(x):\n    return x * x\n```"
    f = CodeTestsReward(workers=1, max_sandbox_error_rate=1.0)
    values = _with_killed_supervisors(f, [slow, GOOD, GOOD, GOOD], times=2)  # the first job fails twice
    assert values == [None, 1.0, 1.0, 1.0]
    assert f.last_stats["sandbox_error"] == 1 and f.last_stats["retried"] >= 1


def test_too_many_sandbox_errors_raise():
    slow = "```python\nimport time\ntime.sleep(1.0)\ndef square(x):\n    return x * x\n```"
    f = CodeTestsReward(workers=1, max_sandbox_error_rate=0.25)
    with pytest.raises(SandboxBroken, match="1 of 2 runs hit a sandbox failure"):
        _with_killed_supervisors(f, [slow, GOOD], times=2)
    zero = CodeTestsReward(workers=1, on_sandbox_error="zero", max_sandbox_error_rate=1.0)
    assert _with_killed_supervisors(zero, [slow], times=2) == [0.0]
