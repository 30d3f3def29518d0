"""The job store on PostgreSQL (issue 15): stations on many machines around one server.

A real server is started for the module (:mod:`pgserver`: ``initdb`` + ``pg_ctl`` in a temporary
directory). Stations run as separate processes — each one stands for a machine: its own process,
its own connection, its own station names — on one card stock. Some are SIGKILLed at random,
one has its connection cut by the server (``pg_terminate_backend``), and at the end every record
is done exactly once, no card holds two records, and the one audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import make_batch, make_cards, stand_in_execute

from cardlab.emulator import Card
from cardlab.personalizer import audit, engine
from cardlab.personalizer.engine.identity import read_identity
from cardlab.personalizer.jobdb import JobDb, JobDbError, open_jobdb
from cardlab.personalizer.jobstore import SCHEMA_VERSION, SqliteStore, masked_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pgserver import pg_bindir, postgres_server  # noqa: E402

pytestmark = pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server binaries absent (Debian postgresql)")

STATION = """
import sys
sys.path.insert(0, {here!r})
from enginekit import stand_in_execute
from cardlab.personalizer import engine
from cardlab.personalizer.jobstore import JobStoreError
try:  # as `cardlab perso run` does (the stand-in executor instead of a perso script)
    rep = engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations={stations}, executor=stand_in_execute,
                     jobs={url!r}, progress=False)
except JobStoreError as exc:
    print("station stopped:", exc, file=sys.stderr)
    sys.exit(1)
print("EXIT", rep.exit_code, rep.counts, rep.errors, flush=True)
sys.exit(rep.exit_code)
"""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _psql(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(sql)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []


def _open_attempts(url: str, batch: Path) -> int:
    with open_jobdb(batch, url) as db:
        return len(db.open_attempts())


def _assert_all_once(db: JobDb, total: int, rejected: int) -> None:
    assert db.check() == []
    counts = db.counts()
    assert counts["pending"] == counts["in_progress"] == 0, counts
    assert counts["done"] + counts["failed"] + counts["rejected"] == db.input_count() == total
    assert counts["rejected"] == rejected
    done_attempts = [int(i) for (i,) in db.db.execute("SELECT record_index FROM attempts WHERE outcome = 'done'")]
    assert len(done_attempts) == len(set(done_attempts)) == counts["done"]  # never personalized twice
    locations = [str(loc) for (loc,) in db.db.execute(
        "SELECT c.location FROM records r JOIN cards c ON c.id = r.card WHERE r.status = 'done'")]
    assert len(locations) == len(set(locations))  # no card holds two records
    assert db.db.execute("SELECT COUNT(*) FROM attempts WHERE outcome IS NULL").fetchone()[0] == 0
    verified = audit.verify(db.store)
    assert verified.ok, verified.problems


def test_one_station_on_postgres_matches_sqlite(tmp_path: Path, pg_url: str) -> None:
    batch, keys = make_batch(tmp_path, count=8, bad=(3,))
    cards = make_cards(tmp_path, keys, 10)
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=pg_url)
    assert rep.exit_code == 0, (rep.failures, rep.unaccounted, rep.errors)
    assert not (batch / "jobs.sqlite").exists()  # the job store is the server's, not the batch directory's
    with open_jobdb(batch, pg_url) as db:
        assert db.shared and db.meta("schema_version") == str(SCHEMA_VERSION)
        _assert_all_once(db, 8, 1)
        pg_counts, pg_events = db.counts(), [str(e) for (e,) in db.db.execute("SELECT event FROM audit ORDER BY seq")]

    # the same batch on SQLite: the same counts and the same sequence of audit events
    (tmp_path / "sqlite").mkdir()
    batch2, keys2 = make_batch(tmp_path / "sqlite", count=8, bad=(3,))
    cards2 = make_cards(tmp_path / "sqlite", keys2, 10)
    rep2 = engine.run(batch2, cards=cards2, keys=str(keys2), executor=stand_in_execute)
    assert rep2.exit_code == 0
    with JobDb(batch2 / "jobs.sqlite") as db:
        assert db.counts() == pg_counts
        events = [str(e) for (e,) in db.db.execute("SELECT event FROM audit ORDER BY seq")]
    assert [e for e in events if e != "stages"] == [e for e in pg_events if e != "stages"]

    # status, audit and retry speak to the same store; the password never shows
    run = [sys.executable, "-m", "cardlab", "perso"]
    out = subprocess.run(run + ["status", str(batch), "--jobs", pg_url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "done 7" in out.stdout and "rejected 1" in out.stdout
    out = subprocess.run(run + ["audit", str(batch), "--verify"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CARDLAB_JOBS": pg_url})
    assert out.returncode == 0 and "audit chain verified" in out.stdout, out.stdout + out.stderr
    bad = pg_url.replace("postgres@", "postgres:hunter2@").replace(pg_url.rsplit(":", 1)[1].split("/")[0], "1")
    out = subprocess.run(run + ["status", str(batch), "--jobs", bad], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "hunter2" not in out.stdout + out.stderr and "***" in out.stderr
    assert "Traceback" not in out.stderr


def test_stations_on_many_machines_killed_and_cut(tmp_path: Path, pg_url: str) -> None:
    """Four station processes at once on one batch; two SIGKILLed mid-batch, one cut off by the
    server; the survivors and a last run finish it: every record exactly once."""
    total, bad = 40, (7, 21)
    batch, keys = make_batch(tmp_path, count=total, bad=bad)
    cards = make_cards(tmp_path, keys, total + 16)
    env = {**os.environ, "ENGINEKIT_DELAY": "0.02"}
    code = STATION.format(here=str(HERE), batch=str(batch), cards=str(cards), keys=str(keys), url=pg_url, stations=1)
    # load the batch first (the first run on a batch loads it; stations starting at once find it loaded)
    with open_jobdb(batch, pg_url) as db:
        assert db.load_batch(batch)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    rng = random.Random(15)
    # wait until every station has started cards
    deadline = time.monotonic() + 120
    while _psql(pg_url, "SELECT COUNT(DISTINCT station) FROM {s}.attempts".format(
            s="batch_" + json.loads((batch / "manifest.json").read_text())["cards_sha256"][:24]))[0][0] < 4:
        assert time.monotonic() < deadline, [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        assert all(p.poll() is None for p in procs), "a station ended before all had started"
        time.sleep(0.05)
    # the network cut: the server drops station 0's connection
    pid0 = procs[0].pid
    cut = _psql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE application_name LIKE '%:{pid0}:station-%'")
    assert cut and all(ok for (ok,) in cut)
    # two stations killed at random moments (their process groups: the machine is off)
    for p in procs[1:3]:
        time.sleep(rng.uniform(0.05, 0.4))
        os.killpg(p.pid, signal.SIGKILL)
    outs = [p.communicate(timeout=300) for p in procs]
    assert procs[0].returncode == 1 and "lost the job store" in outs[0][1], outs[0][1][-2000:]
    assert "Traceback" not in outs[0][1]
    assert procs[3].returncode in (0, 1), outs[3][1][-3000:]  # the survivor went on (1: records left open)
    # a last run settles what the dead and the cut-off stations left on their cards
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=pg_url)
    assert rep.exit_code == 0, (rep.failures, rep.unaccounted, rep.errors)
    with open_jobdb(batch, pg_url) as db:
        _assert_all_once(db, total, len(bad))
        stations = {str(s) for (s,) in db.db.execute("SELECT DISTINCT station FROM attempts")}
        settled = db.db.execute("SELECT COUNT(*) FROM audit WHERE event = 'reconcile'").fetchone()[0]
    assert len(stations) >= 4
    assert settled >= 1  # what the killed and cut-off stations had in hand, settled by a later claim


def test_live_station_is_left_alone_and_dead_one_settled(tmp_path: Path, pg_url: str) -> None:
    """An open attempt of a running station is not reconciled by another run; once that station
    is gone, the next claim settles it."""
    batch, keys = make_batch(tmp_path, count=4, bad=())
    cards = make_cards(tmp_path, keys, 6)
    holder = open_jobdb(batch, pg_url, station="elsewhere:1:station-1")
    holder.load_batch(batch)
    image = sorted(cards.glob("card-*.json"))[0]
    ident = read_identity(Card.load(image).transmit, engine.GpAccess().isd_aid)
    claimed = holder.claim_image("elsewhere:1:station-1", [str(image)])
    assert claimed is not None
    claim = holder.start("elsewhere:1:station-1", "image", claimed[1], ident.cin, ident.cplc_hash, claimed[0])
    assert claim is not None
    # another machine runs the batch while the first station is alive: it leaves record 1 alone
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=pg_url)
    assert rep.unaccounted == [] and rep.elsewhere == [(claim.record_index, "elsewhere:1:station-1")]
    assert rep.exit_code == 0
    assert rep.counts["done"] == 3
    with pytest.raises(JobDbError, match="already running"):
        open_jobdb(batch, pg_url, station="elsewhere:1:station-1")
    holder.close()  # the station is gone (its connection ended)
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=pg_url)
    # the card was claimed but never written: the record goes to a card again
    assert rep.reconciled == {"redo": 1} and rep.exit_code == 0, (rep.reconciled, rep.failures, rep.unaccounted)
    with open_jobdb(batch, pg_url) as db:
        _assert_all_once(db, 4, 0)


def test_station_without_the_batch_data(tmp_path: Path, pg_url: str) -> None:
    """A station machine holds the batch directory without cards.jsonl: it reads the sealed data
    of the records it claims from the job store."""
    batch, keys = make_batch(tmp_path, count=5, bad=())
    with open_jobdb(batch, pg_url) as db:
        assert db.load_batch(batch)
    station_dir = tmp_path / "station-machine" / batch.name
    shutil.copytree(batch, station_dir, ignore=shutil.ignore_patterns("cards.jsonl", "rejected.jsonl"))
    cards = make_cards(tmp_path, keys, 6)
    rep = engine.run(station_dir, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=pg_url)
    assert rep.exit_code == 0 and rep.counts["done"] == 5, (rep.failures, rep.errors)
    # a batch the store does not hold cannot start without its data
    (tmp_path / "other").mkdir()
    other, _ = make_batch(tmp_path / "other", count=2, bad=())
    (other / "cards.jsonl").unlink()
    with pytest.raises(JobDbError, match="needs the whole batch"), open_jobdb(other, pg_url) as db:
        db.load_batch(other)


def test_sqlite_job_database_of_version_1_is_migrated(tmp_path: Path) -> None:
    """A job database written before versions were kept (no data column, no schema_version)."""
    path = tmp_path / "jobs.sqlite"
    SqliteStore(str(path)).close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE records DROP COLUMN data")
    con.execute("DELETE FROM meta WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with JobDb(path) as db:
        assert db.meta("schema_version") == str(SCHEMA_VERSION)
        cols = [str(r[1]) for r in db.db.execute("PRAGMA table_info(records)")]
    assert "data" in cols and "offset" in cols


def test_bad_jobs_address_is_one_line() -> None:
    assert masked_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    out = subprocess.run([sys.executable, "-m", "cardlab", "perso", "status", str(HERE), "--jobs", "mysql://x/y"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_cli_two_stations_real_script_then_certify(tmp_path: Path, pg_url: str) -> None:
    """As an operator runs it: `cardlab perso prepare`, a stock, then two `cardlab perso run … --jobs`
    processes at once (two machines) with the batch's real perso script; status and audit through
    the store; every card holds its record and passes the in-test terminal; no secret in the store."""
    from prepkit import VECTORS, run_transaction
    from test_pipeline import KEYSTORE, assert_no_secrets, cli, records_by_index, secrets_of

    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.profile import load_profile

    profile_path = VECTORS / "profiles" / "visa-cvn18.yaml"
    records = VECTORS / "records" / "sample.csv"
    batch, stock = tmp_path / "batch", tmp_path / "stock"
    rc, text = cli("perso", "prepare", "--profile", profile_path, "--records", records, "--keys", KEYSTORE,
                   "--out", batch)
    assert rc == 0, text
    rc, text = cli("perso", "stock", stock, "--count", "8", "--keys", KEYSTORE, "--profile", profile_path)
    assert rc == 0, text
    env = {**os.environ, "CARDLAB_JOBS": pg_url, "COLUMNS": "200"}
    run = [sys.executable, "-m", "cardlab", "perso", "run", str(batch), "--cards", str(stock), "--quiet"]
    # both machines start at once: the batch is loaded, and the records stay locked until both
    # stations wait for their first record (else the first to start may do the 6 cards alone)
    import psycopg

    with open_jobdb(batch, pg_url) as db:
        assert db.load_batch(batch)
    schema = "batch_" + json.loads((batch / "manifest.json").read_text())["cards_sha256"][:24]
    gate = psycopg.connect(pg_url)
    gate.execute(f"LOCK TABLE {schema}.records IN EXCLUSIVE MODE")  # type: ignore[arg-type]
    procs = [subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    deadline = time.monotonic() + 120
    while _psql(pg_url, "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND application_name LIKE '%:station-%'")[0][0] < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    gate.commit()
    gate.close()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert not (batch / "jobs.sqlite").exists()
    out = subprocess.run([sys.executable, "-m", "cardlab", "perso", "status", str(batch)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "done 6" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "cardlab", "perso", "audit", str(batch), "--verify"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "audit chain verified" in out.stdout, out.stdout + out.stderr
    with open_jobdb(batch, pg_url) as db:
        _assert_all_once(db, 10, 4)
        done = {int(i): Path(str(loc)) for i, loc in db.db.execute(
            "SELECT r.record_index, c.location FROM records r JOIN cards c ON c.id = r.card WHERE r.status = 'done'")}
        stations = {str(s) for (s,) in db.db.execute("SELECT DISTINCT station FROM attempts")}
        stored = "\n".join(str(v) for row in db.db.execute("SELECT data, reason FROM records") for v in row)
        stored += "\n".join(f"{e} {d}" for e, d in db.db.execute("SELECT event, details FROM audit"))
    assert len(stations) == 2, stations  # both machines personalized cards
    profile = load_profile(profile_path)
    by_index = records_by_index(records)
    app = profile.applications[0]
    with open_keystore(str(KEYSTORE)) as ks:
        for index, image in done.items():
            rec = by_index[index]
            card = Card.load(image)
            card.power_on()
            read = run_transaction(card, app, ks, rec.pan, rec.psn, rec.pin)
            assert read  # the record's data, offline PIN, ODA and an ARQC pyemv confirms
        assert_no_secrets([], [stored, *(o for pair in outs for o in pair)],
                          secrets_of(by_index.values(), ks, profile))  # type: ignore[arg-type]


def test_server_lost_mid_run_then_back(tmp_path: Path) -> None:
    """The job store's server crashes while stations work: the run stops with exit 1 and says to
    run again; with the server back, the next run settles what was in hand and finishes the batch."""
    from pgserver import PgServer

    server = PgServer()
    try:
        url = server.start()
        total = 30
        batch, keys = make_batch(tmp_path, count=total, bad=())
        cards = make_cards(tmp_path, keys, total + 6)
        with open_jobdb(batch, url) as db:
            assert db.load_batch(batch)
        env = {**os.environ, "ENGINEKIT_DELAY": "0.02"}
        code = STATION.replace("except JobStoreError as exc:", "except JobStoreError as exc:  # as cmd_run: exit 1")
        code = code.format(here=str(HERE), batch=str(batch), cards=str(cards), keys=str(keys), url=url, stations=2)
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _done(url, batch) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        server.stop()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-2000:]
        assert "station stopped" in err and "Traceback" not in err, err[-2000:]
        server.start()
        rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute, jobs=url)
        assert rep.exit_code == 0, (rep.failures, rep.unaccounted, rep.errors)
        with open_jobdb(batch, url) as db:
            _assert_all_once(db, total, 0)
    finally:
        server.remove()


def _done(url: str, batch: Path) -> int:
    with open_jobdb(batch, url) as db:
        return int(db.counts()["done"])
