"""The tester's own progress line for long runs (``test certify``): done/total,
a bar, the rate and the time left, redrawn in place on a terminal at most
ten times a second. Quiet when the stream is not a terminal (pipes, CI: the
``CI`` environment variable) or when asked (``--quiet``)."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO


def wanted(stream: TextIO | None = None, quiet: bool = False) -> bool:
    """Show progress on ``stream`` (stderr)? Only on a terminal, outside CI, not ``quiet``."""
    s = stream or sys.stderr
    isatty = getattr(s, "isatty", None)
    return not quiet and not os.environ.get("CI") and callable(isatty) and bool(isatty())


class Progress:
    def __init__(self, total: int, label: str, *, unit: str = "cards", enabled: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self.done = self.failed = 0
        self._start = time.monotonic()
        self._drawn = 0.0

    def line(self, now: float | None = None) -> str:
        """``certify  120/500 [#####-----------]  24.0 cards/s  0:15 left  3 not passed``"""
        elapsed = max((now if now is not None else time.monotonic()) - self._start, 1e-9)
        rate = self.done / elapsed
        width = 24
        filled = width * self.done // self.total if self.total else width
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = f"{int(left) // 60}:{int(left) % 60:02d} left" if left is not None else "-:-- left"
        tail = f"  {self.failed} not passed" if self.failed else ""
        return (f"{self.label} {self.done:>{len(str(self.total))}}/{self.total} [{'#' * filled}{'-' * (width - filled)}]"
                f" {rate:6.1f} {self.unit}/s  {eta}{tail}")

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        self.failed += failed
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done >= self.total:
            self._drawn = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
