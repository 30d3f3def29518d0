"""The batch audit log: a SHA-256 hash chain in the job database.

Every event of a batch (load, reject, card start, each stage, result,
reconciliation) is one row of the ``audit`` table::

    seq INTEGER PRIMARY KEY, time TEXT, event TEXT, details TEXT (JSON),
    prev TEXT (hex), hash TEXT (hex)

with ``hash = SHA-256(prev ‖ canonical entry)`` where ``prev`` is the previous
entry's hash (32 zero bytes for the first entry) and the canonical entry is the
JSON object ``{"details", "event", "seq", "time"}`` with sorted keys, no
spaces, UTF-8. The last sequence number and hash are also kept in the
``meta`` table (``audit_head``), updated in the same transaction, so that
removing entries at the end is noticed too.

Details are masked by the caller (masked PANs, CIN, hashes, SWs) and checked
here once more: :func:`append` refuses any value that looks like a full PAN.

:func:`verify` walks the chain and names every problem: an altered entry
(its hash does not match its content), a removed entry (the chain breaks or a
sequence number is missing), a reordered entry (it verifies, but under another
position than the one it now has) and a truncated chain (the head no longer
matches).

>>> import sqlite3
>>> db = sqlite3.connect(":memory:", isolation_level=None)
>>> create_tables(db)
>>> for i in range(3):
...     _ = append(db, "test", {"n": i})
>>> verify(db).ok
True
>>> _ = db.execute("UPDATE audit SET details = '{\\"n\\":7}' WHERE seq = 2")
>>> verify(db).problems
['entry 2 (test) altered: its hash does not match its content']
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "00" * 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY,
    time    TEXT NOT NULL,
    event   TEXT NOT NULL,
    details TEXT NOT NULL,
    prev    TEXT NOT NULL,
    hash    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_FULL_PAN = re.compile(r"(?<![0-9A-Fa-f])\d{12,19}(?![0-9A-Fa-f])")


class AuditError(ValueError):
    """An audit entry that must not be written (it would leak a secret)."""


def create_tables(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)


def now() -> str:
    """UTC time with milliseconds, ISO 8601."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def canonical(seq: int, when: str, event: str, details: str) -> bytes:
    """The bytes an entry's hash covers (besides ``prev``)."""
    doc = {"details": json.loads(details), "event": event, "seq": seq, "time": when}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev: str, seq: int, when: str, event: str, details: str) -> str:
    """``SHA-256(prev ‖ canonical entry)`` in hex (``prev`` as its 32 bytes)."""
    return hashlib.sha256(bytes.fromhex(prev) + canonical(seq, when, event, details)).hexdigest()


def _check_masked(value: Any, path: str) -> None:
    if isinstance(value, str):
        if _FULL_PAN.search(value):
            raise AuditError(f"audit detail {path} holds an unmasked card number")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_masked(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_masked(v, f"{path}[{i}]")


def append(db: sqlite3.Connection, event: str, details: Mapping[str, Any]) -> int:
    """Append one entry; returns its sequence number.

    Must run inside a write transaction (``BEGIN IMMEDIATE``) when several
    processes share the database, so that two writers never chain to the same
    predecessor; it works in autocommit mode for a single writer.
    """
    _check_masked(dict(details), "details")
    text = json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, GENESIS) if row is None else (int(row[0]) + 1, str(row[1]))
    when = now()
    digest = entry_hash(prev, seq, when, event, text)
    db.execute(
        "INSERT INTO audit (seq, time, event, details, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, when, event, text, prev, digest),
    )
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"{seq}:{digest}",),
    )
    return seq


@dataclass(frozen=True)
class _Row:
    seq: int
    time: str
    event: str
    details: str
    prev: str
    hash: str

    def hash_as(self, seq: int) -> str:
        try:
            return entry_hash(self.prev, seq, self.time, self.event, self.details)
        except (ValueError, json.JSONDecodeError):
            return ""


@dataclass
class Verification:
    entries: int = 0
    head: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(db: sqlite3.Connection) -> Verification:
    """Check the whole chain; every problem is named with the entry it concerns."""
    rows = [_Row(*r) for r in db.execute("SELECT seq, time, event, details, prev, hash FROM audit ORDER BY seq")]
    result = Verification(entries=len(rows), head=rows[-1].hash if rows else GENESIS)
    problems = result.problems
    by_prev: dict[str, list[_Row]] = {}
    for r in rows:
        by_prev.setdefault(r.prev, []).append(r)
    known = {r.hash for r in rows}

    # 1. walk the chain from the genesis by the prev links: the position an
    #    entry has in the walk is the sequence number it was written with
    original: dict[int, int] = {}  # stored seq -> position in the chain
    visited: set[int] = set()
    position = 0
    current = GENESIS
    starts = [current] + sorted({r.prev for r in rows if r.prev not in known and r.prev != GENESIS})
    for start_index, start in enumerate(starts):
        current = start
        if start_index:  # the chain broke: entries before this one are missing
            first = by_prev[start][0]
            problems.append(
                f"entry {first.seq} ({first.event}): the entry it was chained to is missing "
                f"(an entry was removed before it, or its predecessor was rewritten)"
            )
            # its position is unknown; assume its stored place
            position = first.seq - 1
        while current in by_prev:
            candidates = [r for r in by_prev[current] if r.seq not in visited]
            if not candidates:
                break
            row = candidates[0]
            if len(candidates) > 1:
                problems.append(f"entries {', '.join(str(c.seq) for c in candidates)} chain to the same predecessor")
            position += 1
            visited.add(row.seq)
            original[row.seq] = position
            current = row.hash
    for r in rows:
        if r.seq not in visited:
            problems.append(f"entry {r.seq} ({r.event}) is not part of the chain")

    # 2. each entry's own hash, under the position the chain gives it
    for r in rows:
        pos = original.get(r.seq, r.seq)
        if r.hash_as(r.seq) == r.hash:
            continue
        if pos != r.seq and r.hash_as(pos) == r.hash:
            problems.append(f"entry {r.seq} ({r.event}) reordered: it was written as entry {pos}")
        else:
            problems.append(f"entry {r.seq} ({r.event}) altered: its hash does not match its content")

    # 3. sequence numbers: gaps mean removed entries
    expected = 1
    for r in rows:
        if r.seq > expected:
            missing = f"{expected}" if r.seq == expected + 1 else f"{expected}-{r.seq - 1}"
            problems.append(f"entry {missing} removed (sequence jumps to {r.seq})")
        expected = r.seq + 1

    # 4. the head: removing the last entries leaves a valid but shorter chain
    head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if head is not None:
        seq_text, _, digest = str(head[0]).partition(":")
        last = rows[-1] if rows else None
        if last is None or int(seq_text) != last.seq or digest != last.hash:
            if last is None or int(seq_text) > last.seq:
                problems.append(f"entries after {last.seq if last else 0} removed (the head was entry {seq_text})")
            else:
                problems.append(f"the recorded head (entry {seq_text}) does not match the last entry {last.seq}")
    elif rows:
        problems.append("the audit head is missing")
    return result
