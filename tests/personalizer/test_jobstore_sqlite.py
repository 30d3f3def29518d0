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
