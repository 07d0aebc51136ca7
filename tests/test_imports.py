"""The package's import graph has no cycle (function-level imports included), and the modules
that read run directories never import jax."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxmnist"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {jaxmnist modules it imports anywhere in its source}}``."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                # "from jaxmnist import rundir" names the module jaxmnist.rundir.
                if target in modules and target != name:
                    graph[name].add(target)
    for name in graph:  # importing a.b runs a/__init__ first, which is not a dependency on a.b
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and t != "")}
    graph["jaxmnist"] = set()  # the package's own __init__ holds no imports of its modules
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "jaxmnist.rundir" in graph and graph["jaxmnist.report"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_run_directory_readers_do_not_depend_on_jax_modules():
    graph = import_graph()
    jax_modules = {"jaxmnist.train", "jaxmnist.optim", "jaxmnist.losses", "jaxmnist.models",
                   "jaxmnist.checkpoint"}
    seen, todo = set(), ["jaxmnist.rundir", "jaxmnist.runview", "jaxmnist.hooks"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    assert not seen & jax_modules, seen & jax_modules
