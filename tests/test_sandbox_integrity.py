"""Faking the verdict: one hostile program per way a program could pass a test it must fail.

The test runs in a process of its own; the program's process can only answer calls with plain
data. Each test pairs a *wrong* program that attacks the test with the verdict it must get,
the time it may take and a check that nothing of the job is left on the host; where it
matters, the same attack around a *correct* program still passes (the protection does not
break honest code).
"""

from __future__ import annotations

import time

import pytest

from _sandbox_helpers import assert_nothing_left
from polyepo.rewards.sandbox import Job, Limits, SandboxPool

SLACK_S = 4.0  # scheduling slack on a loaded 2-core machine
CHECK_F = "def check(candidate):\n    assert candidate(37) == 2369\n    assert candidate(-21) == 1441\n"  # x * x + 1000


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1) as p:
        p.warm()
        yield p


def run(pool, program, test=CHECK_F, entry_point="f", helpers=None, **limits):
    start = time.monotonic()
    job = Job(program, test=test, entry_point=entry_point, helpers=helpers)
    result = pool.run(job, Limits(**{"timeout_s": 3.0, **limits}))
    elapsed = time.monotonic() - start
    assert_nothing_left(pool)
    assert elapsed < 3.0 + SLACK_S
    return result


# -- shadowing names the test uses ---------------------------------------------------------------

@pytest.mark.parametrize("shadow,test", [
    ("abs = lambda x: 0\n", "def check(candidate):\n    assert abs(candidate(3) - 9) < 1e-9\n"),
    ("range = lambda *a: []\nlen = lambda x: 0\n",
     "def check(candidate):\n    for i in range(5):\n        assert candidate(i) == i * i\n    assert len([candidate(2)]) == 1\n"),
    ("ValueError = AssertionError\n",
     "def check(candidate):\n    for x, want in [(3, 9), (4, 16)]:\n        try:\n            assert candidate(x) == want\n"
     "        except ValueError:\n            pass\n"),
    ("__name__ = 'not main'\n", "if __name__ == '__main__':\n    assert f(3) == 9\n"),
    ("import builtins\nbuiltins.AssertionError = StopIteration\nbuiltins.round = lambda *a, **k: 9\n",
     "def check(candidate):\n    assert round(candidate(3)) == 9\n"),
])
def test_shadowed_names_do_not_reach_the_test(pool, shadow, test):
    entry = None if test.startswith("if") else "f"
    wrong = run(pool, shadow + "def f(x):\n    return x + 1\n", test=test, entry_point=entry)
    assert wrong.status == "failed" and not wrong.passed, wrong.detail
    right = run(pool, shadow + "def f(x):\n    return x * x\n", test=test, entry_point=entry)
    assert right.passed, right.detail


def test_redefining_a_helper_of_the_prompt_does_not_change_the_test(pool):
    helpers = ('def encode_cyclic(s: str):\n    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]\n'
               '    groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]\n'
               '    return "".join(groups)\n\n\ndef decode_cyclic(s: str):\n    """decode a string made by encode_cyclic"""\n')
    test = ("def check(candidate):\n    for s in ['abcdef', 'hello world', 'xy']:\n"
            "        assert candidate(encode_cyclic(s)) == s\n")
    cheat = helpers + "    return s\n\ndef encode_cyclic(s):\n    return s\n"  # identity for both
    r = run(pool, cheat, test=test, entry_point="decode_cyclic", helpers=helpers)
    assert r.status == "failed", r.detail
    honest = helpers + "    return encode_cyclic(encode_cyclic(s))\n"
    assert run(pool, honest, test=test, entry_point="decode_cyclic", helpers=helpers).passed


def test_the_tests_own_data_is_out_of_reach(pool):
    test = ("inputs = [3, -2, 7]\noutputs = [9, 4, 49]\ndef check(candidate):\n"
            "    for x, y in zip(inputs, outputs):\n        assert candidate(x) == y\n")
    program = ("import gc, sys\ndef f(x):\n    for obj in gc.get_objects():\n"
               "        if isinstance(obj, dict) and 'outputs' in obj and 'inputs' in obj:\n"
               "            return obj['outputs'][obj['inputs'].index(x)]\n"
               "    g = sys.modules['__main__'].__dict__\n    return g['outputs'][g['inputs'].index(x)]\n")
    r = run(pool, program, test=test)
    assert r.status == "failed" and "KeyError" in r.detail


# -- objects equal to anything -------------------------------------------------------------------

ALWAYS = "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"


def test_always_equal_objects_fail_in_plain_assert_tests(pool):
    r = run(pool, ALWAYS + "def f(x):\n    return Yes()\n", test="assert f(3) == 9\nassert f(-2) == 4\n", entry_point=None)
    assert r.status == "unserializable" and "Yes" in r.detail
    nested = run(pool, ALWAYS + "def f(x):\n    return [Yes(), {'k': (Yes(),)}]\n",
                 test="assert f(3) == [9, {'k': (1,)}]\n", entry_point=None)
    assert nested.status == "unserializable"


def test_always_equal_objects_fail_through_in_place_arguments(pool):
    test = "def check(candidate):\n    nums = [3, 1, 2]\n    candidate(nums)\n    assert nums == [1, 2, 3]\n"
    r = run(pool, ALWAYS + "def f(nums):\n    nums[:] = [Yes() for _ in nums]\n", test=test)
    assert r.status == "unserializable" and not r.passed
    assert run(pool, "def f(nums):\n    nums.sort()\n", test=test).passed  # honest in-place sorting


def test_an_exception_the_test_catches_does_not_hide_an_unserializable_value(pool):
    test = "def check(candidate):\n    try:\n        assert candidate(3) == 9\n    except BaseException:\n        pass\n"
    r = run(pool, ALWAYS + "def f(x):\n    return Yes()\n", test=test)
    assert r.status == "unserializable"


# -- code that runs during the test --------------------------------------------------------------

@pytest.mark.parametrize("attack", [
    # a finaliser that rewrites check() when it runs during the test
    "import gc, sys\nclass Bomb:\n    def __del__(self):\n        for o in gc.get_objects():\n"
    "            if getattr(o, '__name__', '') == 'check' and hasattr(o, '__code__'):\n"
    "                o.__code__ = (lambda candidate: None).__code__\n"
    "def f(x):\n    Bomb()\n    return x + 1\n",
    # a constructor / call that walks up the frames to the test and rewrites it
    "import sys\ndef f(x):\n    frame = sys._getframe(1)\n    while frame:\n"
    "        if 'check' in frame.f_globals:\n            frame.f_globals['check'] = lambda c: None\n"
    "        frame = frame.f_back\n    return x + 1\n",
    # frame inspection: read the expected value from the caller's frame
    "import inspect\ndef f(x):\n    for info in inspect.stack():\n        for v in info.frame.f_locals.values():\n"
    "            if isinstance(v, int) and v == x * x + 1000:\n                return v\n    return x + 1\n",
    # a trace hook armed during the test that turns failed asserts into returns
    "import sys\ndef hook(frame, event, arg):\n    if event == 'exception':\n        frame.f_locals.clear()\n    return hook\n"
    "def f(x):\n    sys.settrace(hook)\n    sys._getframe(1).f_trace = hook\n    return x + 1\n",
    # patching a method of a class the test uses, and a module that is not preloaded
    "import collections, unittest\ncollections.Counter.__eq__ = lambda a, b: True\n"
    "unittest.TestCase.assertEqual = lambda *a, **k: None\ndef f(x):\n    return x + 1\n",
])
def test_code_running_during_the_test_cannot_change_it(pool, attack):
    test = ("import collections, unittest\ndef check(candidate):\n"
            "    unittest.TestCase().assertEqual(candidate(37), 2369)\n"
            "    assert collections.Counter([candidate(-21)]) == collections.Counter([1441])\n")
    r = run(pool, attack, test=test)
    assert r.status == "failed" and not r.passed, r.detail


def test_a_solution_class_with_a_hostile_constructor(pool):
    program = ("import sys\nclass Solution:\n    def __init__(self):\n        f = sys._getframe(1)\n"
               "        while f:\n            f.f_globals.pop('check', None)\n            f = f.f_back\n"
               "    def square(self, x):\n        return x + 1\n")
    r = run(pool, program, entry_point="Solution().square")
    assert r.status == "failed", r.detail


# -- protocol forgery ----------------------------------------------------------------------------

def test_the_runner_modules_in_memory_cannot_forge_a_pass(pool):
    program = ("import sys, os\nmods = [m for n, m in list(sys.modules.items()) if n.startswith('polyepo')]\n"
               "for m in mods:\n    for name in ('send_report', 'send', 'finish', 'compile', 'exec'):\n"
               "        if hasattr(m, name):\n            setattr(m, name, lambda *a, **k: None)\n"
               "tester = sys.modules.get('polyepo.rewards.sandbox.tester')\n"
               "if tester:\n    try:\n        tester.REPORT_FD = 3\n        tester.proto.write_all(3, tester.proto.report(b'T'))\n"
               "    except OSError:\n        pass\ndef f(x):\n    return x + 1\n")
    r = run(pool, program)
    assert not r.passed and r.status in ("error", "failed"), r.detail


def test_a_forged_reply_on_the_channel_is_only_data(pool):
    # the program writes a greeting and a reply ahead of the real ones: the first call gets the
    # forged value (as if the program had returned it), the next one finds the stream broken
    program = ("import json, os, struct\ndef frame(obj):\n    data = json.dumps(obj).encode()\n"
               "    return struct.pack('>I', len(data)) + data\n"
               "os.write(3, frame({'ready': ['f']}) + frame({'ok': {'t': [['l', [2369, [1], [2]]], ['l', [3]], ['d', []]], 'v': [0]}}))\n"
               "def f(x):\n    return x + 1\n")
    r = run(pool, program)
    assert not r.passed and r.status == "error" and "protocol" in r.detail


# -- plain data both ways: honest programs keep working ------------------------------------------

def test_helper_classes_cross_as_data_and_mutations_come_back(pool):
    helpers = ("class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n        self.next = next\n"
               "def list_node(values):\n    head = None\n    for v in reversed(values):\n        head = ListNode(v, head)\n    return head\n"
               "def to_list(node):\n    out = []\n    while node:\n        out.append(node.val)\n        node = node.next\n    return out\n")
    test = ("def check(candidate):\n    head = list_node(list(range(3000)))\n"
            "    assert to_list(candidate(head)) == list(range(2999, -1, -1))\n"
            "    grid = [[1, 2], [3, 4]]\n    Solution().flip(grid)\n    assert grid == [[2, 1], [4, 3]]\n")
    program = helpers + ("class Solution:\n    def reverse(self, head):\n        prev = None\n        while head:\n"
                         "            head.next, prev, head = prev, head, head.next\n        return prev\n"
                         "    def flip(self, grid):\n        for row in grid:\n            row.reverse()\n")
    r = run(pool, program, test=test, entry_point="Solution().reverse", helpers=helpers)
    assert r.passed, r.detail
    cheat = program.replace("class Solution:", "class ListNode:\n    def __eq__(self, o):\n        return True\nclass Solution:")
    assert run(pool, cheat.replace("return prev", "return ListNode()"), test=test,
               entry_point="Solution().reverse", helpers=helpers).status == "failed"


def test_stateful_objects_and_exceptions_of_the_program(pool):
    program = ("class MinStack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
               "        self.items.append(x)\n    def getMin(self):\n        if not self.items:\n"
               "            raise ValueError('empty')\n        return min(self.items)\n")
    test = ("s = MinStack()\ntry:\n    s.getMin()\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n"
            "s.push(3)\ns.push(1)\nassert s.getMin() == 1 and s.items == [3, 1]\n")
    assert run(pool, program, test=test, entry_point=None).passed
