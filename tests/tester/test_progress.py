"""The tester's progress line: rate and time left on a terminal; quiet in pipes, CI and with --quiet."""

from __future__ import annotations

import io

import pytest

from cardlab.tester.progress import Progress, wanted


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_in_pipes_ci_and_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert wanted(Tty()) and not wanted(io.StringIO()) and not wanted(Tty(), quiet=True)
    monkeypatch.setenv("CI", "true")
    assert not wanted(Tty())
    pipe = io.StringIO()
    with Progress(10, "certify", stream=pipe) as bar:
        for _ in range(10):
            bar.advance()
    assert pipe.getvalue() == ""


def test_line_shows_rate_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Tty()
    bar = Progress(100, "certify", stream=tty, enabled=True)
    bar._start -= 10.0  # 10 s ago
    bar.done, bar.failed = 25, 2
    line = bar.line(bar._start + 10.0)
    assert line.startswith("certify  25/100 [######------------------]")
    assert "2.5 cards/s" in line and "0:30 left" in line and "2 not passed" in line
    bar.advance()
    assert tty.getvalue().startswith("\r") and "26/100" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\n")
