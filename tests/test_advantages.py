"""Advantage estimators: hand-worked answers, closed forms vs enumeration, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyepo.advantages import (
    ESTIMATORS,
    UnknownNameError,
    all_subsets,
    compute_advantages,
    diversity_bonus,
    dr_grpo_advantages,
    get_estimator,
    group_advantages,
    grpo_advantages,
    grpo_div_advantages,
    pass_at_k_advantages,
    poly_epo_advantages,
    rloo_advantages,
    sample_subsets,
    set_rl_advantages,
)


def algorithm_1(rewards, clusters, n, degenerate=(0, 100), min_distinct=2, reduction="sum"):
    """Seed 002's Algorithm 1, written out literally with itertools: the slow reference."""
    N = len(rewards)
    sets = list(itertools.combinations(range(N), n))
    f = []
    for G in sets:
        U = {clusters[i] for i in G} - set(degenerate)
        d = len(U) / n if len(U) >= min_distinct else 0.0
        f.append(sum(rewards[i] for i in G) / n * d)
    base = sum(f) / len(f)
    adv = []
    for i in range(N):
        holding = [fg - base for G, fg in zip(sets, f) if i in G]
        adv.append(sum(holding) if reduction == "sum" else sum(holding) / len(holding))
    return np.array(adv)


def close(a, b, rtol=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# --- hand-worked answers -----------------------------------------------------------------


def test_grpo_family_on_1001():
    r = [1, 0, 0, 1]
    close(dr_grpo_advantages(r), [0.5, -0.5, -0.5, 0.5])
    # sample std of [1, 0, 0, 1] is sqrt(1/3)
    close(grpo_advantages(r, epsilon=0.0), [0.5 * math.sqrt(3), -0.5 * math.sqrt(3)] * 1 + [-0.5 * math.sqrt(3), 0.5 * math.sqrt(3)])
    close(grpo_advantages(r, scale_by_std=False), dr_grpo_advantages(r))
    close(rloo_advantages(r), [2 / 3, -2 / 3, -2 / 3, 2 / 3])  # 1 - 1/3, 0 - 2/3


def test_grpo_all_equal_rewards_give_zero_not_nan():
    np.testing.assert_array_equal(grpo_advantages([1, 1, 1]), [0, 0, 0])
    np.testing.assert_array_equal(grpo_advantages([1.0]), [0.0])


def test_poly_epo_worked_on_paper():
    # N=4, n=2. Sets and f: {0,1}: U={1} gated -> 0; {0,2}: mean .5, U={1,2}, d=1 -> .5;
    # {0,3}: U={1} -> 0; {1,2}: .5; {1,3}: 0; {2,3}: U={2} -> 0. Baseline 1/6.
    # A_0 = -1/6 + 1/3 - 1/6 = 0; A_1 = 0; A_2 = 1/3 + 1/3 - 1/6 = 1/2; A_3 = -1/2.
    r, c = [1, 1, 0, 1], [1, 1, 2, 100]
    close(poly_epo_advantages(r, c, 2), [0, 0, 0.5, -0.5])
    close(poly_epo_advantages(r, c, 2, reduction="mean"), [0, 0, 1 / 6, -1 / 6])  # / C(3, 1)
    # The authors' variant: no gate, only 100 degenerate, mean. f = .5 on five sets, .25 on {2,3};
    # baseline 2.75/6; A_0 = A_1 = 1/24, A_2 = A_3 = -1/24.
    close(poly_epo_advantages(r, c, 2, degenerate=(100,), min_distinct=1, reduction="mean"),
          [1 / 24, 1 / 24, -1 / 24, -1 / 24])


def test_incorrect_but_novel_rollout_is_rewarded():
    # Three correct rollouts share one strategy; a wrong one with a new strategy gets a
    # positive Poly-EPO advantage (the exploration signal) but a negative GRPO one.
    r, c = [1, 1, 1, 0], [1, 1, 1, 2]
    assert poly_epo_advantages(r, c, 2)[3] > 0
    assert dr_grpo_advantages(r)[3] < 0


def test_pass_at_k_worked():
    # N=3, n=2, r=[1,0,0]: sets {0,1}:1, {0,2}:1, {1,2}:0; baseline 2/3.
    # A_0 = 2 * 1/3 = 2/3; A_1 = 1/3 - 2/3 = -1/3; A_2 = -1/3.
    close(pass_at_k_advantages([1, 0, 0], None, 2), [2 / 3, -1 / 3, -1 / 3])
    # Every 4-set of 5 correct among 8 holds a correct answer: no signal at all.
    close(pass_at_k_advantages([1, 0, 1, 1, 0, 1, 0, 1], None, 4), np.zeros(8))


def test_diversity_bonus_and_grpo_div():
    c = [1, 1, 2, 100]
    # N=4: bonus = (4/|cluster| - 1)/3 -> cluster 1 (size 2): 1/3; cluster 2 (size 1): 1; degenerate 0.
    close(diversity_bonus(c), [1 / 3, 1 / 3, 1.0, 0.0])
    r = [1, 0, 0, 1]
    shaped = np.array(r) + 0.5 * np.array([1 / 3, 1 / 3, 1.0, 0.0])
    close(grpo_div_advantages(r, c, weight=0.5), shaped - shaped.mean())
    close(grpo_div_advantages(r, c, weight=0.0), dr_grpo_advantages(r))


def test_mean_reward_objective_is_scaled_grpo():
    rng = np.random.default_rng(3)
    for N, n in [(8, 4), (6, 2), (5, 5), (7, 1)]:
        r = rng.random(N)
        scale = (N - n) / (n * (N - 1))
        close(set_rl_advantages(r, None, n, objective="mean_reward", reduction="mean"), scale * dr_grpo_advantages(r))
        close(set_rl_advantages(r, None, n, objective="mean_reward"), math.comb(N - 1, n - 1) * scale * dr_grpo_advantages(r))


def test_enumeration_matches_literal_algorithm_1():
    rng = np.random.default_rng(0)
    for _ in range(30):
        N = int(rng.integers(1, 9))
        n = int(rng.integers(1, N + 1))
        r = rng.integers(0, 2, N).astype(float)
        c = rng.choice([0, 1, 2, 3, 100], N)
        for md, red in [(2, "sum"), (1, "mean"), (3, "sum")]:
            close(set_rl_advantages(r, c, n, min_distinct=md, reduction=red), algorithm_1(r, c, n, min_distinct=md, reduction=red))


# --- closed forms vs enumeration on random inputs -----------------------------------------

groups = st.integers(1, 9).flatmap(
    lambda N: st.tuples(
        st.one_of(
            st.lists(st.sampled_from([0.0, 1.0]), min_size=N, max_size=N),
            st.lists(st.floats(0, 1, allow_nan=False), min_size=N, max_size=N),
        ),
        st.lists(st.sampled_from([0, 1, 2, 3, 4, 100]), min_size=N, max_size=N),
        st.integers(1, N),
    )
)


@settings(max_examples=300, deadline=None)
@given(groups, st.integers(0, 5), st.sampled_from(["sum", "mean"]),
       st.sampled_from([(0, 100), (100,), (), (2, 3)]))
def test_poly_epo_closed_form_equals_enumeration(group, min_distinct, reduction, degenerate):
    r, c, n = group
    kw = dict(degenerate=degenerate, min_distinct=min_distinct, reduction=reduction)
    close(poly_epo_advantages(r, c, n, **kw), set_rl_advantages(r, c, n, **kw))


@settings(max_examples=200, deadline=None)
@given(groups, st.sampled_from(["sum", "mean"]))
def test_pass_at_k_closed_form_equals_enumeration(group, reduction):
    r, _, n = group
    close(pass_at_k_advantages(r, None, n, reduction=reduction),
          set_rl_advantages(r, None, n, objective="max_reward", reduction=reduction))


@settings(max_examples=100, deadline=None)
@given(groups, st.randoms(use_true_random=False))
def test_poly_epo_permutation_and_relabelling(group, rnd):
    r, c, n = group
    perm = list(range(len(r)))
    rnd.shuffle(perm)
    base = poly_epo_advantages(r, c, n)
    close(poly_epo_advantages(np.array(r)[perm], np.array(c)[perm], n), base[perm])
    relabel = {0: 0, 100: 100, 1: 7, 2: 1, 3: 2, 4: 55}  # degenerate ids keep their meaning
    close(poly_epo_advantages(r, [relabel[x] for x in c], n), base)
    assert abs(base.sum()) <= 1e-9 * max(1.0, np.abs(base).max())


def test_closed_form_with_high_gate_on_bigger_group():
    # min_distinct=3 takes the generating-function path; check it where enumeration is costly.
    rng = np.random.default_rng(7)
    r = rng.random(22)
    c = rng.choice([0, 1, 2, 3, 4, 5, 100], 22)
    close(poly_epo_advantages(r, c, 5, min_distinct=3, reduction="mean"),
          set_rl_advantages(r, c, 5, min_distinct=3, reduction="mean"))


def test_large_groups_are_finite_and_centred():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 2, 1024).astype(float)
    c = rng.integers(0, 40, 1024)
    a = poly_epo_advantages(r, c, 512, reduction="mean")
    assert np.all(np.isfinite(a)) and abs(a.sum()) < 1e-9
    a3 = poly_epo_advantages(r[:256], c[:256], 32, min_distinct=3, reduction="mean")
    assert np.all(np.isfinite(a3)) and abs(a3.sum()) < 1e-9
    with pytest.raises(OverflowError, match="reduction='mean'"):
        poly_epo_advantages(r, c, 512, reduction="sum")
    p = pass_at_k_advantages(r, None, 512, reduction="mean")
    assert np.all(np.isfinite(p))


# --- sampled subsets -------------------------------------------------------------------------


def test_sample_subsets_distinct_sorted_seeded():
    s = sample_subsets(12, 4, 100, seed=5)
    assert s.shape == (100, 4)
    assert len({tuple(row) for row in s.tolist()}) == 100
    assert np.all(np.diff(s, axis=1) > 0)
    np.testing.assert_array_equal(s, sample_subsets(12, 4, 100, seed=5))
    assert not np.array_equal(s, sample_subsets(12, 4, 100, seed=6))
    big = sample_subsets(40, 10, 300, seed=0)  # C(40, 10) ~ 8.5e8: rejection sampling path
    assert len({tuple(row) for row in big.tolist()}) == 300 and big.max() < 40
    assert sample_subsets(6, 3, 10**6).shape == (20, 3)  # capped at C(6, 3)


def test_sample_subsets_are_uniform():
    # Each of the C(6, 2) = 15 pairs should be drawn equally often over many seeded draws.
    counts = {}
    for seed in range(600):
        for row in sample_subsets(6, 2, 3, seed=seed).tolist():
            counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    freq = np.array(list(counts.values()))
    assert len(freq) == 15
    chi2 = ((freq - 120) ** 2 / 120).sum()  # 1800 draws / 15 pairs; 14 d.o.f.
    assert chi2 < 36.1  # p ~ 0.001


def test_sampled_sets_converge_to_enumeration():
    rng = np.random.default_rng(2)
    r = rng.integers(0, 2, 12).astype(float)
    c = rng.integers(1, 5, 12)
    exact = poly_epo_advantages(r, c, 4, reduction="mean")
    total = math.comb(12, 4)
    close(set_rl_advantages(r, c, 4, subsets=total, reduction="mean"), exact)
    errors = []
    for k in (20, 80, 320):
        errs = [np.abs(set_rl_advantages(r, c, 4, subsets=k, seed=s, reduction="mean") - exact).max() for s in range(20)]
        errors.append(np.mean(errs))
    assert errors[0] > errors[1] > errors[2] > 0
    # "sum" is rescaled by C(N, n) / K so that it estimates the all-subsets sum.
    est = np.mean([set_rl_advantages(r, c, 4, subsets=300, seed=s) for s in range(30)], axis=0)
    exact_sum = poly_epo_advantages(r, c, 4)
    assert np.abs(est - exact_sum).max() < 0.1 * np.abs(exact_sum).max()


def test_custom_objective_callable():
    def best_two(rewards, clusters):
        return np.sort(rewards, axis=1)[:, -2:].sum(axis=1)

    r = [0.1, 0.9, 0.5, 0.3, 0.7]
    a = set_rl_advantages(r, None, 3, objective=best_two)
    assert a.shape == (5,) and a.argmax() == 1 and abs(a.sum()) < 1e-12
    with pytest.raises(ValueError, match="one score per set"):
        set_rl_advantages(r, None, 3, objective=lambda rr, cc: rr)


def test_all_subsets_is_cached_and_read_only():
    a = all_subsets(8, 4)
    assert a.shape == (70, 4) and a is all_subsets(8, 4)
    with pytest.raises(ValueError):
        a[0, 0] = 3
    with pytest.raises(ValueError, match="too many"):
        all_subsets(64, 8)


# --- registry and batching -----------------------------------------------------------------


def test_registry_lists_and_rejects():
    assert {"grpo", "dr_grpo", "rloo", "grpo_div", "poly_epo", "pass_at_k", "set_rl"} <= set(ESTIMATORS.names())
    with pytest.raises(UnknownNameError, match="valid estimators: darling, dr_grpo, grpo, grpo_div"):
        get_estimator("polyepo")
    with pytest.raises(ValueError, match="did you mean 'poly_epo'"):
        get_estimator("poly-epo")
    with pytest.raises(ValueError, match=r"unknown option 'set_sizee' \(did you mean 'set_size'\?\) for estimator 'poly_epo'; valid options: set_size"):
        group_advantages("poly_epo", [1, 0], [1, 2], set_sizee=2)


def test_compute_advantages_over_unequal_groups():
    rng = np.random.default_rng(4)
    sizes = [8, 3, 1, 5]
    r = rng.integers(0, 2, sum(sizes)).astype(float)
    c = rng.integers(1, 4, sum(sizes))
    out = compute_advantages(r, c, group_sizes=sizes, estimator="poly_epo", set_size=1, reduction="mean")
    start = 0
    for s in sizes:
        close(out[start:start + s], poly_epo_advantages(r[start:start + s], c[start:start + s], 1, reduction="mean"))
        start += s
    # group ids in any order give the same as adjacent groups
    ids = np.repeat(np.arange(4), sizes)
    perm = rng.permutation(r.size)
    out_ids = compute_advantages(r[perm], c[perm], group_ids=ids[perm], estimator="poly_epo", set_size=1, reduction="mean")
    close(out_ids, out[perm])
    eq = compute_advantages(r[:16], group_sizes=4, estimator="grpo")
    close(eq[4:8], grpo_advantages(r[4:8]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: poly_epo_advantages([1, 0, 1], [1, 2]), "clusters has length 2 but rewards has length 3"),
        (lambda: poly_epo_advantages([1, 0, 1], [1, 2, 3], 0), r"set_size must be in \[1, N\] = \[1, 3\]"),
        (lambda: poly_epo_advantages([1, 0, 1], [1, 2, 3], 4), r"set_size must be in \[1, N\] = \[1, 3\].*got 4"),
        (lambda: poly_epo_advantages([1, float("nan")], [1, 2], 1), r"rewards must be finite; rewards\[1\] = nan"),
        (lambda: dr_grpo_advantages([1, float("inf")]), "must be finite"),
        (lambda: poly_epo_advantages([], [], 1), "empty"),
        (lambda: grpo_advantages([]), "empty"),
        (lambda: poly_epo_advantages([1, 0], [1.5, 2], 1), "integer ids"),
        (lambda: poly_epo_advantages([1, 0], None, 1), "required"),
        (lambda: poly_epo_advantages([1, 0], [1, 2], 1, reduction="max"), "reduction must be one of sum, mean"),
        (lambda: poly_epo_advantages([1, 0], [1, 2], 1, min_distinct=-1), "min_distinct must be >= 0"),
        (lambda: poly_epo_advantages([[1, 0]], [[1, 2]], 1), "must be 1-D"),
        (lambda: rloo_advantages([1.0]), "at least N=2"),
        (lambda: compute_advantages([1, 0, 1], group_sizes=[2, 0, 1], estimator="grpo"), "empty group"),
        (lambda: compute_advantages([1, 0, 1], group_sizes=[2, 2], estimator="grpo"), "add up to 4"),
        (lambda: compute_advantages([1, 0, 1], group_sizes=2, estimator="grpo"), "equal groups"),
        (lambda: compute_advantages([1, 0], estimator="poly_epo", group_sizes=2), "needs cluster ids"),
        (lambda: compute_advantages([1, 0], [1, 2], estimator="nope", group_sizes=2), "valid estimators"),
        (lambda: set_rl_advantages([1, 0], None, 1, subsets=0, objective="mean_reward"), "positive integer"),
        (lambda: set_rl_advantages([1, 0], None, 1, subsets="some", objective="mean_reward"), "positive integer"),
        (lambda: set_rl_advantages([1, 0], [1, 2], 1, objective="nope"), "valid set objectives"),
    ],
)
def test_bad_input_raises_documented_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_error_in_a_batch_names_the_group():
    with pytest.raises(ValueError, match=r"group 1 .*set_size must be in \[1, N\] = \[1, 2\]"):
        compute_advantages([1, 0, 1, 0, 1], [1, 2, 1, 2, 3], group_sizes=[3, 2], estimator="poly_epo", set_size=3)


def test_compute_advantages_short_groups_and_singletons():
    r, c = [1, 0, 1, 1, 0, 1], [1, 2, 1, 3, 3, 2]
    ids = ["a", "a", "a", "b", "b", "c"]  # groups of 3, 2 and 1
    with pytest.raises(ValueError, match="group 0 .*set_size must be in"):
        compute_advantages(r, c, group_ids=ids, estimator="poly_epo", set_size=4)
    got = compute_advantages(r, c, group_ids=ids, estimator="poly_epo", set_size=4, short_groups="shrink",
                             singletons="zero")
    np.testing.assert_allclose(got[:3], poly_epo_advantages(r[:3], c[:3], 3))
    np.testing.assert_allclose(got[3:5], poly_epo_advantages(r[3:5], c[3:5], 2))
    assert got[5] == 0.0
    reward = compute_advantages(r, group_ids=ids, estimator="dr_grpo", singletons="reward")
    np.testing.assert_allclose(reward, [1 / 3, -2 / 3, 1 / 3, 0.5, -0.5, 1.0])  # the lone row keeps its reward
    with pytest.raises(ValueError, match="short_groups must be one of error, shrink"):
        compute_advantages(r, c, group_ids=ids, short_groups="cap")
    with pytest.raises(ValueError, match="singletons must be one of estimator, zero, reward"):
        compute_advantages(r, c, group_ids=ids, singletons="skip")
