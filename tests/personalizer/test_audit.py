"""Audit hash chain: appends verify; altered, removed, reordered and truncated entries are named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.personalizer import audit


@pytest.fixture()
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    audit.create_tables(conn)
    for i in range(1, 9):
        audit.append(conn, "stage" if i % 2 else "card start", {"record": i, "pan": "476173******0012"})
    return conn


def test_chain_verifies(db: sqlite3.Connection) -> None:
    result = audit.verify(db)
    assert result.ok and result.entries == 8


def test_hash_covers_prev_and_canonical_entry(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT seq, time, event, details, prev, hash FROM audit ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for seq, when, event, details, p, h in rows:
        assert p == prev
        import hashlib

        canon = json.dumps({"details": json.loads(details), "event": event, "seq": seq, "time": when},
                           sort_keys=True, separators=(",", ":")).encode()
        assert h == hashlib.sha256(bytes.fromhex(prev) + canon).hexdigest()
        prev = h


def test_altered_entry(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit SET details = ? WHERE seq = 4", (json.dumps({"record": 99}),))
    problems = audit.verify(db).problems
    assert any("entry 4" in p and "altered" in p for p in problems), problems


def test_altered_event_and_time(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit SET event = 'card done' WHERE seq = 2")
    db.execute("UPDATE audit SET time = '2000-01-01T00:00:00.000Z' WHERE seq = 6")
    problems = audit.verify(db).problems
    assert any("entry 2" in p and "altered" in p for p in problems)
    assert any("entry 6" in p and "altered" in p for p in problems)


def test_rehashed_entry_breaks_the_link(db: sqlite3.Connection) -> None:
    row = db.execute("SELECT time, event, prev FROM audit WHERE seq = 3").fetchone()
    details = json.dumps({"record": 42}, sort_keys=True, separators=(",", ":"))
    new_hash = audit.entry_hash(row[2], 3, row[0], row[1], details)
    db.execute("UPDATE audit SET details = ?, hash = ? WHERE seq = 3", (details, new_hash))
    problems = audit.verify(db).problems
    assert any("entry 4" in p and "missing" in p for p in problems), problems


def test_removed_entry(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit WHERE seq = 5")
    problems = audit.verify(db).problems
    assert any("entry 5 removed" in p for p in problems), problems


def test_removed_last_entries(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit WHERE seq >= 7")
    problems = audit.verify(db).problems
    assert any("after 6 removed" in p for p in problems), problems


def test_reordered_entries(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit SET seq = -1 WHERE seq = 3")
    db.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
    db.execute("UPDATE audit SET seq = 4 WHERE seq = -1")
    problems = audit.verify(db).problems
    assert any("entry 3" in p and "reordered" in p and "written as entry 4" in p for p in problems), problems
    assert any("entry 4" in p and "reordered" in p and "written as entry 3" in p for p in problems), problems


def test_no_full_pan_in_audit() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    audit.create_tables(conn)
    with pytest.raises(audit.AuditError) as err:
        audit.append(conn, "card start", {"pan": "4761739001010119"})
    assert "4761739001010119" not in str(err.value)
    audit.append(conn, "card start", {"cin": "0102030405060708090A", "sha": "ab" * 32})


def test_empty_log_with_a_head_is_truncated() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    audit.create_tables(db)
    db.execute("INSERT INTO meta (key, value) VALUES ('audit_head', '3:" + "ab" * 32 + "')")
    assert any("after 0 removed" in p for p in audit.verify(db).problems)


# the peak resident size of this process's own memory (VmHWM): ru_maxrss would carry over the
# peak of the pytest process that spawned it (Linux keeps it across exec)
_VERIFY_PEAK = """
import re, sqlite3, sys
from pathlib import Path
from cardlab.personalizer import audit

def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

db = sqlite3.connect(sys.argv[1])
before = peak_kb()
result = audit.verify(db)
after = peak_kb()
print(result.ok, result.entries, before, after, audit._intact(db) is not None)
"""


def test_verify_streams_a_million_entries(tmp_path: Path) -> None:
    """``perso audit --verify`` of a long log reads it as a stream: the peak memory of the verifying
    process stays far below what holding the entries takes (it was 2.1 GB for 2 M entries)."""
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    audit.create_tables(db)
    count = 1_000_000
    when = "2026-01-01T00:00:00.000Z"

    def entries() -> Iterator[tuple[int, str, str, str, str, str]]:
        prev = audit.GENESIS
        for seq in range(1, count + 1):
            details = '{"record":%d,"sw":"9000"}' % seq
            digest = audit.entry_hash(prev, seq, when, "card.done", details)
            yield seq, when, "card.done", details, prev, digest
            prev = digest
        db.execute("INSERT INTO meta (key, value) VALUES ('audit_head', ?)", (f"{count}:{prev}",))

    db.execute("BEGIN")
    db.executemany("INSERT INTO audit (seq, time, event, details, prev, hash) VALUES (?, ?, ?, ?, ?, ?)", entries())
    db.execute("COMMIT")
    db.close()
    out = subprocess.run([sys.executable, "-c", _VERIFY_PEAK, str(path)], capture_output=True, text=True,
                         check=True, timeout=600).stdout.split()  # fmt: skip
    assert out[:2] == ["True", str(count)]
    assert out[4] == "True", "the intact chain was not recognised in one streaming pass"
    before_kb, after_kb = int(out[2]), int(out[3])
    assert after_kb < 100 * 1024, f"peak {after_kb} KB (before verify: {before_kb} KB)"
    assert after_kb - before_kb < 20 * 1024, f"verify grew the process by {after_kb - before_kb} KB"


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=10), _JSONISH, max_size=5), st.text(max_size=12), st.integers(1, 10**9))
def test_appends_hash_the_canonical_entry(details: dict[str, Any], event: str, seq: int) -> None:
    """append_many puts the canonical bytes together without parsing its own JSON again: they are
    the bytes canonical() gives, which verification uses."""
    text = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    when = audit.now()
    assert audit._canonical_of_own(seq, when, event, text) == audit.canonical(seq, when, event, text)
