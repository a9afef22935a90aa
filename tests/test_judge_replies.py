"""The reply parser and the clustering validator on arbitrary text and JSON: nothing but
InvalidReply ever escapes, and when they accept a reply they return what it says."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyepo.clustering.judge import validate_reply
from polyepo.judge import InvalidReply, excerpt, parse_json_object

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
noise = st.lists(st.sampled_from([*'{}[]"\\:,` \n', "json", "1", "a", "\ud800"]), max_size=40).map("".join)


def parses_or_is_invalid(text):
    """The parser's contract: a dict, or InvalidReply with a non-empty, bounded reason."""
    try:
        value = parse_json_object(text)
    except InvalidReply as e:
        assert e.reason and len(e.reason) <= 700
        return None
    assert isinstance(value, dict)
    return value


@FUZZ
@given(st.text())
def test_arbitrary_text(text):
    parses_or_is_invalid(text)


@FUZZ
@given(noise)
def test_brace_and_quote_soup(text):
    parses_or_is_invalid(text)


@FUZZ
@given(json_values, st.text(max_size=20), st.text(max_size=20), st.booleans())
def test_any_json_value_in_prose_or_a_fence(value, before, after, fence):
    body = json.dumps(value)
    text = f"{before}\n```json\n{body}\n```\n{after}" if fence else f"{before} {body} {after}"
    got = parses_or_is_invalid(text)
    clean = "{" not in before + after and "}" not in before + after and '"' not in before + after
    if isinstance(value, dict) and clean:
        assert got == json.loads(body)  # the object itself, whatever surrounds it


@FUZZ
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=5),
       st.dictionaries(st.text(max_size=4), json_values, max_size=5))
def test_the_last_of_several_objects_is_the_answer(draft, final):
    text = f"Draft:\n```json\n{json.dumps(draft)}\n```\nFinal answer:\n```json\n{json.dumps(final)}\n```"
    assert parse_json_object(text) == json.loads(json.dumps(final))


@FUZZ
@given(st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=5), st.integers(1, 30))
def test_a_reply_cut_off_is_never_answered_by_its_draft(obj, cut):
    final = json.dumps({"answer": obj})
    text = f'{json.dumps({"draft": 1})}\nNow the real one: {final[:-min(cut, len(final) - 1)]}'
    with pytest.raises(InvalidReply):
        parse_json_object(text)


@FUZZ
@given(st.one_of(st.text(), noise, json_values.map(json.dumps)), st.integers(1, 6))
def test_validate_reply_raises_only_invalid_reply(text, n):
    try:
        out = validate_reply(text, n)
    except InvalidReply:
        return
    assert len(out) == n and all(isinstance(c, int) and isinstance(r, str) for c, r in out)


@FUZZ
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.text(max_size=30)), min_size=1, max_size=8))
def test_validate_reply_returns_what_a_good_reply_says(pairs):
    reply = {str(i): {"reasoning": r, "cluster_id": c} for i, (c, r) in enumerate(pairs, 1)}
    assert validate_reply(f"Here you go:\n```json\n{json.dumps(reply)}\n```", len(pairs)) == [
        (c, r.encode("utf-8", "replace").decode("utf-8")) for c, r in pairs]


ADVERSARIAL = {
    "deep list": "[" * 200_000 + "]" * 200_000,
    "deep object": '{"a": ' * 100_000 + "1" + "}" * 100_000,
    "deep unclosed": '{"a": ' * 100_000,
    "brace storm": "{" * 500_000,
    "close storm": "}" * 500_000 + '{"1": 1}',
    "5000-digit int": '{"1": ' + "7" * 5000 + "}",
    "5000-digit float": '{"1": 1.' + "7" * 5000 + "e99999}",
    "big exponent": '{"1": 1e999999999}',
    "escaped surrogates": '{"\\ud800": "\\udfff"}',
    "raw surrogate": '{"a": "\ud800"}',
    "NaN": '{"1": NaN, "2": -Infinity}',
    "unterminated string": '{"1": "abc',
    "backslash end": '{"1": "abc\\',
    "only fences": "``````json``````",
    "null": "null",
    "list": "[1, 2]",
    "number": "42",
    "python dict": "{'1': 1}",
    "two megabytes": "{" + '"k": "' + "v" * 2_000_000 + '"}',
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_replies(name):
    text = ADVERSARIAL[name]
    got = parses_or_is_invalid(text)
    for n in (1, 2):
        try:
            validate_reply(text, n)
        except InvalidReply:
            pass
    if name in ("escaped surrogates", "raw surrogate", "close storm", "NaN", "big exponent", "two megabytes",
                "5000-digit float"):
        assert got is not None
    elif name in ("null", "list", "number"):
        with pytest.raises(InvalidReply, match="expected a JSON object, got a JSON"):
            parse_json_object(text)
    else:
        assert got is None


def test_messages_name_the_problem():
    cases = [("", "empty"), ("[1, 2]", "JSON list"), ('{"a": 1', "never closed"), ("no json", "no JSON object"),
             ('{"1": ' + "9" * 5000 + "}", "too many digits"), ("[" * 100_000 + "]" * 100_000, "no JSON object"),
             ('{"a": ' * 5000 + "1" + "}" * 5000, "nested too deeply"), ("{'a': 1}", "not valid JSON")]
    for text, why in cases:
        with pytest.raises(InvalidReply, match=why):
            parse_json_object(text)
    assert parse_json_object('The set {x | x > 0} and then {"a": 3}. Note {y}.') == {"a": 3}
    assert parse_json_object('{"r": "a } brace and a \\" quote"} trailing }') == {"r": 'a } brace and a " quote'}


def test_excerpt_keeps_head_and_tail_and_encodes():
    text = "H" * 1000 + "M" * 5000 + "T" * 1000
    cut = excerpt(text, 900)
    assert cut.startswith("H" * 600) and cut.endswith("T" * 300) and "6100 characters omitted" in cut
    assert excerpt("ok", 10) == "ok" and excerpt("a\ud800b", 0) == "a?b"
    excerpt("\udfff" * 10, 5).encode("utf-8")
