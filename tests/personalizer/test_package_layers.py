"""The profile and key store packages are layered: each module imports only the modules
below it in its package (no import circle, lazy and TYPE_CHECKING imports included),
and none has grown past the size a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: top to bottom; a module may import only those after it
LAYERS = {
    "cardlab/personalizer/profile": ["parse", "contactless", "sections", "atr", "validate", "model", "keyrefs", "checker", "derive", "tables"],
    "cardlab/personalizer/keys": ["opening", "pkcs11_token", "software", "store", "crypto", "model"],
}
MAX_LINES = 600


def _package_imports(path: Path, package: str) -> set[str]:
    """Sibling modules that ``path`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and node.module and node.module.startswith(package + "."):
                out.add(node.module[len(package) + 1 :].split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name[len(package) + 1 :].split(".")[0] for a in node.names if a.name.startswith(package + ".")}
    return out


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_modules_import_only_lower_layers(folder: str) -> None:
    order = LAYERS[folder]
    package = folder.replace("/", ".")
    found = {p.stem for p in (ROOT / folder).glob("*.py")} - {"__init__"}
    assert found == set(order), "list every module of the package in LAYERS"
    for i, name in enumerate(order):
        imported = _package_imports(ROOT / folder / f"{name}.py", package)
        assert imported <= set(order[i + 1 :]), f"{name} imports {sorted(imported - set(order[i + 1:]))}"


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_modules_stay_small(folder: str) -> None:
    for path in (ROOT / folder).glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES, path.name
