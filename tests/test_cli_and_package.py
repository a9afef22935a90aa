"""The installed console script and the import-time promise of the package."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from polyepo.advantages import grpo_advantages, poly_epo_advantages


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polyepo", *args], capture_output=True, text=True, input=stdin,
        timeout=120, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )


def test_import_is_light():
    code = (
        "import sys, polyepo, polyepo.advantages, polyepo.metrics\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'openai', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("advantage", "estimators"):
        assert command in out.stdout


def test_advantage_json_matches_library():
    out = run_cli("advantage", "-r", "1,0,1,1,0,1,0,1", "-c", "1,2,2,3,100,1,4,0", "-e", "poly_epo", "-e", "grpo", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    r, c = [1, 0, 1, 1, 0, 1, 0, 1], [1, 2, 2, 3, 100, 1, 4, 0]
    np.testing.assert_allclose(res["advantages"]["poly_epo"], poly_epo_advantages(r, c, 4))
    np.testing.assert_allclose(res["advantages"]["grpo"], grpo_advantages(r))


def test_advantage_options_and_file_input():
    groups = "\n".join(json.dumps(g) for g in [
        {"rewards": [1, 1, 0, 1], "clusters": [1, 1, 2, 100]},
        {"rewards": [0, 1], "clusters": [5, 6]},
    ])
    out = run_cli("advantage", "-", "-n", "2", "--reduction", "mean", "-o", "min_distinct=1", "-o", "degenerate=[100]", "--json", stdin=groups)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    np.testing.assert_allclose(res[0]["advantages"]["poly_epo"], [1 / 24, 1 / 24, -1 / 24, -1 / 24])
    assert len(res) == 2


def test_advantage_table_and_errors():
    out = run_cli("advantage", "-r", "1,0,0,1", "--all")
    assert out.returncode == 0 and "rloo" in out.stdout and "+0.6667" in out.stdout
    bad = run_cli("advantage", "-r", "1,0,1", "-c", "1,2,3", "-e", "polyepo")
    assert bad.returncode == 2 and "valid estimators: darling, dr_grpo" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("advantage", "-r", "1,0,1", "-c", "1,2")
    assert bad.returncode == 2 and "clusters has length 2" in bad.stderr
    bad = run_cli("advantage", "-r", "1,nan,1", "-c", "1,2,3")
    assert bad.returncode == 2 and "must be finite" in bad.stderr
    bad = run_cli("advantage", "-r", "1,0", "-c", "1,2", "-o", "sett_size=2")
    assert bad.returncode == 2 and "valid options" in bad.stderr


def test_advantage_file_is_one_batch_for_batch_steps_and_history():
    from polyepo.advantages import AnswerHistory, compute_advantages

    groups = [
        {"rewards": [1, 0, 0], "clusters": [1, 1, 2], "prompt_key": "p"},
        {"rewards": [0, 1, 1, 0], "clusters": [3, 4, 4, 100], "prompt_key": "q"},
        {"rewards": [1, 1, 0], "clusters": [1, 2, 2], "prompt_key": "p"},
    ]
    text = "\n".join(json.dumps(g) for g in groups)
    out = run_cli("advantage", "-", "-e", "outcome_explore", "-e", "reinforce_pp_baseline",
                  "-o", "variant=historical", "--json", stdin=text)
    assert out.returncode == 2 and "unknown option 'variant'" in out.stderr  # -o applies to every -e
    out = run_cli("advantage", "-", "-e", "outcome_explore", "-o", "variant=historical", "--json", stdin=text)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    r = [x for g in groups for x in g["rewards"]]
    c = [x for g in groups for x in g["clusters"]]
    keys = [g["prompt_key"] for g in groups for _ in g["rewards"]]
    expected = compute_advantages(r, c, group_sizes=[3, 4, 3], estimator="outcome_explore", variant="historical",
                                  history=AnswerHistory(), prompt_keys=keys)
    np.testing.assert_allclose([a for g in res for a in g["advantages"]["outcome_explore"]], expected)
    # the third group saw prompt p's answers of the first: counts 2 and 1 -> not the first step's bonus
    assert res[2]["advantages"]["outcome_explore"] != res[0]["advantages"]["outcome_explore"]
    out = run_cli("advantage", "-", "-e", "reinforce_pp_baseline", "--json", stdin=text)
    whole = compute_advantages(r, group_sizes=[3, 4, 3], estimator="reinforce_pp_baseline")
    np.testing.assert_allclose([a for g in json.loads(out.stdout) for a in g["advantages"]["reinforce_pp_baseline"]], whole)


def test_estimators_lists_the_exploration_estimators():
    out = run_cli("estimators")
    assert out.returncode == 0
    for name in ("pkpo", "darling", "uniqueness", "outcome_explore", "reinforce_pp_b"):
        assert name in out.stdout
