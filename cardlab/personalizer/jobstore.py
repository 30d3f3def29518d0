"""Where a batch's job database lives: SQLite in the batch directory, or a PostgreSQL server.

:class:`~cardlab.personalizer.jobdb.JobDb` writes one set of SQL statements (``?`` placeholders,
standard SQL both engines take); this module holds what differs between them:

=====================  ==========================================  ============================================
                       SQLite (default, ``BATCH/jobs.sqlite``)      PostgreSQL (``--jobs postgresql://…``)
=====================  ==========================================  ============================================
who shares it          the stations of one machine                  stations on any number of machines
batch                  the file                                     one schema per batch, named after the SHA-256
                                                                    of its ``cards.jsonl`` (``batch_<hex>``)
writes                 ``BEGIN IMMEDIATE``: one writer at a time    ``BEGIN`` (read committed) with row locks;
                                                                    a claim takes ``FOR UPDATE SKIP LOCKED``
audit chain            serialized by the write lock                 appends serialized by a transaction-level
                                                                    advisory lock (one chain per batch)
card data (sealed)     read from ``cards.jsonl`` at its offset      the claimed record's line from the database
a dead station         no other run while one holds the batch       its session advisory lock is gone: its open
                       lock; the next run reconciles                attempts are reconciled by the next station
                                                                    that can reach the card
=====================  ==========================================  ============================================

Schema changes are versioned (``meta.schema_version``, :data:`MIGRATIONS`), applied in order to an
older database by the first connection that sees it (under a lock in PostgreSQL).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .files import sync_path


class JobStoreError(RuntimeError):
    """The job store cannot be used (bad address, server gone, schema too new)."""


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def rowcount(self) -> int: ...


def masked_url(url: str) -> str:
    """A PostgreSQL address fit for messages: the password replaced by ``***``.

    >>> masked_url("postgresql://perso:s3cret@db.example:5432/jobs")
    'postgresql://perso:***@db.example:5432/jobs'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_postgres(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(("postgresql://", "postgres://"))


# -- the schema, per version ------------------------------------------------------------------------
# {serial}: an id the database assigns; {int}: a plain integer key. Both engines take the rest as is.
# records.card → cards.id is added after both tables exist (they name each other).
_V1 = [
    """CREATE TABLE IF NOT EXISTS records (
    record_index {int} PRIMARY KEY,
    card_id      TEXT UNIQUE,
    pan_masked   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending','in_progress','done','failed','rejected')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    card         {card_ref},
    reason       TEXT,
    "offset"     BIGINT,
    updated      TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS records_status ON records(status, record_index)",
    """CREATE TABLE IF NOT EXISTS cards (
    id           {serial},
    kind         TEXT NOT NULL CHECK (kind IN ('image','reader')),
    location     TEXT NOT NULL,
    cin          TEXT,
    cplc_hash    TEXT,
    status       TEXT NOT NULL CHECK (status IN ('claimed','in_use','personalized','spoiled','unusable')),
    record_index {int} UNIQUE REFERENCES records(record_index),
    reason       TEXT,
    station      TEXT,
    updated      TEXT NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS cards_image ON cards(location) WHERE kind = 'image'",
    "CREATE UNIQUE INDEX IF NOT EXISTS cards_identity ON cards(cin, cplc_hash) WHERE cin IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS attempts (
    id           {serial},
    record_index {int} NOT NULL REFERENCES records(record_index),
    card         {int} NOT NULL REFERENCES cards(id),
    station      TEXT NOT NULL,
    started      TEXT NOT NULL,
    ended        TEXT,
    outcome      TEXT CHECK (outcome IS NULL OR outcome IN ('done','failed','redo','spoiled')),
    reason       TEXT,
    stages       TEXT
)""",
    "CREATE INDEX IF NOT EXISTS attempts_open ON attempts(outcome, record_index)",
    """CREATE TABLE IF NOT EXISTS audit (
    seq     {int} PRIMARY KEY,
    time    TEXT NOT NULL,
    event   TEXT NOT NULL,
    details TEXT NOT NULL,
    prev    TEXT NOT NULL,
    hash    TEXT NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
#: version 2: each record's sealed card data in the database (filled where stations share no batch
#: directory, i.e. PostgreSQL), so a station reads only the record it claimed
_V2 = ["ALTER TABLE records ADD COLUMN data TEXT"]
MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1), (2, _V2)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class Store:
    """One connection, the statements of :mod:`cardlab.personalizer.jobdb` in this engine's dialect."""

    dialect = "abstract"
    #: appended to the SELECT that claims a pending record
    claim_lock = ""
    #: whether load_batch keeps each record's card data in the database
    holds_card_data = False
    #: for messages: where the job database is
    where = ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Store]:
        """One write transaction. ``durable=False``: its commit does not wait for the disk — the
        next durable commit of this connection makes it durable with it (the log is written in
        order), and a power cut before that loses it, never a later one."""
        raise NotImplementedError
        yield self  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    def lock_chain(self) -> None:
        """Inside a write transaction, before an audit entry is chained (nothing to do where the
        transaction is already the only writer)."""

    def station_alive(self, station: str) -> bool:
        """Whether a station of that name is running now (somewhere)."""
        return False

    @contextmanager
    def orphan(self, station: str) -> Iterator[bool]:
        """Hold a dead station's name while its open attempts are settled: yields ``False``
        when the station is alive (or another run is settling it)."""
        yield True

    def _migrate(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise JobStoreError(f"{self.where}: job database schema version {version} is newer than this "
                                f"cardlab's ({SCHEMA_VERSION}); upgrade cardlab")
        for number, statements in MIGRATIONS:
            if number <= version:
                continue
            with self.transaction():
                for stmt in statements:
                    self.execute(self._ddl(stmt))
                self.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(number),))

    def _ddl(self, stmt: str) -> str:
        raise NotImplementedError

    def _version(self) -> int:
        raise NotImplementedError


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str, *, timeout: float = 60.0) -> None:
        self.where = path
        self._file = os.path.abspath(path)  # the files synced after a durable commit, whatever the cwd later
        self.timeout = timeout
        self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._busy_ms = f"PRAGMA busy_timeout={int(timeout * 1000)}"
        self.db.execute(self._busy_ms)
        self._migrate()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(sql, tuple(params))

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Store]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any exception). The commit itself runs
        under ``synchronous=NORMAL`` (WAL: no fsync while the write lock is held); a ``durable`` one
        then syncs the WAL before this returns, after the lock is let go, so that another station
        writes while this one waits for the disk. A commit not ``durable`` is made durable by the
        next durable one (the WAL is synced as a whole)."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._begin_immediate()
            try:
                yield self
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            self.db.execute("PRAGMA synchronous=FULL")
        if durable:
            self._sync_wal()

    def _sync_wal(self) -> None:
        """fdatasync of the WAL, which holds every commit not yet checkpointed. The commits it does
        not hold any more are in the database file, which SQLite syncs when a checkpoint completes
        (and it syncs the WAL's header before reusing the file). Should the WAL be gone (SQLite
        removes it only when the last connection closes, after a checkpoint of everything), the
        database file is synced instead."""
        try:
            sync_path(self._file + "-wal", data_only=True)
        except FileNotFoundError:
            sync_path(self._file, data_only=True)

    def _begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE``, waiting for another station's write transaction in short steps
        (0.1 ms, doubling up to 5 ms) for up to :attr:`timeout` seconds. SQLite's own busy handler
        sleeps 1, 2, 5, 10 … ms between tries, while a station holds the lock for a fraction of a
        millisecond: with two stations it cost each card about a millisecond of sleep."""
        try:
            self.db.execute("PRAGMA busy_timeout=0")
            delay, deadline = 0.0001, 0.0
            while True:
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.timeout
                elif now >= deadline:
                    raise JobStoreError(f"the job database {self.where} stayed locked for {self.timeout:g} s")
                time.sleep(delay)
                delay = min(delay * 2, 0.005)
        finally:
            self.db.execute(self._busy_ms)

    def close(self) -> None:
        self.db.close()

    def _ddl(self, stmt: str) -> str:
        # INTEGER PRIMARY KEY is SQLite's rowid: ids are assigned by the database
        return stmt.format(serial="INTEGER PRIMARY KEY", int="INTEGER", card_ref="INTEGER REFERENCES cards(id)")

    def _version(self) -> int:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            return int(row[0])
        # a job database made before versions were kept: version 1 (records without data)
        return 1 if "records" in tables else 0


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for these names."""
    return int.from_bytes(hashlib.sha256("\x1f".join(("cardlab",) + parts).encode()).digest()[:8], "big",
                          signed=True)


_PLACEHOLDER = re.compile(r"\?")


class PostgresStore(Store):
    dialect = "postgresql"
    claim_lock = " FOR UPDATE SKIP LOCKED"
    holds_card_data = True

    def __init__(self, url: str, schema: str, *, application: str = "cardlab", connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the [postgres] extra is part of [dev]
            raise JobStoreError("--jobs postgresql://… needs psycopg: pip install 'cardlab[postgres]'") from None
        if not re.fullmatch(r"[a-z0-9_]{1,63}", schema):
            raise JobStoreError(f"bad schema name {schema!r}")
        self.url, self.schema = url, schema
        self.where = f"{masked_url(url)} (schema {schema})"
        self._psycopg = psycopg
        try:
            self.db = psycopg.connect(url, autocommit=True, application_name=application[:63],
                                      connect_timeout=max(1, int(connect_timeout)))
        except psycopg.Error as exc:
            raise JobStoreError(f"cannot reach the job store {masked_url(url)}: {_one_line(exc)}") from None
        self._held: set[int] = set()
        key = _lock_key("schema", schema)
        self._raw("SELECT pg_advisory_lock(%s)", (key,))
        try:
            self._raw(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._raw(f"SET search_path TO {schema}")
            self._migrate()
        finally:
            self._raw("SELECT pg_advisory_unlock(%s)", (key,))

    def _raw(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.db.execute(sql, tuple(params))
        except self._psycopg.OperationalError as exc:
            raise JobStoreError(f"lost the job store {self.where}: {_one_line(exc)}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        # our SQL says ? and means no %: psycopg says %s and needs a literal % doubled
        cur: Cursor = self._raw(_PLACEHOLDER.sub("%s", sql.replace("%", "%%")), params)
        return cur

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Store]:
        self._raw("BEGIN")
        if not durable:
            self._raw("SET LOCAL synchronous_commit TO OFF")  # flushed by the next synchronous commit
        try:
            yield self
        except BaseException:
            if not self.db.closed:
                try:
                    self.db.execute("ROLLBACK")
                except self._psycopg.Error:
                    pass
            raise
        self._raw("COMMIT")

    def close(self) -> None:
        self.db.close()

    def lock_chain(self) -> None:
        # released at COMMIT: entries are chained, and committed, one transaction at a time
        self._raw("SELECT pg_advisory_xact_lock(%s)", (_lock_key("audit", self.schema),))

    def hold_station(self, station: str) -> None:
        """Hold the station's name for this connection's life (a session advisory lock: the server
        lets it go when the connection ends — process killed, network cut, machine off)."""
        key = _lock_key("station", self.schema, station)
        (got,) = self._raw("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not got:
            raise JobStoreError(f"a station named {station!r} is already running on this batch")
        self._held.add(key)

    def station_alive(self, station: str) -> bool:
        key = _lock_key("station", self.schema, station)
        if key in self._held:
            return True
        (got,) = self._raw("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got:
            self._raw("SELECT pg_advisory_unlock(%s)", (key,))
        return not got

    @contextmanager
    def orphan(self, station: str) -> Iterator[bool]:
        key = _lock_key("station", self.schema, station)
        if key in self._held:
            yield False
            return
        (got,) = self._raw("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        try:
            yield bool(got)
        finally:
            if got and not self.db.closed:
                self._raw("SELECT pg_advisory_unlock(%s)", (key,))

    def _ddl(self, stmt: str) -> str:
        return stmt.format(serial="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", int="BIGINT",
                           card_ref="BIGINT")

    def _migrate(self) -> None:
        super()._migrate()
        # the reference records.card → cards.id, once both tables exist (version 1)
        row = self._raw("SELECT 1 FROM pg_constraint WHERE conname = 'records_card_fk' "
                        "AND connamespace = %s::regnamespace", (self.schema,)).fetchone()
        if row is None:
            self._raw("ALTER TABLE records ADD CONSTRAINT records_card_fk FOREIGN KEY (card) REFERENCES cards(id)")

    def _version(self) -> int:
        row = self._raw("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'meta'",
                        (self.schema,)).fetchone()
        if row is None:
            return 0
        row = self._raw("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return 0 if row is None else int(row[0])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def schema_for(cards_sha256: str) -> str:
    """The PostgreSQL schema of a batch: its ``cards.jsonl`` digest names it, so every station
    that holds the same batch meets in the same place, and a batch prepared again does not."""
    if not re.fullmatch(r"[0-9a-f]{64}", cards_sha256):
        raise JobStoreError("the batch has no cards.jsonl digest to name its job store by; prepare it again")
    return "batch_" + cards_sha256[:24]
