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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cardlab.personalizer.engine.channel import SW_OK, status_word
from cardlab.personalizer.engine.flow import Job, failure_reason
from cardlab.personalizer.engine.gp import APP_PERSONALIZED, CARD_LIFE, CardView, GpAccess, inspect_card
from cardlab.personalizer.jobdb import read_card_at

if TYPE_CHECKING:
    from cardlab.personalizer.badge import BadgeLayout, BadgeOnCard
    from cardlab.personalizer.batch import CardPersoData
    from cardlab.personalizer.engine.sources import CardSource
    from cardlab.personalizer.jobdb import JobDb, OpenAttempt
    from cardlab.personalizer.keys import KeyStore


def decide(view: CardView, data: CardPersoData, gp: GpAccess, blank_life_cycles: Sequence[int] = (0x01, 0x07),
           *, badge: BadgeOnCard | None = None) -> str:
    """What the card's state says about an interrupted attempt:

    * ``done`` — every application of the record is there and PERSONALIZED
      (a badge: its files hold the record's data and the completion marker)
      and the card reached the profile's target life cycle (if any);
    * ``untouched`` — none of the record's applications (a badge: no badge
      DF) is there and the card is still in a stock life cycle: nothing was
      written;
    * ``foreign`` — (badges) the card holds a badge that is not the record's;
    * ``partial`` — anything in between.

    ``badge`` is the file-system read-back of a badge record: a badge installs
    no GP application, so GET STATUS alone would call a finished badge on an
    OP_READY card untouched.
    """
    target = CARD_LIFE.get(gp.target_life_cycle or "", None)
    if badge is not None:
        state = badge.state()
        if state == "complete" and (target is None or view.life_cycle == target):
            return "done"
        if state == "absent" and view.life_cycle in blank_life_cycles:
            return "untouched"
        return "foreign" if state == "foreign" else "partial"
    aids = [app.aid for app in data.apps]
    complete = all(view.apps.get(aid, 0) & 0x7F == APP_PERSONALIZED for aid in aids)
    if complete and (target is None or view.life_cycle == target):
        return "done"
    if not view.apps and view.life_cycle in blank_life_cycles:
        return "untouched"
    return "partial"


def _badge_layout(job: Job, data: CardPersoData) -> BadgeLayout | None:
    """The badge layout when the batch is a badge batch (``None`` for EMV)."""
    from cardlab.personalizer.badge import BadgeLayout, is_badge_profile

    if not is_badge_profile(job.profile) or "badge_number" not in data.fields:
        return None
    return BadgeLayout.from_profile(job.profile)


def reconcile_one(job: Job, db: JobDb, source: CardSource, att: OpenAttempt, keystore: KeyStore) -> str:
    """Settle one attempt a crash left open, by reading the card."""
    data = read_card_at(job.batch, att.offset)
    try:
        hand = source.open(att.location)
    except Exception as exc:  # noqa: BLE001
        hand = None
        why = failure_reason(exc)
    else:
        why = "card not available"
    if hand is None:
        db.resolve(att, "failed", f"cannot reconcile: {why} at {att.location}; check the card by hand")
        return "failed"
    try:
        layout = _badge_layout(job, data)
        badge = None
        if layout is not None:
            from cardlab.personalizer.badge import read_badge

            # plain reads (no session yet): the badge files are readable without one
            badge = read_badge(hand.channel.transmit, layout, data.fields)
        aids = [] if layout is not None else [a.aid for a in data.apps]
        view, hs = inspect_card(hand.channel.transmit, job.gp, keystore, aids)
        if att.cin is not None and view.cin != att.cin:
            db.resolve(att, "failed", f"the card at {att.location} is not the card the record was started on "
                                      f"(CIN {view.cin}, expected {att.cin})", card_status="spoiled")
            return "failed"
        verdict = decide(view, data, job.gp, badge=badge)
        what = "the record's badge, complete (marker written)" if layout is not None \
            else "the record's applications, personalized"
        if verdict == "done":
            db.resolve(att, "done", f"reconciled: the card holds {what}")
            return "done"
        if verdict == "untouched":
            db.resolve(att, "redo", "reconciled: the card was not written; the record goes to another card run")
            return "redo"
        if verdict == "foreign":
            db.resolve(att, "failed", "the card holds a badge that is not this record's; not rolled back, "
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
            db.resolve(att, "failed", "partially personalized card could not be rolled back: "
                                      + ", ".join(failed_delete))
            return "failed"
        db.resolve(att, "spoiled", f"reconciled: partially personalized; {undone}, card set aside, "
                                   "the record is redone on a fresh card")
        return "spoiled"
    except Exception as exc:  # noqa: BLE001
        db.resolve(att, "failed", f"cannot reconcile: {failure_reason(exc)}")
        return "failed"
    finally:
        with contextlib.suppress(Exception):
            hand.finish()


def reconcile(job: Job, db: JobDb, source: CardSource, keystore: KeyStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    db.forget_claims()
    for att in db.open_attempts():
        result = reconcile_one(job, db, source, att, keystore)
        counts[result] = counts.get(result, 0) + 1
    return counts
