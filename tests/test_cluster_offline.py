"""Offline backends on hand-made groups whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from polyepo.clustering import CLUSTERERS, ClusterResult, Group, as_group, make_clusterer, relabel
from polyepo.clustering.agglomerative import agglomerative
from polyepo.clustering.code import canonical_code, canonicalize_response, extract_code, parse_code
from polyepo.clustering.degenerate import DegenerateCheck
from polyepo.clustering.offline import math_answer, normalize_answer
from polyepo.clustering.python_ast import ast_features, token_features

# --- protocol ------------------------------------------------------------------------------


def test_registry_lists_every_backend_and_rejects_unknown_names():
    assert set(CLUSTERERS.names()) >= {"judge", "python_ast", "embedding", "answer", "exact"}
    with pytest.raises(ValueError, match="valid clusterers: answer, embedding, exact, judge, python_ast"):
        make_clusterer("ast")
    with pytest.raises(ValueError, match="unknown option.*valid options: threshold"):
        make_clusterer("python_ast", treshold=0.2)


def test_relabel_skips_zero_and_the_degenerate_id():
    assert relabel(["b", "a", None, "b"]) == [1, 2, 100, 1]
    assert relabel(list(range(101)))[99:] == [101, 102]  # 100 is never a real strategy
    assert relabel(["x", None, "y"], degenerate=1) == [2, 1, 3]


def test_groups_from_tuples_mappings_and_chat_messages():
    g = as_group({"prompt": [{"role": "user", "content": "hi"}], "responses": ["a"], "rewards": [1]})
    assert g == Group("hi", ["a"], {"rewards": [1]})
    assert as_group(("p", ["a", "b"])).responses == ["a", "b"]
    with pytest.raises(ValueError, match="responses"):
        as_group({"prompt": "p"})


def test_cluster_many_matches_cluster_one_by_one():
    c = make_clusterer("exact")
    groups = [("p", ["a", "b", "a"]), ("q", ["", "x"])]
    assert [r.ids for r in c.cluster_many(groups)] == [c.cluster(*g).ids for g in groups] == [[1, 2, 1], [100, 1]]
    assert isinstance(c.cluster("p", ["a"]), ClusterResult)


# --- degenerate ------------------------------------------------------------------------------


def test_degenerate_check_flags_only_clear_cases():
    check = DegenerateCheck()
    assert check.reason("") == "empty" and check.reason("  \n ") == "empty" and check.reason(None) == "empty"
    assert check.reason("---- ???? !!!! ... ####") == "symbols"
    assert check.reason("The answer is 288. " * 60) == "repetition"
    assert DegenerateCheck(min_chars=5).reason("ok") == "too_short"
    genuine = ["def f(x):\n    return x + 1\n", "x = 1/8", "I think the answer is 3 because 1 + 2 = 3.",
               "\n".join(f"step {i}: multiply {i} by {i * 7 % 13} and carry {i % 3}" for i in range(40))]
    for text in genuine:
        assert check.reason(text) is None, text


# --- exact and answer ---------------------------------------------------------------------------


def test_exact_normalises_whitespace_case_and_optionally_code():
    assert make_clusterer("exact").cluster("p", ["a  b", "a b\n", "A b", ""]).ids == [1, 1, 2, 100]
    assert make_clusterer("exact", casefold=True).cluster("p", ["a  b", "A B"]).ids == [1, 1]
    x = "def f(xs):\n    total = 0  # sum\n    for v in xs:\n        total += v\n    return total\n"
    y = "def f(items):\n    acc = 0\n    for item in items:\n        acc += item\n    return acc\n"
    assert make_clusterer("exact").cluster("p", [x, y]).ids == [1, 2]
    assert make_clusterer("exact", canonicalize="normalize_names").cluster("p", [x, y]).ids == [1, 1]


@pytest.mark.parametrize("text, key", [
    (r"so the result is \boxed{\frac{1}{8}}.", "1/8"),
    ("x = -0.125", "-1/8"),
    ("The answer is: 288.", "288"),
    ("Final answer: $x = 3/2$", "3/2"),
    (r"\boxed{2\sqrt{3}} and \boxed{12}", "12"),
    ("We get 1,000 apples", "1000"),
    ("no digits at all", None),
])
def test_math_answer_key(text, key):
    assert math_answer(text) == key


def test_normalize_answer_equates_forms():
    assert normalize_answer(r"\dfrac{3}{6}") == normalize_answer("0.5") == normalize_answer("1/2") == "1/2"
    assert normalize_answer(r"\left(1, 2\right)") == "(1,2)"


def test_answer_backend_builtin_and_callable_keys():
    math = make_clusterer("answer", key="math")
    res = math.cluster("p", [r"\boxed{3}", "so x = 3.0", "answer is 4", "hmm"])
    assert res.ids == [1, 1, 2, 100]

    def strategy(response, *, strategies, **_):  # a task that knows each answer's strategy
        return strategies.get(response)

    c = make_clusterer("answer", key=strategy)
    g = {"prompt": "p", "responses": ["r1", "r2", "r3", "r4"], "strategies": {"r1": "left", "r2": "right", "r3": "left"}}
    assert c.cluster_many([g])[0].ids == [1, 2, 1, 100]
    by_path = make_clusterer("answer", key="polyepo.clustering.offline:last_line")
    assert by_path.cluster("p", ["a\nend", "b\nend", "c\nother"]).ids == [1, 1, 2]
    with pytest.raises(ValueError, match="key must be a callable"):
        make_clusterer("answer", key="mathh")
    with pytest.raises(ValueError, match="could not be imported"):
        make_clusterer("answer", key="polyepo.nope:f")
    with pytest.raises(ValueError, match="unhashable list"):
        make_clusterer("answer", key=lambda r, **c: [r]).cluster("p", ["a"])


# --- code canonicalisation ----------------------------------------------------------------------


def test_extract_and_parse_code_forgive_prose():
    text = "Here is my solution:\n```python\ndef f(x):\n    return x * 2\n```\nIt doubles x."
    assert extract_code(text).strip() == "def f(x):\n    return x * 2"
    assert parse_code("Sure, here it is.\ndef f(x):\n    return 1\nThis returns one.") is not None
    assert parse_code("just some words, nothing else here") is None


def test_normalize_names_keeps_entry_point_imports_and_builtins():
    code = ("import math\n\ndef solve(numbers):\n    \"\"\"Doc.\"\"\"\n    best = -math.inf  # start\n"
            "    for value in numbers:\n        best = max(best, value)\n    return best\n")
    out = canonical_code(code)
    assert "def solve(v0):" in out and "math.inf" in out and "max(" in out
    assert "best" not in out and "value" not in out and "Doc." not in out and "#" not in out
    renamed = code.replace("best", "answer").replace("value", "x").replace("numbers", "arr").replace("# start", "")
    assert canonical_code(renamed) == out
    assert "best" in canonical_code(code, "strip_comments") and "#" not in canonical_code(code, "strip_comments")
    assert canonical_code("def broken(:\n  pass") == "def broken(:\n  pass"
    with pytest.raises(ValueError, match="canonicalize must be one of"):
        canonical_code(code, "rename")


def test_canonicalize_response_rewrites_blocks_and_keeps_prose():
    text = "Idea: loop.\n```python\ndef f(a):\n    s = 0  # acc\n    return s\n```\nDone."
    out = canonicalize_response(text)
    assert out.startswith("Idea: loop.\n```python\ndef f(v0):") and out.endswith("```\nDone.") and "# acc" not in out
    assert canonicalize_response("The answer is 4.") == "The answer is 4."


# --- python_ast ----------------------------------------------------------------------------------

RECURSIVE = "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
RECURSIVE_RENAMED = "def fact(k):\n    # recursion\n    if k <= 1:\n        return 1\n    return k * fact(k - 1)\n"
LOOP = "def fact(n):\n    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out\n"
LOOP_WHILE = "def fact(n):\n    r, i = 1, 2\n    while i <= n:\n        r *= i\n        i += 1\n    return r\n"
LIBRARY = "import math\n\ndef fact(n):\n    return math.factorial(n)\n"
LIBRARY_FROM = "```python\nfrom math import factorial\n\ndef fact(m):\n    return factorial(m)\n```"


def test_python_ast_known_groups():
    group = [RECURSIVE, LOOP, LIBRARY, RECURSIVE_RENAMED, LOOP_WHILE, LIBRARY_FROM, "", "def fact(n):\n    pass\n",
             "I have no idea."]
    res = make_clusterer("python_ast").cluster("factorial", group)
    assert res.ids == [1, 2, 3, 1, 2, 3, 100, 100, 100]
    assert res.extra["how"][6:] == ["empty", "does_nothing", "no_code"]


def test_python_ast_features_ignore_names_and_literals():
    a = ast_features("def g(xs):\n    return sorted(xs)[::-1][:3]\n")
    b = ast_features("def g(values):\n    return sorted(values)[::-2][:10]\n")
    assert a == b and "call:sorted" in a and "op:slice_step" in a
    assert "recursion" in ast_features(RECURSIVE) and "loop" in ast_features(LOOP)
    assert ast_features("def f(:") is None


def test_python_ast_reads_broken_code_by_tokens_not_as_degenerate():
    broken = "def f(xs)\n    for x in xs:\n        if x % 2 == 0:\n            return sorted(xs)\n"
    feats = token_features(broken)
    assert {"loop", "op:%", "call:sorted"} <= set(feats)
    res = make_clusterer("python_ast").cluster("p", [broken, "def f(xs):\n    return max(xs)\n"])
    assert res.ids == [1, 2] and res.extra["how"][0] == "tokens"


def test_agglomerative_by_hand():
    d = np.array([[0, 0.1, 0.9, 0.8], [0.1, 0, 0.85, 0.9], [0.9, 0.85, 0, 0.2], [0.8, 0.9, 0.2, 0]])
    assert agglomerative(d, 0.3) == [0, 0, 1, 1]
    assert agglomerative(d, 0.05) == [0, 1, 2, 3]
    assert agglomerative(d, 1.0) == [0, 0, 0, 0]
    assert agglomerative(np.zeros((0, 0)), 0.5) == []
    with pytest.raises(ValueError, match="linkage must be one of"):
        agglomerative(d, 0.3, "ward")


@pytest.mark.parametrize("linkage", ["average", "complete", "single"])
def test_agglomerative_matches_scipy(linkage):
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(2, 12))
        x = rng.random((n, 3))
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        t = float(rng.uniform(0.1, 1.0))
        ours = agglomerative(d, t, linkage)
        theirs = hierarchy.fcluster(hierarchy.linkage(squareform(d, checks=False), linkage), t, "distance")
        assert relabel(list(theirs)) == relabel(ours)


def test_prompt_text_is_what_every_caller_shows_a_clusterer():
    from polyepo.clustering.base import prompt_text

    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    assert prompt_text(chat) == "Q1\n\nQ2"  # user turns only
    assert prompt_text([{"role": "system", "content": "only system"}]) == "only system"
    assert prompt_text(("plain",)) == ""  # no message dicts at all
    assert prompt_text("plain") == "plain"
    with pytest.raises(ValueError, match="got NoneType"):
        prompt_text(None)


def test_answer_backend_stable_ids_name_the_answer_in_every_group():
    import subprocess
    import sys

    from polyepo.clustering.offline import stable_id

    c = make_clusterer("answer", key="math", stable_ids=True)
    a = c.cluster("p", ["so \\boxed{4}", "it is 5", "\\boxed{4}", "no number here"]).ids
    b = c.cluster("p", ["answer: 5", "\\boxed{0.5}", "1/2"]).ids
    assert a[0] == a[2] == stable_id("4") and a[1] == b[0] == stable_id("5") and a[3] == 100
    assert b[1] == b[2] and len({a[0], a[1], b[1]}) == 3 and min(a[:3] + b) >= 1
    # the same in another process (no per-process hash seed)
    code = "from polyepo.clustering.offline import stable_id; print(stable_id('4'))"
    assert int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) == stable_id("4")
    assert make_clusterer("answer").cluster("p", ["\\boxed{5}", "\\boxed{4}"]).ids == [1, 2]  # default: relabelled
