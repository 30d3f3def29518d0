"""Fault soak of the perso engine: reader faults through pcscd + vpcd, and one stock shared by batches.

**Reader faults.** A prepared batch (the real ``prepare()`` on the SDA sample profile) is
personalized by the real command line — ``cardlab perso run BATCH --reader "Virtual PCD 00 00"``
with the batch's own EMV CPS script, in a child process — on stock cards served one at a time by
the vpcd card server through a private pcscd. The soak is the card feeder: it serves the next
blank, and while the engine writes a card it kills the card server (SIGKILL: the card pulled, the
reader gone) at random moments, or kills pcscd itself (every ``--pcscd-every``-th fault), then
brings the card back after a random pause — so the engine must retry what wrote nothing, read
the card again, roll back what it holds (DELETE over SCP03) and spoil it, and finish the record
on a fresh card. When the job database says a card is finished, the soak takes it out.

**Shared stock.** ``--batches`` batches run at once on one stock directory of emulated cards
(separate processes, two stations each).

Printed: faults injected, records done exactly once, records failed, cards spoiled, cards holding
cardholder data that no finished record accounts for (must be 0), images whose data is not the
record their job database names (must be 0), cards claimed by two batches (must be 0), the job
database checks and audit chains. ``python -m robustness.fault_soak [--faults N] [--records N]
[--quick]``; exit 1 on any failure, 0 with a note when pcscd/vpcd are not installed (shared stock only).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from robustness.common import ROOT, figures

_E2E = str(ROOT / "tests" / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)


@dataclass
class ReaderResult:
    skipped: str = ""
    faults: int = 0
    server_kills: int = 0
    pcscd_kills: int = 0
    faults_asked: int = 0
    records: int = 0
    done_once: int = 0
    done_twice: int = 0
    failed: int = 0
    pending: int = 0
    spoiled: int = 0
    data_unspoiled: int = 0
    wrong_record: int = 0
    check: list[str] = field(default_factory=list)
    audit_ok: bool = False
    exit_code: int = -1
    tracebacks: int = 0
    #: cards the engine saw that are not of the soak's stock: another process's card server reached
    #: this pcscd (pcscd and vpcd's port are one per machine) — the run is then not a measurement
    foreign_cards: int = 0
    #: cards taken out and put back because the station kept asking for a card while one was being
    #: served (what an operator does when a reader does not notice a card): counted, never hidden
    reseats: int = 0
    #: pcscd not ours when the run ended (another run on this machine restarted it): not a measurement
    pcscd_replaced: bool = False
    #: the engine's last lines, for the report when the run failed
    log_tail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        if self.skipped:
            return True
        return (self.done_once == self.records and self.done_twice == 0 and self.failed == 0
                and self.data_unspoiled == 0 and self.wrong_record == 0 and not self.check and self.audit_ok
                and self.exit_code == 0 and self.tracebacks == 0 and self.faults >= min(1, self.faults_asked))


@dataclass
class SharedResult:
    batches: int = 0
    records: int = 0
    done: int = 0
    claimed_twice: int = 0
    wrong_record: int = 0
    data_unaccounted: int = 0
    check: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.done == self.records and self.claimed_twice == self.wrong_record == self.data_unaccounted == 0
                and not self.check and all(c == 0 for c in self.exit_codes))


def _db_rows(db_path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if not db_path.exists():
        return []
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _image_cin(image: Path) -> str:
    from cardlab.emulator import Card

    return str(Card.load(image).state.kdd.hex().upper())


def _images_check(cards: list[Path], db_path: Path) -> tuple[int, int]:
    """(cards holding cardholder data no finished record accounts for, images holding another
    record than their job database row says) — read from the images themselves."""
    from enginekit import pans_on_image, record_of_pan  # type: ignore[import-not-found]

    done = {str(cin): int(str(idx)) for cin, idx in _db_rows(
        db_path, "SELECT c.cin, r.record_index FROM records r JOIN cards c ON c.id = r.card WHERE r.status = 'done'")}
    unspoiled = wrong = 0
    for image in cards:
        pans = pans_on_image(image)
        if not pans:
            continue
        cin = _image_cin(image)
        if cin not in done:
            unspoiled += 1
        elif [record_of_pan(p) for p in pans] != [done[cin]]:
            wrong += 1
    return unspoiled, wrong


#: the card server of the soak: the vpcd server of ``cardlab.emulator.transports.vpcd`` over a
#: card image (saved after every change, as a card's EEPROM), which at the APDU numbered
#: ``fault_at`` (0: never) — before or after the card executes it — either SIGKILLs itself (the
#: card pulled, the answer lost) or, for ``pcscd``, tells the soak to kill pcscd and waits for it
FAULTY_SERVER = """
import os, signal, sys, time
from pathlib import Path
from cardlab.emulator import Card
from cardlab.emulator.transports.vpcd import serve

path, fault_at, mode, kind, marker = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
card = Card.load(path)
card.on_commit = lambda c: c.save(path)
count = 0

def fault():
    if kind == "pcscd":
        marker.write_text("now")
        time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)

class Faulty:
    def power_on(self):
        return card.power_on()

    def transmit(self, apdu):
        global count
        count += 1
        if count == fault_at and mode == "before":
            fault()
        resp = card.transmit(apdu)
        if count == fault_at and mode == "after":
            fault()
        return resp

serve(Faulty())
"""


def _asks_for_card(engine_log: Path) -> bool:
    """Whether the station's last word is a request for a card (``insert a card into reader …``)."""
    try:
        lines = engine_log.read_text(errors="replace").splitlines()
    except OSError:
        return False
    return bool(lines) and lines[-1].startswith("insert a card into reader")


def _pcscd_pid() -> int | None:
    from pcscd_helper import PCSCD_PID_FILE  # type: ignore[import-not-found]

    try:
        return int(PCSCD_PID_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_reader_faults(work: Path, faults: int = 12, records: int = 12, seed: int = 1,
                      max_apdu: int = 24, pcscd_every: int = 4,
                      timeout: float = 900.0, reseat_after: float = 15.0) -> ReaderResult:
    """The reader-fault soak (module doc); skipped (``skipped`` says why) without pcscd + vpcd."""
    from enginekit import make_batch, make_cards  # type: ignore[import-not-found]
    from pcscd_helper import READER, Pcscd, pcscd_unavailable  # type: ignore[import-not-found]

    from cardlab.personalizer import audit
    from cardlab.personalizer.jobdb import JobDb
    from cardlab.personalizer.stock import list_images

    res = ReaderResult(faults_asked=faults, records=records)
    why = pcscd_unavailable()
    if why is not None:
        res.skipped = why
        return res
    started = time.perf_counter()
    rng = random.Random(seed)
    batch, keys = make_batch(work, count=records, bad=())
    stock = list_images(make_cards(work, keys, records + faults + 4))
    db_path = batch / "jobs.sqlite"
    pcscd = Pcscd(work / "pcscd.log")
    pcscd.start()
    engine_log = work / "engine.log"
    with open(engine_log, "wb") as log:
        engine = subprocess.Popen(
            [sys.executable, "-m", "cardlab", "perso", "run", str(batch), "--reader", READER, "--keys", str(keys),
             "--card-timeout", "60", "--quiet"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + timeout
    marker = work / "pcscd-fault-now"

    def status(cin: str) -> str | None:
        rows = _db_rows(db_path, "SELECT status FROM cards WHERE cin = ?", (cin,))
        return str(rows[0][0]) if rows else None

    def serve(image: Path, fault_at: int = 0, mode: str = "before", kind: str = "server") -> subprocess.Popen[bytes]:
        with open(work / f"server-{image.stem}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-c", FAULTY_SERVER, str(image), str(fault_at), mode, kind,
                                     str(marker)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        planned = 0
        for image in stock:
            if engine.poll() is not None or time.monotonic() > deadline:
                break
            cin = _image_cin(image)
            if planned < faults:
                planned += 1
                kind = "pcscd" if pcscd_every and planned % pcscd_every == 0 else "server"
                # a random APDU of the card's session: identify, the blank check, or the script's writes
                server = serve(image, rng.randint(1, max_apdu), rng.choice(("before", "after")), kind)
            else:
                server = serve(image)
            served = time.monotonic()
            while engine.poll() is None and time.monotonic() < deadline:
                if status(cin) in ("personalized", "spoiled", "unusable"):
                    break
                if time.monotonic() - served > reseat_after and _asks_for_card(engine_log):
                    # the station has asked for a card for a while and this one is in: take it out
                    # and put it back, as an operator would (the count goes in the report)
                    res.reseats += 1
                    stop(server)
                    if res.reseats > 1:  # still not seen: the reader is reset too (pcscd restarted)
                        pcscd.stop()
                        pcscd.start()
                    time.sleep(1.0)
                    server = serve(image)
                    served = time.monotonic()
                if marker.exists():  # the card service itself goes: pcscd killed mid-command
                    marker.unlink()
                    res.faults += 1
                    res.pcscd_kills += 1
                    assert pcscd.proc is not None
                    os.kill(pcscd.proc.pid, signal.SIGKILL)
                    pcscd.proc.wait()
                    pcscd.proc = None
                    server.kill()
                    server.wait()
                    time.sleep(rng.uniform(0.2, 1.0))
                    pcscd.start()
                    server = serve(image)  # the reader and the card are back
                    served = time.monotonic()
                elif server.poll() is not None:  # the card server killed itself mid-command: the card pulled
                    res.faults += 1
                    res.server_kills += 1
                    time.sleep(rng.uniform(0.1, 1.0))
                    server = serve(image)  # the card is put back
                    served = time.monotonic()
                time.sleep(0.05)
            stop(server)  # the card is taken out
            server = None
        engine.wait(timeout=max(1.0, deadline - time.monotonic()))
        res.pcscd_replaced = _pcscd_pid() != (pcscd.proc.pid if pcscd.proc is not None else None)
    finally:
        if server is not None:
            stop(server)
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        pcscd.stop()
    res.exit_code = engine.returncode
    log_text = engine_log.read_text(errors="replace")
    res.tracebacks = log_text.count("Traceback")
    res.log_tail = "\n".join(log_text.splitlines()[-25:])
    with JobDb(db_path) as db:
        res.check = db.check()
        counts = db.counts()
        res.failed, res.pending = counts.get("failed", 0), counts.get("pending", 0) + counts.get("in_progress", 0)
        per_record = dict(db.db.execute("SELECT record_index, COUNT(*) FROM attempts WHERE outcome = 'done' "
                                        "GROUP BY record_index").fetchall())  # fmt: skip
        done = {i for (i,) in db.db.execute("SELECT record_index FROM records WHERE status = 'done'")}
        res.done_once = sum(1 for i in done if per_record.get(i) == 1)
        res.done_twice = sum(1 for n in per_record.values() if n > 1)
        res.spoiled = int(db.db.execute("SELECT COUNT(*) FROM cards WHERE status = 'spoiled'").fetchone()[0])
        verified = audit.verify(db.db)
        res.audit_ok = verified.ok
        ours = {_image_cin(p) for p in stock}
        res.foreign_cards = sum(1 for (cin,) in db.db.execute("SELECT cin FROM cards WHERE cin IS NOT NULL")
                                if cin not in ours)
    res.data_unspoiled, res.wrong_record = _images_check(stock, db_path)
    res.seconds = time.perf_counter() - started
    return res


SHARED_RUNNER = """
import sys
sys.path.insert(0, {kit!r})
from enginekit import stand_in_execute
from cardlab.personalizer import engine
rep = engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations=2, executor=stand_in_execute)
sys.exit(rep.exit_code)
"""


def run_shared_stock(work: Path, batches: int = 3, records: int = 8, delay: float = 0.005) -> SharedResult:
    """``batches`` batches at once on one stock of emulated cards (module doc)."""
    from enginekit import make_batch, make_cards, pans_on_image, record_of_pan  # type: ignore[import-not-found]

    from cardlab.personalizer.jobdb import JobDb
    from cardlab.personalizer.stock import claim_of, list_images

    res = SharedResult(batches=batches, records=batches * records)
    started = time.perf_counter()
    made = []
    for n in range(batches):
        (work / f"b{n}").mkdir()
        made.append(make_batch(work / f"b{n}", count=records, bad=()))
    cards = make_cards(work, made[0][1], batches * records + 4, name="shared-stock")
    env = {**os.environ, "ENGINEKIT_DELAY": str(delay)}
    kit = str(ROOT / "tests" / "personalizer")
    procs = [subprocess.Popen([sys.executable, "-c", SHARED_RUNNER.format(kit=kit, batch=str(b), cards=str(cards),
                                                                          keys=str(k))],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for b, k in made]
    res.exit_codes = [p.wait(timeout=900) for p in procs]
    owner_of: dict[str, str] = {}
    accounted: set[str] = set()
    for b, _ in made:
        with JobDb(b / "jobs.sqlite") as db:
            res.check += db.check()
            rows = db.db.execute("SELECT c.location, r.record_index FROM records r JOIN cards c ON c.id = r.card "
                                 "WHERE r.status = 'done'").fetchall()  # fmt: skip
        res.done += len(rows)
        for loc, index in rows:
            if loc in owner_of:
                res.claimed_twice += 1
            owner_of[loc] = str(b)
            accounted.add(loc)
            owner, record = claim_of(loc)
            if not owner.startswith(str(b.resolve())) or record != index \
                    or [record_of_pan(p) for p in pans_on_image(Path(loc))] != [index]:
                res.wrong_record += 1
    res.data_unaccounted = sum(1 for p in list_images(cards) if pans_on_image(p) and str(p) not in accounted)
    res.seconds = time.perf_counter() - started
    return res


def report(reader: ReaderResult, shared: SharedResult) -> str:
    rows: list[tuple[str, object]] = []
    if reader.skipped:
        rows.append(("reader faults", f"skipped: {reader.skipped}"))
    else:
        rows += [
            ("faults injected", f"{reader.faults} of {reader.faults_asked} (card server SIGKILLed {reader.server_kills}, "
                                f"pcscd SIGKILLed {reader.pcscd_kills})"),
            ("records in", reader.records),
            ("records done exactly once", reader.done_once),
            ("records done twice", reader.done_twice),
            ("records failed", reader.failed),
            ("records still pending", reader.pending),
            ("cards spoiled", reader.spoiled),
            ("cards with data left unspoiled", reader.data_unspoiled),
            ("cards holding another record than the job db says", reader.wrong_record),
            ("job db check", "ok" if not reader.check else "; ".join(reader.check[:3])),
            ("audit chain", "verified" if reader.audit_ok else "NOT verified"),
            ("perso run exit code / tracebacks", f"{reader.exit_code} / {reader.tracebacks}"),
            ("foreign cards seen (another card server on this pcscd)", reader.foreign_cards),
            ("cards re-seated (station kept asking for a card)", reader.reseats),
            ("pcscd replaced by another run", "yes" if reader.pcscd_replaced else "no"),
            ("seconds (reader faults)", f"{reader.seconds:.1f}"),
        ]
    rows += [
        ("shared stock: batches at once", f"{shared.batches} (2 stations each), {shared.records} records"),
        ("shared stock: records done", shared.done),
        ("shared stock: cards claimed by two batches", shared.claimed_twice),
        ("shared stock: images not holding their db's record", shared.wrong_record),
        ("shared stock: cardholder data unaccounted", shared.data_unaccounted),
        ("shared stock: job db checks / exit codes", f"{'ok' if not shared.check else shared.check[:3]} / "
                                                     f"{shared.exit_codes}"),
        ("seconds (shared stock)", f"{shared.seconds:.1f}"),
    ]
    text = figures("fault soak (robustness/fault_soak.py)", rows)
    if not reader.skipped and not reader.ok and reader.log_tail:
        text += "\nthe engine's last lines:\n" + reader.log_tail
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", type=int, default=12)
    ap.add_argument("--records", type=int, default=12)
    ap.add_argument("--pcscd-every", type=int, default=4, help="every Nth fault kills pcscd itself (0: never)")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 faults, 4 records, 2 batches")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (a new directory) and keep it: logs, job databases")
    args = ap.parse_args(argv)
    faults, records, batches = (3, 4, 2) if args.quick else (args.faults, args.records, args.batches)
    with tempfile.TemporaryDirectory(prefix="cardlab-faults-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        (work / "reader").mkdir(parents=True)
        (work / "shared").mkdir()
        reader = run_reader_faults(work / "reader", faults=faults, records=records, seed=args.seed,
                                   pcscd_every=args.pcscd_every)
        shared = run_shared_stock(work / "shared", batches=batches, records=records)
    print(report(reader, shared))
    return 0 if reader.ok and shared.ok else 1


if __name__ == "__main__":
    sys.exit(main())
