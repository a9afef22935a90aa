"""Registries are complete whatever was imported first; one option check for every plug-in kind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from polyepo.registry import MissingDependencyError, Registry, UnknownOptionError


def fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_a_fresh_process_finds_the_tasks_plug_ins():
    """The toy task registers a reward and a clusterer; nothing imports polyepo.tasks first here."""
    assert fresh("from polyepo.clustering import make_clusterer; print(make_clusterer('toy_paths').name)") == "toy_paths"
    score = fresh(
        "from polyepo.train.verl.reward import compute_score\n"
        "print(compute_score('t', ' S A2 B1 T', None, {'prompt': 'p', 'blocked': ['S A1']}, reward='toy_paths'))"
    )
    assert score == "{'score': 1.0, 'reward_none': 0}"


def test_every_registry_lists_every_built_in_from_any_entry_point():
    code = (
        "import json\n"
        "from polyepo.{mod} import {reg}\n"
        "print(json.dumps({reg}.names()))"
    )
    names = {reg: json.loads(fresh(code.format(mod=mod, reg=reg)))
             for mod, reg in [("rewards", "REWARDS"), ("clustering", "CLUSTERERS"), ("tasks", "TASKS"),
                              ("advantages", "ESTIMATORS"), ("models", "MODELS")]}
    assert {"code_tests", "math_answer", "rubric", "toy_paths", "reasoning_gym"} <= set(names["REWARDS"])
    assert {"judge", "python_ast", "embedding", "answer", "exact", "toy_paths"} <= set(names["CLUSTERERS"])
    assert {"toy_paths", "humaneval", "jsonl_code", "jsonl_math", "reasoning_gym", "rubric_examples"} <= set(names["TASKS"])
    assert {"poly_epo", "dr_grpo", "grpo", "rloo", "grpo_div", "pass_at_k", "set_rl"} <= set(names["ESTIMATORS"])
    assert {"toy-paths-base", "toy-paths-random", "smollm2-135m"} <= set(names["MODELS"])


@pytest.mark.parametrize("build, match", [
    ("from polyepo.tasks import load_task; load_task('toy_paths', widht=3)",
     r"unknown option 'widht' \(did you mean 'width'\?\) for task 'toy_paths'; valid options: width"),
    ("from polyepo.rewards import make_reward; make_reward('code_tests', timout_s=3)",
     r"unknown option 'timout_s' \(did you mean 'timeout_s'\?\) for reward function 'code_tests'"),
    ("from polyepo.clustering import make_clusterer; make_clusterer('python_ast', treshold=0.2)",
     r"unknown option 'treshold' \(did you mean 'threshold'\?\) for clusterer 'python_ast'"),
    ("from polyepo.clustering import make_clusterer; make_clusterer('judge', on_falure='raise')",
     r"unknown option 'on_falure' \(did you mean 'on_failure'\?\) for clusterer 'judge'"),
    ("from polyepo.advantages import compute_advantages; compute_advantages([1, 0], [1, 2], group_sizes=2, reduktion='sum')",
     r"unknown option 'reduktion' \(did you mean 'reduction'\?\) for estimator 'poly_epo'"),
])
def test_one_option_check_for_every_kind(build, match):
    """Unknown options: a ValueError (and TypeError, as Python's own) naming the closest valid one."""
    with pytest.raises(UnknownOptionError, match=match):
        exec(build, {})


def test_the_registry_itself():
    reg: Registry = Registry("widget")

    @reg.register("thing")
    def make_thing(size: int = 1, *, colour: str = "red"):
        return (size, colour)

    reg.require("thing", json="json", no_such_module_xyz="no-such-package")
    with pytest.raises(MissingDependencyError, match="widget 'thing' needs the package.*no-such-package.*pip install"):
        reg.build("thing")
    reg._requires.clear()
    assert reg.build("thing", colour="blue") == (1, "blue")
    assert reg.options("thing") == {"size": 1, "colour": "red"}
    with pytest.raises(ValueError, match="valid widgets: thing \\(did you mean 'thing'\\?\\)"):
        reg.get("thin")
    assert json.dumps(reg.names()) == '["thing"]'
