"""Shared helpers for the robustness scripts: paths to the test kits, figures output."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "vectors"

for _sub in ("tests/emv", "tests/personalizer"):
    _p = str(ROOT / _sub)
    if _p not in sys.path:
        sys.path.insert(0, _p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def figures(title: str, rows: list[tuple[str, object]]) -> str:
    """A two-column block of figures, one per line."""
    width = max(len(k) for k, _ in rows)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in rows])
