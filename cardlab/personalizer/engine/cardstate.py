"""What a card's state says, read over APDUs: finished for a record, untouched (blank), or in between.

:func:`decide` is used twice: before the first write to a card (the card must still be blank,
:func:`cardlab.personalizer.engine.flow.personalize_card`) and after a crash or a reader fault
(:mod:`cardlab.personalizer.engine.reconcile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cardlab.personalizer.engine.gp import APP_PERSONALIZED, CARD_LIFE, CardView, GpAccess

if TYPE_CHECKING:
    from cardlab.personalizer.badge import BadgeLayout, BadgeOnCard
    from cardlab.personalizer.batch import CardPersoData

#: GP card life cycles of a blank card (GP Card Spec 2.3 §5.1.1): OP_READY, INITIALIZED
BLANK_LIFE_CYCLES = (0x01, 0x07)


def decide(view: CardView, data: CardPersoData, gp: GpAccess, blank_life_cycles: Sequence[int] = BLANK_LIFE_CYCLES,
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


def badge_layout(profile: Any, data: CardPersoData) -> BadgeLayout | None:
    """The badge layout when the batch is a badge batch (``None`` for EMV)."""
    from cardlab.personalizer.badge import BadgeLayout, is_badge_profile

    if not is_badge_profile(profile) or "badge_number" not in data.fields:
        return None
    return BadgeLayout.from_profile(profile)


