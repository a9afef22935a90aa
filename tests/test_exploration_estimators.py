"""The exploration estimators against their literal formulas (enumeration where there are sets),
hand-worked groups, the published code's formulas, and the historical state's save/restore."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyepo.advantages import (
    ESTIMATORS,
    NEEDS_CLUSTERS,
    AnswerHistory,
    batch_hook,
    check_options,
    compute_advantages,
    darling_advantages,
    estimator_options,
    group_advantages,
    outcome_explore_advantages,
    pass_at_k_advantages,
    pkpo_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    uniqueness_advantages,
    with_batch_hook,
)


def close(a, b, tol=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max(initial=0.0))))


def sets_holding(N, k, i):
    return [G for G in itertools.combinations(range(N), k) if i in G]


def pkpo_loo_minus_one_literal(r, k):
    """The issue's formula: (1/C(N,k)) sum_{G holding i} [max_G r - max_{G minus i} r]."""
    N = len(r)
    return [sum(max(r[j] for j in G) - max(r[j] for j in G if j != i) for G in sets_holding(N, k, i)) / math.comb(N, k)
            for i in range(N)]


def pkpo_s_literal(r, k):
    N = len(r)
    return [sum(max(r[j] for j in G) for G in sets_holding(N, k, i)) / math.comb(N, k) for i in range(N)]


def pkpo_loo_literal(r, k):
    """s_i minus the mean of the other rollouts' weights s computed on the group without i."""
    out = []
    for i, s_i in enumerate(pkpo_s_literal(r, k)):
        others = [x for j, x in enumerate(r) if j != i]
        out.append(s_i - float(np.mean(pkpo_s_literal(others, k))))
    return out


rewards_real = st.lists(st.floats(-3, 3, allow_nan=False), min_size=2, max_size=8)
rewards_tied = st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=2, max_size=8)


# --- PKPO -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.one_of(rewards_real, rewards_tied), st.data())
def test_pkpo_loo_minus_one_equals_literal_formula(r, data):
    k = data.draw(st.integers(2, len(r)))
    close(pkpo_advantages(r, None, k), pkpo_loo_minus_one_literal(r, k))


@settings(max_examples=60, deadline=None)
@given(st.one_of(rewards_real, rewards_tied).filter(lambda r: len(r) >= 2), st.data())
def test_pkpo_loo_equals_literal_formula(r, data):
    k = data.draw(st.integers(1, len(r) - 1))
    close(pkpo_advantages(r, None, k, variant="loo"), pkpo_loo_literal(r, k))


def test_pkpo_hand_worked():
    # r = [3, 1, 2], k = 2. Rollout 0: sets {0,1}: 3-1, {0,2}: 3-2 -> 3/C(3,2) = 1. Rollout 1 is
    # never the best of a set: 0. Rollout 2: {1,2}: 2-1 = 1 -> 1/3.
    close(pkpo_advantages([3, 1, 2], None, 2), [1, 0, 1 / 3])
    # Binary, N=4, c=2, k=2: a correct rollout earns (k/N) C(N-c, k-1)/C(N-1, k-1) = 1/2 * 2/3.
    close(pkpo_advantages([1, 0, 1, 0], None, 2), [1 / 3, 0, 1 / 3, 0])


def test_pkpo_authors_code_is_rloo_of_n_over_k_times_loo_minus_one():
    """The Poly-EPO authors' verl fork: binary rewards (rounded), weight C(N-c, k-1)/C(N-1, k-1)
    for a correct rollout, then a leave-one-out mean subtracted. Written out here from that description."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        N = int(rng.integers(3, 12))
        k = int(rng.integers(2, N + 1))
        r = rng.random(N)
        P = np.round(r)
        c = int(P.sum())
        raw = P * math.comb(N - c, k - 1) / math.comb(N - 1, k - 1)
        authors = (raw * N - raw.sum()) / (N - 1)
        close(rloo_advantages(N / k * pkpo_advantages(P, None, k)), authors)


def test_pkpo_options_and_errors():
    assert estimator_options("pkpo") == {"set_size": 4, "variant": "loo_minus_one"}
    with pytest.raises(ValueError, match="variant must be one of loo_minus_one, loo"):
        pkpo_advantages([1, 0], None, 2, variant="loo1")
    with pytest.raises(ValueError, match="needs set_size >= 2"):
        pkpo_advantages([1, 0], None, 1)
    with pytest.raises(ValueError, match=r"needs set_size <= N-1 = 2"):
        pkpo_advantages([1, 0, 1], None, 3, variant="loo")


# --- pass@k with Chen et al.'s std scaling ---------------------------------------------------


def chen_literal(val, k):
    """RUCAIBox/Passk_Training's analytical advantage, written out: binary rewards only."""
    val = np.asarray(val, float)
    n, c = val.size, int((val == 1).sum())
    rho = 1 - math.comb(n - c, k) / math.comb(n, k)
    sigma = math.sqrt(rho * (1 - rho))
    pos = (1 - rho) / (sigma + 1e-6)
    neg = (1 - rho - (math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1) if n - c - 1 >= 0 else 0)) / (sigma + 1e-6)
    return np.where(val == 1, pos, neg)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=10), st.data())
def test_pass_at_k_std_is_chen_et_al(r, data):
    k = data.draw(st.integers(1, len(r)))
    close(pass_at_k_advantages(r, None, k, reduction="mean", scale="std"), chen_literal(r, k), tol=1e-7)


def test_pass_at_k_std_scale_on_graded_rewards_and_errors():
    r = np.array([0.2, 0.9, 0.5, 0.0])
    plain = pass_at_k_advantages(r, None, 2, reduction="mean")
    f = np.mean([max(r[list(G)]) for G in itertools.combinations(range(4), 2)])  # 0.2+.9+.5+.9+.9+.5 / 6
    close(pass_at_k_advantages(r, None, 2, reduction="mean", scale="std"), plain / (math.sqrt(f * (1 - f)) + 1e-6))
    close(pass_at_k_advantages(r, None, 2), pass_at_k_advantages(r, None, 2, scale="none"))
    with pytest.raises(ValueError, match=r"needs rewards in \[0, 1\]"):
        pass_at_k_advantages([2.0, 0.0], None, 1, scale="std")
    with pytest.raises(ValueError, match="scale must be one of none, std"):
        pass_at_k_advantages([1.0, 0.0], None, 1, scale="var")


# --- DARLING ----------------------------------------------------------------------------------


def darling_literal(r, c, floor=0.1, correct_only=False, degenerate=(0, 100)):
    N = len(r)
    if not correct_only:
        div = [(N - sum(cj == c[i] for cj in c)) / (N - 1) for i in range(N)]
    else:
        correct = [x > 0 for x in r]
        C = sum(correct)
        div = [((C - sum(correct[j] and c[j] == c[i] for j in range(N))) / (C - 1) if correct[i] and C > 1 else floor)
               for i in range(N)]
    w = [r[i] * (floor if c[i] in degenerate else max(floor, div[i])) for i in range(N)]
    return np.array(w) - np.mean(w)


groups = st.integers(2, 10).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.0, 1.0, 0.5, -1.0]), min_size=n, max_size=n),
    st.lists(st.sampled_from([1, 2, 3, 4, 100]), min_size=n, max_size=n)))


@settings(max_examples=60, deadline=None)
@given(groups, st.sampled_from([0.0, 0.1, 0.5]), st.booleans())
def test_darling_equals_literal_formula(group, floor, correct_only):
    r, c = group
    close(darling_advantages(r, c, floor=floor, correct_only=correct_only), darling_literal(r, c, floor, correct_only))


def test_darling_hand_worked():
    # N=4: clusters [1, 1, 2, 100]. Diversity: (4-2)/3, (4-2)/3, (4-1)/3 = 1, degenerate -> floor.
    # w = r * div = [2/3, 0, 1, 0.1]; mean 1.7667/4.
    r, c = [1, 0, 1, 1], [1, 1, 2, 100]
    w = np.array([2 / 3, 0, 1, 0.1])
    close(darling_advantages(r, c), w - w.mean())
    # correct only: correct = {0, 2, 3}, C = 3; rollout 0 alone among correct in cluster 1 -> (3-1)/2 = 1
    w = np.array([1, 0, 1, 0.1])
    close(darling_advantages(r, c, correct_only=True), w - w.mean())
    np.testing.assert_array_equal(darling_advantages([1.0], [1]), [0.0])
    with pytest.raises(ValueError, match=r"floor must be in \[0, 1\]"):
        darling_advantages(r, c, floor=2)


# --- uniqueness -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(groups, st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.sampled_from(["positive", "all"]), st.booleans())
def test_uniqueness_equals_literal_formula(group, alpha, reweight, std):
    r, c = group
    base = np.array(r) - np.mean(r)
    if std:
        base = base / (np.std(r, ddof=1) + 1e-6)
    m = np.array([sum(cj == ci for cj in c) for ci in c], float)
    w = np.where(np.isin(c, [0, 100]), 1.0, m ** -alpha)
    if reweight == "positive":
        w = np.where(base > 0, w, 1.0)
    close(uniqueness_advantages(r, c, alpha=alpha, reweight=reweight, scale_by_std=std), base * w)


def test_uniqueness_hand_worked():
    # Dr.GRPO base [.5, .5, .5, -1.5]; correct rollouts 0, 1 share cluster 1 (m=2), rollout 2 alone.
    r, c = [1, 1, 1, -1], [1, 1, 2, 3]
    close(uniqueness_advantages(r, c, scale_by_std=False), [0.25, 0.25, 0.5, -1.5])
    close(uniqueness_advantages(r, c, scale_by_std=False, alpha=0), [0.5, 0.5, 0.5, -1.5])
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        uniqueness_advantages(r, c, alpha=-1)


# --- outcome-based exploration ----------------------------------------------------------------


def test_outcome_batch_literal_and_hand_worked():
    # answers [1, 1, 2, 100]: rollouts 0, 1 each share with one other (penalty coef/3), 2 alone, 3 degenerate (coef).
    r, c = [1, 0, 1, 0], [1, 1, 2, 100]
    shaped = np.array([1 - 0.5 / 3, -0.5 / 3, 1, -0.5])
    close(outcome_explore_advantages(r, c), shaped - shaped.mean())
    rng = np.random.default_rng(0)
    for _ in range(20):
        N = int(rng.integers(2, 9))
        r, c = rng.random(N), rng.integers(1, 4, N)
        shaped = r - 0.3 * np.array([(np.sum(c == ci) - 1) / (N - 1) for ci in c])
        close(outcome_explore_advantages(r, c, coef=0.3), shaped - shaped.mean())


def test_outcome_historical_counts_across_steps():
    h = AnswerHistory()
    # step 1: answers [1, 1, 2]: counts after the step 2, 2, 1
    a1 = outcome_explore_advantages([0, 0, 1], [1, 1, 2], variant="historical", coef=1.0, history=h, prompt_key="p")
    b = np.array([1 / math.sqrt(2), 1 / math.sqrt(2), 1.0])
    close(a1, np.array([0, 0, 1]) + b - np.mean(np.array([0, 0, 1]) + b))
    # step 2, same prompt: answers [2, 3, 100]: counts 2, 1; degenerate gets no bonus and is not counted
    a2 = outcome_explore_advantages([1, 0, 0], [2, 3, 100], variant="historical", coef=1.0, history=h, prompt_key="p")
    shaped = np.array([1 + 1 / math.sqrt(2), 1.0, 0.0])
    close(a2, shaped - shaped.mean())
    assert (h.count("p", 1), h.count("p", 2), h.count("p", 3), h.count("p", 100)) == (2, 2, 1, 0)
    assert h.count("other", 1) == 0 and h.groups == 2 and len(h) == 1
    with h.paused():  # an evaluation batch: same bonus as if recorded, nothing stored
        outcome_explore_advantages([1], [3], variant="historical", history=h, prompt_key="p")
    assert h.count("p", 3) == 1 and h.groups == 2


def run_steps(history, steps, keys):
    return [compute_advantages(r, c, group_sizes=4, estimator="outcome_explore", variant="historical",
                               history=history, prompt_keys=k) for (r, c), k in zip(steps, keys)]


def test_outcome_history_save_and_resume_equals_uninterrupted(tmp_path):
    rng = np.random.default_rng(7)
    steps = [(rng.integers(0, 2, 8).astype(float), rng.choice([1, 2, 3, 100], 8)) for _ in range(6)]
    keys = [rng.choice(["q1", "q2", "q3"], 2).repeat(4).tolist() for _ in range(6)]
    whole = run_steps(AnswerHistory(), steps, keys)
    first = AnswerHistory()
    run_steps(first, steps[:3], keys[:3])
    path = first.save(tmp_path / "checkpoint-3" / "answer_history.json")
    resumed = AnswerHistory.load(path)
    assert resumed == first and json.loads(path.read_text())["format"] == "polyepo-answer-history"
    rest = run_steps(resumed, steps[3:], keys[3:])
    for a, b in zip(whole[3:], rest):
        np.testing.assert_array_equal(a, b)
    fresh = run_steps(AnswerHistory(), steps[3:], keys[3:])  # without the restored counts: different
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, rest))
    again = AnswerHistory()
    again.load_state_dict(resumed.state_dict())
    assert again == resumed


@pytest.mark.parametrize("state, match", [
    ({"format": "other"}, "not an answer-history state"),
    ({"format": "polyepo-answer-history", "version": 9}, "version 9 is not supported"),
    ({"format": "polyepo-answer-history", "version": 1, "groups": 1, "counts": {"p": {"x": 1}}}, "malformed"),
    ({"format": "polyepo-answer-history", "version": 1, "groups": 1, "counts": {"p": {"1": 0}}}, "counts must be >= 1"),
])
def test_answer_history_rejects_bad_state(state, match):
    with pytest.raises(ValueError, match=match):
        AnswerHistory().load_state_dict(state)


def test_answer_history_load_names_the_file(tmp_path):
    bad = tmp_path / "h.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="h.json: cannot read"):
        AnswerHistory.load(bad)


def test_outcome_historical_needs_its_state():
    with pytest.raises(ValueError, match="needs history=AnswerHistory"):
        outcome_explore_advantages([1, 0], [1, 2], variant="historical")
    with pytest.raises(ValueError, match="needs the prompt's key"):
        outcome_explore_advantages([1, 0], [1, 2], variant="historical", history=AnswerHistory())
    with pytest.raises(ValueError, match="group 0 has rollouts of 2 prompts"):
        compute_advantages([1, 0], [1, 2], group_sizes=2, estimator="outcome_explore", variant="historical",
                           history=AnswerHistory(), prompt_keys=["a", "b"])
    with pytest.raises(ValueError, match="one per rollout"):
        compute_advantages([1, 0], [1, 2], group_sizes=2, estimator="outcome_explore", prompt_keys=["a"])
    with pytest.raises(ValueError, match="variant must be one of batch, historical"):
        outcome_explore_advantages([1, 0], [1, 2], variant="ucb")


# --- REINFORCE++ baseline and the batch hook --------------------------------------------------


def test_reinforce_pp_baseline_is_whitened_over_the_batch():
    rng = np.random.default_rng(1)
    sizes = [4, 1, 3, 6]
    r = rng.random(sum(sizes))
    bounds = np.cumsum([0, *sizes])
    centred = np.concatenate([r[a:b] - (r[a:b].mean() if b - a > 1 else 0.0) for a, b in zip(bounds, bounds[1:])])
    expected = (centred - centred.mean()) / np.sqrt(centred.var(ddof=1) + 1e-8)
    close(compute_advantages(r, group_sizes=sizes, estimator="reinforce_pp_baseline"), expected)
    # the per-group function alone is the first step; one group through group_advantages is a batch of one group
    close(reinforce_pp_baseline_advantages(r[:4]), r[:4] - r[:4].mean())
    one = r[:4] - r[:4].mean()
    close(group_advantages("reinforce_pp_baseline", r[:4]), (one - one.mean()) / np.sqrt(one.var(ddof=1) + 1e-8))
    assert batch_hook("reinforce_pp_baseline") is not None and batch_hook("poly_epo") is None
    np.testing.assert_array_equal(compute_advantages([1.0], group_sizes=1, estimator="reinforce_pp_baseline"), [0.0])


def test_any_estimator_can_carry_a_batch_hook():
    def scale_to_max(adv, *, rewards, clusters, groups, **_):
        assert [g.tolist() for g in groups] == [[0, 1], [2, 3, 4]]
        return adv / np.abs(adv).max()

    @with_batch_hook(scale_to_max)
    def centred(rewards, clusters=None):
        r = np.asarray(rewards, float)
        return r - r.mean()

    ESTIMATORS.register("test_hooked")(centred)
    try:
        out = compute_advantages([1, 0, 4, 0, 2], group_sizes=[2, 3], estimator="test_hooked")
        close(out, np.array([0.5, -0.5, 2, -2, 0]) / 2)
    finally:
        ESTIMATORS._items.pop("test_hooked")


# --- registry ---------------------------------------------------------------------------------


def test_new_estimators_are_registered_with_their_options():
    names = {"pkpo", "darling", "uniqueness", "outcome_explore", "reinforce_pp_baseline"}
    assert names <= set(ESTIMATORS.names())
    assert {"darling", "uniqueness", "outcome_explore"} <= NEEDS_CLUSTERS and not {"pkpo", "reinforce_pp_baseline"} & NEEDS_CLUSTERS
    assert estimator_options("pass_at_k") == {"set_size": 4, "reduction": "sum", "scale": "none"}
    assert estimator_options("darling") == {"floor": 0.1, "correct_only": False, "degenerate": (0, 100)}
    assert "history" not in estimator_options("outcome_explore")  # runtime, never in a config
    check_options("outcome_explore", {"history": AnswerHistory(), "prompt_key": "p", "coef": 1.0})
    with pytest.raises(ValueError, match="unknown option 'history' for estimator 'darling'"):
        check_options("darling", {"history": AnswerHistory()})
    with pytest.raises(ValueError, match="needs cluster ids"):
        compute_advantages([1, 0], group_sizes=2, estimator="darling")
