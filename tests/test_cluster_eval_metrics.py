"""Agreement scores against references, trainer metrics by hand, and the shipped labelled set."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from math import comb

import numpy as np
import pytest

from polyepo.clustering import BaseClusterer, ClusterResult, aggregate_metrics, group_metrics, make_clusterer
from polyepo.clustering.evaluate import adjusted_rand_index, evaluate_clusterer, load_labelled, pair_counts
from polyepo.clustering.metrics import METRIC_KEYS


def ari_by_pairs(truth, pred):
    """The ARI written over explicit pairs (the Rand index corrected for chance): the slow reference."""
    pairs = list(itertools.combinations(range(len(truth)), 2))
    same_t = [truth[i] == truth[j] for i, j in pairs]
    same_p = [pred[i] == pred[j] for i, j in pairs]
    tp = sum(a and b for a, b in zip(same_t, same_p))
    a, b, n = sum(same_t), sum(same_p), len(pairs)
    expected = a * b / n
    top = (a + b) / 2
    return 1.0 if top == expected else (tp - expected) / (top - expected)


def test_ari_by_hand():
    # truth {0,1}{2,3}, pred {0,1}{2}{3}: together 1, a = 2, b = 1, C(4,2) = 6,
    # E = 2/6, top = 1.5 -> (1 - 1/3) / (1.5 - 1/3) = 4/7
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([1, 1, 2], [5, 5, 9]) == 1.0
    assert adjusted_rand_index([0, 1, 2], [0, 1, 2]) == 1.0 and adjusted_rand_index([0], [3]) == 1.0
    assert adjusted_rand_index([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    with pytest.raises(ValueError, match="3 labels but pred has 2"):
        adjusted_rand_index([0, 1, 2], [0, 1])


def test_ari_matches_pair_reference_and_sklearn_on_random_labelings():
    rng = np.random.default_rng(11)
    try:
        from sklearn.metrics import adjusted_rand_score
    except ImportError:
        adjusted_rand_score = None
    for _ in range(300):
        n = int(rng.integers(2, 14))
        t, p = list(rng.integers(0, 4, n)), list(rng.integers(0, 5, n))
        ours = adjusted_rand_index(t, p)
        assert ours == pytest.approx(ari_by_pairs(t, p), abs=1e-12)
        if adjusted_rand_score is not None:
            assert ours == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)


def test_pair_counts_by_hand():
    # truth {0,1,2}{3}, pred {0,1}{2,3}: true pairs 3, predicted pairs 2, both: (0,1)
    assert pair_counts([1, 1, 1, 2], [7, 7, 8, 8]) == {"tp": 1, "fp": 1, "fn": 2}
    c = pair_counts([1, 2, 3], [1, 1, 1])
    assert c == {"tp": 0, "fp": comb(3, 2), "fn": 0}


def test_group_metrics_by_hand():
    ids, rewards = [1, 1, 2, 100, 3, 2], [1, 1, 0, 0, 1, 0.5]
    m = group_metrics(ids, rewards=rewards)
    assert m == {"distinct": 3, "degenerate": 1, "correct": 3, "distinct_correct": 2, "distinct_incorrect": 1,
                 "all_distinct": 0, "one_cluster": 0, "clustered": 1}
    m = group_metrics(ids, rewards=rewards, correct_threshold=0.5)
    assert m["correct"] == 4 and m["distinct_correct"] == 3
    assert group_metrics([1, 0, 2], degenerate=(0, 100))["distinct"] == 2
    assert set(group_metrics(ids)) == {"distinct", "degenerate", "all_distinct", "one_cluster", "clustered"}
    # all distinct: every response its own real strategy; one cluster: at most one real strategy
    assert group_metrics([3, 1, 2])["all_distinct"] == 1 and group_metrics([3, 1, 100])["all_distinct"] == 0
    assert group_metrics([2, 2, 100])["one_cluster"] == 1 and group_metrics([100, 100])["one_cluster"] == 1
    assert group_metrics([5])["all_distinct"] == 0 and group_metrics([1, 2])["one_cluster"] == 0
    with pytest.raises(ValueError, match="length 2"):
        group_metrics(ids, [True, False])
    assert all(k in METRIC_KEYS for k in group_metrics(ClusterResult(ids, "judge"), rewards=rewards))


def test_aggregate_skips_zero_diversity_groups_in_diversity_means():
    ok = group_metrics(ClusterResult([1, 2, 2, 100], "judge", cache_hit=True, requests=0), rewards=[1, 1, 0, 0])
    failed = group_metrics(ClusterResult([100] * 4, "judge", failed=True, policy="zero_diversity", requests=3,
                                         retries=2), rewards=[1, 0, 0, 0])
    fallback = group_metrics(ClusterResult([1, 1, 1, 1], "judge", failed=True, policy="fallback:python_ast",
                                           requests=1), rewards=[1, 1, 1, 1])
    s = aggregate_metrics([ok, failed, fallback])
    assert s["groups"] == 3
    assert s["distinct"] == pytest.approx((2 + 1) / 2) and s["degenerate"] == pytest.approx(0.5)
    assert s["distinct_correct"] == pytest.approx((2 + 1) / 2)
    assert (s["judge_failed"], s["zero_diversity"], s["fallback"], s["cache_hit"]) == (2, 1, 1, 1)
    assert (s["requests"], s["retries"], s["clustered"]) == (4, 2, 2)
    # the fallback group (one strategy) counts in the means, the zero_diversity one does not
    assert s["one_cluster"] == pytest.approx(0.5) and s["all_distinct"] == 0
    reward_only = group_metrics(ClusterResult([100] * 2, "judge", failed=True, policy="reward_only"), rewards=[1, 0])
    s = aggregate_metrics([ok, reward_only])
    assert (s["reward_only"], s["judge_failed"], s["clustered"], s["distinct"]) == (1, 1, 1, 2)


class Oracle(BaseClusterer):
    """Reads the truth from the group's context: agreement must be perfect."""

    name = "oracle"

    def cluster(self, prompt, responses, **context):
        return ClusterResult(list(context["true"]), self.name)


def test_evaluation_plumbing_with_an_oracle_and_an_anti_oracle():
    groups = [{"prompt": "p", "responses": ["a", "b", "c", "d"], "labels": [1, 1, 2, 100], "true": [5, 5, 6, 100]}]
    s = evaluate_clusterer(Oracle(), groups)["summary"]
    assert (s["ari"], s["pair_precision"], s["pair_recall"], s["degenerate_recall"], s["distinct_mae"]) == (1, 1, 1, 1, 0)
    groups[0]["true"] = [1, 2, 3, 4]
    s = evaluate_clusterer(Oracle(), groups)["summary"]
    assert s["pair_recall"] == 0 and s["degenerate_recall"] == 0 and s["distinct_mae"] == 2


def test_shipped_labelled_set_is_well_formed():
    groups = load_labelled("humaneval_strategies")
    assert len(groups) >= 8 and sum(len(g["responses"]) for g in groups) >= 60
    for g in groups:
        labels = set(g["labels"])
        assert labels <= set(g["strategies"]), g["task_id"]
        assert len(labels - {100}) >= 2, "each problem needs genuinely different strategies"
        assert any(g["labels"].count(k) >= 2 for k in labels - {100}), "and variants within one"


def test_shipped_labelled_set_correct_flags_match_execution(tmp_path):
    """Runs every shipped solution against its tests, in a child process with a time limit."""
    script = tmp_path / "check.py"
    script.write_text(
        "import json, sys\nfrom polyepo.clustering.code import extract_code\n"
        "from polyepo.clustering.evaluate import load_labelled\nout = []\n"
        "for g in load_labelled('humaneval_strategies'):\n"
        "    for r in g['responses']:\n"
        "        ns = {}\n"
        "        try:\n"
        "            exec(extract_code(r), ns)\n"
        "            exec(g['tests'], {'candidate': ns[g['entry_point']]})\n"
        "            out.append(True)\n"
        "        except Exception:\n"
        "            out.append(False)\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout)
    flags = [c for g in load_labelled("humaneval_strategies") for c in g["correct"]]
    assert ran == flags
    assert 0 < sum(flags) < len(flags)


def test_python_ast_agreement_on_the_shipped_set():
    """Regression guard: the measured agreement (docs/clustering.md) must not silently drop."""
    s = evaluate_clusterer(make_clusterer("python_ast"), load_labelled("humaneval_strategies"))["summary"]
    assert s["ari"] > 0.55 and s["pair_precision"] > 0.75 and s["degenerate_precision"] == 1.0


def test_load_labelled_reads_jsonl_and_checks_lengths(tmp_path):
    good = tmp_path / "set.jsonl"
    good.write_text(json.dumps({"prompt": "p", "responses": ["a", "b"], "labels": [1, 2]}) + "\n")
    assert load_labelled(good)[0]["labels"] == [1, 2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "responses": ["a", "b"], "labels": [1]}) + "\n")
    with pytest.raises(ValueError, match="1 labels for 2 responses"):
        load_labelled(bad)
    with pytest.raises(ValueError, match="neither a file nor one of: humaneval_strategies"):
        load_labelled("nope")



def docs_agreement_row(label: str) -> list[float]:
    """The four figures printed in docs/clustering.md's agreement table for ``label``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "clustering.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"| {label} |"))
    return [float(v) for v in line.strip("|").split("|")[1:5]]


def measured_agreement(clusterer) -> list[float]:
    s = evaluate_clusterer(clusterer, load_labelled("humaneval_strategies"))["summary"]
    return [round(v + 1e-12, 2) for v in (s["ari"], s["pair_precision"], s["pair_recall"], s["degenerate_recall"])]


def test_agreement_table_in_the_docs_is_what_the_code_measures():
    assert docs_agreement_row("`python_ast` (defaults)") == measured_agreement(make_clusterer("python_ast"))
    exact = make_clusterer("exact", canonicalize="normalize_names")
    assert docs_agreement_row("`exact` with `canonicalize=normalize_names`") == measured_agreement(exact)
