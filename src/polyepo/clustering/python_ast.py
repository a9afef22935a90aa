"""``python_ast``: strategy of Python solutions from the structure of their code.

Each response's code (fenced blocks, else the whole text) is parsed and reduced to a set of
weighted features that do not depend on the names it chose or the literal values it used:
control flow (``for``/``while`` loops, nesting, recursion, early exits, comprehensions,
lambdas, generators, exception handling), calls into the standard library and non-trivial
builtins (``sorted``, ``set``, ``heapq.heappush``, ``math.gcd``, ``functools.lru_cache``...),
method calls (``.startswith``, ``.count``...), and operators (``%``, ``//``, ``**``, bitwise,
slicing with a step, membership tests). Two responses are compared by weighted Jaccard
similarity and grouped by average-linkage agglomerative clustering at ``threshold``.

Code that does not parse (a genuine but broken attempt) is read token by token instead.
Degenerate: empty or looping text (:mod:`.degenerate`), no code at all, or a function whose
body does nothing (``pass``, ``...``, a docstring).

Not covered: languages other than Python; two different algorithms written with the same
constructs (e.g. two loop-based searches over different ranges) fall together; the same
algorithm written once with a loop and once with a library call falls apart.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Sequence
from typing import Any

import numpy as np

from .agglomerative import agglomerative
from .base import CLUSTERERS, BaseClusterer, ClusterResult
from .code import extract_code, parse_code
from .degenerate import DEFAULT_CHECK, DegenerateCheck

#: Builtins too common to say anything about a strategy.
TRIVIAL_CALLS = frozenset({"print", "len", "range", "int", "str", "float", "bool", "list", "tuple",
                           "isinstance", "type", "repr", "iter", "next", "super", "object", "enumerate",
                           "zip", "abs"})
TRIVIAL_METHODS = frozenset({"append", "extend", "get", "items", "keys", "values", "copy", "format"})
WEIGHTS = {"flow": 3.0, "lib": 3.0, "builtin": 2.0, "method": 2.0, "op": 1.0}

_OPS = {ast.Mod: "%", ast.FloorDiv: "//", ast.Pow: "**", ast.BitAnd: "bit", ast.BitOr: "bit",
        ast.BitXor: "bit", ast.LShift: "bit", ast.RShift: "bit", ast.Invert: "bit"}
_BUILTINS = frozenset(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__))


class _Features(ast.NodeVisitor):
    """Collects feature -> kind. Loops of any form (for, while, comprehension) are one
    ``loop``; an exit from inside a loop (return, break, any/all) is ``early_exit``."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules  # local name -> qualified name ("np" -> "numpy", "gcd" -> "math.gcd")
        self.found: dict[str, str] = {}
        self.loop_depth = 0
        self.functions: list[str] = []

    def add(self, name: str, kind: str) -> None:
        self.found.setdefault(name, kind)

    def _loop(self, node: ast.AST, extra: int = 0) -> None:
        self.add("loop", "flow")
        if self.loop_depth or extra:
            self.add("nested_loop", "flow")
        self.loop_depth += 1
        self.generic_visit(node)
        self.loop_depth -= 1

    def visit_For(self, node: ast.For) -> None:
        self._loop(node)

    visit_While = visit_AsyncFor = visit_For  # type: ignore[assignment]

    def _comprehension(self, node: Any) -> None:
        self._loop(node, extra=len(node.generators) - 1)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension  # type: ignore[assignment]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for dec in node.decorator_list:
            target = dec.func if isinstance(dec, ast.Call) else dec
            root = target.value if isinstance(target, ast.Attribute) else target
            if isinstance(root, ast.Name) and root.id in self.modules:
                attr = f".{target.attr}" if isinstance(target, ast.Attribute) else ""
                self.add(f"call:{self.modules[root.id]}{attr}", "lib")
        self.functions.append(node.name)
        if self.functions[:-1]:
            self.add("nested_function", "op")
        saved, self.loop_depth = self.loop_depth, 0
        self.generic_visit(node)
        self.loop_depth = saved
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Return(self, node: ast.Return) -> None:
        if self.loop_depth:
            self.add("early_exit", "flow")
        self.generic_visit(node)

    def visit_Break(self, node: ast.Break) -> None:
        self.add("early_exit", "flow")

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name):
            if f.id in self.functions:
                self.add("recursion", "flow")
            elif f.id in self.modules:
                self.add(f"call:{self.modules[f.id]}", "lib")
            elif f.id in _BUILTINS and f.id not in TRIVIAL_CALLS:
                self.add(f"call:{f.id}", "builtin")
                if f.id in ("any", "all"):
                    self.add("early_exit", "flow")
        elif isinstance(f, ast.Attribute):
            root = f.value
            if isinstance(root, ast.Name) and root.id in self.modules:
                self.add(f"call:{self.modules[root.id]}.{f.attr}", "lib")
            elif f.attr not in TRIVIAL_METHODS:
                self.add(f"method:{f.attr}", "method")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) in _OPS:
            self.add(f"op:{_OPS[type(node.op)]}", "op")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if self.loop_depth and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
            self.add("accumulate", "op")
        self.visit_BinOp(node)  # type: ignore[arg-type]

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                self.add("tuple_update", "op")
            if isinstance(t, ast.Subscript):
                self.add("store_item", "op")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.slice, ast.BinOp | ast.UnaryOp) and not isinstance(node.slice, ast.Slice):
            self.add("computed_index", "op")
        self.generic_visit(node)

    def visit_Slice(self, node: ast.Slice) -> None:
        self.add("op:slice_step" if node.step is not None else "op:slice", "op")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            self.add("op:in", "op")
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.add("lambda", "op")
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        self.add("try", "flow")
        self.generic_visit(node)

    def visit_Yield(self, node: ast.Yield) -> None:
        self.add("yield", "flow")
        self.generic_visit(node)

    visit_YieldFrom = visit_Yield  # type: ignore[assignment]


def _imports(tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _does_nothing(tree: ast.Module) -> bool:
    """True if no function has a real body and there is no top-level work either."""
    def trivial(stmts: list[ast.stmt]) -> bool:
        return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                   for s in stmts)
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if funcs:
        return all(trivial(f.body) for f in funcs)
    return trivial(tree.body) or all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Name) for s in tree.body)


def ast_features(code: str) -> dict[str, str] | None:
    """Feature -> kind for parseable code; None if it does not parse. Names and literals
    never enter a feature, so renaming variables or changing constants changes nothing."""
    tree = parse_code(code)
    if tree is None:
        return None
    if _does_nothing(tree):
        return {}
    v = _Features(_imports(tree))
    v.visit(tree)
    v.found.setdefault("code", "op")  # parseable code with real work: never an empty set
    return v.found


def token_features(code: str) -> dict[str, str]:
    """Features of code that does not parse, read from its tokens (no recursion, no nesting)."""
    found: dict[str, str] = {}
    toks: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            toks.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        prev = toks[i - 1].string if i else ""
        if tok.type == tokenize.NAME:
            if tok.string in ("for", "while"):
                found["loop"] = "flow"
            elif tok.string == "break":
                found["early_exit"] = "flow"
            elif tok.string in ("try", "yield"):
                found[tok.string] = "flow"
            elif tok.string == "lambda":
                found["lambda"] = "op"
            elif nxt == "(" and prev == ".":
                if tok.string not in TRIVIAL_METHODS:
                    found[f"method:{tok.string}"] = "method"
            elif nxt == "(" and tok.string in _BUILTINS and tok.string not in TRIVIAL_CALLS:
                found[f"call:{tok.string}"] = "builtin"
        elif tok.type == tokenize.OP and tok.string in ("%", "//", "**"):
            found[f"op:{tok.string}"] = "op"
        elif tok.type == tokenize.OP and tok.string in ("&", "|", "^", "<<", ">>", "~"):
            found["op:bit"] = "op"
    return found


def similarity(a: dict[str, str], b: dict[str, str]) -> float:
    """Weighted Jaccard similarity of two feature sets (1.0 for two empty sets)."""
    union = set(a) | set(b)
    if not union:
        return 1.0
    w = {f: WEIGHTS[a.get(f) or b[f]] for f in union}
    return sum(w[f] for f in set(a) & set(b)) / sum(w.values())


@CLUSTERERS.register("python_ast")
class PythonAstClusterer(BaseClusterer):
    """Strategy of Python code from its structure; see the module docstring.

    Args:
        threshold: two groups of responses merge while their average distance
            (1 - weighted Jaccard similarity) is at most this; 0 = identical features only.
        linkage: ``average``, ``complete`` or ``single``.
        degenerate: id of degenerate responses.
        check: the text-level degenerate check.
    """

    name = "python_ast"

    def __init__(self, *, threshold: float = 0.3, linkage: str = "average", degenerate: int = 100,
                 check: DegenerateCheck = DEFAULT_CHECK) -> None:
        super().__init__(degenerate=degenerate)
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold, self.linkage, self.check = float(threshold), linkage, check

    def features(self, response: str) -> tuple[dict[str, str] | None, str]:
        """``(features, how)``; features None for a degenerate response, ``how`` says why."""
        reason = self.check.reason(response)
        if reason:
            return None, reason
        code = extract_code(response)
        feats = ast_features(code)
        if feats is None:
            feats = token_features(code)
            return (feats, "tokens") if feats else (None, "no_code")
        return (feats, "ast") if feats else (None, "does_nothing")

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        parsed = [self.features(r) for r in responses]
        live = [i for i, (f, _) in enumerate(parsed) if f is not None]
        keys: list[int | None] = [None] * len(responses)
        if live:
            sims = np.array([[similarity(parsed[i][0], parsed[j][0]) for j in live] for i in live])  # type: ignore[arg-type]
            labels = agglomerative(1.0 - sims, self.threshold, self.linkage)
            for i, lab in zip(live, labels):
                keys[i] = lab
        return self.result(keys, extra={"how": [h for _, h in parsed]})
