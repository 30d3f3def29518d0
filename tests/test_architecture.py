"""The shape of the code (docs/architecture.md), checked for every package of cardlab at once:

- no module over ~600 lines: past that a module has found a seam and becomes a package;
- no import circle between modules, anywhere in cardlab (imports inside functions and under
  TYPE_CHECKING count: a circle there is a circle a reader has to hold too);
- command-line code apart: no module of a package imports that package's ``cli`` module.

The tester's independence from the other parts is the import-linter contract
(tests/tester/test_independence.py).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("cardlab", cache_dir=None, exclude_type_checking_imports=False)


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; only the components of more than one module (the circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _packages(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each package of cardlab → its direct modules and subpackages (as module names)."""
    out: dict[str, set[str]] = defaultdict(set)
    for m in graph.modules:
        parent, _, _ = m.rpartition(".")
        if parent:
            out[parent].add(m)
    return out


def test_strongly_connected_finds_a_circle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / "cardlab").rglob("*.py")}  # fmt: skip
    assert len(sizes) > 100
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_no_import_circle(graph: grimp.ImportGraph) -> None:
    """Module by module over the whole of cardlab (so inside every package too)."""
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert [sorted(c) for c in strongly_connected(edges)] == []


def test_command_line_code_stays_apart(graph: grimp.ImportGraph) -> None:
    offenders = []
    for package, members in _packages(graph).items():
        cli = f"{package}.cli"
        if cli not in members:
            continue
        for m in members - {cli, f"{package}.__main__"}:
            if m == package:
                continue
            if cli in graph.find_modules_directly_imported_by(m):
                offenders.append(f"{m} imports {cli}")
    assert offenders == []
