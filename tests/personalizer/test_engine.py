"""Perso engine: a prepared batch on emulated card stock, failures, reconciliation, CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from enginekit import KMC_NAME, make_batch, make_cards, stand_in_execute

from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.personalizer import audit, engine
from cardlab.personalizer.engine.cli import cmd_audit, cmd_status, print_report
from cardlab.personalizer.batch import iter_cards
from cardlab.personalizer.jobdb import JobDb, JobDbError
from cardlab.personalizer.keys import open_keystore

SECURED, PERSONALIZED = 0x0F, 0x0F


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_batch(tmp_path_factory.mktemp("batch"), count=6, bad=(3,))


@pytest.fixture()
def batch(prepared: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of the prepared batch (no job database yet)."""
    import shutil

    src, keys = prepared
    dst = tmp_path / "batch"
    shutil.copytree(src, dst)
    return dst, keys


def card_view(path: Path, keys: Path, aids: list[bytes]) -> engine.CardView:
    card = Card.load(path)
    with open_keystore(str(keys)) as ks:
        view, _ = engine.inspect_card(card.transmit, engine.GpAccess(kmc=KMC_NAME), ks, aids)
    return view


def test_batch_personalizes_every_accepted_record(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 7)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.counts == {"pending": 0, "in_progress": 0, "done": 5, "failed": 0, "rejected": 1}
    assert rep.exit_code == 0 and rep.input == 6
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        rows = db.db.execute("SELECT c.location, r.card_id FROM records r JOIN cards c ON c.id = r.card "
                             "WHERE r.status = 'done'").fetchall()
    assert len({loc for loc, _ in rows}) == 5
    aids = [a.aid for a in next(iter_cards(b)).apps]
    for loc, _ in rows:
        view = card_view(Path(loc), keys, aids)
        assert view.life_cycle == SECURED and all(v == PERSONALIZED for v in view.apps.values())
    # the sixth and seventh images are still blank and free
    assert sum(1 for p in cards.glob("card-*.json") if Card.load(p).state.lifecycle == 0x01) == 2
    # a second run has nothing to do and says so
    again = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert again.cards_this_run == 0 and again.exit_code == 0
    db2 = sqlite3.connect(b / "jobs.sqlite")
    assert audit.verify(db2).ok
    events = [e for (e,) in db2.execute("SELECT event FROM audit ORDER BY seq")]
    assert events[0] == "reject" and events[1] == "load"
    assert events.count("card done") == 5 and events.count("card start") == 5


def test_no_key_pin_or_pan_in_the_database(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    blob = b"".join(p.read_bytes() for p in b.glob("jobs.sqlite*"))
    pans = [r.split(",")[0] for r in (Path(str(keys)).parent / "records.csv").read_text().splitlines()[1:]]
    for pan in pans:
        assert pan.encode() not in blob
    with open_keystore(str(keys)) as ks:
        for name in ("KMC", "KEK"):
            assert ks.clear_value(name).hex().encode() not in blob.lower()  # type: ignore[attr-defined]


def _poison(path: Path, keys: Path, aid: bytes) -> None:
    """A card that already holds an instance of ``aid``: its INSTALL answers an error SW."""
    from cardlab.emulator.applets.emv.applet import EmvApplet

    card = Card.load(path)
    with open_keystore(str(keys)) as ks:
        k = ks.diversify_card_keys(KMC_NAME, "KDF3", card.state.kdd)
    hs = HostSession(card.transmit, StaticKeys(k.enc, k.mac, k.dek, 0x30))
    hs.open(0x03)
    lv = lambda b: bytes((len(b),)) + b  # noqa: E731
    data = lv(EmvApplet.LOAD_FILE_AID) + lv(EmvApplet.MODULE_AID) + lv(aid) + lv(b"\x00") + lv(b"\xC9\x00") + b"\x00"
    assert hs.send(bytes.fromhex("80E60C00") + bytes((len(data),)) + data + b"\x00")[-2:] == b"\x90\x00"
    card.save(path)


EMV_CPS = Path(__file__).resolve().parents[2] / "vectors" / "scripts" / "emv-cps.yaml"
#: the stand-in executor (the check opens its own session before the script), or the shipped script
#: through the interpreter (the check runs in the script's first session: one session per card)
HOW = pytest.mark.parametrize("real", [False, True], ids=["own-session", "script-session"])


def _run(b: Path, cards: Path, keys: Path, real: bool) -> Any:
    if real:
        return engine.run(b, cards=cards, keys=str(keys), script=EMV_CPS)
    return engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)


@HOW
def test_a_card_that_refuses_before_any_data_is_set_aside_and_the_record_goes_on(
        batch: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], real: bool) -> None:
    """A card that is not blank (it holds an instance of the record's application) is refused by the
    check before the first write (GET STATUS over SCP03): the card is set aside — not spoiled: it
    holds nothing of the record — and the record is personalized on the next card (issue 13: no
    record burnt by a fault that wrote nothing)."""
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    aid = next(iter_cards(b)).apps[0].aid
    _poison(cards / "card-000002.json", keys, aid)
    before = Card.load(cards / "card-000002.json").state
    rep = _run(b, cards, keys, real)
    assert rep.counts["failed"] == 0 and rep.counts["done"] == 5 and rep.counts["rejected"] == 1
    assert rep.exit_code == 0
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        status, reason = db.db.execute("SELECT status, reason FROM cards WHERE location LIKE '%card-000002.json'"
                                       ).fetchone()  # fmt: skip
    rid_pix = f"RID {aid[:5].hex().upper()} PIX {aid[5:].hex().upper()}"
    assert status == "unusable" and reason == f"card not blank: it holds an instance of {rid_pix}"
    assert cmd_status(_ns(batch=str(b))) == 0
    out = capsys.readouterr().out
    assert "card card-000002.json set aside" in out and "card not blank" in out
    after = Card.load(cards / "card-000002.json").state  # nothing written to it
    assert after.instances == before.instances and after.lifecycle == before.lifecycle


@HOW
def test_a_card_past_its_stock_life_cycle_is_set_aside(batch: tuple[Path, Path], tmp_path: Path, real: bool) -> None:
    """The check before the first write reads the card's life cycle (GET STATUS 80 over SCP03): a
    SECURED card without any application is not blank; it is set aside with that reason and the
    image is left as it was."""
    from cardlab.emulator.gp.lifecycle import CardLife

    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    card = Card.load(cards / "card-000003.json")
    card.state.lifecycle = CardLife.SECURED
    card.save(cards / "card-000003.json")
    before = Card.load(cards / "card-000003.json").state
    rep = _run(b, cards, keys, real)
    assert rep.counts["done"] == 5 and rep.exit_code == 0
    with JobDb(b / "jobs.sqlite") as db:
        status, reason = db.db.execute("SELECT status, reason FROM cards WHERE location LIKE '%card-000003.json'"
                                       ).fetchone()  # fmt: skip
    assert status == "unusable" and reason == "card not blank: its life cycle is SECURED"
    after = Card.load(cards / "card-000003.json").state
    assert after.instances == before.instances and after.lifecycle == before.lifecycle


def test_a_step_refused_after_data_fails_the_record(batch: tuple[Path, Path], tmp_path: Path) -> None:
    """A refusal after the card accepted the record's data is the record's (or that card's) fault
    with data on the card: the record fails and the card is spoiled."""
    from enginekit import FakeStepFailed

    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)

    def refuse_late(script: Any, data: Any, transmit: Any, keystore: Any, **kw: Any) -> Any:
        if data.record_index == 2:
            stand_in_execute(script, data, transmit, keystore, **kw)  # the card takes everything
            raise FakeStepFailed(9, "verify what was written", 0x6A80, ("9000",))
        return stand_in_execute(script, data, transmit, keystore, **kw)

    rep = engine.run(b, cards=cards, keys=str(keys), executor=refuse_late)
    assert rep.counts["failed"] == 1 and rep.counts["done"] == 4
    ((index, _, pan, reason),) = rep.failures
    assert index == 2 and "SW 6A80, expected 9000" in reason and "*" in pan
    with JobDb(b / "jobs.sqlite") as db:
        assert db.db.execute("SELECT status FROM cards WHERE record_index = 2").fetchone()[0] == "spoiled"


def test_a_card_that_refuses_every_time_fails_the_record_after_three(batch: tuple[Path, Path], tmp_path: Path) -> None:
    """A record that every card refuses (a reader that cannot open the secure channel, say) fails
    after three cards, with the reason, instead of going round for ever."""
    from enginekit import FakeStepFailed

    b, keys = batch
    cards = make_cards(tmp_path, keys, 12)

    def refuse(script: Any, data: Any, transmit: Any, keystore: Any, **kw: Any) -> Any:
        if data.record_index == 2:
            raise FakeStepFailed(2, "open secure channel", None, ("9000",), "card cryptogram mismatch")
        return stand_in_execute(script, data, transmit, keystore, **kw)

    rep = engine.run(b, cards=cards, keys=str(keys), executor=refuse)
    ((index, _, _, reason),) = rep.failures
    assert index == 2 and "card cryptogram mismatch" in reason and "after 3 attempts" in reason
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        assert db.db.execute("SELECT COUNT(*) FROM cards WHERE status = 'unusable'").fetchone()[0] == 3


class Crash(BaseException):
    """Stands for the process dying at a step (not an Exception: nothing catches it)."""


def _crash_after(step: str, count: int = 1) -> Any:
    def execute(*args: Any, **kwargs: Any) -> Any:
        seen = 0
        user = kwargs.pop("on_step")

        def on_step(name: str) -> None:
            nonlocal seen
            user(name)
            if name == step:
                seen += 1
                if seen == count:
                    raise Crash(step)

        return stand_in_execute(*args, on_step=on_step, **kwargs)

    return execute


@pytest.mark.parametrize(
    ("step", "decision"),
    [("select ISD", "redo"), ("install", "spoiled"), ("store data", "spoiled"), ("set status secured", "done")],
)
def test_reconcile_reads_the_card(batch: tuple[Path, Path], tmp_path: Path, step: str, decision: str) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 8)
    with pytest.raises(Crash):
        engine.run(b, cards=cards, keys=str(keys), executor=_crash_after(step))
    with JobDb(b / "jobs.sqlite") as db:
        (att,) = db.open_attempts()
    rep = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.reconciled == {decision: 1}
    assert rep.counts["done"] == 5 and rep.exit_code == 0
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        assert db.db.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'done' OR outcome IS NULL").fetchone()[0] \
            == (5 if decision != "done" else 5)
        (outcome,) = db.db.execute("SELECT outcome FROM attempts WHERE id = ?", (att.attempt,)).fetchone()
        assert outcome == decision
    aids = [a.aid for a in next(iter_cards(b)).apps]
    view = card_view(Path(att.location), keys, aids)
    if decision == "spoiled":  # rolled back: the record's instance is gone from that card
        assert view.apps == {}
    if decision == "redo":  # the untouched card was used again
        assert view.apps and view.life_cycle == SECURED


def test_reconcile_fails_when_the_card_is_gone(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 8)
    with pytest.raises(Crash):
        engine.run(b, cards=cards, keys=str(keys), executor=_crash_after("install"))
    with JobDb(b / "jobs.sqlite") as db:
        (att,) = db.open_attempts()
    Path(att.location).unlink()
    rep = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.reconciled == {"failed": 1}
    assert rep.counts["failed"] == 1 and rep.counts["done"] == 4
    assert "check the card by hand" in rep.failures[0][3]


def test_stock_runs_out_records_unaccounted(batch: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 3)
    rep = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.counts["done"] == 3 and rep.exit_code == 1
    assert [s for _, _, s in rep.unaccounted] == ["pending", "pending"]
    from rich.console import Console

    print_report(rep, Console())
    printed = capsys.readouterr().out
    assert "2 records unaccounted for" in printed
    assert "card stock used up: 2 records still pending" in printed
    make_cards(tmp_path, keys, 2)  # more stock: the same command finishes the batch
    assert engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute).exit_code == 0


def test_parallel_stations(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    rep = engine.run(b, cards=cards, keys=str(keys), stations=2, executor=stand_in_execute)
    assert rep.counts["done"] == 5 and rep.exit_code == 0 and not rep.errors
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        stations = {s for (s,) in db.db.execute("SELECT station FROM attempts")}
    assert stations <= {"station-1", "station-2"}


def test_job_db_invariants_are_enforced(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    with JobDb(b / "jobs.sqlite") as db:
        with pytest.raises(sqlite3.IntegrityError):  # a status outside the five
            db.db.execute("UPDATE records SET status = 'lost' WHERE record_index = 1")
        with pytest.raises(sqlite3.IntegrityError):  # one card, two records
            db.db.execute("UPDATE cards SET record_index = 1 WHERE record_index = 2")
        with pytest.raises(sqlite3.IntegrityError):  # one image, two card rows
            loc = db.db.execute("SELECT location FROM cards LIMIT 1").fetchone()[0]
            db.db.execute("INSERT INTO cards (kind, location, status, updated) VALUES ('image', ?, 'claimed', 'x')",
                          (loc,))
        db.db.execute("UPDATE records SET status = 'pending' WHERE record_index = 1")
        assert any("record 1, which is not done" in p for p in db.check())
    with pytest.raises(Exception, match="changed"):
        with (b / "cards.jsonl").open("a") as fh:
            fh.write(json.dumps(next(iter_cards(b)).to_json()) + "\n")
        engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)


@pytest.mark.parametrize("damage", ["drop a line", "drop the last line", "edit a rejection"])
def test_truncated_or_edited_batch_is_refused(batch: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    b, keys = batch
    name = "rejected.jsonl" if "rejection" in damage else "cards.jsonl"
    lines = (b / name).read_text().splitlines(keepends=True)
    assert len(lines) >= (1 if name == "rejected.jsonl" else 2)
    if damage == "drop a line":
        lines.pop(1)
    elif damage == "drop the last line":
        lines.pop()
    else:
        lines[0] = lines[0].replace('"field"', '"field" ', 1)
    (b / name).write_text("".join(lines))
    with pytest.raises(JobDbError, match=f"{name} is not the file data preparation wrote"):
        engine.run(b, cards=make_cards(tmp_path, keys, 2), keys=str(keys), executor=stand_in_execute)
    assert not (b / "jobs.sqlite").exists() or JobDb(b / "jobs.sqlite").input_count() == 0


def _ns(**kw: Any) -> Any:
    import argparse

    return argparse.Namespace(**kw)


def test_cli_audit_verify_and_tamper(batch: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert cmd_audit(_ns(batch=str(b), verify=True)) == 0
    assert cmd_status(_ns(batch=str(b))) == 0
    db = sqlite3.connect(b / "jobs.sqlite")
    db.execute("UPDATE audit SET details = '{}' WHERE seq = 5")
    db.commit()
    db.close()
    capsys.readouterr()
    assert cmd_audit(_ns(batch=str(b), verify=True)) == 1
    assert "entry 5" in capsys.readouterr().out


def test_cli_parser_registers_commands(tmp_path: Path) -> None:
    from cardlab.cli import build_parser

    b = str(tmp_path)  # BATCH must be a directory (checked as the options are read)
    args = build_parser().parse_args(["perso", "run", b, "--cards", "D", "--stations", "3"])
    assert args.cards == "D" and args.stations == 3
    args = build_parser().parse_args(["perso", "audit", b, "--verify"])
    assert args.verify


def test_real_emv_cps_script(batch: tuple[Path, Path], tmp_path: Path) -> None:
    """The shipped EMV CPS script through cardlab.personalizer.script, on stock cards."""
    script = EMV_CPS
    b, keys = batch
    cards = make_cards(tmp_path, keys, 6)
    counters = {image: Card.load(image).state.sequence_counter for image in cards.glob("card-*.json")}
    rep = engine.run(b, cards=cards, keys=str(keys), script=script)
    assert rep.counts["done"] == 5 and rep.exit_code == 0, rep.failures
    stage_names = {name for name, _, _ in rep.stages}
    assert {"identify", "claim", "save"} <= stage_names and len(stage_names) > 4
    # the blank check ran inside the script's own session (no stage of its own): one INITIALIZE
    # UPDATE per card, so each card's SCP03 sequence counter moved once
    assert "check blank" not in stage_names
    moved = sorted(Card.load(image).state.sequence_counter - before for image, before in counters.items())
    assert moved == [0, 1, 1, 1, 1, 1]  # five cards personalized in one session each, one left in stock


def test_stock_keyed_with_another_kmc_is_refused_before_the_first_card(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A blank of the stock is probed (on an in-memory copy) before any card is claimed: stock keyed
    with another KMC stops the run with one line naming the cause, exit 2, nothing failed or spoiled."""
    from cardlab.cli import main
    from cardlab.personalizer.stock import make_stock

    batch, keys = make_batch(tmp_path, count=2, bad=())
    other = bytes(range(16))
    stock = make_stock(tmp_path / "foreign", 2, lambda kdd: (other, other, other), "kdf3")
    before = {p: p.read_bytes() for p in stock}
    code = main(["perso", "run", str(batch), "--cards", str(tmp_path / "foreign"), "--keys", str(keys)])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not open SCP03 with the profile's keys" in err and "card cryptogram mismatch" in err
    assert len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in stock} == before  # the stock untouched
    with JobDb(batch / "jobs.sqlite") as db:
        assert db.counts().get("failed", 0) == 0 and db.counts()["pending"] == 2


def test_a_foreign_card_mid_run_says_why_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One card of another stock among good blanks: the interpreter knows why SCP03 did not open
    (the card's cryptogram does not verify); that cause — not "SW None" — reaches the terminal, perso
    status, the job database and the audit log, and every record still ends on a good card."""
    from cardlab.cli import main
    from cardlab.emulator import Card
    from cardlab.personalizer.stock import make_stock

    batch, keys = make_batch(tmp_path, count=2, bad=())
    cards = make_cards(tmp_path, keys, 4)
    other = bytes(range(16))
    (foreign,) = make_stock(tmp_path / "foreign", 1, lambda kdd: (other, other, other), "kdf3")
    Card.load(foreign).save(cards / "card-000002.json")  # the second blank of the stock is foreign
    code = main(["perso", "run", str(batch), "--cards", str(cards), "--keys", str(keys)])
    out = capsys.readouterr()
    cause = "card cryptogram mismatch"
    assert cause in out.out + out.err and "SW None" not in out.out + out.err
    main(["perso", "status", str(batch)])
    assert cause in capsys.readouterr().out
    db = sqlite3.connect(batch / "jobs.sqlite")
    reasons = [r for (r,) in db.execute("SELECT reason FROM attempts WHERE reason IS NOT NULL")]
    details = [d for (d,) in db.execute("SELECT details FROM audit")]
    assert reasons and all(cause in r for r in reasons), reasons
    assert any(cause in d for d in details)
    assert code in (0, 1)


SHARED_RUNNER = """
import sys
sys.path.insert(0, {here!r})
from enginekit import stand_in_execute
from cardlab.personalizer import engine
rep = engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations=2, executor=stand_in_execute)
sys.exit(rep.exit_code)
"""


def test_batches_sharing_one_stock_never_share_a_card(tmp_path: Path) -> None:
    """Three batches run at once on one stock directory (separate processes, two stations each):
    the stock's own claim markers give every card to one batch only, so no image holds two
    records, every image holds exactly the record its batch's job database says (read back from
    the image: the PAN in its EMV records), its claim marker names that batch and record, and no
    image holds cardholder data that no job database accounts for (issue 13)."""
    import os
    import subprocess
    import sys

    from enginekit import pans_on_image, record_of_pan

    from cardlab.personalizer.stock import claim_of, list_images

    batches = []
    for n in range(3):
        (tmp_path / f"b{n}").mkdir()
        b, keys = make_batch(tmp_path / f"b{n}", count=6, bad=())
        batches.append((b, keys))
    cards = make_cards(tmp_path, batches[0][1], 24)
    env = {**os.environ, "ENGINEKIT_DELAY": "0.005"}
    procs = [subprocess.Popen([sys.executable, "-c", SHARED_RUNNER.format(
        here=str(Path(__file__).parent), batch=str(b), cards=str(cards), keys=str(keys))], env=env,
        stderr=subprocess.PIPE) for b, keys in batches]  # fmt: skip
    errs = [p.communicate(timeout=300)[1].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    seen: dict[str, Path] = {}
    for b, _ in batches:
        with JobDb(b / "jobs.sqlite") as db:
            assert db.check() == [] and db.counts()["done"] == 6
            done = db.db.execute("SELECT c.location, r.record_index FROM records r JOIN cards c ON c.id = r.card "
                                 "WHERE r.status = 'done'").fetchall()  # fmt: skip
        for loc, index in done:
            assert loc not in seen, f"{loc} is done in {seen[loc]} and in {b}"
            seen[loc] = b
            owner, record = claim_of(loc)
            assert owner.startswith(str(b.resolve())) and record == index
            pans = pans_on_image(Path(loc))
            assert [record_of_pan(p) for p in pans] == [index], (loc, b, index)
    assert len(seen) == 18
    holding = {str(p) for p in list_images(cards) if pans_on_image(p)}
    assert holding == set(seen)  # no card holds cardholder data that no batch accounts for


def test_retry_requeues_failed_records_with_a_reason_in_the_audit(batch: tuple[Path, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``perso retry`` puts failed records back to pending (with an audit entry naming why); the
    next run personalizes them on fresh cards; a record that has not failed is refused with one line."""
    from enginekit import FakeStepFailed

    from cardlab.cli import main

    b, keys = batch
    cards = make_cards(tmp_path, keys, 10)

    def refuse_late(script: Any, data: Any, transmit: Any, keystore: Any, **kw: Any) -> Any:
        stand_in_execute(script, data, transmit, keystore, **kw)
        if data.record_index == 2:
            raise FakeStepFailed(9, "check", 0x6A80, ("9000",))

    rep = engine.run(b, cards=cards, keys=str(keys), executor=refuse_late)
    assert [f[0] for f in rep.failures] == [2]
    assert main(["perso", "retry", str(b), "--record", "4"]) == 2
    assert "record 4 has not failed" in capsys.readouterr().err
    assert main(["perso", "retry", str(b), "--failed", "--reason", "data corrected at the issuer"]) == 0
    assert "1 record(s) back to pending: 2" in capsys.readouterr().out
    rep = engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.exit_code == 0 and rep.counts["done"] == 5 and rep.counts["failed"] == 0
    with JobDb(b / "jobs.sqlite") as db:
        assert db.check() == []
        entries = [json.loads(d) for (e, d) in db.db.execute("SELECT event, details FROM audit") if e == "retry"]
    assert entries == [{"record": 2, "reason": "data corrected at the issuer"}]
    assert audit.verify(sqlite3.connect(b / "jobs.sqlite")).ok


def test_a_card_pulled_between_detection_and_connect_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card vanishes after the reader saw it and before the station connects (NoCardException):
    the station says so and waits for a card again, instead of the run dying with a traceback."""
    from smartcard.Exceptions import NoCardException

    from cardlab.personalizer.engine import sources

    connects = {"n": 0}

    class Channel:
        def __init__(self, reader: str) -> None:
            connects["n"] += 1
            if connects["n"] == 1:
                raise NoCardException("the card is gone", 0x80100069)

        def close(self) -> None:
            pass

    presence = iter([True, False, True])  # seen, then gone (the pull), then inserted again
    said: list[str] = []

    class Db:
        @staticmethod
        def pending_left() -> bool:
            return True

    monkeypatch.setattr(sources, "PcscChannel", Channel)
    monkeypatch.setattr(sources, "card_present", lambda reader: next(presence))
    source = sources.ReaderSource("Test Reader 00", poll=0, say=said.append)
    hand = source.next_card(Db(), "station 1")  # type: ignore[arg-type]
    assert hand is not None and connects["n"] == 2
    assert any("went away before it could be used (NoCardException)" in s for s in said)


def test_the_blank_check_joins_the_script_session_only_when_nothing_can_be_written_before_it(
        batch: tuple[Path, Path], tmp_path: Path) -> None:
    """in_session_check: the shipped script (SELECT ISD, then open_scp03) yes; a script that sends
    anything else first, selects another application, or opens the session conditionally: no (the
    check then opens its own session before the script, as before)."""
    from cardlab.personalizer import script as script_mod
    from cardlab.personalizer.engine.flow import Job, in_session_check
    from cardlab.personalizer.engine.gp import GpAccess

    b, _keys = batch
    data = next(iter_cards(b))
    job = Job(b, EMV_CPS, "", GpAccess(bytes.fromhex("A000000151000000"), "KMC", "KDF3", 0x30, None))
    shipped = script_mod.load_script(EMV_CPS)
    assert in_session_check(job, shipped, script_mod.execute, data)
    assert not in_session_check(job, shipped, stand_in_execute, data)
    text = EMV_CPS.read_text()
    variants = {
        "put data first": text.replace("steps:\n  - name: select ISD",
                                       "steps:\n  - name: early\n    apdu: {hex: 80DA9F7F00}\n  - name: select ISD", 1),
        "another application": text.replace('select: {aid: "${profile.card.isd_aid}"}', "select: {aid: A0000000031010}", 1),
        "conditional session": text.replace("  - name: open secure channel\n",
                                            "  - name: open secure channel\n    when: \"${profile.card.kmc}\"\n", 1),
    }
    for name, variant in variants.items():
        assert variant != text, name
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(variant)
        assert not in_session_check(job, script_mod.load_script(path), script_mod.execute, data), name


def test_only_the_image_claim_commits_without_a_sync(batch: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """JobDb.claim_image commits without syncing the WAL (nothing reaches the card before the
    durable commit of start(), which syncs it too); every other transaction syncs it, also after a
    claim that raised; statements outside a transaction run under synchronous=FULL."""
    from cardlab.personalizer.jobstore import SqliteStore

    b, keys = batch
    cards = make_cards(tmp_path, keys, 3)
    engine.run(b, cards=cards, keys=str(keys), executor=stand_in_execute)  # loads the batch
    syncs: list[str] = []
    real_sync = SqliteStore._sync_wal

    def counted(self: SqliteStore) -> None:
        syncs.append(self.where)
        real_sync(self)

    monkeypatch.setattr(SqliteStore, "_sync_wal", counted)
    with JobDb(b / "jobs.sqlite") as db:
        spare = tmp_path / "spare.json"
        Card.create().save(spare)
        assert db.claim_image("test:1:station-1", [str(spare)], lambda path: True) is not None
        assert syncs == []
        assert db.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL outside a transaction

        def broken(path: str) -> bool:
            raise OSError("stock unreadable")

        with pytest.raises(OSError):
            db.claim_image("test:1:station-1", [str(tmp_path / "other.json")], broken)
        assert syncs == [] and db.db.execute("PRAGMA synchronous").fetchone()[0] == 2
        with db.transaction():
            pass
        assert syncs == [str(b / "jobs.sqlite")]
