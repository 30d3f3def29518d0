"""Reader and card faults during perso (issue 13): retried, not burnt.

The faults are raised where pyscard raises them — from the card's transmit, as
``CardConnectionException`` (card removed, reader reset) — on emulated stock, and
by a card that vanishes between detection and connect on a reader station. The
pcscd + vpcd version (the card server killed mid-perso) is robustness/fault_soak.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from enginekit import make_batch, make_cards, pans_on_image, stand_in_execute
from smartcard.Exceptions import CardConnectionException, NoCardException

from cardlab.emulator import Card
from cardlab.personalizer import audit, engine
from cardlab.personalizer.jobdb import JobDb


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_batch(tmp_path_factory.mktemp("batch"), count=4, bad=())


@pytest.fixture()
def batch(prepared: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    src, keys = prepared
    shutil.copytree(src, tmp_path / "batch")
    return tmp_path / "batch", keys


def _pull_card_at(step: str, record: int = 2) -> Any:
    """The stand-in script, with the card pulled out of the reader (pyscard's own exception, from
    the transmit) at the first command after ``step`` of ``record``'s first attempt."""
    pulled = False

    def execute(script: Any, data: Any, transmit: Any, keystore: Any, **kw: Any) -> Any:
        nonlocal pulled
        armed = data.record_index == record and not pulled
        user = kw.pop("on_step")
        state = {"after": False}

        def on_step(name: str) -> None:
            user(name)
            if armed and name == step:
                state["after"] = True

        def flaky(apdu: bytes) -> bytes:
            nonlocal pulled
            if state["after"]:
                pulled = True
                state["after"] = False
                raise CardConnectionException("card removed")
            return bytes(transmit(apdu))

        if armed and step == "set status secured":
            stand_in_execute(script, data, transmit, keystore, on_step=user, **kw)
            pulled = True
            raise CardConnectionException("card removed before the last answer was read")
        return stand_in_execute(script, data, flaky, keystore, on_step=on_step, **kw)

    return execute


def _rows(b: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(b / "jobs.sqlite")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_fault_before_any_write_costs_neither_record_nor_card(batch: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The card goes away after the secure channel's key lookup (nothing that writes was sent): the
    record goes back to pending without counting as an attempt, the card is free again and takes a
    record later; no card is spoiled, every record ends done."""
    b, keys = batch
    cards = make_cards(tmp_path, keys, 4)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=_pull_card_at("get KDD"))
    assert rep.counts["done"] == 4 and rep.exit_code == 0, rep.failures
    err = capsys.readouterr().err
    assert "reader fault before any write (card free again)" in err and "CardConnectionException" in err
    assert _rows(b, "SELECT COUNT(*) FROM cards WHERE status = 'spoiled'") == [(0,)]
    assert _rows(b, "SELECT attempts FROM records WHERE record_index = 2") == [(1,)]
    outcomes = [o for (o,) in _rows(b, "SELECT outcome FROM attempts WHERE record_index = 2 ORDER BY id")]
    assert outcomes == ["redo", "done"]
    # the four images of the stock hold the four records: the faulted card was used again
    assert sorted(len(pans_on_image(p)) for p in cards.glob("card-*.json")) == [1, 1, 1, 1]
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
    assert audit.verify(sqlite3.connect(b / "jobs.sqlite")).ok
    from cardlab.cli import main

    assert main(["perso", "status", str(b)]) == 0
    assert "set aside" not in capsys.readouterr().out  # the card was used again: not listed as set aside


@pytest.mark.parametrize("step", ["install", "store data"])
def test_a_fault_after_a_write_rolls_the_card_back_and_retries_the_record(
        batch: tuple[Path, Path], tmp_path: Path, step: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The card goes away after it took part of the record: when it answers again the station reads
    it, DELETEs the record's instance over SCP03 and spoils it; the record is personalized on a
    fresh card, not failed. The spoiled card holds no cardholder data."""
    b, keys = batch
    cards = make_cards(tmp_path, keys, 5)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=_pull_card_at(step))
    assert rep.counts["done"] == 4 and rep.counts["failed"] == 0 and rep.exit_code == 0, rep.failures
    err = capsys.readouterr().err
    assert "card spoiled by a fault" in err and "instances deleted" in err and "CardConnectionException" in err
    ((loc, reason),) = _rows(b, "SELECT location, reason FROM cards WHERE status = 'spoiled'")
    assert "instances deleted" in reason and reason.startswith("CardConnectionException: card removed")
    assert pans_on_image(Path(loc)) == []
    assert [i.aid for i in Card.load(Path(loc)).state.instances] == [bytes.fromhex("A000000151000000")]
    events = [e for (e,) in _rows(b, "SELECT event FROM audit")]
    assert events.count("reconcile") == 1 and events.count("card done") == 4
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == [] and db.open_attempts() == []


def test_a_fault_after_the_last_step_keeps_the_finished_card(batch: tuple[Path, Path], tmp_path: Path) -> None:
    """The card went away after it had taken everything (the last answer was lost): read again, it
    shows the record's application personalized and the card SECURED — the record is done on it."""
    b, keys = batch
    cards = make_cards(tmp_path, keys, 4)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=_pull_card_at("set status secured"))
    assert rep.counts["done"] == 4 and rep.exit_code == 0
    assert _rows(b, "SELECT COUNT(*) FROM cards WHERE status = 'spoiled'") == [(0,)]
    assert [d for (d,) in _rows(b, "SELECT outcome FROM attempts WHERE record_index = 2")] == ["done"]


def test_a_card_that_vanishes_between_detection_and_connect(batch: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A reader station sees a card, and the card is gone when it connects (NoCardException): the
    station says so and waits for the next card — no traceback, no record touched."""
    from cardlab.emulator.transports import pyscard_reader
    from cardlab.personalizer.engine import sources
    from cardlab.personalizer.stock import list_images

    b, keys = batch
    stock = list_images(make_cards(tmp_path, keys, 4))
    reader = "cardlab fault test reader"
    real = sources.PcscChannel
    state = {"vanish": 1, "next": 0}

    def connect(name: str) -> Any:
        if state["vanish"]:
            state["vanish"] -= 1
            raise NoCardException("no card in the emulated reader", 0)
        return real(name)

    def insert_next() -> None:
        card = Card.load(stock[state["next"]])
        path = stock[state["next"]]
        card.on_commit = lambda c: c.save(path)
        pyscard_reader.insert(card, reader)
        state["next"] += 1

    def present(name: str) -> bool:
        if not pyscard_reader.emulated_readers() or all(str(r) != reader or r.card is None
                                                         for r in pyscard_reader.emulated_readers()):
            insert_next()  # the feeder puts the next blank in
        return True

    monkeypatch.setattr(sources, "PcscChannel", connect)
    monkeypatch.setattr(sources, "card_present", present)
    original_finish = sources.ReaderSource.next_card

    def next_card(self: Any, db: Any, station: str) -> Any:
        hand = original_finish(self, db, station)
        if hand is not None:
            inner = hand.finish

            def finish() -> None:
                inner()
                pyscard_reader.remove(reader)  # the feeder takes the card out

            hand.finish = finish
        return hand

    monkeypatch.setattr(sources.ReaderSource, "next_card", next_card)
    try:
        rep = engine.run(b, readers=[reader], keys=str(keys), executor=stand_in_execute, reader_timeout=5,
                         wait_removal=False)
    finally:
        pyscard_reader.remove(reader)
    assert rep.counts["done"] == 4 and rep.exit_code == 0 and not rep.errors
    assert "went away before it could be used (NoCardException)" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["profile", "script"])
def test_prepare_refuses_a_key_store_without_a_key_the_profile_or_script_names(
        tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``perso prepare`` checks before the first record that the key store holds every key the
    profile and the script name: one line, exit 2, no batch directory (issue 13: it used to exit 0
    and every card failed at the secure channel)."""
    from enginekit import write_records
    from prepkit import make_keystore, sda_profile

    from cardlab.cli import main

    profile = sda_profile(tmp_path)
    ks = make_keystore([profile])
    script = Path(__file__).resolve().parents[2] / "vectors" / "scripts" / "emv-cps.yaml"
    if missing == "profile":
        import yaml

        doc = yaml.safe_load(profile.read_text())
        doc["card"]["kmc"] = "ABSENT-KMC"
        profile.write_text(yaml.safe_dump(doc))
        what = "key 'ABSENT-KMC' (the profile's card.kmc)"
    else:
        text = script.read_text().replace('kmc: "${profile.card.kmc}"', "kmc: NO-SUCH-KMC")
        script = tmp_path / "script.yaml"
        script.write_text(text)
        what = "key 'NO-SUCH-KMC' (the script's step 2 (open secure channel) kmc)"
    ks.save(tmp_path / "keys.json")
    records = write_records(tmp_path / "records.csv", 3)
    code = main(["perso", "prepare", "--profile", str(profile), "--records", str(records), "--keys",
                 str(tmp_path / "keys.json"), "--out", str(tmp_path / "batch"), "--script", str(script),
                 "--today", "2025-06-01"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert what in err and "no card of this batch could be personalized" in err
    assert not (tmp_path / "batch").exists()


def test_run_refuses_a_script_naming_a_key_the_store_lacks(batch: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``perso run --script`` with a script that names a key the key store lacks stops before the
    first card with one line and exit 2: nothing claimed."""
    from cardlab.cli import main

    b, keys = batch
    cards = make_cards(tmp_path, keys, 4)
    script = tmp_path / "other.yaml"
    script.write_text((b / "script.yaml").read_text().replace('kmc: "${profile.card.kmc}"', "kmc: OTHER-KMC"))
    code = main(["perso", "run", str(b), "--cards", str(cards), "--keys", str(keys), "--script", str(script)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "key 'OTHER-KMC'" in err, err
    with JobDb(b / "jobs.sqlite") as db:
        assert db.db.execute("SELECT COUNT(*) FROM cards").fetchone() == (0,)


def test_a_card_that_does_not_come_back_is_spoiled_unread(batch: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The card went away after a write and does not answer again within the wait: it may hold part
    of the record, so it is spoiled (to be destroyed) with the cause and the wait in the reason; the
    record is personalized on a fresh card."""
    from cardlab.personalizer.engine import sources

    b, keys = batch
    cards = make_cards(tmp_path, keys, 5)
    monkeypatch.setattr(sources.ImageSource, "open", lambda self, location: None)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=_pull_card_at("install"), fault_wait=0.3)
    assert rep.counts["done"] == 4 and rep.exit_code == 0
    ((reason,),) = _rows(b, "SELECT reason FROM cards WHERE status = 'spoiled'")
    assert reason.startswith("CardConnectionException: card removed") and "within 0.3 s" in reason
    assert "destroy it" in reason


def test_after_a_fault_only_the_card_being_written_settles_the_attempt(
        batch: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """After a fault mid-write another card answers in the reader first (the operator's mistake, or
    another card server on the same reader): it is not read further nor blamed; the station asks for
    the card it was writing, and rolls that one back when it is back."""
    from cardlab.personalizer.engine import sources

    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    other = cards / "card-000006.json"
    real_open = sources.ImageSource.open
    calls = {"n": 0}

    def open_(self: Any, location: str) -> Any:
        calls["n"] += 1
        return real_open(self, str(other) if calls["n"] <= 2 else location)

    monkeypatch.setattr(sources.ImageSource, "open", open_)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=_pull_card_at("store data"), fault_wait=10)
    assert rep.counts["done"] == 4 and rep.counts["failed"] == 0 and rep.exit_code == 0
    assert "is not the card being written when the fault came; put back the card CIN" in capsys.readouterr().err
    ((loc, reason),) = _rows(b, "SELECT location, reason FROM cards WHERE status = 'spoiled'")
    assert "instances deleted" in reason and pans_on_image(Path(loc)) == []
