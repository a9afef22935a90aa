"""The judge clusterer's failure policies under injected faults (tests/judge_faults.py), through
the real openai client: ``wait`` through an outage, its limit and its message, ``reward_only``,
``on_group_failure``, the refused ``fallback:exact``, and malformed replies of every kind.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from judge_faults import FaultServer, Raw, Reply, Status, tag_judge
from polyepo.clustering import make_clusterer
from polyepo.judge import JudgeFailedError, JudgeUnavailableError

pytest.importorskip("openai")

GROUPS = [(f"problem {k}", [f"A{k}: one", f"B{k}: two", f"A{k}: one again", "JUNK"]) for k in range(6)]
RIGHT = [1, 2, 1, 100]


def judge(server: FaultServer, **options):
    opts = {"prompt": "math", **server.options(), **options}
    return make_clusterer("judge", **opts)


def outage(server: FaultServer, seconds: float, fault=None) -> threading.Thread:
    """Take the judge down now and bring it back after ``seconds``."""
    server.fault = fault or Status(503, "upstream down")

    def back():
        time.sleep(seconds)
        server.fault = None

    t = threading.Thread(target=back, daemon=True)
    t.start()
    return t


def test_wait_is_the_default_and_rides_out_an_outage(caplog):
    with FaultServer(tag_judge) as server:
        c = judge(server, breaker_after=2, breaker_cooldown_s=0.25, status_interval_s=0.3)
        assert c.policy.action == "wait" and c.group_policy.label == "reward_only"
        outage(server, 1.5)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="polyepo.judge"):
            results = c.cluster_many(GROUPS)
        took = time.monotonic() - start
        assert [r.ids for r in results] == [RIGHT] * 6 and not any(r.failed for r in results)
        assert 1.4 < took < 6.0
        assert all(r.extra.get("waited_s", 0) > 0 for r in results)
        status = [r for r in caplog.records if "paused until it answers" in r.message]
        assert len(status) >= 2, "a status line while waiting, repeated"
        assert "max_wait_s" in status[0].message and "upstream down" in status[0].message
        assert any("answering again" in r.message for r in caplog.records)
        # the breaker held the outage's requests down: retries, then about one probe per cool-down
        assert len(server.requests) < 6 * 3 + 1.5 / 0.25 + 6 + 6
        assert c.stats()["waits"] == 6 and c.stats()["failures"] == 0


def test_wait_without_a_breaker_and_through_lasting_429s():
    with FaultServer(tag_judge) as server:
        c = judge(server, breaker_after=0)
        outage(server, 0.8, Status(429, "quota", headers={"Retry-After": "0.1"}))
        results = c.cluster_many(GROUPS[:3])
        assert [r.ids for r in results] == [RIGHT] * 3 and not any(r.failed for r in results)


def test_wait_stops_after_max_wait_with_how_to_resume():
    with FaultServer(tag_judge) as server:
        server.fault = Status(502, "bad gateway")
        c = judge(server, max_wait_s=0.8, breaker_after=2, breaker_cooldown_s=0.2)
        start = time.monotonic()
        with pytest.raises(JudgeUnavailableError) as info:
            c.cluster_many(GROUPS)
        assert 0.8 <= time.monotonic() - start < 5.0
        message = str(info.value)
        assert "polyepo train --config" in message and "--resume" in message and "resume_from_checkpoint" in message
        assert "max_wait_s=0.8" in message and "bad gateway" in message
        assert isinstance(info.value, JudgeFailedError) and info.value.waited_s >= 0.8


def test_the_status_line_and_the_stop_reach_stderr_without_a_terminal(tmp_path):
    """No logging set up, stdout/stderr pipes: the status line and the stop still show."""
    script = textwrap.dedent("""
        import socket
        from polyepo.judge import JudgeClient, JudgeConfig, JudgeRequest, parse_json_object
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()  # nobody listens
        cfg = JudgeConfig(model="m", base_url=f"http://127.0.0.1:{port}/v1", cache_path=None, max_retries=1,
                          backoff_initial_s=0.05, backoff_max_s=0.1, max_wait_s=1.0, status_interval_s=0.3)
        c = JudgeClient(cfg)
        c.complete(JudgeRequest([{"role": "user", "content": "hi"}], parse_json_object), wait=True)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if "paused until it answers" in line]
    assert len(lines) >= 2, done.stderr
    assert "JudgeUnavailableError" in done.stderr and "--resume" in done.stderr


def test_a_group_the_judge_fails_on_while_up_gets_reward_only_under_wait():
    def handler(seen):
        if "problem 2" in seen.body["messages"][0]["content"]:
            return Reply("I cannot classify these.")
        return tag_judge(seen)

    with FaultServer(handler) as server:
        results = judge(server, max_reasks=1).cluster_many(GROUPS[:4])
        assert [r.ids for i, r in enumerate(results) if i != 2] == [RIGHT] * 3
        bad = results[2]
        assert bad.failed and bad.policy == "reward_only" and bad.extra["error_kind"] == "invalid_reply"
        assert bad.ids == [100] * 4 and bad.reasks == 1


def test_on_group_failure_chooses_what_such_a_group_gets():
    with FaultServer(lambda seen: Status(400, "prompt is too long")) as server:
        code = ["def f(xs):\n    return max(xs)\n", "def f(xs):\n    return sorted(xs)[-1]\n"]
        res = judge(server, prompt="code", on_group_failure="fallback:python_ast").cluster("largest", code)
        assert res.failed and res.policy == "fallback:python_ast" and res.ids == [1, 2]
        with pytest.raises(JudgeFailedError, match="on_group_failure='raise' stops here"):
            judge(server, on_group_failure="raise").cluster("p", ["A: x"])
    with pytest.raises(ValueError, match="only with on_failure='wait'"):
        judge(server, on_failure="zero_diversity", on_group_failure="reward_only")
    with pytest.raises(ValueError, match="on_group_failure must be one of 'raise'"):
        judge(server, on_group_failure="wait")


def test_reward_only_marks_each_failed_group():
    with FaultServer(tag_judge) as server:
        server.fault = Status(500, "down")
        c = judge(server, on_failure="reward_only")
        results = c.cluster_many(GROUPS[:3])
        assert all(r.failed and r.policy == "reward_only" and r.ids == [100] * 4 for r in results)
        server.fault = None
        assert c.cluster("problem 9", ["A: x", "B: y"]).ids == [1, 2]


def test_reward_only_groups_leave_the_diversity_means_and_get_dr_grpos_advantage():
    """Through the judge clusterer and the group step: two of six groups fail (server errors on
    their requests only); the diversity means are over the four judged groups, and the failed
    ones get r - mean(r)."""
    import numpy as np

    from polyepo.groups import group_step

    def handler(seen):
        if any(f"problem {k}\n" in seen.body["messages"][0]["content"] for k in (1, 3)):
            return Status(500, "this group's request fails")
        return tag_judge(seen)

    with FaultServer(handler) as server:
        results = judge(server, on_failure="reward_only", max_retries=0).cluster_many(GROUPS)
    assert [r.failed for r in results] == [False, True, False, True, False, False]
    rewards = [1.0, 0.0, 1.0, 0.0] * 2 + [1.0, 1.0, 0.0, 0.0] + [0.0, 0.0, 0.0, 1.0] * 3
    step = group_step(rewards, np.repeat(np.arange(6), 4), results, estimator="poly_epo",
                      estimator_options={"set_size": 2}, options=None)
    m = step.metrics
    assert m["polyepo/groups_with_clusters"] == 4 and m["polyepo/cluster_reward_only"] == 2
    assert m["polyepo/cluster_failures"] == 2 and m["polyepo/cluster_failure_fraction"] == pytest.approx(2 / 6)
    assert m["polyepo/clusters_distinct"] == 2.0  # every judged group: ids 1, 2, 1, degenerate (0 if counted)
    assert m["polyepo/frac_groups_one_cluster"] == 0.0 and m["polyepo/degenerate_per_group"] == 1.0
    for k in (1, 3):
        r = np.array(rewards[4 * k:4 * k + 4])
        np.testing.assert_allclose(step.advantages[4 * k:4 * k + 4], r - r.mean())


def test_fallback_exact_is_refused_unless_forced(caplog):
    with FaultServer(tag_judge) as server:
        with pytest.raises(ValueError, match=r"fallback:exact' is refused: 'exact' clusters by identical text.*"
                                             r"force_fallback"):
            judge(server, on_failure="fallback:exact")
        with pytest.raises(ValueError, match="refused"):
            judge(server, on_group_failure="fallback:exact")
        with caplog.at_level(logging.WARNING, logger="polyepo.clustering"):
            c = judge(server, on_failure="fallback:exact", force_fallback=True)
        assert any("fallback:exact forced" in r.message for r in caplog.records)
        server.fault = Status(500, "down")
        assert c.cluster("p", ["same", "same", "other"]).ids == [1, 1, 2]


def test_bad_policy_names_list_the_valid_ones():
    with FaultServer(tag_judge) as server:
        with pytest.raises(ValueError, match=r"on_failure must be one of 'wait'.*'reward_only'.*did you mean "
                                             r"'reward_only'"):
            judge(server, on_failure="reward-only")
        with pytest.raises(ValueError, match="did you mean 'max_wait_s'"):
            judge(server, max_wait=5)


NASTY = {
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "deep object": '{"1": ' * 50_000 + "1" + "}" * 50_000,
    "5000-digit id": '{"1": {"cluster_id": ' + "9" * 5000 + '}, "2": {"cluster_id": 1}}',
    "5000-digit key": '{"' + "1" * 5000 + '": 1}',
    "nested reasoning": '{"1": {"cluster_id": 1, "reasoning": ' + "[" * 5000 + "]" * 5000 + '}, "2": 2}',
    "string ids": '{"1": {"cluster_id": "1"}, "2": {"cluster_id": "2"}}',
    "null and float": '{"1": {"cluster_id": null}, "2": {"cluster_id": 2.0}}',
    "zero-based": '{"0": {"cluster_id": 1}, "1": {"cluster_id": 2}}',
    "html": "<html><body>Service Unavailable</body></html>",
    "lone surrogate": '{"1": {"cluster_id": 1, "reasoning": "\\ud800"}, "2": {"cluster_id": 1, "x": "\udfff"}}',
    "huge": "x" * 2_000_000,
    "unclosed": '{"1": {"cluster_id": 1}, "2": {"cluster_id": ',
}


@pytest.mark.parametrize("name", list(NASTY))
def test_malformed_replies_are_reasked_then_the_policy_applies(name):
    with FaultServer(lambda seen: Reply(NASTY[name])) as server:
        res = judge(server, on_failure="zero_diversity", max_reasks=1).cluster("p", ["A: x", "B: y"])
        if name == "lone surrogate":  # valid, once the surrogates are replaced
            assert not res.failed and res.ids == [1, 1]
            return
        assert res.failed and res.policy == "zero_diversity" and res.reasks == 1, res
        assert res.extra["error_kind"] == "invalid_reply" and len(server.requests) == 2
        assert server.requests[1].size < 40_000, "the re-ask quotes an excerpt, not the reply"


def test_a_giant_id_in_the_http_body_itself_is_a_bad_response_not_a_crash():
    body = b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}}], "n": ' \
           + b"9" * 5000 + b"}"
    deep = b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answers = iter([Raw(body), Raw(deep), Reply(tag_reply_for_two())])
    with FaultServer(lambda seen: next(answers)) as server:
        res = judge(server, max_retries=3).cluster("p", ["A: x", "B: y"])
        assert not res.failed and res.ids == [1, 2] and res.retries == 2


def tag_reply_for_two() -> str:
    return json.dumps({"1": {"reasoning": "A", "cluster_id": 1}, "2": {"reasoning": "B", "cluster_id": 2}})
