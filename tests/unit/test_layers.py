"""The packages import one way: lakehouse's base modules <- streaming, dp <- the CLI. Every import
counts, function-level ones included (a cycle hidden inside a function is still a cycle)."""

from __future__ import annotations

import ast

from support import REPO

PACKAGES = ("lakehouse", "streaming", "dp")
APP = {"lakehouse.cli"}  # the entry point may use every layer


def modules() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            name = f"{package}.{path.stem}" if path.stem != "__init__" else package
            imports: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imports |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imports.add(node.module)
                    imports |= {f"{node.module}.{a.name}" for a in node.names}
            graph[name] = {i for i in imports if i.split(".")[0] in PACKAGES and i in set(_all_modules())}
    return graph


def _all_modules() -> list[str]:
    return [f"{p}.{path.stem}" for p in PACKAGES for path in (REPO / p).glob("*.py") if path.stem != "__init__"]


def test_no_upward_imports():
    for module, imports in modules().items():
        if module in APP:
            continue
        layer = module.split(".")[0]
        allowed = {"lakehouse": {"lakehouse"}, "streaming": {"lakehouse", "streaming"}, "dp": {"lakehouse", "dp"}}[layer]
        upward = sorted(i for i in imports if i.split(".")[0] not in allowed)
        assert not upward, f"{module} imports {upward}"


def test_no_import_cycles():
    graph = modules()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_graph_is_read():
    graph = modules()
    assert "lakehouse.catalog" in graph["dp.release"] and "dp.plan" in graph["dp.release"]
    assert len(graph) >= 30


def test_the_image_jar_layer_copies_what_lakehouse_jars_imports():
    """The Dockerfile resolves the jars from a few copied modules, before the rest of the code, so that
    a code change does not re-resolve them: every module `lakehouse.jars` imports must be among them."""
    graph = modules()
    needed, todo = set(), ["lakehouse.jars"]
    while todo:
        module = todo.pop()
        if module not in needed:
            needed.add(module)
            todo += graph.get(module, ())
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["RUN"] and "lakehouse.jars" in line:
            break
        if words[:1] == ["COPY"]:
            copied |= {w.removesuffix(".py").replace("/", ".") for w in words[1:-1] if w.endswith(".py")}
    assert needed - {"lakehouse"} <= copied, f"the Dockerfile's jar layer lacks {sorted(needed - copied)}"
