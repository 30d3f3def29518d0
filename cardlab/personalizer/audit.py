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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class _Rows(Protocol):
    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the chain needs of a database: a SQLite connection, or a job store
    (:mod:`cardlab.personalizer.jobstore`, which speaks ``?`` placeholders to PostgreSQL too)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> _Rows: ...


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


def _canonical_of_own(seq: int, when: str, event: str, text: str) -> bytes:
    """:func:`canonical` of an entry whose ``text`` this module just wrote (already sorted, compact
    JSON): the same bytes, put together without parsing ``text`` again."""
    return ('{"details":' + text + ',"event":' + json.dumps(event, ensure_ascii=False) + ',"seq":' + str(seq)
            + ',"time":' + json.dumps(when, ensure_ascii=False) + "}").encode()


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


def append(db: Connection, event: str, details: Mapping[str, Any]) -> int:
    """Append one entry; returns its sequence number.

    Must run inside a write transaction when several processes share the database, so that two
    writers never chain to the same predecessor: SQLite's ``BEGIN IMMEDIATE`` makes the
    transaction the only writer; on PostgreSQL the store's :meth:`lock_chain` (a transaction-level
    advisory lock, released at commit) does. It works in autocommit mode for a single writer.
    """
    return append_many(db, [(event, details)])


def append_many(db: Connection, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> int:
    """Append ``entries`` (event, details) in order, each chained to the one before exactly as
    :func:`append` would, reading the chain's head once and moving it once (a card's stage
    entries: one read and one head update instead of one per stage). Returns the last sequence
    number (0 when ``entries`` is empty). The same transaction rules as :func:`append` apply."""
    if not entries:
        return 0
    texts = []
    for event, details in entries:
        _check_masked(dict(details), "details")
        texts.append((event, json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=False)))
    lock_chain = getattr(db, "lock_chain", None)  # a store that serializes appends itself
    if lock_chain is not None:  # many writers (PostgreSQL): one append at a time, to commit
        lock_chain()
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
    when = now()
    for event, text in texts:
        seq += 1
        digest = hashlib.sha256(bytes.fromhex(prev) + _canonical_of_own(seq, when, event, text)).hexdigest()
        db.execute(
            "INSERT INTO audit (seq, time, event, details, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, when, event, text, prev, digest),
        )
        prev = digest
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"{seq}:{prev}",),
    )
    return seq


_SELECT_ROWS = "SELECT seq, time, event, details, prev, hash FROM audit ORDER BY seq"


def _hash_as(seq: int, when: str, event: str, details: str, prev: str) -> str:
    try:
        return entry_hash(prev, seq, when, event, details)
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


def _intact(db: Connection) -> Verification | None:
    """One streaming pass for the usual case, in constant memory: sequence numbers 1, 2, …, each
    entry chained to the one before and hashing to its stored hash, the head on the last entry.
    None when anything is off (then :func:`_diagnose` names what)."""
    expected, tip = 1, GENESIS
    for seq, when, event, details, prev, digest in db.execute(_SELECT_ROWS):
        if seq != expected or prev != tip or _hash_as(seq, when, event, details, prev) != digest:
            return None
        expected, tip = seq + 1, digest
    head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if (head is None) != (expected == 1) or (head is not None and str(head[0]) != f"{expected - 1}:{tip}"):
        return None
    return Verification(entries=expected - 1, head=tip)


def verify(db: Connection) -> Verification:
    """Check the whole chain; every problem is named with the entry it concerns.

    An intact chain is read once as a stream (memory does not grow with the log); a broken one is
    diagnosed from its links (sequence number, prev, hash: no entry bodies are held)."""
    return _intact(db) or _diagnose(db)


def _diagnose(db: Connection) -> Verification:
    # the links only: (seq, prev, hash, event) — event to name entries in problems
    links = [(int(r[0]), str(r[1]), str(r[2]), str(r[3]))
             for r in db.execute("SELECT seq, prev, hash, event FROM audit ORDER BY seq")]  # fmt: skip
    result = Verification(entries=len(links), head=links[-1][2] if links else GENESIS)
    problems = result.problems
    by_prev: dict[str, list[tuple[int, str, str, str]]] = {}
    for link in links:
        by_prev.setdefault(link[1], []).append(link)
    known = {link[2] for link in links}

    # 1. walk the chain from the genesis by the prev links: the position an
    #    entry has in the walk is the sequence number it was written with
    original: dict[int, int] = {}  # stored seq -> position in the chain
    visited: set[int] = set()
    position = 0
    current = GENESIS
    starts = [current] + sorted({link[1] for link in links if link[1] not in known and link[1] != GENESIS})
    for start_index, start in enumerate(starts):
        current = start
        if start_index:  # the chain broke: entries before this one are missing
            first_seq, _, _, first_event = by_prev[start][0]
            problems.append(
                f"entry {first_seq} ({first_event}): the entry it was chained to is missing "
                f"(an entry was removed before it, or its predecessor was rewritten)"
            )
            # its position is unknown; assume its stored place
            position = first_seq - 1
        while current in by_prev:
            candidates = [link for link in by_prev[current] if link[0] not in visited]
            if not candidates:
                break
            seq, _, digest, _ = candidates[0]
            if len(candidates) > 1:
                problems.append(f"entries {', '.join(str(c[0]) for c in candidates)} chain to the same predecessor")
            position += 1
            visited.add(seq)
            original[seq] = position
            current = digest
    for seq, _, _, event in links:
        if seq not in visited:
            problems.append(f"entry {seq} ({event}) is not part of the chain")

    # 2. each entry's own hash, under the position the chain gives it (entry bodies streamed)
    for seq, when, event, details, prev, digest in db.execute(_SELECT_ROWS):
        pos = original.get(seq, seq)
        if _hash_as(seq, when, event, details, prev) == digest:
            continue
        if pos != seq and _hash_as(pos, when, event, details, prev) == digest:
            problems.append(f"entry {seq} ({event}) reordered: it was written as entry {pos}")
        else:
            problems.append(f"entry {seq} ({event}) altered: its hash does not match its content")

    # 3. sequence numbers: gaps mean removed entries
    expected = 1
    for seq, _, _, _ in links:
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}-{seq - 1}"
            problems.append(f"entry {missing} removed (sequence jumps to {seq})")
        expected = seq + 1

    # 4. the head: removing the last entries leaves a valid but shorter chain
    head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if head is not None:
        seq_text, _, digest = str(head[0]).partition(":")
        last_seq, last_hash = (links[-1][0], links[-1][2]) if links else (0, "")
        if not links or int(seq_text) != last_seq or digest != last_hash:
            if not links or int(seq_text) > last_seq:
                problems.append(f"entries after {last_seq} removed (the head was entry {seq_text})")
            else:
                problems.append(f"the recorded head (entry {seq_text}) does not match the last entry {last_seq}")
    elif links:
        problems.append("the audit head is missing")
    return result
