"""Python code inside model responses: extraction, parsing, canonical forms.

Canonicalisation removes what must not create a strategy cluster: comments, docstrings,
formatting (``strip_comments``), and the names a solution chose for its own variables,
parameters and nested helpers (``normalize_names``: ``v0, v1, ...`` in order of first
binding). Names it keeps: top-level functions and classes (the entry point the task asks
for), imports, builtins, attributes and methods (they name library calls, which are strategy).
Python only; other languages pass through unchanged.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap

CANONICAL_MODES = ("none", "strip_comments", "normalize_names")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^\s*(def |class |import |from \S+ import |@|async def |for |while |if |[A-Za-z_]\w* *=)")
_PY_TAGS = {"", "python", "py", "python3", "py3"}


def code_blocks(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, code)`` of each fenced Python (or untagged) block in ``text``."""
    return [(m.start(), m.end(), m.group(2)) for m in _FENCE.finditer(text) if m.group(1).lower() in _PY_TAGS]


def extract_code(text: str) -> str:
    """The code of a response: its fenced Python blocks joined, else the whole text."""
    blocks = code_blocks(text)
    return "\n\n".join(b[2] for b in blocks) if blocks else text


def parse_code(code: str, *, max_trim: int = 30) -> ast.Module | None:
    """Parse ``code``, forgiving prose before the first code line and after the last one.

    Tries the text as is, dedented, from its first line that looks like code, and with up
    to ``max_trim`` trailing lines dropped. None when nothing parses (or nothing is left).
    """
    lines = textwrap.dedent(code).splitlines()
    first = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    for start in dict.fromkeys((0, first)):
        body = lines[start:]
        for cut in range(min(max_trim, max(len(body) - 1, 0)) + 1):
            try:
                tree = ast.parse("\n".join(body[: len(body) - cut] if cut else body))
            except (SyntaxError, ValueError):
                continue
            return tree if tree.body else None
    return None


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: ast.AST) -> ast.AST:
        body = node.body  # type: ignore[attr-defined]
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        self.generic_visit(node)
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


class _Renamer(ast.NodeTransformer):
    """Renames names bound by the code itself, except top-level definitions and imports."""

    def __init__(self, keep: set[str]) -> None:
        self.keep = keep
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name in self.keep or name in vars(builtins):
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if isinstance(node.ctx, ast.Store | ast.Del) or node.id in self.names:
            node.id = self._new(node.id) if isinstance(node.ctx, ast.Store | ast.Del) else self.names[node.id]
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        node.returns = None
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def _top_level_and_imports(tree: ast.Module) -> set[str]:
    keep: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            keep.update((a.asname or a.name).split(".")[0] for a in node.names)
    keep.update(n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))
    return keep


def canonical_code(code: str, mode: str = "normalize_names") -> str:
    """``code`` without comments, docstrings and its own formatting (``strip_comments``), and
    with its local names replaced (``normalize_names``). Unparseable code comes back as is."""
    if mode not in CANONICAL_MODES:
        raise ValueError(f"canonicalize must be one of {', '.join(CANONICAL_MODES)}, got {mode!r}")
    if mode == "none":
        return code
    tree = parse_code(code)
    if tree is None:
        return code
    tree = _StripDocstrings().visit(tree)
    if mode == "normalize_names":
        tree = _Renamer(_top_level_and_imports(tree)).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def canonicalize_response(text: str, mode: str = "normalize_names") -> str:
    """Canonicalise every fenced Python block of a response (the prose stays), or the whole
    response when it is bare code that parses."""
    if mode == "none":
        return text
    blocks = code_blocks(text)
    if not blocks:
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            return text  # prose, or code mixed with prose: left as it is
        return canonical_code(text, mode)
    out, pos = [], 0
    for start, end, code in blocks:
        out += [text[pos:start], "```python\n", canonical_code(code, mode), "\n```"]
        pos = end
    out.append(text[pos:])
    return "".join(out)
