"""`perso prepare` reports progress per record (a bar on a terminal, nothing in a pipe or with --quiet)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"


def _records(tmp_path: Path, n: int) -> Path:
    lines = (VECTORS / "records" / "sample.csv").read_text().splitlines()
    out = tmp_path / "records.csv"
    out.write_text("\n".join(lines[: 1 + n]) + "\n")
    return out


def test_prepare_calls_progress_once_per_record(tmp_path: Path) -> None:
    from cardlab.personalizer.prepare import prepare

    ticks: list[int] = []
    s = prepare(VECTORS / "profiles" / "visa-cvn18.yaml", _records(tmp_path, 3), str(VECTORS / "test-keystore.json"),
                tmp_path / "batch", progress=lambda: ticks.append(1))
    assert len(ticks) == s.input_count == 3


def test_perso_prepare_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cardlab.cli import main
    from cardlab.personalizer.prepare.cli import _count_records

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    records = _records(tmp_path, 2)
    assert _count_records(records) == 2
    args = ["perso", "prepare", "--profile", str(VECTORS / "profiles" / "visa-cvn18.yaml"), "--records", str(records),
            "--keys", str(VECTORS / "test-keystore.json")]
    tty = Tty()
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*args, "--out", str(tmp_path / "b1")]) == 0
    assert "prepare" in tty.getvalue() and "2/2" in tty.getvalue() and "records/s" in tty.getvalue(), tty.getvalue()
    quiet = Tty()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*args, "--out", str(tmp_path / "b2"), "--quiet"]) == 0
    assert "records/s" not in quiet.getvalue()
