"""Crash/resume: SIGKILL the batch at random moments, resume, and prove that every
record ends exactly once as done / failed / rejected, no card holds two records,
and the audit chain verifies."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

from enginekit import KMC_NAME, kill_during_batch, make_batch, make_cards, stand_in_execute

from cardlab.emulator import Card
from cardlab.personalizer import audit, engine
from cardlab.personalizer.batch import iter_cards
from cardlab.personalizer.jobdb import JobDb
from cardlab.personalizer.keys import open_keystore

HERE = Path(__file__).resolve().parent

RUNNER = """
import sys
sys.path.insert(0, {here!r})
from enginekit import stand_in_execute
from cardlab.personalizer import engine
engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations=2, executor=stand_in_execute)
"""


def test_sigkill_and_resume(tmp_path: Path) -> None:
    batch, keys = make_batch(tmp_path, count=32, bad=(5, 17))
    cards = make_cards(tmp_path, keys, 48)  # 30 good records + up to 2 spoiled cards per kill
    code = RUNNER.format(here=str(HERE), batch=str(batch), cards=str(cards), keys=str(keys))
    env = {**os.environ, "ENGINEKIT_DELAY": "0.01"}
    rng = random.Random(4)
    kills = 0
    db_path = batch / "jobs.sqlite"
    # each run is killed at a random moment after it has started a new attempt
    while kills < 6:
        killed, err = kill_during_batch(code, env, db_path, rng.uniform(0.0, 0.25))
        assert killed, f"the batch ended before kill {kills + 1}: {err}"
        kills += 1
        with JobDb(db_path) as db:  # consistent after every kill
            assert db.check() == []
    assert kills >= 5
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute)
    assert rep.exit_code == 0, (rep.failures, rep.unaccounted, rep.errors)

    # every record exactly once: done, failed or rejected
    with JobDb(batch / "jobs.sqlite") as db:
        assert db.check() == []
        counts = db.counts()
        assert counts["done"] + counts["failed"] + counts["rejected"] == db.input_count() == 32
        assert counts["rejected"] == 2 and counts["pending"] == counts["in_progress"] == 0
        done = db.db.execute("SELECT r.record_index, c.location FROM records r JOIN cards c ON c.id = r.card "
                             "WHERE r.status = 'done'").fetchall()
        attempts_done = db.db.execute("SELECT record_index FROM attempts WHERE outcome = 'done'").fetchall()
    assert len(attempts_done) == len({i for (i,) in attempts_done})  # never personalized twice
    locations = [loc for _, loc in done]
    assert len(locations) == len(set(locations))  # no image holds two records

    # the cards themselves: each done record's image is personalized and secured; every other
    # image holds no complete personalization (spoiled ones were rolled back)
    aids = [a.aid for a in next(iter_cards(batch)).apps]
    with open_keystore(str(keys)) as ks:
        gp = engine.GpAccess(kmc=KMC_NAME)
        for image in sorted(cards.glob("card-*.json")):
            view, _ = engine.inspect_card(Card.load(image).transmit, gp, ks, aids)
            if str(image) in locations:
                assert view.life_cycle == 0x0F and all(view.apps.get(a) == 0x0F for a in aids)
            else:
                assert view.apps == {} or view.life_cycle != 0x0F, image

    db = sqlite3.connect(batch / "jobs.sqlite")
    result = audit.verify(db)
    assert result.ok, result.problems
    reconciled = db.execute("SELECT COUNT(*) FROM audit WHERE event = 'reconcile'").fetchone()[0]
    print(f"{kills} kills, {reconciled} attempts reconciled, counts {counts}")
    assert db.execute("SELECT COUNT(*) FROM audit WHERE event = 'card done'").fetchone()[0] + \
        db.execute("SELECT COUNT(*) FROM audit WHERE event = 'reconcile' AND details LIKE '%\"decision\":\"done\"%'"
                   ).fetchone()[0] == counts["done"]
