"""The package's modules import each other without cycles (the data flow goes one way)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_jax"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the mnist_jax modules it imports at module level (a submodule named in
    `from package import name` counts as that submodule, not the package)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "configs" not in p.parts}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names}
                found = subs & set(modules)
                edges |= found if found else {node.module}
        graph[name] = edges - {name}
    return graph


def test_no_import_cycles():
    graph, state, stack = _graph(), {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert len(graph) > 25  # the whole package was read
