"""The LLM-judge clusterer end to end: real openai client, real HTTP server on 127.0.0.1.

The scripted server plays a judge that reads the tag before ":" in each response shown to it
(``A: ...`` -> strategy A, ``JUNK`` -> degenerate), so the right answer is known.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from polyepo.advantages import poly_epo_advantages
from polyepo.clustering import group_metrics, make_clusterer
from polyepo.clustering.judge import render_prompt, validate_reply
from polyepo.judge import InvalidReply, JudgeFailedError
from polyepo.standin import Reply, Status, fast_options, last_user_message

pytest.importorskip("openai")

BLOCK = re.compile(r"<response (\d+)>\n(.*?)\n</response \1>", re.DOTALL)


def shown(body) -> list[str]:
    """The responses the judge was shown in one request (the last block set: the task's)."""
    text = last_user_message(body) if "<response" in last_user_message(body) else body["messages"][0]["content"]
    task = text.split("## Your task")[-1]
    return [m.group(2) for m in BLOCK.finditer(task)]


def tag_judge(body) -> Reply:
    ids, reply = {}, {}
    for i, text in enumerate(shown(body), 1):
        tag = text.split(":")[0].strip()
        cid = 100 if tag == "JUNK" else ids.setdefault(tag, len(ids) + 1)
        reply[str(i)] = {"reasoning": f"Macro: {tag}. Micro: {tag}.", "cluster_id": cid}
    return Reply(json.dumps(reply))


def judge(server, **options):
    opts = {"prompt": "math", **fast_options(server), **options}
    return make_clusterer("judge", **opts)


GROUP = ["A: factor it", "B: complete the square", "A: factor it, other words", "JUNK", "C: graph it", "B: again"]


def test_good_reply_gives_ids_and_metadata(chat_server):
    chat_server.responder = tag_judge
    res = judge(chat_server).cluster("Solve x^2 - 5x + 6 = 0.", GROUP)
    assert res.ids == [1, 2, 1, 100, 3, 2]  # tags A B A JUNK C B
    assert res.backend == "judge" and not res.failed and res.requests == 1 and not res.cache_hit
    body = chat_server.requests[0]
    assert "Solve x^2 - 5x + 6 = 0." in body["messages"][0]["content"]
    assert res.extra["reasoning"][0].startswith("Macro: A")


def test_same_strategy_same_id_and_exact_duplicates_judged_once(chat_server):
    chat_server.responder = tag_judge
    responses = ["A: one", "B: two", "A: one", "A: one", "  B: two\n", "C: three", "", "A: other"]
    res = judge(chat_server).cluster("p", responses)
    assert shown(chat_server.requests[0]) == ["A: one", "B: two", "C: three", "A: other"]
    assert res.ids == [1, 2, 1, 1, 2, 3, 100, 1]
    assert res.extra["unique"] == 4


def test_all_empty_group_needs_no_request(chat_server):
    res = judge(chat_server).cluster("p", ["", "   ", "\n"])
    assert res.ids == [100, 100, 100] and not res.failed and chat_server.requests == []


def test_malformed_json_is_reasked(chat_server):
    chat_server.push(Reply("{'1': {'cluster_id': 1}"))
    chat_server.responder = tag_judge
    res = judge(chat_server).cluster("p", ["A: x", "B: y"])
    assert res.ids == [1, 2] and res.reasks == 1 and res.requests == 2
    assert "not valid JSON" in last_user_message(chat_server.requests[1])


def test_wrong_number_of_keys_is_reasked_with_the_missing_keys(chat_server):
    chat_server.push(Reply(json.dumps({"1": {"reasoning": "r", "cluster_id": 1}})))
    chat_server.responder = tag_judge
    res = judge(chat_server).cluster("p", ["A: x", "B: y", "A: z"])
    assert res.ids == [1, 2, 1] and res.reasks == 1
    assert 'missing "2", "3"' in last_user_message(chat_server.requests[1])


def test_non_integer_ids_are_reasked_then_policy_applies(chat_server):
    bad = json.dumps({"1": {"reasoning": "r", "cluster_id": "one"}, "2": {"reasoning": "r", "cluster_id": 1.5}})
    chat_server.responder = lambda body: Reply(bad)
    c = judge(chat_server, max_reasks=1, on_failure="zero_diversity")
    res = c.cluster("p", ["A: x", "B: y"])
    assert res.failed and res.policy == "zero_diversity" and res.reasks == 1 and res.requests == 2
    assert res.ids == [100, 100] and res.extra["error_kind"] == "invalid_reply"
    assert 'cluster_id of "1" must be an integer' in last_user_message(chat_server.requests[1])
    assert c.stats()["errors/invalid_reply"] == 1


def test_outage_with_zero_diversity_gives_zero_poly_epo_advantage(chat_server):
    chat_server.responder = lambda body: Status(500, "outage")
    c = judge(chat_server, on_failure="zero_diversity", max_retries=2)
    res = c.cluster("p", ["A: x", "B: y", "C: z", "D: w"])
    assert res.failed and res.requests == 3 and res.retries == 2 and "outage" in res.error
    assert len(set(res.ids)) == 1, "a failure must never look like 'all distinct'"
    rewards = [1, 0, 1, 0]
    for kw in ({}, {"degenerate": (100,), "min_distinct": 1, "reduction": "mean"}):
        np.testing.assert_array_equal(poly_epo_advantages(rewards, res.ids, 2, **kw), np.zeros(4))
    m = group_metrics(res, rewards=rewards)
    assert m["judge_failed"] == 1 and m["zero_diversity"] == 1 and m["clustered"] == 0
    stats = c.stats()
    assert stats["failures"] == 1 and stats["retries"] == 2 and stats["errors/server"] == 1


def test_outage_with_fallback_uses_the_offline_backend(chat_server):
    chat_server.responder = lambda body: Status(502, "bad gateway")
    code = ["def f(xs):\n    return sorted(xs)[-1]\n", "def f(xs):\n    return max(xs)\n",
            "def f(ys):\n    return sorted(ys)[-1]\n", "", "def f(xs):\n    pass\n"]
    c = judge(chat_server, prompt="code", on_failure="fallback:python_ast", max_retries=1)
    res = c.cluster("largest element", code)
    expected = make_clusterer("python_ast").cluster("largest element", code).ids
    assert res.ids == expected == [1, 2, 1, 100, 100]
    assert res.failed and res.policy == "fallback:python_ast" and res.extra["fallback"]["backend"] == "python_ast"
    assert group_metrics(res)["fallback"] == 1


def test_outage_with_raise_stops_with_a_clear_message(chat_server):
    chat_server.responder = lambda body: Status(429, "quota")
    c = judge(chat_server, max_retries=1, on_failure="raise")
    with pytest.raises(JudgeFailedError, match=r"on_failure='raise' stops here.*fallback:python_ast"):
        c.cluster_many([("p", ["A: x", "B: y"]), ("q", ["C: z"])])


def test_cache_serves_a_repeat_and_a_resumed_run_with_no_http(chat_server, tmp_path):
    chat_server.responder = tag_judge
    cache = str(tmp_path / "cluster.sqlite")
    first = judge(chat_server, cache_path=cache).cluster("p", ["A: x", "B: y", "A: x"])
    n = len(chat_server.requests)
    again = judge(chat_server, cache_path=cache).cluster("p", ["A: x", "B: y", "A: x"])
    assert len(chat_server.requests) == n == 1
    assert again.cache_hit and again.requests == 0 and again.ids == first.ids == [1, 2, 1]
    other_prompt = judge(chat_server, cache_path=cache, prompt="code").cluster("p", ["A: x", "B: y", "A: x"])
    assert not other_prompt.cache_hit and len(chat_server.requests) == 2


def test_cluster_many_is_concurrent_ordered_and_limited(chat_server):
    def slow(body):
        reply = tag_judge(body)
        reply.delay_s = 0.2
        return reply

    chat_server.responder = slow
    groups = [(f"problem {k}", [f"T{k}: a", "X: b", f"T{k}: a"]) for k in range(6)]
    results = judge(chat_server, max_concurrency=3).cluster_many(groups)
    assert [r.ids for r in results] == [[1, 2, 1]] * 6
    assert chat_server.max_in_flight == 3
    assert sorted(shown(b)[0] for b in chat_server.requests) == [f"T{k}: a" for k in range(6)]


def test_canonicalisation_hides_names_and_comments_from_the_judge(chat_server):
    chat_server.responder = tag_judge
    a = "```python\ndef f(xs):\n    # biggest\n    best = xs[0]\n    for x in xs:\n        best = x if x > best else best\n    return best\n```"
    b = "```python\ndef f(values):\n    top = values[0]  # start\n    for v in values:\n        top = v if v > top else top\n    return top\n```"
    judge(chat_server, prompt="code", canonicalize="normalize_names").cluster("p", [a, b])
    seen = shown(chat_server.requests[0])
    assert len(seen) == 1 and "#" not in seen[0] and "best" not in seen[0]


def test_prompt_from_a_file_and_placeholders(chat_server, tmp_path):
    template = tmp_path / "mine.md"
    template.write_text("Group these {{N}} answers to: {{PROBLEM}}\n{{RESPONSES}}\nDegenerate = {{DEGENERATE}}.")
    chat_server.responder = tag_judge
    c = judge(chat_server, prompt=str(template), degenerate=7)
    res = c.cluster("2+2?", ["A: 4", "A: four"])
    sent = chat_server.requests[0]["messages"][0]["content"]
    assert sent.startswith("Group these 2 answers to: 2+2?") and "Degenerate = 7." in sent
    assert res.ids == [1, 1] and res.degenerate == 7
    (tmp_path / "bad.md").write_text("no placeholders here")
    with pytest.raises(ValueError, match="lacks the placeholder"):
        judge(chat_server, prompt=str(tmp_path / "bad.md"))
    with pytest.raises(ValueError, match="neither"):
        judge(chat_server, prompt="physics")


def test_builtin_prompts_render_every_placeholder():
    from polyepo.clustering.judge import load_template

    for name in ("math", "code"):
        text = render_prompt(load_template(name), "PROBLEM-TEXT {{N}}", ["r1 {{KEYS}}", "r2"], 100)
        assert "{{" not in text.replace("PROBLEM-TEXT {{N}}", "").replace("r1 {{KEYS}}", "")
        assert "PROBLEM-TEXT {{N}}" in text and "<response 2>\nr2\n</response 2>" in text
        assert "exactly 2 keys" in text and "Macro" in text and "Micro" in text


def test_validate_reply_strictness():
    assert validate_reply('{"1": {"cluster_id": 2, "reasoning": "x"}, "2": 100}', 2) == [(2, "x"), (100, "")]
    for reply, why in [('{"1": {"cluster_id": true}}', "integer"), ('{"1": {"cluster_id": 1.0}}', "integer"),
                       ('{"1": {"reasoning": "x"}}', "integer"), ('{"1": 1, "2": 2}', 'unexpected "2"'),
                       ('{"2": 1}', 'missing "1"')]:
        with pytest.raises(InvalidReply, match=why):
            validate_reply(reply, 1)


def test_bad_options_are_clear_errors(chat_server):
    with pytest.raises(ValueError, match=r"unknown option 'modle' \(did you mean 'model'\?\) for clusterer 'judge'; valid options: prompt"):
        judge(chat_server, modle="x")
    with pytest.raises(ValueError, match="on_failure must be"):
        judge(chat_server, on_failure="all_distinct")
    with pytest.raises(ValueError, match="fallback:judge"):
        judge(chat_server, on_failure="fallback:judge")
    with pytest.raises(ValueError, match="valid clusterers"):
        judge(chat_server, on_failure="fallback:pyast")
