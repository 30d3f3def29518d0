"""The perso engine and data preparation packages stay readable: no module over ~600 lines,
no import circle between a package's modules (lazy and TYPE_CHECKING imports included),
the CLI apart from the logic."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

#: package → how many modules it has at least (besides its __init__)
PACKAGES = {"cardlab.personalizer.engine": 8, "cardlab.personalizer.prepare": 6}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("cardlab", cache_dir=None, exclude_type_checking_imports=False)


def _modules(graph: grimp.ImportGraph, package: str) -> list[str]:
    return sorted(m for m in graph.modules if m.startswith(package + "."))


def _strongly_connected(graph: grimp.ImportGraph) -> Iterator[set[str]]:
    """Tarjan's strongly connected components of the whole import graph (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        component.add(m)
                        if m == node:
                            break
                    yield component
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_over_600_lines(package: str) -> None:
    root = Path(importlib.import_module(package).__file__ or "").parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in root.glob("*.py")}
    assert sizes and max(sizes.values()) <= 600, sizes


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circle_inside_the_package(graph: grimp.ImportGraph, package: str) -> None:
    modules = _modules(graph, package)
    assert len(modules) >= PACKAGES[package]
    # a component holding two of the package's modules (or one and the package's __init__,
    # which imports them all) is an import circle, through whatever other modules
    ours = {package, *modules}
    circles = [sorted(c & ours) for c in _strongly_connected(graph) if len(c & ours) > 1]
    assert not circles
    assert not [m for m in modules if package in graph.find_modules_directly_imported_by(m)]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_only_the_cli_module_is_command_line(graph: grimp.ImportGraph, package: str) -> None:
    cli = f"{package}.cli"
    assert cli in graph.modules
    assert not [m for m in _modules(graph, package) if cli in graph.find_modules_directly_imported_by(m)]


def test_the_circle_finder_finds_circles() -> None:
    g = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "x"), ("x", "p.a"), ("p.c", "p.a")):
        g.add_import(importer=a, imported=b)
    assert sorted(sorted(c) for c in _strongly_connected(g) if len(c) > 1) == [["p.a", "p.b", "x"]]
