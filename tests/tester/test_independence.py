"""The tester must be able to disagree with the card and the personalizer:
an import-linter contract (pyproject.toml) forbids it to import them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_contract_names_every_module_outside_the_tester() -> None:
    """A new module of cardlab is forbidden to the tester until someone decides otherwise:
    the contract lists cardlab's modules one by one (the tester lives inside cardlab)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    forbidden = set(contract["forbidden_modules"])
    top = {f"cardlab.{p.stem}" for p in (ROOT / "cardlab").glob("*.py") if p.stem != "__init__"}
    top |= {f"cardlab.{p.parent.name}" for p in (ROOT / "cardlab").glob("*/__init__.py")}
    assert top - {"cardlab.tester", "cardlab.exitcodes"} == forbidden


def test_the_exit_codes_module_imports_nothing() -> None:
    """cardlab/exitcodes.py is the one module the tester may import: numbers only."""
    import ast

    tree = ast.parse((ROOT / "cardlab" / "exitcodes.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_the_namespace_package_imports_nothing() -> None:
    """cardlab/__init__.py is imported with the tester: it must stay free of imports of cardlab's parts."""
    import ast

    tree = ast.parse((ROOT / "cardlab" / "__init__.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)
