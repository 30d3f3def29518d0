"""Reconciliation: settle the attempts a crash left open, by reading each card.

A crash between *claim* and *finish* (:mod:`cardlab.personalizer.engine.flow`)
leaves an open attempt; the next run reads that card through the same channel —
its CIN, then GET STATUS over SCP03 (GP §11.4) and, for a badge (no GP
application), its file system (:func:`cardlab.personalizer.badge.read_badge`) —
and :func:`decide` says what the card shows: ``done``, ``untouched`` (the
record goes to another card), ``foreign`` or ``partial`` (rolled back, the card
set aside). See ``docs/perso-engine.md``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING

from cardlab.personalizer.engine.cardstate import badge_layout, decide
from cardlab.personalizer.engine.channel import SW_OK, status_word
from cardlab.personalizer.engine.flow import Job, failure_reason
from cardlab.personalizer.engine.gp import inspect_card
from cardlab.personalizer.engine.identity import read_identity

if TYPE_CHECKING:
    from cardlab.personalizer.engine.sources import CardInHand, CardSource
    from cardlab.personalizer.jobdb import JobDb, OpenAttempt
    from cardlab.personalizer.keys import KeyStore


def reconcile_one(job: Job, db: JobDb, source: CardSource, att: OpenAttempt, keystore: KeyStore,
                  hand: CardInHand | None = None, cause: str = "") -> str:
    """Settle one attempt a crash (or a reader fault) left open, by reading the card (``hand``:
    the card already opened again; ``cause``: the fault that left it open, put before the reason)."""
    data = db.card_data(att.record_index, att.offset)

    def resolve(a: OpenAttempt, decision: str, reason: str, card_status: str | None = None) -> None:
        db.resolve(a, decision, f"{cause}; {reason}" if cause else reason, card_status)

    why = "card not available"
    if hand is None:
        try:
            hand = source.open(att.location)
        except Exception as exc:  # noqa: BLE001
            why = failure_reason(exc)
    if hand is None:
        resolve(att, "failed", f"cannot reconcile: {why} at {att.location}; check the card by hand")
        return "failed"
    try:
        layout = badge_layout(job.profile, data)
        badge = None
        if layout is not None:
            from cardlab.personalizer.badge import read_badge

            # plain reads (no session yet): the badge files are readable without one
            badge = read_badge(hand.channel.transmit, layout, data.fields)
        aids = [] if layout is not None else [a.aid for a in data.apps]
        view, hs = inspect_card(hand.channel.transmit, job.gp, keystore, aids)
        if att.cin is not None and view.cin != att.cin:
            resolve(att, "failed", f"the card at {att.location} is not the card the record was started on "
                                      f"(CIN {view.cin}, expected {att.cin})", card_status="spoiled")
            return "failed"
        verdict = decide(view, data, job.gp, badge=badge)
        what = "the record's badge, complete (marker written)" if layout is not None \
            else "the record's applications, personalized"
        if verdict == "done":
            resolve(att, "done", f"reconciled: the card holds {what}")
            return "done"
        if verdict == "untouched":
            resolve(att, "redo", "reconciled: the card was not written; the record goes to another card run")
            return "redo"
        if verdict == "foreign":
            resolve(att, "failed", "the card holds a badge that is not this record's; not rolled back, "
                                      "check the card by hand")
            return "failed"
        # partial: roll back — delete what the record left so no part of it stays on the card
        failed_delete = []
        if layout is not None:
            from cardlab.personalizer.badge import rollback_apdus

            if badge is not None and badge.df:
                for apdu in rollback_apdus(layout):
                    resp = hs.send(apdu)
                    if status_word(resp) != SW_OK:
                        failed_delete.append(f"{apdu[:4].hex().upper()} SW {status_word(resp):04X}")
                        break
            undone = "badge DF deleted" if badge is not None and badge.df else "no badge DF to delete"
        else:
            for aid in view.apps:
                resp = hs.send(bytes((0x80, 0xE4, 0x00, 0x00, 2 + len(aid), 0x4F, len(aid))) + aid + b"\x00")
                if status_word(resp) != SW_OK:
                    failed_delete.append(f"{aid.hex().upper()} SW {status_word(resp):04X}")
            undone = "instances deleted"
        if failed_delete:
            resolve(att, "failed", "partially personalized card could not be rolled back: "
                                      + ", ".join(failed_delete))
            return "failed"
        resolve(att, "spoiled", f"reconciled: partially personalized; {undone}, card set aside, "
                                   "the record is redone on a fresh card")
        return "spoiled"
    except Exception as exc:  # noqa: BLE001
        resolve(att, "failed", f"cannot reconcile: {failure_reason(exc)}")
        return "failed"
    finally:
        with contextlib.suppress(Exception):
            hand.finish()


def reconcile(job: Job, db: JobDb, source: CardSource, keystore: KeyStore) -> dict[str, int]:
    """Settle every attempt a crash left open. With a shared job store (stations on other machines
    run at the same time) only those of stations no longer running whose card this source reaches:
    :func:`reconcile_orphans`."""
    if db.shared:
        return reconcile_orphans(job, db, source, keystore)
    counts: dict[str, int] = {}
    db.forget_claims()
    for att in db.open_attempts():
        result = reconcile_one(job, db, source, att, keystore)
        counts[result] = counts.get(result, 0) + 1
    return counts


def reconcile_orphans(job: Job, db: JobDb, source: CardSource, keystore: KeyStore) -> dict[str, int]:
    """Shared job store: settle the open attempts of stations that died (killed, machine off,
    connection cut: the server let their names go) whose card ``source`` can reach — the image in
    its stock directory, or its reader on this machine. Each dead station's name is held while its
    attempts are settled, so two runs never read the same card for it. Attempts whose card is
    elsewhere stay open for a station that reaches it (``perso status`` lists them)."""
    counts: dict[str, int] = {}
    db.forget_claims()
    by_station: dict[str, list[OpenAttempt]] = {}
    for att in db.open_attempts():
        if source.reaches(att.location, att.station):
            by_station.setdefault(att.station, []).append(att)
    for station, atts in by_station.items():
        with db.store.orphan(station) as free:
            if not free:
                continue
            for att in atts:
                if not any(a.attempt == att.attempt for a in db.open_attempts()):
                    continue  # settled meanwhile
                result = reconcile_one(job, db, source, att, keystore, cause=f"station {station} stopped")
                counts[result] = counts.get(result, 0) + 1
    return counts


def settle_fault(job: Job, db: JobDb, source: CardSource, attempt: int, keystore: KeyStore, *,
                 wait: float = 30.0, poll: float = 0.25, cause: str = "") -> tuple[str, str]:
    """After the reader or the card went away while writing (issue 13): wait up to ``wait`` seconds
    for the card to answer again, then settle the attempt as after a crash — read the card and
    roll back what it holds (DELETE the record's instances over SCP03): ``done``, ``redo`` (nothing
    was written: the card is reused), ``spoiled`` (rolled back, set aside) or ``failed`` (could not
    be rolled back). A card that does not come back is spoiled unread (it may hold part of the
    record): the record goes to a fresh card. Returns (decision, reason)."""
    atts = [a for a in db.open_attempts() if a.attempt == attempt]
    if not atts:
        return "settled", ""
    att = atts[0]
    deadline = time.monotonic() + wait
    hand = None
    told = False
    while hand is None:
        with contextlib.suppress(Exception):  # the reader is still away: NoCardException, pcsc errors
            hand = source.open(att.location)
        if hand is not None and att.cin is not None:
            # only the card that was being written settles the attempt: another card put in the
            # reader meanwhile is not read further (nor blamed); the station waits for the right one
            try:
                cin = read_identity(hand.channel.transmit, job.gp.isd_aid).cin
            except Exception:  # noqa: BLE001 - gone again, or no card manager: not the card
                cin = None
            if cin != att.cin:
                with contextlib.suppress(Exception):
                    hand.channel.close()
                hand = None
                if not told and cin is not None:
                    print(f"the card in {att.location} (CIN {cin}) is not the card being written when the "
                          f"fault came; put back the card CIN {att.cin}", file=sys.stderr)
                    told = True
        if hand is None:
            if time.monotonic() >= deadline:
                reason = (f"the card did not answer again within {wait:g} s after the fault; spoiled unread "
                          "(it may hold part of the record: destroy it), the record goes to a fresh card")
                reason = f"{cause}; {reason}" if cause else reason
                db.resolve(att, "spoiled", reason)
                return "spoiled", reason
            time.sleep(poll)
    decision = reconcile_one(job, db, source, att, keystore, hand, cause)
    row = db.db.execute("SELECT reason FROM attempts WHERE id = ?", (attempt,)).fetchone()
    return decision, str(row[0] or "") if row else ""
