"""Crash/resume soak of the batch personalizer.

A prepared batch (the real ``prepare()`` on the SDA sample profile, with a few
records that fail validation) is personalized onto a stock of emulated cards by
``cardlab.personalizer.engine.run`` (2 stations) in a child process, which is killed
with SIGKILL at random moments (``--kills``, default 20), then resumed; after
the kills a last run finishes the batch. Printed: records done / failed /
rejected / unaccounted (must be 0), the job database consistency check after
every kill, cards personalized twice (must be 0) and the audit chain verification.

The station executes the EMV CPS personalization with the engine kit's
stand-in executor (tests/personalizer/enginekit.py) slowed by
``ENGINEKIT_DELAY`` per step so that kills land inside personalizations.

``python -m robustness.crash_soak [--kills N] [--records N] [--quick]``; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from robustness.common import ROOT, figures

RUNNER = """
import sys
sys.path.insert(0, {kit!r})
from enginekit import stand_in_execute
from cardlab.personalizer import engine
engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations=2, executor=stand_in_execute)
"""


@dataclass
class Result:
    kills: int = 0
    runs: int = 0
    input: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    unaccounted: int = 0
    inconsistent_after_kill: int = 0
    personalized_twice: int = 0
    images_with_two_records: int = 0
    reconciled: int = 0
    audit_ok: bool = False
    audit_entries: int = 0
    audit_problems: list[str] = field(default_factory=list)
    final_exit: int = -1
    seconds: float = 0.0
    kills_asked: int = 0

    @property
    def ok(self) -> bool:
        return (self.kills == self.kills_asked and self.unaccounted == 0 and self.inconsistent_after_kill == 0 and self.personalized_twice == 0
                and self.images_with_two_records == 0 and self.audit_ok and self.final_exit == 0
                and sum(self.counts.get(k, 0) for k in ("done", "failed", "rejected")) == self.input)


def run(work: Path, kills: int = 20, records: int = 60, seed: int = 1, delay: float = 0.03,
        window: tuple[float, float] = (0.0, 0.3)) -> Result:
    """``window``: the kill comes that many seconds (uniform) after the run has
    started a new attempt — progress-driven, so a fast machine still gets
    every kill in before the batch ends."""
    from enginekit import (  # type: ignore[import-not-found]
        kill_during_batch,
        make_batch,
        make_cards,
        stand_in_execute,
    )

    from cardlab.personalizer import audit, engine
    from cardlab.personalizer.jobdb import JobDb

    res = Result(kills_asked=kills)
    started = time.perf_counter()
    rng = random.Random(seed)
    bad = tuple(sorted(rng.sample(range(1, records + 1), max(1, records // 15))))
    batch, keys = make_batch(work, count=records, bad=bad)
    cards = make_cards(work, keys, records + 2 * kills + 4)  # a kill may spoil one card per station
    code = RUNNER.format(kit=str(ROOT / "tests" / "personalizer"), batch=str(batch), cards=str(cards), keys=str(keys))
    env = {**os.environ, "ENGINEKIT_DELAY": str(delay)}
    while res.kills < kills:
        res.runs += 1
        killed, _ = kill_during_batch(code, env, batch / "jobs.sqlite", rng.uniform(*window))
        if not killed:
            break  # the batch finished before this kill
        res.kills += 1
        if (batch / "jobs.sqlite").exists():
            with JobDb(batch / "jobs.sqlite") as db:
                if db.check():
                    res.inconsistent_after_kill += 1
    rep = engine.run(batch, cards=cards, keys=str(keys), executor=stand_in_execute)
    res.runs += 1
    res.final_exit = rep.exit_code
    res.reconciled = sum(rep.reconciled.values())
    with JobDb(batch / "jobs.sqlite") as db:
        res.input = db.input_count()
        res.counts = db.counts()
        res.unaccounted = len(db.unaccounted()) + (len(db.check()))
        attempts = [i for (i,) in db.db.execute("SELECT record_index FROM attempts WHERE outcome = 'done'")]
        res.personalized_twice = len(attempts) - len(set(attempts))
        locations = [loc for (loc,) in db.db.execute(
            "SELECT c.location FROM records r JOIN cards c ON c.id = r.card WHERE r.status = 'done'")]
        res.images_with_two_records = len(locations) - len(set(locations))
    con = sqlite3.connect(batch / "jobs.sqlite")
    try:
        verified = audit.verify(con)
    finally:
        con.close()
    res.audit_ok = verified.ok
    res.audit_entries = verified.entries
    res.audit_problems = list(verified.problems)
    res.seconds = time.perf_counter() - started
    return res


def report(res: Result) -> str:
    c = res.counts
    return figures("crash/resume soak (robustness/crash_soak.py)", [
        ("SIGKILLs", f"{res.kills} of {res.kills_asked}"),
        ("runs (incl. the final one)", res.runs),
        ("records in", res.input),
        ("done", c.get("done", 0)),
        ("failed", c.get("failed", 0)),
        ("rejected", c.get("rejected", 0)),
        ("unaccounted", res.unaccounted),
        ("job db inconsistent after a kill", res.inconsistent_after_kill),
        ("attempts reconciled in the final run", res.reconciled),
        ("records personalized twice", res.personalized_twice),
        ("card images holding two records", res.images_with_two_records),
        ("final run exit code", res.final_exit),
        ("audit chain", f"{'verified' if res.audit_ok else 'NOT verified'} ({res.audit_entries} entries)"
                        + ("" if res.audit_ok else ": " + "; ".join(res.audit_problems[:5]))),
        ("seconds", f"{res.seconds:.1f}"),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--records", type=int, default=60)
    ap.add_argument("--delay", type=float, default=0.03, help="seconds per personalization step (ENGINEKIT_DELAY)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 kills, 12 records, 0.05 s per step")
    args = ap.parse_args(argv)
    kills, records, delay = (3, 12, 0.05) if args.quick else (args.kills, args.records, args.delay)
    with tempfile.TemporaryDirectory(prefix="cardlab-soak-") as tmp:
        res = run(Path(tmp), kills=kills, records=records, seed=args.seed, delay=delay)
    print(report(res))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
