"""Card and application life cycles as transition tables (GP Card Spec 2.3 §5).

One module owns every life-cycle rule; commands ask it, they keep no flags.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from ..apdu import SW, Command, StatusError

if TYPE_CHECKING:
    from ..state import CardState, InstanceRecord


class CardLife(IntEnum):
    """Card life cycle states (GP §5.1.1, table 11-5 coding)."""

    OP_READY = 0x01
    INITIALIZED = 0x07
    SECURED = 0x0F
    CARD_LOCKED = 0x7F
    TERMINATED = 0xFF


class AppLife(IntEnum):
    """Application life cycle coding (GP §5.3.1, table 11-4). Values with
    b4..b7 set between SELECTABLE and LOCKED are application specific."""

    INSTALLED = 0x03
    SELECTABLE = 0x07
    LOCKED_BIT = 0x80


LOAD_FILE_LOADED = 0x01

#: allowed card transitions: from → set of to (GP §5.1.1, figure 5-1).
#: TERMINATED is reachable from every state but itself.
CARD_TRANSITIONS: dict[CardLife, frozenset[CardLife]] = {
    CardLife.OP_READY: frozenset({CardLife.INITIALIZED, CardLife.SECURED, CardLife.TERMINATED}),
    CardLife.INITIALIZED: frozenset({CardLife.SECURED, CardLife.TERMINATED}),
    CardLife.SECURED: frozenset({CardLife.CARD_LOCKED, CardLife.TERMINATED}),
    CardLife.CARD_LOCKED: frozenset({CardLife.SECURED, CardLife.TERMINATED}),
    CardLife.TERMINATED: frozenset(),
}


def card_transition(current: int, target: int) -> CardLife:
    """Check a card life cycle change; 6A80 for an unknown state value,
    6985 for a transition the table does not allow."""
    try:
        to = CardLife(target)
        frm = CardLife(current)
    except ValueError as exc:
        raise StatusError(SW.WRONG_DATA, "unknown card life cycle state") from exc
    if to not in CARD_TRANSITIONS[frm]:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, f"card {frm.name} -> {to.name} not allowed")
    return to


def app_is_locked(state: int) -> bool:
    return bool(state & AppLife.LOCKED_BIT)


def app_transition(current: int, target: int, specific: dict[int, str]) -> int:
    """Check an application life cycle change (GP §5.3.1, figure 5-3).

    * INSTALLED → SELECTABLE; SELECTABLE → an application specific state;
      an application specific state → another one (never back to
      INSTALLED or SELECTABLE);
    * any state → LOCKED (b8 set, the previous state kept in b1..b7), and
      LOCKED → the state it was locked from.
    """
    if current & AppLife.LOCKED_BIT:
        if target == current & 0x7F:
            return target
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "a locked application can only be unlocked")
    if target & AppLife.LOCKED_BIT:
        if target != current | AppLife.LOCKED_BIT:
            raise StatusError(SW.WRONG_DATA, "lock must keep the current state bits")
        return target
    if current == AppLife.INSTALLED and target == AppLife.SELECTABLE:
        return target
    if current != AppLife.INSTALLED and target in specific and target != current:
        return target
    raise StatusError(SW.CONDITIONS_NOT_SATISFIED, f"application {current:02X} -> {target:02X} not allowed")


def app_state_name(state: int, specific: dict[int, str]) -> str:
    if state & AppLife.LOCKED_BIT:
        return "LOCKED(" + app_state_name(state & 0x7F, specific) + ")"
    if state == AppLife.INSTALLED:
        return "INSTALLED"
    if state == AppLife.SELECTABLE:
        return "SELECTABLE"
    return specific.get(state, f"SPECIFIC_{state:02X}")


def check_selectable(card: CardState, rec: InstanceRecord, is_isd: bool) -> None:
    """SELECT enforcement (GP §5.1.1.4, §5.3.1, §11.9.2): in CARD_LOCKED only
    the ISD, in TERMINATED nothing; an application must be SELECTABLE or in an
    application specific state and not LOCKED."""
    if card.lifecycle == CardLife.TERMINATED:
        raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "card terminated")
    if is_isd:
        return
    if card.lifecycle == CardLife.CARD_LOCKED:
        raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "card locked: only the ISD is selectable")
    if rec.lifecycle & AppLife.LOCKED_BIT:
        raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "application locked")
    if rec.lifecycle == AppLife.INSTALLED:
        raise StatusError(SW.FILE_NOT_FOUND, "application installed but not selectable")


def gate_card_command(state: int, cmd: Command, isd_selected: bool) -> None:
    """Commands a card life cycle state refuses before any dispatch.

    TERMINATED: only GET DATA (CA/CB, any selection) for CPLC / card data
    (GP §5.1.1.5). CARD_LOCKED: everything but the ISD is refused at SELECT
    by :func:`check_selectable` and, for an application selected before the
    lock, by :func:`gate_selected_application`; MANAGE CHANNEL still works.
    """
    if state == CardLife.TERMINATED:
        if cmd.ins in (0xCA, 0xCB) and (cmd.p1, cmd.p2) in TERMINATED_GET_DATA:
            return
        raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "card terminated")


def gate_selected_application(card: CardState, rec: InstanceRecord) -> None:
    """Commands to an application that was selected (on any logical channel)
    before the card went CARD_LOCKED or the application itself LOCKED.

    GP §5.1.1.4: in CARD_LOCKED only the ISD may be selected and used;
    GP §5.3.1: a LOCKED application may not be used. Locking does not reach
    into a channel where the application is already selected, so every
    command but SELECT and MANAGE CHANNEL (which let the terminal move on)
    is refused with 6985, conditions of use not satisfied (GP §11.1.3,
    table 11-10 general error conditions). Not called for the ISD, which
    stays usable so that SET STATUS can unlock the card.
    """
    if card.lifecycle == CardLife.CARD_LOCKED:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "card locked: only the ISD may be used")
    if rec.lifecycle & AppLife.LOCKED_BIT:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "application locked")


#: GET DATA objects still answered by a TERMINATED card (P1P2)
TERMINATED_GET_DATA = frozenset({(0x9F, 0x7F), (0x00, 0x66), (0x00, 0x42), (0x00, 0x45)})
