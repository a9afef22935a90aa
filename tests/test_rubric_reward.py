"""The rubric reward end to end: real openai client, a scripted judge on 127.0.0.1.

Rubrics built and cached as files, scores parsed and combined (checked by hand), malformed
replies re-asked then handled by each failure policy, mixing with a verifiable reward, the echo
and evidence checks, and the reference kept out of policy prompts.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from _rubric_judge import BUILT, build_requests, judge, message, score_requests
from polyepo.judge import JudgeFailedError, JudgeUnavailableError
from polyepo.rewards import REWARDS, make_reward
from polyepo.rewards.rubric import Rubric
from polyepo.standin import Reply, Status, fast_options, last_user_message

pytest.importorskip("openai")

REF = "Split 84 into 40 and 44.\nThen 40 + 44 = 84, and half of 84 is therefore 42.\nThe answer is 42."
PROBLEM = "What is half of 84?"
#: O1 w1, P1 w1, P2 w2, P3 w1
RUBRIC = {"outcome": ["The final answer is 42."],
          "process": ["Splits 84 into two parts.", {"text": "Halves the total correctly.", "weight": 2},
                      "States the result clearly."]}


@pytest.fixture(autouse=True)
def _contains_reward(monkeypatch):
    """A tiny verifiable reward, registered for the test only: 1.0 when the completion
    contains the row's ``answer``, None where the row has none."""
    def make_contains(column: str = "answer"):
        def contains(prompts, completions, **columns):
            gold = columns.get(column) or [None] * len(completions)
            return [None if g is None else float(str(g) in str(c)) for c, g in zip(completions, gold)]
        return contains

    monkeypatch.setitem(REWARDS._items, "test_contains", make_contains)


def reward(server, tmp_path, **options):
    opts = {**fast_options(server), "rubric_dir": str(tmp_path / "rubrics"), **options}
    return make_reward("rubric", **opts)


def rows(n, *, rubric=None, reference=REF, answer=None, pid="half-84"):
    cols = {"problem_id": [pid] * n, "problem": [PROBLEM] * n, "reference": [reference] * n}
    if rubric is not None:
        cols["rubric"] = [rubric] * n
    if answer is not None:
        cols["answer"] = [answer] * n
    return cols


def test_rubric_is_built_once_written_as_a_file_and_reused(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path)
    out = f([PROBLEM] * 3, ["<O1> <P1>", "<P2>", "nothing"], **rows(3))
    assert len(build_requests(chat_server)) == 1 and len(score_requests(chat_server)) == 3
    built = build_requests(chat_server)[0]
    assert PROBLEM in message(built) and REF in message(built)
    path = tmp_path / "rubrics" / "half-84.yaml"
    saved = yaml.safe_load(path.read_text())
    assert saved["outcome"] == BUILT["outcome"] and saved["process"] == BUILT["process"]
    assert saved["source"] == "judge" and saved["model"] == "test-judge" and len(saved["fingerprint"]) == 16
    # BUILT: O1, P1, P2 (weights 1): O=1, P=0.5 -> 0.75 | O=0, P=0.5 -> 0.25 | 0
    assert out == [0.75, 0.25, 0.0]
    assert f.last_stats["rubrics_built"] == 1 and f.last_stats["requests"] == 4
    again = reward(chat_server, tmp_path)  # a new run: the file is read, nothing is built
    assert again([PROBLEM], ["<O1>"], **rows(1)) == [0.5]
    assert len(build_requests(chat_server)) == 1
    assert again.last_stats["rubrics_loaded"] == 1 and again.last_stats["rubrics_built"] == 0


def test_an_edited_rubric_file_is_used_as_it_is(chat_server, tmp_path):
    chat_server.responder = judge
    reward(chat_server, tmp_path)([PROBLEM], ["x"], **rows(1))
    path = tmp_path / "rubrics" / "half-84.yaml"
    data = yaml.safe_load(path.read_text())
    data["process"] = ["Writes 84 as 40 + 44.", {"text": "Divides by two.", "weight": 3}]
    path.write_text(yaml.safe_dump(data))
    f = reward(chat_server, tmp_path)
    assert f([PROBLEM], ["<O1> <P2?>"], **rows(1)) == [pytest.approx(0.5 * 1 + 0.5 * (0.5 * 3 / 4))]
    sent = message(score_requests(chat_server)[-1])
    assert "P1 (process): Writes 84 as 40 + 44." in sent and "P2 (process): Divides by two." in sent
    assert f.last_stats["stale_rubrics"] == 0
    other = {**rows(1), "reference": ["A different reference solution, so the file is stale."]}
    f([PROBLEM], ["<O1>"], **other)
    assert f.last_stats["stale_rubrics"] == 1 and f.last_stats["rubrics_built"] == 0


def test_scores_parsed_and_combined_by_hand(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path, outcome_weight=1, process_weight=3)
    out = f([PROBLEM] * 2, ["<O1> <P1> <P2?> done", "<O1?> <P3>"], **rows(2, rubric=RUBRIC))
    # 1: O = 1; P = (1*1 + 2*0.5 + 1*0)/4 = 0.5; reward = (1*1 + 3*0.5)/4 = 0.625
    # 2: O = 0.5; P = (0 + 0 + 1)/4 = 0.25; reward = (0.5 + 0.75)/4 = 0.3125
    assert out == [0.625, 0.3125]
    r = f.last_results[0]
    assert r.verdicts == {"O1": "met", "P1": "met", "P2": "partial", "P3": "missed"}
    assert (r.outcome, r.process, r.status) == (1.0, 0.5, "scored") and r.evidence["P2"] == "<P2?>"
    assert f.last_stats["rubrics_loaded"] == 1 and f.last_stats["rubrics_built"] == 0
    assert f.last_stats["outcome_mean"] == 0.75 and f.last_stats["process_mean"] == 0.375
    assert build_requests(chat_server) == []


def test_mixed_with_a_verifiable_reward_by_hand(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path, verifiable="test_contains", verifiable_weight=0.25)
    out = f([PROBLEM] * 3, ["<O1> <P1> 42", "<P2> 41", "<O1> 42"], **rows(3, rubric=RUBRIC, answer="42"))
    # judged: (1 + 0.25)/2 = 0.625; (0 + 0.5)/2 = 0.25; (1 + 0)/2 = 0.5; V = 1, 0, 1
    assert out == [0.75 * 0.625 + 0.25, 0.75 * 0.25, 0.75 * 0.5 + 0.25]
    assert [r.verifiable for r in f.last_results] == [1.0, 0.0, 1.0]
    # a row where the verifiable reward does not apply gets the judged score alone
    assert f([PROBLEM], ["<O1>"], **{**rows(1, rubric=RUBRIC), "answer": [None]}) == [0.5]


def test_reply_cache_serves_a_repeat_with_no_request(chat_server, tmp_path):
    chat_server.responder = judge
    cache = str(tmp_path / "judge.sqlite")
    first = reward(chat_server, tmp_path, cache_path=cache)([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC))
    n = len(chat_server.requests)
    f = reward(chat_server, tmp_path, cache_path=cache)
    assert f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC)) == first
    assert len(chat_server.requests) == n == 2
    assert f.last_stats["cache_hits"] == 2 and f.last_stats["requests"] == 0


def test_malformed_replies_are_reasked_with_the_reason(chat_server, tmp_path):
    chat_server.push(Reply("{'O1': met"), Reply(json.dumps({"O1": {"verdict": "met"}})),
                     Reply(json.dumps({k: {"verdict": "good"} for k in ("O1", "P1", "P2", "P3")})))
    chat_server.responder = judge
    f = reward(chat_server, tmp_path, max_reasks=3)
    assert f([PROBLEM], ["<O1> <P1>"], **rows(1, rubric=RUBRIC)) == [0.5 + 0.5 * 0.25]
    assert f.last_stats["reasks"] == 3 and f.last_stats["requests"] == 4
    reasks = [last_user_message(b) for b in chat_server.requests[1:]]
    assert "not valid JSON" in reasks[0]
    assert 'missing "P1", "P2", "P3"' in reasks[1]
    assert 'verdict of "O1" must be one of "met", "partial", "missed"' in reasks[2]


def test_still_malformed_after_reasks_gives_none_with_policy_none(chat_server, tmp_path):
    chat_server.responder = lambda body: Reply("I think it is quite good.")
    f = reward(chat_server, tmp_path, max_reasks=1, on_failure="none")
    assert f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC)) == [None, None]
    s = f.last_stats
    assert s["judge_failures"] == 2 and s["none"] == 2 and s["requests"] == 4 and s["reasks"] == 2
    assert s["errors/invalid_reply"] == 2 and s["scored"] == 0
    assert [r.status for r in f.last_results] == ["failed", "failed"]
    assert "invalid reply after 1 re-asks" in f.last_results[0].error


def test_policy_raise_stops_after_finishing_the_batch(chat_server, tmp_path):
    def half_broken(body):
        return Status(500, "down") if "<P1>" in message(body) else judge(body)

    chat_server.responder = half_broken
    cache = str(tmp_path / "judge.sqlite")
    f = reward(chat_server, tmp_path, max_retries=1, cache_path=cache)
    with pytest.raises(JudgeFailedError, match=r"failed on 1 of 2 .*on_failure='raise' stops here"):
        f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC))
    assert f.last_stats["judge_failures"] == 1 and f.last_stats["retries"] == 1
    assert f.last_stats["errors/server"] == 1 and "errors/timeout" not in f.last_stats
    n = len(chat_server.requests)
    chat_server.responder = judge  # the server is back: only the failed item is asked again
    assert reward(chat_server, tmp_path, cache_path=cache)([PROBLEM] * 2, ["<O1>", "<P1>"],
                                                          **rows(2, rubric=RUBRIC)) == [0.5, 0.125]
    assert len(chat_server.requests) == n + 1


def test_policy_verifiable_only_falls_back_to_the_verifiable_reward(chat_server, tmp_path):
    chat_server.responder = lambda body: Status(503, "overloaded")
    f = reward(chat_server, tmp_path, verifiable="test_contains", on_failure="verifiable_only", max_retries=0)
    cols = {**rows(3, rubric=RUBRIC), "answer": ["42", "42", None]}
    assert f([PROBLEM] * 3, ["it is 42", "it is 41", "it is 42"], **cols) == [1.0, 0.0, None]
    assert f.last_stats["verifiable_fallbacks"] == 2 and f.last_stats["none"] == 1


def test_policy_wait_rides_out_an_outage_of_the_build_and_the_scoring(chat_server, tmp_path):
    from polyepo.standin import Outage

    outage = Outage(judge, after=0, seconds=1.0)  # down from the first request, for a second
    chat_server.responder = outage
    f = reward(chat_server, tmp_path, on_failure="wait", max_wait_s=20.0, status_interval_s=0.2)
    assert f.wait_limit_s == 20.0 and reward(chat_server, tmp_path).wait_limit_s is None
    start = time.monotonic()
    assert f([PROBLEM] * 3, ["<O1> <P1>", "<P2>", "nothing"], **rows(3)) == [0.75, 0.25, 0.0]  # as with no outage
    assert time.monotonic() - start >= 0.9 and outage.refused > 0
    assert f.last_stats["judge_failures"] == 0 and f.last_stats["policy"] == "wait, then raise"
    down = Outage(judge, after=0, seconds=600)
    chat_server.responder = down
    g = reward(chat_server, tmp_path / "again", on_failure="wait", max_wait_s=0.6)
    with pytest.raises(JudgeUnavailableError, match="max_wait_s=0.6"):
        g([PROBLEM], ["<O1>"], **rows(1))


def test_under_wait_a_call_that_fails_while_the_judge_is_up_gets_on_item_failure(chat_server, tmp_path):
    def half_broken(body):
        return Status(400, "this one is too long") if "<P1>" in message(body) else judge(body)

    chat_server.responder = half_broken
    f = reward(chat_server, tmp_path, on_failure="wait", on_item_failure="none")
    assert f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC)) == [0.5, None]
    g = reward(chat_server, tmp_path, on_failure="wait")
    with pytest.raises(JudgeFailedError, match="on_item_failure='raise' stops here; set on_item_failure='none'"):
        g([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC))
    with pytest.raises(ValueError, match="on_item_failure='verifiable_only' needs a verifiable reward"):
        reward(chat_server, tmp_path, on_failure="wait", on_item_failure="verifiable_only")
    with pytest.raises(ValueError, match="on_item_failure must be one of raise, none, verifiable_only"):
        reward(chat_server, tmp_path, on_failure="wait", on_item_failure="wait")


def test_build_failure_applies_the_policy_and_writes_no_file(chat_server, tmp_path):
    chat_server.responder = lambda body: Status(500, "down")
    f = reward(chat_server, tmp_path, on_failure="none", max_retries=1)
    assert f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2)) == [None, None]
    s = f.last_stats
    assert s["build_failures"] == 1 and s["judge_failures"] == 2 and s["requests"] == 2
    assert "building the rubric of 'half-84' failed" in f.last_results[0].error
    assert not (tmp_path / "rubrics" / "half-84.yaml").exists()


def test_a_prompt_holding_the_reference_stops_the_run(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path)
    leaky = f"{PROBLEM}\nHint (worked solution):\n{REF}"
    with pytest.raises(ValueError, match="contains the reference solution"):
        f([leaky], ["<O1>"], **rows(1, rubric=RUBRIC))
    one_line = f"{PROBLEM}\nThen 40 + 44 = 84, and half of 84 is therefore 42."
    with pytest.raises(ValueError, match="40 \\+ 44 = 84"):
        f([one_line], ["<O1>"], **rows(1, rubric=RUBRIC))
    assert chat_server.requests == []
    assert reward(chat_server, tmp_path, leak_check=False)([leaky], ["<O1>"], **rows(1, rubric=RUBRIC)) == [0.5]


def test_the_judge_sees_the_reference_and_the_policy_prompt_does_not(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path)
    prompt = [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": PROBLEM}]
    completion = [{"role": "assistant", "content": "<O1> <P1>"}]
    assert f([prompt], [completion], **rows(1, rubric=RUBRIC)) == [0.5 + 0.5 * 0.25]
    sent = message(chat_server.requests[0])
    assert REF in sent and "<attempt>\n<O1> <P1>\n</attempt>" in sent
    reward(chat_server, tmp_path, show_reference=False)([PROBLEM], ["<P3>"], **rows(1, rubric=RUBRIC))
    assert REF not in message(chat_server.requests[-1]) and "(not shown to you)" in message(chat_server.requests[-1])


def test_echo_actions_by_hand(chat_server, tmp_path):
    chat_server.responder = judge  # the judge is fooled: every item met
    echo = "The final answer is 42. <O1> Splits 84 into two parts. <P1> Halves the total correctly. <P2> " \
           "States the result clearly. <P3>"
    genuine = "84 = 40 + 44; halving each part gives 20 + 22 = 42. <O1> <P1> <P2> <P3>"
    got = {}
    for action in ("flag", "penalize", "zero"):
        f = reward(chat_server, tmp_path, echo_action=action, echo_penalty=0.4)
        got[action] = f([PROBLEM] * 2, [echo, genuine], **rows(2, rubric=RUBRIC))
        assert f.last_stats["echo_flags"] == 1
        assert f.last_results[0].echo.flagged and not f.last_results[1].echo.flagged
    assert got == {"flag": [1.0, 1.0], "penalize": [0.6, 1.0], "zero": [0.0, 1.0]}
    f = reward(chat_server, tmp_path, echo_action="zero", verifiable="test_contains", verifiable_weight=0.5)
    assert f([PROBLEM], [echo], **rows(1, rubric=RUBRIC, answer="42")) == [0.5]  # the verifiable half stays


def test_evidence_that_is_not_in_the_response_is_downgraded(chat_server, tmp_path):
    lenient = {"O1": {"verdict": "met", "evidence": "the answer is 42"},
               "P1": {"verdict": "partial", "evidence": "splits 84 as 40 and 44"},
               "P2": {"verdict": "met", "evidence": "half of 84 ... is 42"},
               "P3": {"verdict": "missed", "evidence": ""}}
    chat_server.responder = lambda body: Reply(json.dumps(lenient))
    response = "Half of 84: I think it is 42.\nSo the answer is   42"
    f = reward(chat_server, tmp_path)
    out = f([PROBLEM], [response], **rows(1, rubric=RUBRIC))
    r = f.last_results[0]
    assert r.unsupported == ["P1"] and r.verdicts == {"O1": "met", "P1": "missed", "P2": "met", "P3": "missed"}
    assert out == [0.5 + 0.5 * 0.5] and f.last_stats["unsupported_verdicts"] == 1
    off = reward(chat_server, tmp_path, evidence_check="off")
    assert off([PROBLEM], [response], **rows(1, rubric=RUBRIC)) == [0.5 + 0.5 * (0.5 + 2) / 4]


def test_empty_and_not_applicable_rows(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path, verifiable="test_contains")
    cols = {"problem_id": ["a", "b", "b"], "problem": [PROBLEM] * 3, "reference": [REF, None, None],
            "rubric": [RUBRIC, None, None], "answer": [None, "42", None]}
    out = f([PROBLEM] * 3, ["   ", "42", "42"], **cols)
    assert out == [0.0, 1.0, None]  # empty: a real 0 without asking; no rubric: the verifiable reward alone
    assert [r.status for r in f.last_results] == ["empty", "not_applicable", "not_applicable"]
    assert chat_server.requests == [] and f.last_stats["empty"] == 1 and f.last_stats["not_applicable"] == 2


def test_trl_hooks_receive_the_statistics(chat_server, tmp_path):
    chat_server.responder = judge
    metrics, extras = {}, {}
    f = reward(chat_server, tmp_path)
    f([PROBLEM] * 2, ["<O1>", "<P1>"], **rows(2, rubric=RUBRIC), trainer_state=object(),
      log_metric=lambda k, v: metrics.__setitem__(k, v), log_extra=lambda k, v: extras.__setitem__(k, v))
    assert metrics["rubric/requests"] == 2.0 and metrics["rubric/judge_failures"] == 0.0
    assert metrics["rubric/reward_mean"] == pytest.approx((0.5 + 0.125) / 2)
    assert extras == {"rubric_outcome": [1.0, 0.0], "rubric_process": [0.0, 0.25], "rubric_echo": [False, False]}
    assert {"rows", "scored", "cache_hits", "requests", "echo_flags", "seconds", "judge_failures"} <= set(f.last_stats)


def test_options_are_checked(chat_server, tmp_path):
    with pytest.raises(ValueError, match=r"unknown option 'outcome_wieght' \(did you mean 'outcome_weight'\?\) for reward function 'rubric'; valid options: outcome_weight"):
        reward(chat_server, tmp_path, outcome_wieght=1)
    with pytest.raises(ValueError, match="on_failure must be one of raise, none, verifiable_only, wait"):
        reward(chat_server, tmp_path, on_failure="zero")
    with pytest.raises(ValueError, match="needs a verifiable reward"):
        reward(chat_server, tmp_path, on_failure="verifiable_only")
    with pytest.raises(ValueError, match="unknown reward function 'nope'"):
        reward(chat_server, tmp_path, verifiable="nope")
    with pytest.raises(ValueError, match="echo_action must be one of flag, penalize, zero"):
        reward(chat_server, tmp_path, echo_action="ban")
    with pytest.raises(ValueError, match="unknown build_judge option"):
        reward(chat_server, tmp_path, build_judge={"modle": "x"})


def test_a_separate_build_model(chat_server, tmp_path):
    chat_server.responder = judge
    f = reward(chat_server, tmp_path, build_judge={"model": "strong-judge"})
    f([PROBLEM], ["<O1>"], **rows(1))
    assert [b["model"] for b in chat_server.requests] == ["strong-judge", "test-judge"]
    assert Rubric.load(tmp_path / "rubrics" / "half-84.yaml").model == "strong-judge"
