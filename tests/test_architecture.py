"""The package's imports follow the layers written in docs/architecture.md, with no cycle.

The layer order is written once, in the ```layers block of docs/architecture.md (highest
first; names on one line are siblings). This test reads it from there, reads every module's
imports with `ast`, and fails on an import of a higher or sibling layer and on any cycle
between modules. Imports under `if TYPE_CHECKING:` are left out: they never run (annotations
are strings under `from __future__ import annotations`), so they cannot make a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fhir_server"
DOC = ROOT / "docs" / "architecture.md"


def layers(doc: str) -> list[list[str]]:
    """The ```layers block: one line per layer, highest first."""
    found = re.search(r"^```layers\n(.*?)^```", doc, re.S | re.M)
    assert found, "docs/architecture.md has no ```layers block"
    return [line.split() for line in found.group(1).splitlines() if line.strip()]


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:
                yield from _import_nodes_of(other)
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _import_nodes(node)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports at run time (module-level or inside functions)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` depends on mod; `from mod import name` on mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "fhir_server":
                out.add(target)
    return out


def graph(package: Path) -> dict[str, set[str]]:
    mods = modules(package)
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def unit(module: str) -> str:
    """The layered unit of a module: its sub-package or top-level module of fhir_server."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(edges: dict[str, set[str]], order: list[list[str]]) -> list[str]:
    level = {u: i for i, line in enumerate(order) for u in line}
    bad = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = unit(source), unit(target)
            if a != b and a in level and b in level and level[b] <= level[a]:  # (unlisted units: their own test)
                bad.append(f"{source} -> {target} ({b} is not below {a})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


ORDER = layers(DOC.read_text())
EDGES = graph(PACKAGE)


def test_the_layers_name_each_unit_once() -> None:
    names = [u for line in ORDER for u in line]
    assert len(names) == len(set(names)), names


def test_every_module_belongs_to_a_layer() -> None:
    listed = {u for line in ORDER for u in line}
    missing = sorted({unit(m) for m in EDGES if m != "fhir_server"} - listed)
    assert not missing, f"add these to the ```layers block of docs/architecture.md: {missing}"


def test_no_import_runs_up_the_layers() -> None:
    assert upward_imports(EDGES, ORDER) == []


def test_no_import_cycle() -> None:
    assert cycles(EDGES) == []


def test_the_checks_catch_what_they_look_for() -> None:
    order = [["api"], ["search"], ["storage"]]
    edges = {"fhir_server.storage.a": {"fhir_server.search.b"}, "fhir_server.search.b": {"fhir_server.search.c"},
             "fhir_server.search.c": {"fhir_server.search.b"}, "fhir_server.api.d": {"fhir_server.storage.a"}}
    assert upward_imports(edges, order) == [
        "fhir_server.storage.a -> fhir_server.search.b (search is not below storage)"]
    assert cycles(edges) == [["fhir_server.search.b", "fhir_server.search.c"]]
    assert "fhir_server.search.compile.tree" in EDGES["fhir_server.search.plan"]  # the graph is read
