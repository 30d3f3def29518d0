"""The batch job database: ``BATCH/jobs.sqlite``, or the batch's schema on a PostgreSQL server
shared by stations on many machines (:mod:`cardlab.personalizer.jobstore` holds the schema and
what differs between the two).

Every change is one transaction that also appends its audit entries
(:mod:`cardlab.personalizer.audit`), so a crash at any point leaves either the state before or
the state after a step, never half of it. Tables (``docs/perso-engine.md``): ``records`` (one row
per input record: status pending | in_progress | done | failed | rejected, attempts, the card that
holds it, the masked PAN, the reason), ``cards`` (one row per card a station used: image or
reader, its CIN and CPLC hash, status claimed | in_use | personalized | spoiled | unusable, the
record it holds), ``attempts`` (one row per record started on a card, its outcome and stage
times), ``audit`` and ``meta``.

Invariants (checked by :meth:`JobDb.check`): every record has exactly one status; a done record
names a card whose status is personalized and which names it back; no card holds two records; an
in-progress record has exactly one open attempt; only open attempts have no outcome.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardlab.personalizer import audit
from cardlab.personalizer.batch import (CardPersoData, iter_lines, iter_rejections, manifest_mismatch, read_card_at,
                                       sha256_file)
from cardlab.personalizer.jobstore import JobStoreError, PostgresStore, SqliteStore, Store, is_postgres, schema_for
from cardlab.personalizer.masking import redact_pans

STATUSES = ("pending", "in_progress", "done", "failed", "rejected")
CARD_STATUSES = ("claimed", "in_use", "personalized", "spoiled", "unusable")



class JobDbError(RuntimeError):
    pass


def station_name(k: int) -> str:
    """Station ``k``'s name in the job database. Unique on one machine; with a shared job store
    (PostgreSQL) unique across machines too: host and process id first."""
    return f"{socket.gethostname()}:{os.getpid()}:station-{k}"


def safe_reason(text: str, limit: int = 300) -> str:
    """A failure reason fit for the database, the audit log and the screen:
    card numbers masked, one line, bounded length."""
    one_line = " ".join(redact_pans(str(text)).split())
    return one_line[:limit]


#: attempts a record gets on cards that refused it or faults before it fails
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Claim:
    """A record a station is about to write to a card."""

    record_index: int
    card_id: str
    pan_masked: str
    attempt: int
    card: int
    offset: int


@dataclass(frozen=True)
class OpenAttempt:
    """An attempt left running by a crashed run."""

    attempt: int
    record_index: int
    card_id: str
    pan_masked: str
    card: int
    kind: str
    location: str
    cin: str | None
    cplc_hash: str | None
    station: str
    offset: int


class JobDb:
    """One process's connection to the batch job database (SQLite file or PostgreSQL schema,
    :mod:`cardlab.personalizer.jobstore`). ``batch``: the batch directory (where ``cards.jsonl`` is);
    default the database file's directory."""

    def __init__(self, path: str | Path | Store, *, timeout: float = 60.0, batch: Path | None = None) -> None:
        if isinstance(path, Store):
            self.store = path
        else:
            self.store = SqliteStore(str(path), timeout=timeout)
            batch = batch or Path(path).parent
        self.batch = batch
        self.path = Path(self.store.where)
        #: a commit without its own sync since the last durable one (:meth:`close` syncs it)
        self._unsynced = False
        #: statements go through the store (kept under this name for callers that query directly)
        self.db = self.store

    @property
    def shared(self) -> bool:
        """Whether stations of other machines (and runs) use this job store at the same time."""
        return self.store.dialect == "postgresql"

    def close(self) -> None:
        """Close the store; a commit made without its own sync (``durable=False``) since the last
        durable one is made durable first: one durable write, whose sync covers the commits before it."""
        try:
            if self._unsynced:
                with self.transaction() as db:
                    db.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
        except Exception:  # noqa: BLE001, S110 - the store failed: its own error was raised already
            pass
        finally:
            self.store.close()

    def __enter__(self) -> JobDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Store]:
        """One write transaction (rolled back on any exception), :meth:`.jobstore.Store.transaction`;
        one not ``durable`` is remembered, for :meth:`close` to sync."""
        with self.store.transaction(durable) as db:
            yield db
        self._unsynced = not durable

    # -- meta ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_meta(db: Store, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- loading ------------------------------------------------------------------
    def load_batch(self, batch: Path) -> bool:
        """Fill the records table from ``cards.jsonl`` and ``rejected.jsonl``
        (once: one transaction with its audit entries). Returns ``False`` when
        the batch was already loaded; :class:`JobDbError` when the batch
        changed since.

        With a shared job store the first run loads each record's sealed card data into it; a
        station on another machine then needs the batch directory without ``cards.jsonl``
        (manifest, script, profile): it reads only the records it claims."""
        cards_path = batch / "cards.jsonl"
        rejected_path = batch / "rejected.jsonl"
        if not cards_path.exists() and self.store.holds_card_data:
            from cardlab.personalizer.batch import read_manifest

            digest = str(read_manifest(batch).get("cards_sha256") or "")
            if self.meta("cards_sha256") == digest:
                return False
            raise JobDbError(f"{batch}: no cards.jsonl, and the job store {self.store.where} does not hold this "
                             "batch yet: the first run on a batch needs the whole batch directory")
        digest = sha256_file(cards_path)
        rejected_digest = sha256_file(rejected_path) if rejected_path.exists() else ""

        def already() -> bool:
            loaded = self.meta("cards_sha256")
            if loaded is None:
                return False
            if loaded != digest or (self.meta("rejected_sha256") or "") != rejected_digest:
                raise JobDbError(
                    f"{batch}: cards.jsonl or rejected.jsonl changed since the job database was made; "
                    "refusing to mix two batches"
                )
            return True

        if already():
            return False
        problem = manifest_mismatch(batch, digest, rejected_digest)
        if problem:
            raise JobDbError(problem)
        stamp = audit.now()
        keep_data = self.store.holds_card_data
        with self.transaction() as db:
            db.lock_chain()  # a second station loading at the same moment waits here, then finds it loaded
            if already():
                return False
            accepted = 0
            for offset, line in iter_lines(cards_path):
                card = CardPersoData.from_json(json.loads(line))
                db.execute(
                    'INSERT INTO records (record_index, card_id, pan_masked, status, "offset", data, updated) '
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                    (card.record_index, card.card_id, card.pan_masked, offset,
                     line.decode().strip() if keep_data else None, stamp),
                )
                accepted += 1
            rejected = 0
            for rej in iter_rejections(batch):
                reason = safe_reason(f"{rej.field}: {rej.message}")
                db.execute(
                    "INSERT INTO records (record_index, card_id, pan_masked, status, reason, updated) "
                    "VALUES (?, NULL, ?, 'rejected', ?, ?)",
                    (rej.record_index, safe_reason(rej.record_id, 40), reason, stamp),
                )
                audit.append(db, "reject", {"record": rej.record_index, "id": safe_reason(rej.record_id, 40),
                                            "reason": reason})
                rejected += 1
            self._set_meta(db, "cards_sha256", digest)
            self._set_meta(db, "rejected_sha256", rejected_digest)
            self._set_meta(db, "input_count", str(accepted + rejected))
            audit.append(db, "load", {"batch": batch.name, "cards_sha256": digest, "accepted": accepted,
                                      "rejected": rejected})
        return True

    def card_data(self, record_index: int, offset: int) -> CardPersoData:
        """The sealed card data of one record: from the job store where it holds it, else from the
        batch's ``cards.jsonl`` at the record's offset."""
        if self.store.holds_card_data:
            row = self.db.execute("SELECT data FROM records WHERE record_index = ?", (record_index,)).fetchone()
            if row is None or row[0] is None:
                raise JobDbError(f"record {record_index}: no card data in the job store")
            return CardPersoData.from_json(json.loads(str(row[0])))
        if self.batch is None:
            raise JobDbError("no batch directory to read the card data from")
        return read_card_at(self.batch, offset)

    # -- stations -----------------------------------------------------------------
    def image_used(self, path: str) -> bool:
        """Whether a station has claimed the card image ``path`` (in this batch)."""
        row = self.db.execute("SELECT 1 FROM cards WHERE kind = 'image' AND location = ?", (path,)).fetchone()
        return row is not None

    def claim_image(self, station: str, images: Iterable[str],
                    reserve: Callable[[str], bool] = lambda path: True) -> tuple[int, str] | None:  # fmt: skip
        """Reserve the first image of ``images`` no station has used yet and ``reserve`` grants
        (the stock's own claim, shared by every batch: :func:`cardlab.personalizer.stock.reserve`).
        One indexed lookup per image passed over: a caller that remembers where its last claim was
        keeps a big stock linear, see ``ImageSource``.

        Not a durable commit: nothing is written to the card before :meth:`start`, whose durable
        commit makes this one durable too; a power cut in between loses only the claim, and the
        image (its stock marker still this batch's) is claimed again."""
        with self.transaction(durable=False) as db:
            for path in images:
                if not self.image_used(path) and reserve(path):
                    # another machine's station may claim the same image at the same moment: the
                    # unique location decides, the loser goes on to the next image
                    row = db.execute(
                        "INSERT INTO cards (kind, location, status, station, updated) VALUES ('image', ?, 'claimed', ?, ?) "
                        "ON CONFLICT DO NOTHING RETURNING id",
                        (path, station, audit.now()),
                    ).fetchone()
                    if row is not None:
                        return int(row[0]), path
        return None

    def known_card(self, cin: str, cplc_hash: str) -> tuple[int, str] | None:
        row = self.db.execute(
            "SELECT id, status FROM cards WHERE cin = ? AND cplc_hash = ?", (cin, cplc_hash)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def pending_left(self) -> bool:
        return self.db.execute("SELECT 1 FROM records WHERE status = 'pending' LIMIT 1").fetchone() is not None

    def start(
        self, station: str, kind: str, location: str, cin: str, cplc_hash: str, card: int | None = None
    ) -> Claim | None:
        """Take the next pending record for the card ``cin``: record →
        in_progress, card → in_use, a new attempt, an audit entry — one
        transaction, committed before the first APDU that writes the card.
        ``None`` when no record is pending (a claimed image is released)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT record_index, card_id, pan_masked, \"offset\" FROM records WHERE status = 'pending' "
                "ORDER BY record_index LIMIT 1" + self.store.claim_lock
            ).fetchone()
            if row is None:
                if card is not None:
                    db.execute("DELETE FROM cards WHERE id = ? AND status = 'claimed'", (card,))
                return None
            index, card_id, pan_masked = int(row[0]), str(row[1]), str(row[2])
            stamp = audit.now()
            if card is None:
                card = int(db.execute(
                    "INSERT INTO cards (kind, location, cin, cplc_hash, status, record_index, station, updated) "
                    "VALUES (?, ?, ?, ?, 'in_use', ?, ?, ?) RETURNING id",
                    (kind, location, cin, cplc_hash, index, station, stamp),
                ).fetchone()[0])
            else:
                db.execute(
                    "UPDATE cards SET cin = ?, cplc_hash = ?, status = 'in_use', record_index = ?, station = ?, "
                    "updated = ? WHERE id = ? AND status = 'claimed'",
                    (cin, cplc_hash, index, station, stamp, card),
                )
            db.execute(
                "UPDATE records SET status = 'in_progress', attempts = attempts + 1, card = ?, updated = ? "
                "WHERE record_index = ? AND status = 'pending'",
                (card, stamp, index),
            )
            attempt = int(db.execute(
                "INSERT INTO attempts (record_index, card, station, started) VALUES (?, ?, ?, ?) RETURNING id",
                (index, card, station, stamp),
            ).fetchone()[0])
            audit.append(db, "card start", {"record": index, "card_id": card_id, "pan": pan_masked,
                                            "station": station, "card": location, "cin": cin,
                                            "cplc_sha256": cplc_hash, "attempt": attempt})
            return Claim(index, card_id, pan_masked, attempt, card, int(row[3]))

    def release_card(self, card: int, status: str = "unusable", reason: str = "") -> None:
        """A claimed card that will not be used (mark it, so no station picks it again)."""
        with self.transaction() as db:
            db.execute("UPDATE cards SET status = ?, reason = ?, updated = ? WHERE id = ? AND status = 'claimed'",
                       (status, safe_reason(reason), audit.now(), card))
            audit.append(db, "card refused", {"card": card, "reason": safe_reason(reason)})

    def finish(
        self,
        claim: Claim,
        outcome: str,
        reason: str = "",
        stages: Sequence[tuple[str, float]] = (),
        *,
        station: str = "",
        durable: bool = True,
    ) -> None:
        """Close an attempt (the stage entries and the result go to the audit log in the same
        transaction). Not ``durable`` (an image, synced before this, that reconciliation can read
        again after a power cut): no sync of its own; the next :meth:`start` or :meth:`close` syncs it.

        * ``done`` — record done, card personalized;
        * ``failed`` — the record's own data was refused: record failed, card spoiled;
        * ``refused`` — the card refused before it accepted any data (wrong keys, not blank):
          the record goes back to pending for another card, the card is set aside (``unusable``,
          never claimed again) — it holds nothing to spoil;
        * ``fault`` — the reader or the card went away after the card accepted data: the record
          goes back to pending, the card (which may hold some of it) is spoiled;
        * ``untouched`` — the reader or the card went away before any command that writes was
          sent: the record goes back to pending and the card is free again (it holds nothing);
          this attempt does not count towards failing the record.

        A record refused or faulted :data:`MAX_ATTEMPTS` times fails, with its last reason."""
        if outcome not in ("done", "failed", "refused", "fault", "untouched"):
            raise ValueError(outcome)
        reason = safe_reason(reason)
        stamp = audit.now()
        if outcome in ("refused", "fault"):
            (tries,) = self.db.execute("SELECT attempts FROM records WHERE record_index = ?",
                                       (claim.record_index,)).fetchone()  # fmt: skip
            if int(tries) >= MAX_ATTEMPTS:
                card_status = "unusable" if outcome == "refused" else "spoiled"
                return self._finish(claim, "failed", safe_reason(f"{reason} (after {tries} attempts)"), stages,
                                    station, stamp, card_status)  # fmt: skip
        self._finish(claim, outcome, reason, stages, station, stamp, None, durable)

    def _finish(self, claim: Claim, outcome: str, reason: str, stages: Sequence[tuple[str, float]], station: str,
                stamp: str, card_status: str | None, durable: bool = True) -> None:
        record_status = {"done": "done", "failed": "failed"}.get(outcome, "pending")
        # the attempt's outcome in the words reconciliation uses: the card untouched (redo) or spoiled
        attempt_outcome = {"refused": "redo", "fault": "spoiled", "untouched": "redo"}.get(outcome, outcome)
        card_status = card_status or {"done": "personalized", "refused": "unusable"}.get(outcome, "spoiled")
        with self.transaction(durable) as db:
            if stages:  # one entry with the card's stages in order, [name, ms] each
                audit.append(db, "stages", {"record": claim.record_index, "attempt": claim.attempt,
                                            "stages": [[safe_reason(name, 80), round(seconds * 1000, 3)]
                                                       for name, seconds in stages]})
            db.execute(
                "UPDATE attempts SET ended = ?, outcome = ?, reason = ?, stages = ? WHERE id = ? AND outcome IS NULL",
                (stamp, attempt_outcome, reason or None, json.dumps([[n, round(s, 6)] for n, s in stages]),
                 claim.attempt),
            )
            db.execute(
                "UPDATE records SET status = ?, reason = ?, updated = ?, card = CASE WHEN ? = 'pending' THEN NULL "
                "ELSE card END WHERE record_index = ? AND status = 'in_progress'",
                (record_status, reason or None, stamp, record_status, claim.record_index),
            )
            db.execute(
                "UPDATE cards SET status = ?, reason = ?, updated = ?, "
                "record_index = CASE WHEN ? = 'pending' THEN NULL ELSE record_index END WHERE id = ?",
                (card_status, reason or None, stamp, record_status, claim.card),
            )
            if outcome == "untouched":  # nothing was written: the card is free again, the try not counted
                self._free_card(db, claim.card, f"nothing written before the fault: {reason}")
                db.execute("UPDATE records SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                           "WHERE record_index = ?",
                           (claim.record_index,))
            event = "card fault" if outcome == "untouched" else "card " + outcome
            audit.append(db, event, {"record": claim.record_index, "card_id": claim.card_id, "pan": claim.pan_masked,
                                     "attempt": claim.attempt, "station": station, "reason": reason})

    # -- reconciliation ---------------------------------------------------------
    def open_attempts(self) -> list[OpenAttempt]:
        rows = self.db.execute(
            "SELECT a.id, a.record_index, r.card_id, r.pan_masked, c.id, c.kind, c.location, c.cin, c.cplc_hash, "
            "a.station, r.\"offset\" FROM attempts a JOIN records r ON r.record_index = a.record_index "
            "JOIN cards c ON c.id = a.card WHERE a.outcome IS NULL ORDER BY a.id"
        ).fetchall()
        return [OpenAttempt(int(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]), str(r[6]),
                            r[7], r[8], str(r[9]), int(r[10])) for r in rows]

    def resolve(self, att: OpenAttempt, decision: str, reason: str, card_status: str | None = None) -> None:
        """Settle an attempt a crash left open, from what the card showed.

        ``done``: record done, card personalized. ``failed``: record failed,
        card spoiled (or ``card_status``). ``redo``: the card is untouched —
        the record goes back to pending and the card is released (it is
        still blank). ``spoiled``: the card was rolled back and is not
        reused; the record goes back to pending for a fresh card.
        """
        reason = safe_reason(reason)
        stamp = audit.now()
        record_status, default_card = {
            "done": ("done", "personalized"),
            "failed": ("failed", "spoiled"),
            "redo": ("pending", ""),
            "spoiled": ("pending", "spoiled"),
        }[decision]
        with self.transaction() as db:
            db.execute("UPDATE attempts SET ended = ?, outcome = ?, reason = ? WHERE id = ? AND outcome IS NULL",
                       (stamp, decision, reason, att.attempt))
            db.execute("UPDATE records SET status = ?, reason = ?, updated = ?, card = ? "
                       "WHERE record_index = ? AND status = 'in_progress'",
                       (record_status, None if record_status == "pending" else reason, stamp,
                        None if record_status == "pending" else att.card, att.record_index))
            if decision == "redo":
                # the card holds nothing of the record: it may be used again
                self._free_card(db, att.card, reason)
            else:
                status = card_status or default_card
                db.execute("UPDATE cards SET status = ?, reason = ?, updated = ?, "
                           "record_index = CASE WHEN ? = 'pending' THEN NULL ELSE record_index END WHERE id = ?",
                           (status, reason, stamp, record_status, att.card))
            audit.append(db, "reconcile", {"record": att.record_index, "card_id": att.card_id, "pan": att.pan_masked,
                                           "attempt": att.attempt, "card": att.location, "decision": decision,
                                           "reason": reason})

    @staticmethod
    def _free_card(db: Store, card: int, reason: str) -> None:
        """A card that holds nothing: keep the row (attempts point to it) but
        under a free identity, so the image or physical card can be claimed
        again by its location / CIN."""
        db.execute("UPDATE cards SET status = 'unusable', record_index = NULL, cin = NULL, cplc_hash = NULL, "
                   "location = location || '#released-' || id, reason = ?, updated = ? WHERE id = ?",
                   (reason, audit.now(), card))

    def forget_claims(self) -> int:
        """Claimed images no record was started on (a crash between the
        claim and the start): free them. With a shared job store, only those of stations that are
        no longer running (a live station is between its claim and its start)."""
        with self.transaction() as db:
            if not self.shared:
                cur = db.execute("DELETE FROM cards WHERE status = 'claimed' AND id NOT IN (SELECT card FROM attempts)")
                return cur.rowcount
            rows = db.execute("SELECT id, station FROM cards WHERE status = 'claimed' "
                              "AND id NOT IN (SELECT card FROM attempts)").fetchall()
            dead = [int(i) for i, station in rows if not self.store.station_alive(str(station or ""))]
            for card in dead:
                db.execute("DELETE FROM cards WHERE id = ? AND status = 'claimed'", (card,))
            return len(dead)

    def hold_station(self, station: str) -> None:
        """Mark this connection as station ``station``'s for its life (shared job store only:
        :meth:`station_alive` asks it of the other stations)."""
        if isinstance(self.store, PostgresStore):
            self.store.hold_station(station)

    def station_alive(self, station: str) -> bool:
        return self.store.station_alive(station)

    # -- reports ----------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM records GROUP BY status"):
            out[str(status)] = int(n)
        return out

    def input_count(self) -> int:
        value = self.meta("input_count")
        return int(value) if value is not None else 0

    def unaccounted(self) -> list[tuple[int, str, str]]:
        """Records neither done, failed nor rejected: (index, card_id, status)."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self.db.execute(
            "SELECT record_index, card_id, status FROM records WHERE status IN ('pending','in_progress') "
            "ORDER BY record_index")]

    def retry(self, records: Sequence[int] | None, reason: str) -> list[int]:
        """Put failed records back to pending (``None``: every failed record), each with an audit
        entry naming ``reason``; their spoiled cards stay spoiled. Returns the records re-queued."""
        reason = safe_reason(reason)
        with self.transaction() as db:
            failed = [int(i) for (i,) in db.execute("SELECT record_index FROM records WHERE status = 'failed' "
                                                     "ORDER BY record_index")]  # fmt: skip
            chosen = failed if records is None else [i for i in records if i in failed]
            stamp = audit.now()
            for index in chosen:
                # the spoiled card keeps its status and reason but no longer stands for the record
                db.execute("UPDATE cards SET record_index = NULL, updated = ? WHERE record_index = ?", (stamp, index))
                db.execute("UPDATE records SET status = 'pending', card = NULL, attempts = 0, reason = NULL, "
                           "updated = ? WHERE record_index = ?", (stamp, index))  # fmt: skip
                audit.append(db, "retry", {"record": index, "reason": reason})
        return chosen

    def set_aside(self) -> list[tuple[str, str, str]]:
        """Cards set aside or spoiled: (location, status, reason), oldest first (not those released blank)."""
        rows = self.db.execute("SELECT location, status, reason FROM cards WHERE status IN ('unusable', 'spoiled') "
                               "AND reason IS NOT NULL AND location NOT LIKE '%#released-%' ORDER BY id").fetchall()
        return [(str(loc).partition("#released-")[0], str(st), str(why)) for loc, st, why in rows]

    def failures(self) -> list[tuple[int, str, str, str]]:
        return [(int(r[0]), str(r[1] or ""), str(r[2]), str(r[3] or "")) for r in self.db.execute(
            "SELECT record_index, card_id, pan_masked, reason FROM records WHERE status = 'failed' ORDER BY record_index")]

    def stage_summary(self) -> list[tuple[str, int, float]]:
        """(stage, count, total seconds) over every finished attempt."""
        totals: dict[str, list[float]] = {}
        for (text,) in self.db.execute("SELECT stages FROM attempts WHERE stages IS NOT NULL"):
            for name, seconds in json.loads(text):
                t = totals.setdefault(str(name), [0, 0.0])
                t[0] += 1
                t[1] += float(seconds)
        return [(name, int(t[0]), t[1]) for name, t in totals.items()]

    def check(self) -> list[str]:
        """The invariants of the module docstring; an empty list when they hold."""
        problems: list[str] = []
        q = self.db.execute
        for (idx,) in q("SELECT r.record_index FROM records r LEFT JOIN cards c ON c.id = r.card "
                        "WHERE r.status = 'done' AND (c.id IS NULL OR c.status != 'personalized' "
                        "OR c.record_index != r.record_index)"):
            problems.append(f"record {idx} done but its card does not hold it")
        for (cid, idx) in q("SELECT c.id, c.record_index FROM cards c LEFT JOIN records r "
                            "ON r.record_index = c.record_index WHERE c.status = 'personalized' "
                            "AND (r.status IS NULL OR r.status != 'done' OR r.card != c.id)"):
            problems.append(f"card {cid} personalized with record {idx}, which is not done on it")
        for (cid, n) in q("SELECT card, COUNT(*) FROM records WHERE status IN ('done','in_progress') "
                          "AND card IS NOT NULL GROUP BY card HAVING COUNT(*) > 1"):
            problems.append(f"card {cid} holds {n} records")
        for (idx, n) in q("SELECT r.record_index, COUNT(a.id) FROM records r LEFT JOIN attempts a "
                          "ON a.record_index = r.record_index AND a.outcome IS NULL "
                          "WHERE r.status = 'in_progress' GROUP BY r.record_index HAVING COUNT(a.id) != 1"):
            problems.append(f"record {idx} in progress with {n} open attempts")
        for (idx,) in q("SELECT a.record_index FROM attempts a JOIN records r ON r.record_index = a.record_index "
                        "WHERE a.outcome IS NULL AND r.status != 'in_progress'"):
            problems.append(f"record {idx} has an open attempt but is not in progress")
        for (idx, n) in q("SELECT record_index, COUNT(*) FROM attempts WHERE outcome = 'done' "
                          "GROUP BY record_index HAVING COUNT(*) > 1"):
            problems.append(f"record {idx} personalized {n} times")
        total = sum(self.counts().values())
        if self.meta("input_count") is not None and total != self.input_count():
            problems.append(f"{total} records in the database, {self.input_count()} in the input")
        return problems

    def summary(self) -> Mapping[str, Any]:
        c = self.counts()
        return {"input": self.input_count(), **c}


def open_jobdb(batch: Path, jobs: str | None = None, *, station: str | None = None,
               application: str = "cardlab") -> JobDb:
    """The job database of ``batch``: ``BATCH/jobs.sqlite`` (``jobs`` None or empty) or the batch's
    schema on the PostgreSQL server ``jobs`` (``postgresql://…``). ``station``: this connection is that
    station's for its life (shared store: other runs see it alive)."""
    if not jobs:
        return JobDb(batch / "jobs.sqlite", batch=batch)
    if not is_postgres(jobs):
        raise JobDbError(f"--jobs: {jobs.split('://')[0]}: not a job store address (postgresql://USER@HOST/DB)")
    from cardlab.personalizer.batch import read_manifest

    digest = str(read_manifest(batch).get("cards_sha256") or "")
    if not digest and (batch / "cards.jsonl").exists():
        digest = sha256_file(batch / "cards.jsonl")
    try:
        store = PostgresStore(jobs, schema_for(digest), application=station or application)
    except JobStoreError as exc:
        raise JobDbError(str(exc)) from None
    db = JobDb(store, batch=batch)
    if station:
        try:
            db.hold_station(station)
        except JobStoreError as exc:
            db.close()
            raise JobDbError(str(exc)) from None
    return db

