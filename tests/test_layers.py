"""Hearth's layers hold (issue 23): no import cycle between modules, and imports go one way.

The import graph is read from the source with `ast`, not from `sys.modules`, so every import
counts wherever it is written: at the top of a module, inside a function (a lazy import is still
a dependency, it only runs later), and under `if TYPE_CHECKING:` (it never runs, but it is the
same knowledge of another module: a cycle hidden behind it is still a cycle in the design, and
a layer that names a higher one for its annotations still knows it).

A node is a module (`hearth.models.schema`); a package's `__init__.py` is the package's own node
(`hearth.models`). `from hearth.models import schema` is an edge to `hearth.models.schema`, the
submodule named; `from hearth.models import ModelStore` is an edge to `hearth.models`. Parent
packages that Python also runs on the way are not edges: counting them would make every
package's `__init__` that re-exports its own modules a cycle.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = SRC / "hearth"

#: The layers below the faces: none of them may know the server or the command line.
BELOW_FACES = (
    "hearth.core",
    "hearth.models",
    "hearth.threads",
    "hearth.downloads",
    "hearth.engines",
    "hearth.mcp",
    "hearth.services",
)
FACES = ("hearth.server", "hearth.cli")
#: The HTTP dialects: each a request translator and an event writer, none knowing another.
DIALECTS = (
    "hearth.server.inference",
    "hearth.server.ollama",
    "hearth.server.anthropic",
    "hearth.server.responses",
    "hearth.server.threads",
)


@dataclass(frozen=True)
class Edge:
    """One import statement: `source` names `target` at `line` of `path`."""

    source: str
    target: str
    path: str
    line: int
    where: str = ""

    def __str__(self) -> str:
        where = f", {self.where}" if self.where else ""
        return f"{self.source} -> {self.target}  ({self.path}:{self.line}{where})"


def module_name(path: Path) -> str:
    """`hearth/models/schema.py` is `hearth.models.schema`, `models/__init__.py` `hearth.models`."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    """The absolute module a `from ... import` reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _nearest(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest Hearth module that `name` is or lies in (`hearth.a.b.attr` -> `hearth.a.b`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(
    node: ast.AST, source: str, is_package: bool, modules: dict[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = _nearest(alias.name, modules)
            if found:
                yield found
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(node, source, is_package)
        for alias in node.names:
            found = _nearest(f"{base}.{alias.name}", modules)
            if found:
                yield found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, where: str = "") -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with where it sits: "" (runs on import), "in a function" (runs
    when called) or "TYPE_CHECKING" (never runs; the type checker reads it)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, where
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for part in child.body:
                yield from _imports(ast.Module(body=[part], type_ignores=[]), "TYPE_CHECKING")
            for part in child.orelse:
                yield from _imports(ast.Module(body=[part], type_ignores=[]), where)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _imports(child, where or "in a function")
        else:
            yield from _imports(child, where)


@functools.cache
def import_edges() -> tuple[Edge, ...]:
    """Every import of one Hearth module by another, found anywhere in the module's source
    (read once per session: the four tests share it)."""
    modules = all_modules()
    edges: dict[Edge, None] = {}  # ordered, and `from x import a, b` from one module is one edge
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        relative = str(path.relative_to(SRC.parent))
        for node, where in _imports(tree):
            for target in _targets(node, source, is_package, modules):
                if target != source:
                    edges[Edge(source, target, relative, node.lineno, where)] = None
    return tuple(sorted(edges, key=lambda edge: (edge.source, edge.target, edge.line)))


def strongly_connected(nodes: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """The groups of modules that reach each other (Tarjan's algorithm, iterative): each group
    of two or more is one knot of cycles."""
    after: dict[str, set[str]] = {node: set() for node in nodes}
    for edge in edges:
        after[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(after):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(after[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(after[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(groups)


def shortest_cycle(group: list[str], edges: Iterable[Edge]) -> list[str]:
    """One shortest cycle through the group's first module (breadth-first), to show the knot."""
    members = set(group)
    after: dict[str, list[str]] = {}
    for edge in edges:
        if edge.source in members and edge.target in members:
            after.setdefault(edge.source, []).append(edge.target)
    start = group[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(set(after.get(node, ()))):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return group


def describe_cycles(groups: list[list[str]], edges: tuple[Edge, ...]) -> str:
    """Each knot: its modules, one shortest cycle, and every import inside it (file:line)."""
    lines = [f"{len(groups)} import cycle group(s) between Hearth's modules:"]
    for group in groups:
        members = set(group)
        lines.append("")
        lines.append(f"* {len(group)} modules: " + ", ".join(group))
        lines.append("  e.g. " + " -> ".join(shortest_cycle(group, edges)))
        for edge in edges:
            if edge.source in members and edge.target in members:
                lines.append(f"    {edge}")
    return "\n".join(lines)


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def crossings(sources: tuple[str, ...], targets: tuple[str, ...]) -> list[Edge]:
    return [
        edge
        for edge in import_edges()
        if _within(edge.source, sources) and _within(edge.target, targets)
    ]


@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_the_graph_reader_sees_every_kind_of_import() -> None:
    """The reader itself: a top-level, a lazy, a relative and a TYPE_CHECKING import all count."""
    edges = {(edge.source, edge.target, edge.where) for edge in import_edges()}
    assert ("hearth.cli.main", "hearth.runtime", "in a function") in edges  # in `serve()`
    assert ("hearth.services.core", "hearth.engines.manager", "TYPE_CHECKING") in edges
    assert ("hearth.services.core", "hearth.models.store", "") in edges  # at the top
    modules = all_modules()
    node = ast.parse("from .store import ModelStore").body[0]
    assert list(_targets(node, "hearth.models.schema", False, modules)) == ["hearth.models.store"]
    node = ast.parse("from . import store").body[0]
    assert list(_targets(node, "hearth.models", True, modules)) == ["hearth.models.store"]
    edges_of_a_knot = [
        Edge("a", "b", "a.py", 1),
        Edge("b", "c", "b.py", 2),
        Edge("c", "a", "c.py", 3),
        Edge("c", "d", "c.py", 4),
    ]
    assert strongly_connected("abcd", edges_of_a_knot) == [["a", "b", "c"]]
    assert shortest_cycle(["a", "b", "c"], edges_of_a_knot) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_modules() -> None:
    edges = import_edges()
    groups = strongly_connected(all_modules(), edges)
    assert not groups, describe_cycles(groups, edges)


def test_the_store_does_not_import_the_engines() -> None:
    """Models are data: the engines read them, never the other way round (hand the checks in)."""
    found = crossings(("hearth.models",), ("hearth.engines",))
    assert not found, "hearth.models imports hearth.engines:\n" + "\n".join(map(str, found))


def test_the_mcp_host_sits_beside_the_engines() -> None:
    """`mcp/` (issue 26) starts the user's MCP servers: it leans on `core` only, and only
    `services` (and above) reach it, so no model, thread or engine can start a server."""
    others = ("hearth.models", "hearth.threads", "hearth.downloads", "hearth.engines",
              "hearth.services", "hearth.server", "hearth.cli", "hearth.runtime")  # fmt: skip
    found = crossings(("hearth.mcp",), others)
    below = ("hearth.core", "hearth.models", "hearth.threads", "hearth.downloads", "hearth.engines")
    found += crossings(below, ("hearth.mcp",))
    assert not found, "hearth.mcp crosses its layer:\n" + "\n".join(map(str, found))


def test_nothing_below_the_faces_imports_a_face() -> None:
    found = crossings(BELOW_FACES, FACES)
    assert not found, "a layer below the faces imports one:\n" + "\n".join(map(str, found))


def test_the_core_imports_nothing_else_of_hearth() -> None:
    """`core/` is what every layer may import: it must not lean on any of them."""
    above = ("hearth.models", "hearth.threads", "hearth.downloads", "hearth.engines",
             "hearth.mcp", "hearth.services", "hearth.server", "hearth.cli",
             "hearth.runtime")  # fmt: skip
    found = crossings(("hearth.core",), above)
    assert not found, "core/ imports a layer:\n" + "\n".join(map(str, found))


def test_faces_never_import_each_other() -> None:
    """What dialects share lives in server/respond.py, server/jsonbody.py and engines/events.py;
    adding a dialect is one package and one record in server/faces.py (the only module that
    knows them all)."""
    found = [
        edge
        for dialect in DIALECTS
        for edge in crossings((dialect,), tuple(d for d in DIALECTS if d != dialect))
    ]
    assert not found, "a face imports another:\n" + "\n".join(map(str, found))
