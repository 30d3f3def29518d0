"""Crash recovery of badge batches: a badge installs no GP application and
leaves the card OP_READY, so the engine settles an interrupted attempt by
reading the badge's files back (cardlab.personalizer.badge.read_badge) — the
completion marker EF the script writes last, and the holder files compared
with the record. A record is never personalized twice: a badge finished
before the crash is ``done`` on that card, a half-written one is rolled back
(badge DF deleted) and redone once on a fresh card, an untouched card is
reused. The real script interpreter runs vectors/scripts/badge.yaml."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.emulator import Card
from cardlab.personalizer import engine
from cardlab.personalizer.badge import BadgeLayout, BadgeOnCard, read_badge
from cardlab.personalizer.batch import CardPersoData, iter_cards
from cardlab.personalizer.jobdb import JobDb
from cardlab.personalizer.keys import open_keystore
from cardlab.personalizer.script import Script, StepEvent, load_script
from cardlab.personalizer.script import execute as script_execute

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
KEYSTORE = VECTORS / "test-keystore.json"
PROFILE = VECTORS / "profiles" / "badge.yaml"
RECORDS = VECTORS / "records" / "badge.csv"
LAYOUT = BadgeLayout.from_profile(yaml.safe_load(PROFILE.read_text()))


class Crash(BaseException):
    """The process dying at that point (not an Exception: nothing catches it)."""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardlab.personalizer.prepare import prepare

    out = tmp_path_factory.mktemp("badges") / "batch"
    prepare(PROFILE, RECORDS, str(KEYSTORE), out)
    return out


@pytest.fixture()
def batch(prepared: Path, tmp_path: Path) -> Path:
    """A fresh copy of the prepared badge batch (3 records, no job database yet)."""
    return Path(shutil.copytree(prepared, tmp_path / "batch"))


def make_stock(tmp: Path, count: int) -> Path:
    from cardlab.personalizer.stock import make_stock as stock

    with open_keystore(str(KEYSTORE)) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys("KMC", "KDF3", kdd)
            return k.enc, k.mac, k.dek

        stock(tmp / "stock", count, div, "kdf3")
    return tmp / "stock"


def _script(script: Script | Path) -> Script:
    return script if isinstance(script, Script) else load_script(script)


def crash_after(step: str) -> Callable[..., Any]:
    """The real interpreter, dying right after the step named ``step`` (the
    card image holds every APDU up to that step: saved after each one)."""

    def execute(script: Script | Path, card: CardPersoData, transmit: Callable[[bytes], bytes], keystore: Any, *,
                profile: Any = None, on_step: Callable[[StepEvent], None] | None = None) -> Any:  # fmt: skip
        def hook(event: StepEvent) -> None:
            if on_step is not None:
                on_step(event)
            if event.step_name == step:
                raise Crash(step)

        return script_execute(_script(script), card, transmit, keystore, profile=profile, on_step=hook)

    return execute


def crash_when_finished(script: Script | Path, card: CardPersoData, transmit: Callable[[bytes], bytes],
                        keystore: Any, *, profile: Any = None,
                        on_step: Callable[[StepEvent], None] | None = None) -> Any:  # fmt: skip
    """The whole script ran; the process dies before the job database records it."""
    script_execute(_script(script), card, transmit, keystore, profile=profile, on_step=on_step)
    raise Crash("after the script")


def on_card(path: Path, card: CardPersoData) -> BadgeOnCard:
    image = Card.load(path)
    image.power_on()
    return read_badge(image.transmit, LAYOUT, card.fields)


def holders(stock: Path, card: CardPersoData) -> list[Path]:
    """The stock images that hold ``card``'s complete badge."""
    return [p for p in sorted(stock.glob("card-*.json")) if on_card(p, card).state() == "complete"]


def crash_then_resume(batch: Path, stock: Path, executor: Callable[..., Any]) -> tuple[engine.RunReport, Any]:
    with pytest.raises(Crash):
        engine.run(batch, cards=stock, keys=str(KEYSTORE), executor=executor)
    with JobDb(batch / "jobs.sqlite") as db:
        (att,) = db.open_attempts()
    # the resume runs the real interpreter on the batch's own script.yaml
    return engine.run(batch, cards=stock, keys=str(KEYSTORE)), att


def assert_each_record_once(batch: Path, stock: Path) -> None:
    with JobDb(batch / "jobs.sqlite") as db:
        assert db.check() == []
        done = db.db.execute("SELECT record_index, COUNT(*) FROM attempts WHERE outcome = 'done' "
                             "GROUP BY record_index").fetchall()
    assert sorted(done) == [(1, 1), (2, 1), (3, 1)]
    for card in iter_cards(batch):
        assert len(holders(stock, card)) == 1, f"badge {card.card_id} on {len(holders(stock, card))} cards"


def test_crash_after_the_script_finished_is_done_on_that_card(batch: Path, tmp_path: Path) -> None:
    """The audit's case: complete badge, job DB not told. Before the marker
    read-back this was judged 'untouched', the same card was claimed again and
    the rerun failed on CREATE FILE (6A89) — or a second card got the badge."""
    stock = make_stock(tmp_path, 4)
    rep, att = crash_then_resume(batch, stock, crash_when_finished)
    assert rep.reconciled == {"done": 1}
    assert rep.counts["done"] == 3 and rep.counts["failed"] == 0 and rep.exit_code == 0
    assert rep.cards_this_run == 2  # only the two other records were written this run
    first = next(c for c in iter_cards(batch) if c.record_index == att.record_index)
    assert holders(stock, first) == [Path(att.location)]
    assert_each_record_once(batch, stock)
    with JobDb(batch / "jobs.sqlite") as db:
        (outcome, reason), = db.db.execute("SELECT outcome, reason FROM attempts WHERE id = ?", (att.attempt,))
        (status,) = db.db.execute("SELECT status FROM cards WHERE location = ?", (att.location,)).fetchone()
    assert outcome == "done" and "marker" in reason and status == "personalized"
    # one blank card left: the finished badge did not cost a second card
    assert sum(1 for p in stock.glob("card-*.json") if on_card(p, first).df is False) == 1


def test_crash_after_the_marker_step_is_done(batch: Path, tmp_path: Path) -> None:
    stock = make_stock(tmp_path, 4)
    rep, _ = crash_then_resume(batch, stock, crash_after("write badge marker"))
    assert rep.reconciled == {"done": 1} and rep.exit_code == 0
    assert_each_record_once(batch, stock)


@pytest.mark.parametrize(
    "step",
    ["create badge DF", "write holder name", "write premise", "write door key", "create badge marker EF"],
)
def test_crash_in_the_middle_rolls_back_and_redoes_once(batch: Path, tmp_path: Path, step: str) -> None:
    stock = make_stock(tmp_path, 5)
    rep, att = crash_then_resume(batch, stock, crash_after(step))
    assert rep.reconciled == {"spoiled": 1}
    assert rep.counts["done"] == 3 and rep.counts["failed"] == 0 and rep.exit_code == 0
    assert_each_record_once(batch, stock)
    spoiled = Path(att.location)
    card = next(c for c in iter_cards(batch) if c.record_index == att.record_index)
    # rolled back: the half-written badge DF (holder data, maybe the door key) is gone from that card
    assert on_card(spoiled, card).df is False
    (other,) = holders(stock, card)
    assert other != spoiled
    with JobDb(batch / "jobs.sqlite") as db:
        (status,) = db.db.execute("SELECT status FROM cards WHERE location = ?", (str(spoiled),)).fetchone()
        reasons = " ".join(r for (r,) in db.db.execute("SELECT reason FROM attempts WHERE reason IS NOT NULL"))
    assert status == "spoiled" and "badge DF deleted" in reasons
    assert card.fields["name"] not in reasons  # no holder data in the job database's reasons


@pytest.mark.parametrize("step", ["select MF", "open secure channel"])
def test_crash_before_anything_was_written_is_untouched(batch: Path, tmp_path: Path, step: str) -> None:
    stock = make_stock(tmp_path, 3)  # exactly one card per record: the untouched one must be reused
    rep, att = crash_then_resume(batch, stock, crash_after(step))
    assert rep.reconciled == {"redo": 1}
    assert rep.counts["done"] == 3 and rep.exit_code == 0
    assert_each_record_once(batch, stock)
    with JobDb(batch / "jobs.sqlite") as db:
        (status,) = db.db.execute("SELECT status FROM cards WHERE location = ?", (att.location,)).fetchone()
    assert status == "personalized"  # released and used again


def test_a_partial_badge_that_cannot_be_deleted_fails_the_record(batch: Path, tmp_path: Path) -> None:
    """Rollback refused (here: the MF forbids deleting its children): the
    record fails with 'check the card by hand' instead of a second badge with
    the same door key being made while a half badge is around."""
    stock = make_stock(tmp_path, 4)
    with pytest.raises(Crash):
        engine.run(batch, cards=stock, keys=str(KEYSTORE), executor=crash_after("write door key"))
    with JobDb(batch / "jobs.sqlite") as db:
        (att,) = db.open_attempts()
    image = Card.load(Path(att.location))
    from cardlab.emulator.filesystem import CREATE_DF, CREATE_EF, DELETE_CHILD, NEVER, SC_SM, compact_acl

    root = image.fs.root
    root.spec = dataclasses.replace(root.spec, acl=compact_acl({DELETE_CHILD: NEVER, CREATE_EF: SC_SM,
                                                                CREATE_DF: SC_SM}))
    image.fs.dirty = True
    image.save(Path(att.location))
    rep = engine.run(batch, cards=stock, keys=str(KEYSTORE))
    assert rep.reconciled == {"failed": 1}
    assert rep.counts["done"] == 2 and rep.counts["failed"] == 1
    assert "could not be rolled back" in rep.failures[0][3]


def _view(life: int = 0x01) -> engine.CardView:
    return engine.CardView("00", life, {})


@pytest.mark.parametrize(
    ("badge", "life", "decision"),
    [
        (BadgeOnCard(True, frozenset({1, 2, 3, 4, 5}), "match", True), 0x01, "done"),
        (BadgeOnCard(False, frozenset(), "absent", False), 0x01, "untouched"),
        (BadgeOnCard(False, frozenset(), "absent", False), 0x0F, "partial"),  # not a stock life cycle
        (BadgeOnCard(True, frozenset(), "absent", False), 0x01, "partial"),  # empty DF
        (BadgeOnCard(True, frozenset({1, 2, 3, 4, 5}), "absent", True), 0x01, "partial"),  # marker EF, not written
        (BadgeOnCard(True, frozenset({1, 2, 3, 4, 5}), "other", True), 0x01, "foreign"),  # another badge number
        (BadgeOnCard(True, frozenset({1, 2, 3, 4, 5}), "match", False), 0x01, "foreign"),  # other holder data
    ],
)
def test_decide_for_badges(prepared: Path, badge: BadgeOnCard, life: int, decision: str) -> None:
    card = next(iter_cards(prepared))
    assert engine.decide(_view(life), card, engine.GpAccess(target_life_cycle=None), badge=badge) == decision


def test_a_card_holding_another_records_badge_is_not_rolled_back(batch: Path, tmp_path: Path) -> None:
    """A marker that is not the record's: the card is left as it is (it may be
    another record's finished badge) and the record fails for a look by hand."""
    stock = make_stock(tmp_path, 4)
    with pytest.raises(Crash):
        engine.run(batch, cards=stock, keys=str(KEYSTORE), executor=crash_when_finished)
    with JobDb(batch / "jobs.sqlite") as db:
        (att,) = db.open_attempts()
    image = Card.load(Path(att.location))
    marker = next(n for n in image.fs.root.walk() if n.spec.fid == LAYOUT.df_fid + 5)
    marker.data[:] = b"99999999".ljust(16, b"\x00")  # type: ignore[attr-defined]
    image.fs.dirty = True
    image.save(Path(att.location))
    rep = engine.run(batch, cards=stock, keys=str(KEYSTORE))
    assert rep.reconciled == {"failed": 1} and "check the card by hand" in rep.failures[0][3]
    assert on_card(Path(att.location), next(iter_cards(batch))).df  # nothing deleted
    con = sqlite3.connect(f"file:{batch / 'jobs.sqlite'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT COUNT(*) FROM records WHERE status = 'done'").fetchone()[0] == 2
    finally:
        con.close()
