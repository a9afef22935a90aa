"""The stand-in judge: it recovers what polyepo's prompts carry, and answers the real judge
clusterer and the real rubric reward over HTTP (official openai client) with known answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyepo.clustering import make_clusterer
from polyepo.clustering.evaluate import load_labelled
from polyepo.clustering.judge import load_template, render_prompt
from polyepo.rewards import make_reward
from polyepo.rewards.rubric import Rubric
from polyepo.rewards.rubric.judging import build_request, score_request
from polyepo.rewards.rubric.prompts import load_template as rubric_template
from polyepo.standin import ChatServer, Reply, Status, fast_options
from polyepo.standin.judge import PromptPattern, StandInJudge, build_rubric, judge_item

pytest.importorskip("openai")

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60)
line_text = text.map(str.strip).filter(lambda t: t and "</response" not in t and "<response" not in t)


@settings(max_examples=60, deadline=None)
@given(problem=text.filter(str.strip), responses=st.lists(line_text, min_size=1, max_size=6),
       prompt=st.sampled_from(["code", "math"]), degenerate=st.sampled_from([100, 0, 7]))
def test_the_clustering_prompt_gives_back_what_was_filled_in(problem, responses, prompt, degenerate):
    pattern = PromptPattern("cluster", load_template(prompt), prompt)
    fields = pattern.parse(render_prompt(load_template(prompt), problem, responses, degenerate))
    assert fields is not None
    assert fields["PROBLEM"] == problem.strip()
    assert int(fields["N"]) == len(responses) and int(fields["DEGENERATE"]) == degenerate
    from polyepo.standin.judge import split_responses

    assert split_responses(fields["RESPONSES"], len(responses)) == responses


@settings(max_examples=40, deadline=None)
@given(problem=text.filter(str.strip), reference=text.filter(str.strip), attempt=text)
def test_the_rubric_prompts_give_back_what_was_filled_in(problem, reference, attempt):
    build = PromptPattern("build", rubric_template("build"), "build")
    message = build_request(rubric_template("build"), problem, reference, 5, "t").messages[0]["content"]
    fields = build.parse(message)
    assert (fields["PROBLEM"], fields["REFERENCE"], fields["MAX_PROCESS"]) == (problem.strip(), reference.strip(), "4")
    rubric = Rubric.from_dict({"outcome": ["The answer is 3."], "process": ["Adds 1 and 2.", "Checks it."]}, problem_id="x")
    score = PromptPattern("score", rubric_template("score"), "score")
    message = score_request(rubric_template("score"), rubric, problem, reference, attempt, show_reference=True,
                            max_chars=10_000, template_id="t").messages[0]["content"]
    fields = score.parse(message)
    assert fields["RESPONSE"] == attempt.strip() and fields["RUBRIC"] == rubric.render()


def test_judge_through_the_standin_equals_the_offline_clusterer_on_every_labelled_group():
    groups = load_labelled("humaneval_strategies")
    direct = make_clusterer("python_ast").cluster_many(groups)
    with ChatServer(StandInJudge()) as server:
        judged = make_clusterer("judge", **fast_options(server), prompt="code").cluster_many(groups)
        assert len(server.requests) == len(groups)
    assert [r.ids for r in judged] == [r.ids for r in direct]
    assert not any(r.failed for r in judged)


def test_math_prompt_clusters_by_final_answer_and_degenerate_id_follows_the_prompt():
    responses = ["so \\boxed{4}", "The answer is 4", "x = 5, \\boxed{5}", "", "\\boxed{4}"]
    with ChatServer() as server:  # the default responder is the stand-in
        res = make_clusterer("judge", **fast_options(server), prompt="math", degenerate=0).cluster("2+2?", responses)
    assert res.ids == [1, 1, 2, 0, 1] and not res.failed


def test_rubric_reward_through_the_standin_worked_by_hand(tmp_path):
    reference = ("Factor 360 = 2^3 * 3^2 * 5.\nThe divisor sum is multiplicative: (1+2+4+8)(1+3+9)(1+5) = 15 * 13 * 6.\n"
                 "So the sum is \\boxed{1170}.")
    attempts = ["360 = 2^3 * 3^2 * 5, so sigma = 15 * 13 * 6 = 1170. Answer \\boxed{1170}", "It is 1170.", "no idea"]
    with ChatServer() as server:
        reward = make_reward("rubric", **fast_options(server), rubric_dir=str(tmp_path))
        values = reward(["Sum of the divisors of 360?"] * 3, attempts, reference=[reference] * 3, problem_id=["d"] * 3)
    # built: O1 "The final answer is 1170."; P1..P3 the reference's lines
    # attempt 1: O1 met (1170); P1 met (4 of 5 terms, every number); P2 missed (6 of 13); P3 partial (1170, no "sum")
    # attempt 2: O1 met; P1, P2 missed; P3 partial. Reward = (O + P) / 2.
    assert [r.verdicts for r in reward.last_results[:2]] == [
        {"O1": "met", "P1": "met", "P2": "missed", "P3": "partial"},
        {"O1": "met", "P1": "missed", "P2": "missed", "P3": "partial"}]
    assert values == pytest.approx([(1 + 1.5 / 3) / 2, (1 + 0.5 / 3) / 2, 0.0])
    assert reward.last_stats["unsupported_verdicts"] == 0  # every evidence quote is found in its attempt


def test_build_and_item_rules():
    assert build_rubric("Sort, then scan.\nReturn the count.", 4) == {
        "outcome": ["Reaches the reference's final step: Return the count."], "process": ["Sort, then scan."]}
    built = build_rubric("a = 1. b = 2. c = 3. d = 4. So \\boxed{10}.", 2)
    assert built["outcome"] == ["The final answer is 10."] and built["process"] == ["a = 1.", "So \\boxed{10}."]
    assert judge_item("Uses the Euclidean algorithm on 84 and 36.", "Euclid: 84 mod 36 = 12").verdict == "partial"  # 2 of 4 terms
    assert judge_item("Uses the Euclidean algorithm on 84 and 36.", "the euclidean algorithm on 84, 36").verdict == "met"
    assert judge_item("Uses the Euclidean algorithm on 84 and 36.", "no").evidence == ""


def test_unrecognised_requests_get_400_and_own_templates_are_recognised(tmp_path):
    template = tmp_path / "mine.md"
    template.write_text("Group these.\n{{PROBLEM}}\n---\n{{RESPONSES}}\nN={{N}}, junk id {{DEGENERATE}}")
    responses = ["def f():\n    return 1", "def g():\n    for i in range(3):\n        pass\n    return 1"]
    with ChatServer(StandInJudge()) as server:
        judge = make_clusterer("judge", **fast_options(server), prompt=str(template), on_failure="zero_diversity")
        res = judge.cluster("p", responses)
        assert res.failed and "did not recognise" in res.error
    with ChatServer(StandInJudge(prompts={"cluster": [str(template)]})) as server:
        res = make_clusterer("judge", **fast_options(server), prompt=str(template)).cluster("p", responses)
        assert res.ids == make_clusterer("python_ast").cluster("p", responses).ids and not res.failed
    assert isinstance(StandInJudge()({"messages": [{"role": "user", "content": "hello"}]}), Status)
    assert isinstance(StandInJudge()({"messages": [{"role": "user", "content": render_prompt(
        load_template("code"), "p", ["x"], 100)}]}), Reply)


def test_the_command_serves_the_cli_judge_and_stops_cleanly(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    server = subprocess.Popen([sys.executable, "-m", "polyepo", "judge-standin", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().split()[3]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        groups = tmp_path / "g.jsonl"
        groups.write_text(json.dumps({"prompt": "Sum a list.", "responses": [
            "def f(xs):\n    return sum(xs)", "def f(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t",
            "", "def f(ys):\n    return sum(ys)"]}) + "\n")
        out = subprocess.run([sys.executable, "-m", "polyepo", "cluster", str(groups), "-b", "judge", "-o", f"base_url={url}",
                              "-o", "model=standin", "-o", "cache_path=", "--json"], capture_output=True, text=True,
                             timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["clusters"] == [1, 2, 100, 1]
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0 and "requests answered: cluster 1" in err and err.startswith("cluster: {")


def test_an_outage_refuses_for_its_seconds_after_its_requests_then_answers_again():
    from polyepo.standin import Outage
    from polyepo.standin.outage import parse_outage

    lines: list[str] = []
    outage = Outage(lambda body: Reply("fine"), after=2, seconds=0.3)
    outage.log = lines.append
    answers = [outage({}) for _ in range(4)]
    assert [type(a).__name__ for a in answers] == ["Reply", "Reply", "Status", "Status"]
    assert answers[2].code == 503 and "down for" in answers[2].message and outage.refused == 2
    import time

    time.sleep(0.35)
    assert isinstance(outage({}), Reply) and outage.refused == 2
    assert lines == ["outage: answering HTTP 503 for 0.3 s (after 2 requests)",
                     "outage over after 2 refused requests; answering again"]
    ended = Outage(lambda body: Reply("fine"), after=0, seconds=600)
    assert isinstance(ended({}), Status)
    ended.end()
    assert isinstance(ended({}), Reply)
    assert parse_outage("96:20") == (96, 20.0)
    for bad in ("96", "x:2", "3:0", "-1:5"):
        with pytest.raises(ValueError, match="--outage expects AFTER:SECONDS"):
            parse_outage(bad)


def test_the_command_takes_the_judge_down_with_outage(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    server = subprocess.Popen([sys.executable, "-m", "polyepo", "judge-standin", "--port", "0", "--quiet",
                               "--outage", "1:600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().split()[3]
        groups = tmp_path / "g.jsonl"
        groups.write_text("".join(json.dumps({"prompt": f"Problem {k}.", "responses": ["def f():\n    return 1"]}) + "\n"
                                  for k in range(2)))
        out = subprocess.run([sys.executable, "-m", "polyepo", "cluster", str(groups), "-b", "judge", "-o", f"base_url={url}",
                              "-o", "model=standin", "-o", "cache_path=", "-o", "on_failure=reward_only", "-o",
                              "max_retries=0", "-o", "max_concurrency=1", "--json"],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["cluster_meta"]["failed"] for r in rows] == [False, True]  # answered once, then down
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert "stand-in judge outage: answering HTTP 503 for 600 s (after 1 requests)" in err
    bad = subprocess.run([sys.executable, "-m", "polyepo", "judge-standin", "--outage", "soon"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "--outage expects AFTER:SECONDS" in bad.stderr
