"""Clustering beside the rewards: the background clustering of a step, verl's early clustering
of each finished group (its verl-free part), and the TRL trainer running both at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from polyepo.clustering import DEGENERATE, ClusterResult
from polyepo.groups import PendingClusters, group_step
from polyepo.judge import JudgeUnavailableError
from polyepo.train.verl.early import EarlyClusters, in_order, uid_of
from polyepo.train.verl.groups import BatchRows, cluster_results
from polyepo.train.verl.settings import VerlSettings
from verl_helpers import PrefixClusterer


class Gate(PrefixClusterer):
    """A prefix clusterer that blocks until ``open`` is set, and records when it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.ran: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def cluster(self, prompt, responses, **context):
        start = time.perf_counter()
        assert self.open.wait(10), "never released"
        with self.lock:
            out = super().cluster(prompt, responses, **context)
            self.ran.append((start, time.perf_counter()))
        return out


def test_pending_clusters_run_in_the_background_or_when_asked():
    gate = Gate()
    pending = PendingClusters(gate, [("p", ["a1", "b", "a2"])])
    time.sleep(0.05)
    assert not pending.done() and gate.ran == []  # started, blocked in the clusterer: the caller goes on
    gate.open.set()
    results, seconds = pending.result()
    assert [r.ids for r in results] == [[1, 2, 1]] and seconds > 0 and pending.started <= pending.finished

    later = Gate()
    later.open.set()
    pending = PendingClusters(later, [("p", ["x", "x"])], background=False)
    time.sleep(0.05)
    assert not pending.done() and later.ran == []  # sequential: nothing happens until result()
    assert pending.result()[0][0].ids == [1, 1] and len(later.ran) == 1


def test_pending_clusters_hand_back_the_clusterers_error():
    class Down:
        name = "down"

        def cluster_many(self, groups):
            raise JudgeUnavailableError("judge down", waited_s=3.0, last_error="HTTP 503", summary="judge down.")

    pending = PendingClusters(Down(), [("p", ["a"])])
    with pytest.raises(JudgeUnavailableError, match="judge down") as info:
        pending.result()
    assert info.value.waited_s == 3.0 and info.value.last_error == "HTTP 503"


def test_judge_unavailable_error_survives_pickling():
    import pickle

    e = JudgeUnavailableError("full message", waited_s=2.5, last_error="HTTP 503", summary="short.", checkpoint="c-3")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is JudgeUnavailableError and str(back) == "full message"
    assert (back.waited_s, back.last_error, back.summary, back.checkpoint) == (2.5, "HTTP 503", "short.", "c-3")


# -- verl: each group clustered as soon as it is finished ------------------------------------

GROUPS = {"u1": ["a1", "b1", "a2", "", "c"], "u2": ["x", "x", "y1", "y2", "z"], "u3": ["m", "n", "m", "n", "n"]}


def store() -> dict[str, tuple[str, str, float]]:
    """TransferQueue-like rows: key -> (uid, response, reward); keys as verl writes them."""
    return {f"{uid}_{i}_0": (uid, text, float(text.startswith(("a", "y", "m")))) for uid, texts in GROUPS.items()
            for i, text in enumerate(texts)}


def read_from(rows: dict[str, tuple[str, str, float]], calls: list[list[str]]):
    def read(keys):
        calls.append(list(keys))
        return BatchRows(uids=[rows[k][0] for k in keys], prompts=[f"prompt {rows[k][0]}" for k in keys],
                         responses=[rows[k][1] for k in keys], rewards=np.array([rows[k][2] for k in keys]),
                         extras=[{"score": rows[k][2]} for k in keys], keys=list(keys))
    return read


def batch(rows, keys) -> BatchRows:
    return read_from(rows, [])(keys)


def same_partition(a: list[int], b: list[int]) -> bool:
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(len(a)) for j in range(len(a)))


def test_early_clusters_start_when_a_group_finishes_and_match_the_advantage_step():
    rows, calls = store(), []
    gate = Gate()
    early = EarlyClusters(gate, 4, read_from(rows, calls))
    partition = dict.fromkeys(rows)
    assert early.notice(["u1"], partition) == 1  # u1 finished; u2, u3 still generating
    assert calls == [[k for k in rows if uid_of(k) == "u1"]]
    assert early.notice(["u1", "u2"], partition) == 1 and len(calls) == 2  # only the new one is read and started
    assert early.notice(["gone"], partition) == 0  # a uid with no rows in TransferQueue
    gate.open.set()
    # the advantage step's batch: rows shuffled (verl balances them across ranks), u3 never started early
    keys = list(rows)
    order = [keys[i] for i in np.random.default_rng(0).permutation(len(keys))]
    b = batch(rows, order)
    late = PrefixClusterer()
    found, waited = cluster_results(b, VerlSettings(clusterer="prefix"), late, ready=early.take)
    alone, _ = cluster_results(b, VerlSettings(clusterer="prefix"), PrefixClusterer())
    assert late.calls == 1 and len(gate.ran) == 2 and len(early.spans) == 2  # u3 clustered in the step
    for uid in GROUPS:
        assert same_partition(found[uid].ids, alone[uid].ids), uid
    r = np.array([rows[k][2] for k in order])
    uids = [rows[k][0] for k in order]
    steps = [group_step(r, uids, [res[u] for u in dict.fromkeys(uids)], estimator="poly_epo",
                        estimator_options={"set_size": 3}) for res in (found, alone)]
    np.testing.assert_allclose(steps[0].advantages, steps[1].advantages, atol=1e-12)
    assert early.take("u1", [k for k in order if uid_of(k) == "u1"]) is None  # taken once


def test_in_order_permutes_ids_and_per_row_extras():
    res = ClusterResult(ids=[1, 2, DEGENERATE], backend="judge", extra={"reasoning": ["r1", "r2", "r3"], "unique": 3})
    out = in_order(res, ["k0", "k1", "k2"], ["k2", "k0", "k1"])
    assert out.ids == [DEGENERATE, 1, 2] and out.extra == {"reasoning": ["r3", "r1", "r2"], "unique": 3}
    assert res.ids == [1, 2, DEGENERATE]  # the original is left as it was


def test_early_clusters_forget_cleared_groups_and_refuse_other_rows():
    rows, calls = store(), []
    clusterer = PrefixClusterer()
    early = EarlyClusters(clusterer, 1, read_from(rows, calls))
    early.notice(["u1", "u2"], dict.fromkeys(rows))
    assert early.take("u2", ["u2_0_0", "u2_1_0"]) is None  # not the rows it clustered: the step clusters them
    early.notice([], {k: None for k in rows if uid_of(k) != "u1"})  # u1 cleared from TransferQueue (evicted)
    assert early.take("u1", [k for k in rows if uid_of(k) == "u1"]) is None


def test_early_clustering_errors_reach_the_advantage_step():
    class Down(PrefixClusterer):
        def cluster_many(self, groups):
            raise JudgeUnavailableError("the judge at X has not answered", summary="down.")

    rows = store()
    early = EarlyClusters(Down(), 1, read_from(rows, []))
    early.notice(["u1"], dict.fromkeys(rows))
    with pytest.raises(JudgeUnavailableError, match="has not answered"):
        cluster_results(batch(rows, list(rows)), VerlSettings(clusterer="prefix"), PrefixClusterer(), ready=early.take)


def test_a_failing_read_leaves_the_groups_to_the_advantage_step(caplog):
    def broken(keys):
        raise OSError("TransferQueue unreachable")

    early = EarlyClusters(PrefixClusterer(), 1, broken)
    with caplog.at_level("WARNING", logger="polyepo.train.verl"):
        assert early.notice(["u1"], dict.fromkeys(store())) == 0
    assert "could not start clustering 1 finished group(s) early (OSError: TransferQueue unreachable)" in caplog.text
    assert early.take("u1", ["u1_0_0"]) is None
