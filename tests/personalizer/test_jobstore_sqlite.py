"""The SQLite job store's write lock (cardlab/personalizer/jobstore.py): a station waits for
another station's write transaction in short steps, gets the lock once it is free, and gives a
clear error naming the database when it stays locked past the timeout."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cardlab.personalizer.jobstore import JobStoreError, SqliteStore


def _holder(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another station's write transaction
    return other


def test_a_transaction_waits_for_another_writer_then_commits(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = SqliteStore(str(path), timeout=30)
    other = _holder(path)
    release = threading.Timer(0.05, lambda: other.execute("COMMIT"))
    release.start()
    with store.transaction():
        store.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
    release.join()
    assert store.execute("SELECT value FROM meta WHERE key = 'probe'").fetchone() == ("1",)
    # the connection's own busy timeout is back for every other statement
    assert store.execute("PRAGMA busy_timeout").fetchone() == (30000,)
    other.close()
    store.close()


def test_a_lock_held_past_the_timeout_is_a_clear_error_and_nothing_is_left_open(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = SqliteStore(str(path), timeout=0.3)
    other = _holder(path)
    with pytest.raises(JobStoreError, match=r"jobs\.sqlite stayed locked for 0\.3 s"):
        with store.transaction():
            pytest.fail("the body must not run without the lock")
    assert not store.db.in_transaction
    other.execute("COMMIT")
    with store.transaction(durable=False):  # free again: the store works on
        store.execute("INSERT INTO meta (key, value) VALUES ('probe', '2')")
    assert store.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again after a non-durable one
    other.close()
    store.close()


def test_an_image_stations_done_is_committed_without_its_own_sync_and_made_durable_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulated card's 'done' needs no sync of its own (the image was synced by its close, and
    reconciliation settles a lost 'done' from it): the next card's start makes it durable, and
    closing the job database makes the last one durable."""
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from enginekit import make_batch, make_cards  # type: ignore[import-not-found]

    from cardlab.demo import pipeline
    from cardlab.personalizer import engine
    from cardlab.personalizer.jobdb import JobDb

    batch, keys = make_batch(tmp_path, count=3, bad=())
    shutil.copyfile(pipeline.SCRIPT, batch / "script.yaml")
    cards = make_cards(tmp_path, keys, 3)
    kinds: list[bool] = []
    real = SqliteStore.transaction

    def spy(self: SqliteStore, durable: bool = True):  # type: ignore[no-untyped-def]
        kinds.append(durable)
        return real(self, durable)

    closing: list[list[bool]] = []
    real_close = JobDb.close

    def close(self: JobDb) -> None:
        closing.append(list(kinds))
        real_close(self)

    monkeypatch.setattr(SqliteStore, "transaction", spy)
    monkeypatch.setattr(JobDb, "close", close)
    rep = engine.run(batch, cards=cards, keys=str(keys), stations=1)
    assert rep.exit_code == 0
    db = JobDb(batch / "jobs.sqlite")
    assert [r[0] for r in db.db.execute("SELECT status FROM records ORDER BY record_index")] == ["done"] * 3
    db.close()
    # per card: the image claim and 'done' without a sync, the start with one; and a durable
    # transaction after the last 'done' (the station's close) before the database was closed
    assert kinds.count(False) >= 6 and True in kinds
    station_close = next(c for c in closing if c.count(False) >= 6)
    assert station_close[-1] is False and kinds[len(station_close)] is True


def test_a_durable_commit_syncs_the_wal_after_the_lock_is_let_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A durable transaction commits without a sync under the write lock, then syncs the WAL that
    holds the commit: while it waits for the disk another station can already write. A transaction
    that is not durable syncs nothing; the next durable one syncs the WAL as a whole."""
    import os

    from cardlab.personalizer import jobstore

    path = tmp_path / "jobs.sqlite"
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("jobs.sqlite")  # a relative path, and the process moves on: the right WAL is synced
    monkeypatch.chdir("/")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    seen: list[tuple[str, bool, tuple[str, ...] | None]] = []
    real = os.fdatasync

    def watch(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        try:  # the lock is free while the WAL is synced
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            free = True
        except sqlite3.OperationalError:
            free = False
        row = other.execute("SELECT value FROM meta WHERE key = 'probe'").fetchone()  # the commit is visible
        seen.append((os.path.realpath(name), free, row))
        real(fd)

    monkeypatch.setattr(jobstore.os, "fdatasync", watch)
    with store.transaction(durable=False):
        store.execute("INSERT INTO meta (key, value) VALUES ('probe', 'lazy')")
    assert seen == []
    with store.transaction():
        store.execute("UPDATE meta SET value = 'durable' WHERE key = 'probe'")
    assert seen == [(os.path.realpath(f"{path}-wal"), True, ("durable",))]
    assert store.execute("PRAGMA synchronous").fetchone() == (2,)
    other.close()
    store.close()
