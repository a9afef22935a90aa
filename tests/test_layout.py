"""The package layout follows the data flow: no import loops, no import from a lower layer up.

Every ``import`` in ``src/polyepo`` (at module level or inside a function) is an edge; a module
reading its own parent package (a registry) is not counted. Layers, lowest first, are
:data:`LAYERS`: a module may import its own layer and the ones below, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "polyepo"

#: top-level module or package of polyepo -> layer (data flow: maths, plug-ins, the group step,
#: engines, evaluation, reports, workflows, command line)
LAYERS = {
    "registry": 0, "settings": 0, "io": 0, "metrics": 0, "progress": 0,
    "advantages": 1, "judge": 1,
    "clustering": 2,
    "rewards": 3,
    "tasks": 4, "standin": 4,
    "groups": 5, "models": 5,
    "train": 6,
    "evaluate": 7,
    "report": 8,
    "workflow": 9,
    "cli": 10, "__main__": 10,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """polyepo modules that module ``name`` imports (resolved to the deepest known module)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("polyepo"):
                out.add(t)
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return out - parents - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {name: imports(name, path, known) for name, path in mods.items()}
    # importing a submodule runs its package's __init__ too; an import of a package is an edge to it
    return edges


def test_no_import_loops():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            # a package importing its own submodules (to register them) is how packages load
            if m.startswith(n + "."):
                continue
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                raise AssertionError("import loop: " + " -> ".join(cycle))
            if not state.get(m):
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if not state.get(n):
            visit(n)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_from_a_lower_layer_up():
    bad = []
    for src, targets in graph().items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if a is not None and b is not None and b > a:
                bad.append(f"{src} (layer {a}) imports {dst} (layer {b})")
    assert not bad, "\n".join(sorted(bad))


def test_every_module_has_a_layer():
    tops = {name.split(".")[1] for name in modules() if name.count(".") >= 1}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_train_holds_the_engines_only():
    names = {p.name for p in (SRC / "train").iterdir() if p.suffix == ".py" or p.is_dir()} - {"__pycache__"}
    assert names == {"__init__.py", "trl", "verl"}
