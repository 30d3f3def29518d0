"""``run()``: run (or resume) a prepared batch's perso script on cards.

One code path for every card: a card is whatever answers APDUs behind a PC/SC
reader name. Emulated cards (a stock directory of card images, see
:mod:`cardlab.personalizer.stock`) are put in a private emulated reader through the
pyscard plug-in (:mod:`cardlab.emulator.transports.pyscard_reader`); real cards are in
a real reader (:mod:`cardlab.personalizer.engine.sources`). A run takes the batch
lock, loads the batch into the job database, settles what a crash left open
(:mod:`cardlab.personalizer.engine.reconcile`), then runs the stations
(:mod:`cardlab.personalizer.engine.stations`) and reports the counts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.engine.flow import Executor, Job, Outcome
from cardlab.personalizer.engine.gp import gp_access
from cardlab.personalizer.engine.preflight import check_keys, check_named_keys, probe_stock
from cardlab.personalizer.engine.progress import ProgressBar
from cardlab.personalizer.engine.reconcile import reconcile, reconcile_one
from cardlab.personalizer.engine.sources import CardSource, ImageSource, ReaderSource
from cardlab.personalizer.engine.stations import batch_lock, run_stations
from cardlab.personalizer.jobdb import JobDb, JobDbError, open_jobdb, station_name
from cardlab.personalizer.jobstore import JobStoreError
from cardlab.personalizer.stock import holder, list_images


@dataclass
class RunReport:
    input: int
    counts: dict[str, int]
    unaccounted: list[tuple[int, str, str]]
    failures: list[tuple[int, str, str, str]]
    reconciled: dict[str, int]
    seconds: float
    cards_this_run: int
    stages: list[tuple[str, int, float]]
    errors: list[str] = field(default_factory=list)
    #: shared job store: records in progress on stations still running elsewhere (index, station)
    elsewhere: list[tuple[int, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if not self.failures and not self.unaccounted and not self.errors else 1


def run(
    batch: str | Path,
    *,
    cards: str | Path | None = None,
    readers: Sequence[str] = (),
    stations: int = 1,
    script: str | Path | None = None,
    keys: str | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    reader_timeout: float | None = None,
    wait_removal: bool = True,
    limit: int | None = None,
    fault_wait: float | None = None,
    jobs: str | None = None,
) -> RunReport:
    """Run (or resume) a batch. Exactly one of ``cards`` (a stock directory)
    and ``readers`` (PC/SC reader names, one station each). ``fault_wait``: seconds a station waits
    for a card that went away while being written to answer again (default ``reader_timeout``, else
    30 s) before it spoils the card unread. ``jobs``: the job store (None: ``BATCH/jobs.sqlite``; a
    ``postgresql://`` address: shared with stations on other machines, see
    :mod:`cardlab.personalizer.jobstore`)."""
    from cardlab.personalizer.batch import read_manifest
    from cardlab.personalizer.keys import open_keystore

    batch = Path(batch)
    manifest = read_manifest(batch)
    if (cards is None) == (not readers):
        raise EngineError("give either a card stock directory or reader names")
    script_path = Path(script) if script else batch / "script.yaml"
    if executor is None and not script_path.exists():
        raise EngineError(f"{script_path}: no perso script")
    keys_spec = keys or os.environ.get("CARDLAB_KEYS") or str(manifest.get("keys") or "")
    if not keys_spec:
        raise EngineError("no key store: give --keys (or set CARDLAB_KEYS)")
    profile = None
    if (batch / "profile.yaml").exists():
        import yaml

        with contextlib.suppress(Exception):
            profile = yaml.safe_load((batch / "profile.yaml").read_text())
    wait = fault_wait if fault_wait is not None else reader_timeout if reader_timeout is not None else 30.0
    job = Job(batch, script_path, keys_spec, gp_access(batch), executor, profile, wait, jobs or None)
    # the batch as the stock's claim markers name it: its directory and what it holds
    owner = f"{batch.resolve()} {manifest.get('cards_sha256', '')}"

    def make_source(k: int) -> CardSource:
        if cards is not None:
            return ImageSource(cards, reader_name=f"cardlab perso station {k}", owner=owner)
        return ReaderSource(readers[k], timeout=reader_timeout, wait_removal=wait_removal)

    n = stations if cards is not None else len(readers)
    started = time.perf_counter()
    processed = 0
    # SQLite: one run per batch (the batch lock); a shared job store: any number, on any machine
    with contextlib.nullcontext() if jobs else batch_lock(batch):
        with open_jobdb(batch, jobs) as db:
            db.load_batch(batch)
            with open_keystore(keys_spec) as keystore:
                check_keys(keystore, keys_spec, manifest)
                check_named_keys(batch, script_path, keystore, keys_spec)
                if cards is not None and db.pending_left():
                    probe_stock(Path(cards), job.gp, keystore)
                if cards is not None:
                    reconciled = reconcile(job, db, ImageSource(cards, reader_name="cardlab perso reconcile"),
                                           keystore)
                elif jobs:
                    reconciled = {}
                    for reader in readers:
                        src = ReaderSource(reader, timeout=0, wait_removal=False)
                        for r, k in reconcile(job, db, src, keystore).items():
                            reconciled[r] = reconciled.get(r, 0) + k
                else:
                    reconciled = {}
                    for reader in readers:
                        atts = [a for a in db.open_attempts() if a.location == reader]
                        src = ReaderSource(reader, timeout=0, wait_removal=False)
                        for att in atts:
                            r = reconcile_one(job, db, src, att, keystore)
                            reconciled[r] = reconciled.get(r, 0) + 1
            todo = len(db.unaccounted())
        bar = ProgressBar(todo, progress)

        def report(o: Outcome) -> None:
            nonlocal processed
            processed += 1
            bar.advance(o)
            if o.status in ("refused", "fault", "untouched"):  # the operator sees at once why a card was put aside
                what = {"refused": "card set aside", "fault": "card spoiled by a fault",
                        "untouched": "reader fault before any write (card free again)"}[o.status]
                print(f"{what}, record {o.record_index} goes to another card: {o.reason}", file=sys.stderr)

        try:
            errors = run_stations(job, [make_source(k) for k in range(max(n, 1))], report, limit=limit,
                                  names=[station_name(k + 1) if jobs else f"station-{k + 1}" for k in range(max(n, 1))])
        finally:
            bar.close()
        try:
            final = open_jobdb(batch, jobs)
        except JobDbError as exc:  # the shared store went away during the run: say what the stations saw
            raise JobStoreError("; ".join([str(exc), *errors[:4]])) from None
        with final as db:
            pending = db.counts().get("pending", 0)
            if cards is not None and pending and not errors:
                stock = ImageSource(cards)
                if all(db.image_used(str(p)) or holder(p) not in (None, owner) for p in list_images(stock.directory)):
                    errors.append(f"card stock used up: {pending} records still pending; add blank cards to "
                                  f"{stock.directory} and run the batch again to resume")
            unaccounted, elsewhere = db.unaccounted(), list[tuple[int, str]]()
            if db.shared:  # a record another machine's running station holds is accounted for
                unaccounted, elsewhere = _held_elsewhere(db, unaccounted)
            return RunReport(db.input_count(), db.counts(), unaccounted, db.failures(), reconciled,
                             time.perf_counter() - started, processed, db.stage_summary(), errors, elsewhere)


def _held_elsewhere(db: JobDb, unaccounted: list[tuple[int, str, str]]
                    ) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """Split the records left unfinished into those still unaccounted for and those a running
    station (on any machine) holds. Asked record by record after the list was read, so a record
    another station finished or claimed in between is judged by what the store says now."""
    left: list[tuple[int, str, str]] = []
    held: list[tuple[int, str]] = []
    for index, card_id, _status in unaccounted:
        row = db.db.execute("SELECT status FROM records WHERE record_index = ?", (index,)).fetchone()
        status = str(row[0]) if row else "pending"
        if status in ("done", "failed", "rejected"):
            continue  # finished by another station meanwhile
        stations = [str(s) for (s,) in db.db.execute(
            "SELECT station FROM attempts WHERE record_index = ? AND outcome IS NULL", (index,))]
        alive = [s for s in stations if db.station_alive(s)]
        if status == "in_progress" and alive:
            held.append((index, alive[0]))
        else:
            left.append((index, card_id, status))
    return left, held

