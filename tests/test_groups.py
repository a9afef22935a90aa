"""The group step: hand-worked answers, a slow per-group reference on random batches, policies, metrics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity_cases import DR_GRPO_ADVANTAGES, DR_GRPO_METRICS, ESTIMATORS, REWARDS, G, results, without_timing
from polyepo.advantages import compute_advantages, get_estimator
from polyepo.clustering import ClusterResult
from polyepo.groups import (
    STEP_METRICS,
    GroupOptions,
    UnscorableRowsError,
    cluster_groups,
    group_rows,
    group_step,
)

GIDS = [i // G for i in range(len(REWARDS))]


def test_hand_worked_batch():
    step = group_step(REWARDS, GIDS, results(), estimator="dr_grpo")
    np.testing.assert_allclose(step.advantages, DR_GRPO_ADVANTAGES, atol=1e-12)
    got = without_timing(step.metrics)
    assert set(got) == set(DR_GRPO_METRICS)
    for key, value in DR_GRPO_METRICS.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert step.metrics["polyepo/time_advantage_s"] >= 0


def test_every_metric_is_in_the_vocabulary():
    for name, options in ESTIMATORS:
        step = group_step(REWARDS, GIDS, results(), estimator=name, estimator_options=options)
        assert set(step.metrics) <= set(STEP_METRICS)
    assert "polyepo/frac_groups_all_distinct" in STEP_METRICS and "polyepo/frac_groups_one_cluster" in STEP_METRICS


def slow_reference(rewards, gids, res, name, options, unscorable="drop", singletons="zero"):
    """Group by group with the estimator function itself (what the step must equal); then, for
    reinforce_pp_baseline, its whitening over every row that entered it, written out literally."""
    out = np.zeros(len(rewards))
    entered = []
    for k, rows in enumerate(group_rows(gids)):
        r = [rewards[i] for i in rows]
        keep = [j for j, v in enumerate(r) if v is not None or unscorable == "zero"]
        if not keep:
            continue
        vals = np.array([0.0 if r[j] is None else float(r[j]) for j in keep])
        ids = np.array(res[k].ids)[keep]
        est, opts = (("dr_grpo", {}) if res[k].failed and res[k].policy == "reward_only" else (name, dict(options)))
        if est == name:
            entered += [rows[j] for j in keep]
        if len(keep) == 1 and singletons != "estimator":
            value = vals[0] if singletons == "reward" else 0.0
            out[rows[keep[0]]] = value
            continue
        if "set_size" in opts or est in ("poly_epo", "pass_at_k"):
            opts["set_size"] = min(opts.get("set_size", 4), len(keep))
        out[rows[keep]] = get_estimator(est)(vals, ids, **opts)
    if name == "reinforce_pp_baseline" and entered:
        a = out[entered]
        out[entered] = (a - a.mean()) / np.sqrt(a.var(ddof=1) + 1e-8) if a.size > 1 else 0.0
    return out


@pytest.mark.parametrize("name, options", ESTIMATORS)
@pytest.mark.parametrize("unscorable", ["drop", "zero"])
def test_equals_the_slow_reference_on_the_parity_batch(name, options, unscorable):
    opts = GroupOptions(unscorable=unscorable)
    got = group_step(REWARDS, GIDS, results(), estimator=name, estimator_options=options, options=opts).advantages
    np.testing.assert_allclose(got, slow_reference(REWARDS, GIDS, results(), name, options, unscorable), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_equals_the_slow_reference_on_random_batches(data):
    sizes = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=5))
    name, options = data.draw(st.sampled_from(ESTIMATORS))
    singletons = data.draw(st.sampled_from(["zero", "reward"]))
    rewards, gids, res = [], [], []
    for k, n in enumerate(sizes):
        rewards += data.draw(st.lists(st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0])), min_size=n, max_size=n))
        gids += [f"u{k}"] * n
        ids = data.draw(st.lists(st.sampled_from([1, 2, 3, 100]), min_size=n, max_size=n))
        failed = data.draw(st.sampled_from([None, "reward_only", "zero_diversity"]))
        res.append(ClusterResult(ids, "x", failed=failed is not None, policy=failed))
    perm = data.draw(st.permutations(range(len(rewards))))  # rows of a group need not be adjacent
    inv = np.argsort(perm)
    rewards_p, gids_p = [rewards[i] for i in perm], [gids[i] for i in perm]
    res_p = []  # one result per group, in order of first appearance, ids in the batch order of its rows
    for u in dict.fromkeys(gids_p):
        k = int(u[1:])
        within = [i - gids.index(u) for i in perm if gids[i] == u]
        res_p.append(ClusterResult([res[k].ids[j] for j in within], "x", failed=res[k].failed, policy=res[k].policy))
    opts = GroupOptions(singletons=singletons, max_failed_group_fraction=1.0)
    got = group_step(rewards_p, gids_p, res_p, estimator=name, estimator_options=options, options=opts).advantages
    want = slow_reference(rewards, gids, res, name, options, singletons=singletons)
    np.testing.assert_allclose(got[inv], want, atol=1e-9)


def test_one_compute_advantages_call_for_the_estimator(monkeypatch):
    """The estimator's rows go through ONE compute_advantages call (a batch-level hook sees them
    all); the reward_only groups through one dr_grpo call."""
    import polyepo.groups.step as step_module

    calls = []

    def spy(rewards, clusters=None, **kw):
        calls.append((kw["estimator"], len(rewards), kw["short_groups"], kw["singletons"]))
        return compute_advantages(rewards, clusters, **kw)

    monkeypatch.setattr(step_module, "compute_advantages", spy)
    group_step(REWARDS, GIDS, results(), estimator="poly_epo", estimator_options={"set_size": 4})
    assert calls == [("poly_epo", 11, "shrink", "zero"), ("dr_grpo", 4, "shrink", "zero")]


def test_policies():
    # zero: unscorable rows are scored 0 and stay in the group
    step = group_step([1, None, 0, None], ["a"] * 4, None, estimator="dr_grpo", options=GroupOptions(unscorable="zero"))
    np.testing.assert_allclose(step.advantages, [0.75, -0.25, -0.25, -0.25])
    with pytest.raises(UnscorableRowsError, match="2 of 4 rollouts have no reward.*rows \\[1, 3\\]"):
        group_step([1, None, 0, None], ["a"] * 4, None, estimator="dr_grpo", options=GroupOptions(unscorable="raise"))
    # singletons: verl's grpo convention gives the lone rollout its reward
    step = group_step([None, 0.5, None], ["a"] * 3, None, estimator="rloo", options=GroupOptions(singletons="reward"))
    np.testing.assert_allclose(step.advantages, [0, 0.5, 0])
    with pytest.raises(ValueError, match="rloo needs a group of at least N=2"):
        group_step([None, 0.5], ["a"] * 2, None, estimator="rloo", options=GroupOptions(singletons="estimator"))
    # fallback ids are real clusters: used as such, counted as failures
    fb = [ClusterResult([1, 2, 2, 1], "judge", failed=True, policy="fallback:python_ast")]
    step = group_step([1, 1, 0, 0], ["a"] * 4, fb, estimator="poly_epo", options=GroupOptions(max_failed_group_fraction=1))
    np.testing.assert_allclose(step.advantages, group_step([1, 1, 0, 0], ["a"] * 4, [1, 2, 2, 1],
                                                           estimator="poly_epo").advantages)
    assert step.metrics["polyepo/cluster_fallbacks"] == 1 and step.metrics["polyepo/groups_with_clusters"] == 1


def test_too_many_failed_groups_stop_the_step():
    with pytest.raises(RuntimeError, match=r"failed on 2 of 6 groups \(33% > max_failed_group_fraction=0.3\).*judge down"):
        group_step(REWARDS, GIDS, results(), estimator="dr_grpo", options=GroupOptions(max_failed_group_fraction=0.3))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="needs cluster ids: set a clusterer"):
        group_step([1, 0], ["a", "a"], None, estimator="poly_epo")
    with pytest.raises(ValueError, match="reward of row 1 is inf"):
        group_step([1, math.inf], ["a", "a"], None, estimator="dr_grpo")
    with pytest.raises(ValueError, match="2 cluster results for 1 groups"):
        group_step([1, 0], ["a", "a"], [ClusterResult([1, 2], "x")] * 2, estimator="dr_grpo")
    with pytest.raises(ValueError, match="unscorable must be one of drop, zero, raise"):
        group_step([1, 0], ["a", "a"], None, estimator="dr_grpo", options=GroupOptions(unscorable="skip"))
    with pytest.raises(ValueError, match="unknown option 'sett_size'"):
        group_step([1, 0], ["a", "a"], [1, 2], estimator="poly_epo", estimator_options={"sett_size": 2})


def test_cluster_groups_checks_and_names_groups():
    class Short:
        name = "short"

        def cluster(self, prompt, responses, **context):
            return ClusterResult([1] * (len(responses) - 1), self.name)

    with pytest.raises(ValueError, match="returned 1 ids for a group of 2 responses \\(group 'uid-7'\\)"):
        cluster_groups(Short(), [("p", ["a", "b"], {})], labels=["uid-7"])

    class Boom(Short):
        def cluster(self, prompt, responses, **context):
            raise OSError("no route")

    with pytest.raises(RuntimeError, match="clustering group 'g' failed: no route"):
        cluster_groups(Boom(), [("p", ["a"], {})], labels=["g"], workers=4)


def test_import_is_light():
    code = "import sys, polyepo.groups\nprint(','.join(m for m in ('torch', 'transformers', 'openai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
