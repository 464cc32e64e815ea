"""The layers of ``schema_warden`` as its import graph, read with ``ast`` (docs/architecture.md).

Every import counts, also one inside a function: a cycle hidden in a function is still a
cycle. The rules: no import cycle; each layer imports only layers below it or its own; the
pure core (schema diff, lint rules, render) reaches neither a server nor a database driver
nor a subprocess; nothing in the package imports this repository's ``database``; and
``database/`` uses only ``schema_warden.api``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = REPO_ROOT / "hooks"
PACKAGE = "schema_warden"

# a layer may import its own and the layers of a lower rank
RANK = {
    "errors": 0,
    "speed": 0,  # the names of the speed mechanisms and the benchmark's switch
    "schema": 1,  # snapshot (pg_catalog -> data) and diff (pure)
    "lint": 1,
    "server": 1,
    "render": 2,  # pure: renders the schema layer's plain data
    "cache": 3,
    "project": 3,
    "proof": 4,
    "api": 5,
    "commands": 6,
    "cli": 6,
    "__main__": 7,
    "pytest_plugin": 7,  # pytest loads it: the top, beside the CLI
    "": 7,  # the package's __init__ (its version only)
}
PURE = ("schema_warden.schema.diff", "schema_warden.lint", "schema_warden.render")
IMPURE = ("subprocess", "psycopg2", "psycopg", "asyncpg", "pg8000", "sqlalchemy", "schema_warden.server")


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, module: str) -> Iterator[str]:
    """Every module ``path`` imports, absolute names (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules(SOURCE_ROOT, PACKAGE)
    return {name: {imp for imp in _imports(path, name) if imp in modules} for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "schema_warden.commands.check" in graph
    assert "schema_warden.proof.stairway" in graph["schema_warden.commands.check"] or any(
        "schema_warden.proof" in dep for dep in graph["schema_warden.commands.check"]
    )


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _allowed(module: str, dep: str) -> bool:
    mine, theirs = _layer(module), _layer(dep)
    if theirs in (mine, ""):  # its own layer, or the package's version
        return True
    if {mine, theirs} == {"cache", "project"}:  # one tier: the cycle test keeps them apart
        return True
    return RANK[theirs] < RANK[mine]


def test_layers_import_downwards_only() -> None:
    wrong = [
        f"{module} -> {dep}" for module, deps in _graph().items() for dep in deps if not _allowed(module, dep)
    ]
    assert wrong == []


def test_the_layer_rule_rejects_an_upward_import() -> None:
    assert not _allowed("schema_warden.schema.diff", "schema_warden.proof.drift")
    assert not _allowed("schema_warden.server.postgres", "schema_warden.project.loader")
    assert _allowed("schema_warden.commands.check", "schema_warden.proof.stairway")


@pytest.mark.parametrize("module", sorted(m for m in _graph() if m.startswith(PURE)))
def test_the_pure_core_reaches_no_server_driver_or_subprocess(module: str) -> None:
    path = _modules(SOURCE_ROOT, PACKAGE)[module]
    reached = [imp for imp in _imports(path, module) if imp.startswith(IMPURE) or imp in ("os.system",)]
    assert reached == []


def test_nothing_in_the_package_imports_the_database_project() -> None:
    found = [
        f"{module} -> {imp}"
        for module, path in _modules(SOURCE_ROOT, PACKAGE).items()
        for imp in _imports(path, module)
        if imp == "database" or imp.startswith("database.")
    ]
    assert found == []


def test_database_project_uses_only_the_public_api() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)} -> {imp}"
        for path in (REPO_ROOT / "database").rglob("*.py")
        for imp in _imports(path, "database." + path.stem)
        if imp.startswith(PACKAGE) and imp != f"{PACKAGE}.api" and not imp.startswith(f"{PACKAGE}.api.")
    ]
    assert found == []
