"""The progress bar of ``perso run``: cards, cards per second, failures (rich)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cardlab.personalizer.engine.flow import Outcome


class ProgressBar:
    """A rich progress bar (when asked and on a terminal-like stream); counts
    the cards either way."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._p: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("perso"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]} cards/s  failed {task.fields[failed]}"),
                               TimeRemainingColumn(), transient=False)
            self._task = self._p.add_task("perso", total=total, rate="-", failed=0)
            self._p.start()
        self._start = time.perf_counter()
        self._n = 0
        self._failed = 0

    def advance(self, o: Outcome) -> None:
        if o.status in ("refused", "fault", "untouched"):  # the record goes to another card: not one finished
            return
        self._n += 1
        self._failed += o.status == "failed"
        if self._p is not None:
            rate = self._n / max(time.perf_counter() - self._start, 1e-9)
            self._p.update(self._task, advance=1, rate=f"{rate:.1f}", failed=self._failed)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
