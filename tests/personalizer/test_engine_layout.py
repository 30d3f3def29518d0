"""The perso engine package stays readable: no module over ~600 lines, no import circle
between its modules (TYPE_CHECKING imports included), the CLI apart from the logic."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

import cardlab.personalizer.engine as engine_pkg

PACKAGE = "cardlab.personalizer.engine"
ROOT = Path(engine_pkg.__file__).parent


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("cardlab", cache_dir=None, exclude_type_checking_imports=False)


def _modules(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m.startswith(PACKAGE + "."))


def test_no_module_over_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in ROOT.glob("*.py")}
    assert sizes and max(sizes.values()) <= 600, sizes


def test_no_import_circle_inside_the_package(graph: grimp.ImportGraph) -> None:
    modules = _modules(graph)
    assert len(modules) >= 8
    circles = [(a, b) for a in modules for b in modules
               if a < b and graph.chain_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)]
    assert not circles
    # and no module goes back through the package's __init__ (which imports them all)
    assert not [m for m in modules if PACKAGE in graph.find_modules_directly_imported_by(m)]


def test_only_the_cli_module_is_command_line(graph: grimp.ImportGraph) -> None:
    cli = f"{PACKAGE}.cli"
    assert not [m for m in _modules(graph) if cli in graph.find_modules_directly_imported_by(m)]
