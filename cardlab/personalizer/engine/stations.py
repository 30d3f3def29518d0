"""Stations: the loops that personalize cards, one per card source, and the batch lock.

One station runs in the calling process; several (``--stations N``, or one per
``--reader``) run as forked worker processes that report each card's outcome
through a queue and die with their parent (``PR_SET_PDEATHSIG``), so a killed
run never leaves a station writing cards behind the next run's back.
:func:`batch_lock` keeps a second ``perso run`` off a batch in use.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.engine.flow import Job, Outcome, failure_reason, load_script, personalize_card
from cardlab.personalizer.engine.reconcile import reconcile_orphans, settle_fault
from cardlab.personalizer.engine.sources import CardSource
from cardlab.personalizer.jobdb import JobDb, open_jobdb

#: seconds between two looks for the open attempts of dead stations (shared job store)
ORPHAN_SWEEP = 2.0


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the parent dies, so a killed run never
    leaves stations writing cards behind the next run's back."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def station_loop(
    job: Job,
    source: CardSource,
    station: str,
    report: Callable[[Outcome], None],
    *,
    limit: int | None = None,
) -> None:
    """Personalize cards until the source or the pending records run out."""
    from cardlab.personalizer.keys import open_keystore

    script, executor = load_script(job)
    done = 0
    with open_jobdb(job.batch, job.jobs, station=station if job.jobs else None) as db, \
            open_keystore(job.keys_spec) as keystore:
        swept = 0.0
        try:
            while limit is None or done < limit:
                if db.shared and time.monotonic() - swept > ORPHAN_SWEEP:
                    # stations elsewhere may have died mid-card since: the next claim settles what
                    # they left on cards this station reaches
                    settled = reconcile_orphans(job, db, source, keystore)
                    if settled:
                        print(f"{station}: settled what stopped stations left on cards: "
                              + ", ".join(f"{k} {v}" for k, v in sorted(settled.items())), file=sys.stderr)
                    swept = time.monotonic()
                hand = source.next_card(db, station)
                if hand is None:
                    break
                outcome = personalize_card(job, db, hand, station, script, executor, keystore)
                if outcome is not None and outcome.status == "unsettled":
                    outcome = _settle(job, db, source, keystore, outcome)
                if outcome is not None:
                    done += 1
                    report(outcome)
        finally:
            source.close()


def _settle(job: Job, db: JobDb, source: CardSource, keystore: Any, outcome: Outcome) -> Outcome:
    """A reader fault after a command that writes: read the card again when it is back and settle
    the attempt as after a crash (roll back, spoil) — :func:`reconcile.settle_fault`."""
    decision, how = settle_fault(job, db, source, outcome.attempt, keystore, wait=job.fault_wait,
                                 cause=outcome.reason)
    status = {"done": "done", "failed": "failed", "redo": "untouched"}.get(decision, "fault")
    return Outcome(outcome.record_index, status, how or outcome.reason, outcome.stages)


def _worker(job: Job, source: CardSource, station: str, queue: Any, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        return

    def report(o: Outcome) -> None:
        queue.put((station, o.record_index, o.status, o.reason, o.stages))

    try:
        station_loop(job, source, station, report)
    except KeyboardInterrupt:  # Ctrl-C reaches every station: the parent says "interrupted", once
        return
    except Exception as exc:  # noqa: BLE001
        queue.put((station, -1, "error", failure_reason(exc), []))


def run_stations(
    job: Job, sources: Sequence[CardSource], report: Callable[[Outcome], None], *, limit: int | None = None,
    names: Sequence[str] = (),
) -> list[str]:
    """Run station ``k + 1`` on ``sources[k]``: one in this process (up to ``limit``
    cards), several as forked worker processes. Every card's outcome goes to
    ``report``, in this process; returns what stopped a station (errors)."""
    names = list(names) or [f"station-{k + 1}" for k in range(len(sources))]
    if len(sources) <= 1:
        station_loop(job, sources[0], names[0], report, limit=limit)
        return []
    errors: list[str] = []
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, source, names[k], queue, os.getpid()), daemon=True)
             for k, source in enumerate(sources)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs) or not queue.empty():
        try:
            station, index, status, reason, stages = queue.get(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if status == "error":
            errors.append(f"{station}: {reason}")
            continue
        report(Outcome(index, status, reason, stages))
    for p in procs:
        p.join()
        if p.exitcode not in (0, None):
            errors.append(f"station process {p.pid} ended with code {p.exitcode}")
    return errors


@contextlib.contextmanager
def batch_lock(batch: Path, timeout: float = 30.0) -> Iterator[None]:
    """One ``perso run`` per batch at a time (an flock on ``BATCH/jobs.lock``)."""
    fd = os.open(batch / "jobs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"{batch}: another perso run holds the batch") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)
