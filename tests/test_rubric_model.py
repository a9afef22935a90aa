"""Rubric data, reply parsing, the evidence and echo checks, the leak check and the combined
reward: pure functions, checked against answers worked by hand. No server needed."""

from __future__ import annotations

import re

import pytest

from polyepo.judge import InvalidReply
from polyepo.rewards.rubric import Rubric, RubricItem, RubricStore, combine, echo_check, leaked_lines
from polyepo.rewards.rubric.model import file_name
from polyepo.rewards.rubric.prompts import evidence_found, fill, load_template, validate_build, validate_score
from polyepo.tasks.rubric_examples import DATA, load_problems


def rubric():
    return Rubric.from_dict({"problem_id": "p", "outcome": ["A", {"text": "B", "weight": 3}],
                             "process": ["C", {"text": "D", "weight": 0.5}, "E"]})


def test_items_are_numbered_and_scored_as_weighted_means():
    r = rubric()
    assert r.ids == ["O1", "O2", "P1", "P2", "P3"]
    assert r.render().splitlines()[1] == "O2 (outcome): B"
    v = {"O1": "met", "O2": "partial", "P1": "missed", "P2": "met", "P3": "partial"}
    # O = (1*1 + 3*0.5)/4 = 0.625; P = (0 + 0.5*1 + 1*0.5)/2.5 = 0.4
    assert r.scores(v) == (0.625, pytest.approx(0.4))
    assert r.scores(dict.fromkeys(r.ids, "met")) == (1.0, 1.0)
    assert r.scores(dict.fromkeys(r.ids, "missed")) == (0.0, 0.0)


def test_file_round_trip_and_the_items_form(tmp_path):
    r = rubric()
    path = RubricStore(tmp_path).save(r)
    assert path.name == "p.yaml" and path.read_text().startswith("# Rubric of problem 'p'")
    again = Rubric.load(path)
    assert again.items == r.items and again.problem_id == "p"
    items = Rubric.from_dict({"items": [{"kind": "process", "text": "x"}, {"kind": "outcome", "text": "y", "weight": 2}]},
                             problem_id="q")
    assert items.items == [RubricItem("O1", "outcome", "y", 2.0), RubricItem("P1", "process", "x", 1.0)]


@pytest.mark.parametrize("data, message", [
    ({"outcome": ["a"]}, "at least one process item"),
    ({"process": ["a"]}, "at least one outcome item"),
    ({"outcome": ["a"], "process": [{"text": "b", "weight": 0}]}, "weight > 0"),
    ({"outcome": ["a"], "process": [{"text": "b", "weight": "heavy"}]}, "must be a number"),
    ({"outcome": ["a"], "process": ["  "]}, "has no text"),
    ({"outcome": "a", "process": ["b"]}, "'outcome' must be a list"),
    ({"items": [{"kind": "result", "text": "a"}]}, "valid kinds: outcome, process"),
])
def test_bad_rubrics_are_refused_with_the_reason(data, message):
    with pytest.raises(ValueError, match=message):
        Rubric.from_dict(data, problem_id="p")


def test_file_names_are_safe_and_distinct(tmp_path):
    assert file_name("divisor-sum-360") == "divisor-sum-360.yaml"
    odd = [file_name("a/b"), file_name("a_b"), file_name("a:b"), file_name("../../etc/passwd")]
    assert len(set(odd)) == 4 and all("/" not in n and not n.startswith(".") for n in odd)
    store = RubricStore(tmp_path)
    assert store.path_for("../x").parent == tmp_path and store.load("missing") is None


def test_validate_build():
    assert validate_build('{"outcome": ["x"], "process": ["a", {"text": " b  c "}]}', 6) == (["x"], ["a", "b c"])
    for reply, why in [('{"outcome": [], "process": ["a"]}', '"outcome" must have 1 to 2'),
                       ('{"outcome": ["x"], "process": ["a","b","c","d","e","f"]}', '"process" must have 1 to 5'),
                       ('{"outcome": ["x"]}', '"process" must be a list'),
                       ('{"outcome": ["x"], "process": [""]}', "non-empty string"),
                       ('{"outcome": ["x"], "process": ["a"], "notes": 1}', "got also notes"),
                       ('{"outcome": ["x"], "process": ["' + "w" * 500 + '"]}', "under 400 characters")]:
        with pytest.raises(InvalidReply, match=re.escape(why)):
            validate_build(reply, 6)


def test_validate_score():
    ids = ["O1", "P1"]
    assert validate_score('```json\n{"O1": {"verdict": "MET", "evidence": "q"}, "P1": "missed"}\n```', ids) == \
        {"O1": ("met", "q"), "P1": ("missed", "")}
    for reply, why in [('{"O1": {"verdict": "met"}}', 'missing "P1"'),
                       ('{"O1": "met", "P1": "met", "P2": "met"}', 'unexpected "P2"'),
                       ('{"O1": {"verdict": 1}, "P1": "met"}', 'verdict of "O1"'),
                       ('{"O1": {"verdict": "yes"}, "P1": "met"}', 'verdict of "O1"'),
                       ('{"O1": {"verdict": "met", "evidence": 3}, "P1": "met"}', 'evidence of "O1"'),
                       ("all met", "no JSON object")]:
        with pytest.raises(InvalidReply, match=re.escape(why)):
            validate_score(reply, ids)


def test_evidence_matching():
    response = "First, $360 = 2^3 \\cdot 3^2 \\cdot 5$.\nThen the sum is\n(1+2+4+8)(1+3+9)(1+5) = 1170."
    assert evidence_found("360 = 2^3 \\cdot 3^2 \\cdot 5", response)
    assert evidence_found("then the SUM is (1+2+4+8)", response)      # case, line break
    assert evidence_found("First, ... = 1170", response)              # ellipsis: parts in order
    assert not evidence_found("= 1170 ... First", response)           # parts out of order
    assert not evidence_found("the sum is 1171", response)
    assert not evidence_found("", response) and not evidence_found("...", response)


def test_templates_fill_in_one_pass(tmp_path):
    text = fill("{{PROBLEM}} | {{RESPONSE}} | {{OTHER}}", {"PROBLEM": "p {{RESPONSE}}", "RESPONSE": "r"})
    assert text == "p {{RESPONSE}} | r | {{OTHER}}"
    for kind in ("build", "score"):
        assert "{{PROBLEM}}" in load_template(kind)
    (tmp_path / "mine.md").write_text("Grade {{RESPONSE}} against {{RUBRIC}}.")
    with pytest.raises(ValueError, match=r"lacks the placeholder\(s\) \{\{PROBLEM\}\}"):
        load_template("score", str(tmp_path / "mine.md"))
    with pytest.raises(ValueError, match="'default' or a template file"):
        load_template("build", "strict")


def test_combined_reward_arithmetic():
    assert combine(1.0, 0.5, outcome_weight=0.5, process_weight=0.5) == 0.75
    assert combine(1.0, 0.5, outcome_weight=1, process_weight=3) == 0.625
    assert combine(0.0, 1.0, outcome_weight=0, process_weight=1, verifiable=1.0, verifiable_weight=0.5) == 1.0
    assert combine(1.0, 1.0, outcome_weight=1, process_weight=1, verifiable=0.0, verifiable_weight=0.3) == 0.7
    assert combine(1.0, 0.5, outcome_weight=1, process_weight=1, echo_factor=0.5) == 0.375
    assert combine(1.0, 1.0, outcome_weight=1, process_weight=1, verifiable=None, verifiable_weight=0.9) == 1.0


def test_leak_check():
    ref = "def f(xs):\n    \"\"\"Return the largest element of xs.\"\"\"\n    return sorted(xs)[-1]  # largest, by sorting\n"
    problem = 'Write def f(xs):\n    """Return the largest element of xs."""'
    assert leaked_lines(problem + "\nAnswer in Python.", ref, problem) == []  # docstring is public
    assert leaked_lines(problem + "\nAnswer in Python.\nreturn sorted(xs)[-1]  # largest, by sorting", ref, problem) == \
        ["return sorted(xs)[-1] # largest, by sorting"]
    assert leaked_lines("prefix " + " ".join(ref.split()) + " suffix", ref) == [" ".join(ref.split())]
    assert leaked_lines("What is 6 * 7?", "42") == []


def test_echo_check_on_the_shipped_examples():
    """Each shipped reference solution is a genuine answer and passes; the rubric's own items
    strung together (with or without a little padding), or half of them, are flagged."""
    for p in load_problems():
        items = [i.text for i in Rubric.load(DATA / "rubrics" / f"{p['problem_id']}.yaml").items]
        genuine = echo_check(p["reference"], items)
        assert not genuine.flagged and genuine.coverage < 0.4 and genuine.density < 0.3, p["problem_id"]
        for echo in (" ".join(items), "Here is my solution. " + " Next, ".join(items) + " That completes it."):
            result = echo_check(echo, items)
            assert result.flagged and result.coverage == 1.0 and result.density > 0.7, p["problem_id"]


def test_echo_check_rules():
    items = ["Uses the pigeonhole principle on the five residues.", "The final answer is 6."]
    padded = "Uses the pigeonhole principle on the five residues. " + "Let me compute many other things here. " * 20
    assert echo_check(padded, items).density < 0.5 and not echo_check(padded, items).flagged
    r = echo_check(padded, items, verifiable=0.0)  # padding does not hide it when the answer is wrong
    assert r.flagged and r.coverage >= 0.5
    assert not echo_check(padded, items, verifiable=1.0).flagged
    assert echo_check("", items) == echo_check("x", []) and not echo_check("", items).flagged
    assert echo_check("the final answer is 6", items, n=1, threshold=0.3).coverage == pytest.approx(5 / 11)  # 11 distinct words
