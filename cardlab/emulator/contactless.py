"""The card on the contactless interface: the ATR a PC/SC reader shows for it and the
reader's own pseudo-APDUs (PC/SC Part 3 §3.2.2.1).

An ISO/IEC 14443-4 card has no ATR; a PC/SC reader builds one (PC/SC Part 3 §3.1.3.2.3):
``3B 8K 80 01`` ‖ historical bytes ‖ TCK, the historical bytes being the ATS's (type A).
cardlab's card uses the historical bytes of its contact ATR, so both interfaces name the same
card. The UID (ISO/IEC 14443-3 §6.5.4, 7 bytes: double size) is the card image's ``uid`` when
it has one, else derived from the image's identity (KDD, CIN, CPLC, ISD AID): stable per card,
and the same on every load.

The reader answers ``FF CA 00 00 Le`` (GET DATA: UID) and ``FF CA 01 00 Le`` (GET DATA:
historical bytes) itself: data ‖ 90 00; P1 other than 00/01 → 6A81, P2 ≠ 00 → 6B00, Le
shorter than the data → 6C xx (the length it would give), Le = 00 → all of it.
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING

from cardlab.cardspec import atr as atrspec

if TYPE_CHECKING:
    from .state import CardState

INTERFACES = ("contact", "contactless")
UID_LENGTH = 7  # double-size UID (ISO/IEC 14443-3 §6.5.4)
#: UID0 values with a meaning of their own: 88 cascade tag, 08 random (single-size) UID
_RESERVED_UID0 = (0x88, 0x08)


def uid(state: CardState) -> bytes:
    """The card's UID: ``state.uid`` or a stable value derived from the card's identity.

    >>> from cardlab.emulator.state import CardState
    >>> len(uid(CardState())), uid(CardState()) == uid(CardState())
    (7, True)
    """
    if state.uid:
        return state.uid
    digest = hashlib.sha256(b"cardlab uid:" + state.kdd + state.cin + state.cplc + state.isd_aid).digest()
    out = bytearray(digest[:UID_LENGTH])
    if out[0] in _RESERVED_UID0:
        out[0] ^= 0x01
    return bytes(out)


def historical_bytes(state: CardState) -> bytes:
    """The historical bytes of the card's contact ATR (its default ones when that does not parse)."""
    return _historical(state.atr)


@functools.lru_cache(maxsize=64)  # every power-on asks; a batch has a handful of ATRs
def _historical(contact_atr: bytes) -> bytes:
    try:
        return atrspec.parse(contact_atr).historical
    except atrspec.AtrError:
        return atrspec.DEFAULT_HISTORICAL


def atr(state: CardState) -> bytes:
    """The PC/SC contactless ATR for the card (PC/SC Part 3 §3.1.3.2.3)."""
    return _contactless_atr(state.atr)


@functools.lru_cache(maxsize=64)
def _contactless_atr(contact_atr: bytes) -> bytes:
    return atrspec.contactless(_historical(contact_atr))


def reader_command(state: CardState, command: bytes) -> bytes | None:
    """The reader's answer to a PC/SC pseudo-APDU (CLA FF), None for a card command."""
    if len(command) < 4 or command[0] != 0xFF:
        return None
    ins, p1, p2 = command[1], command[2], command[3]
    if ins != 0xCA:
        return bytes.fromhex("6D00")
    if p2 != 0x00:
        return bytes.fromhex("6B00")
    if p1 == 0x00:
        data = uid(state)
    elif p1 == 0x01:
        data = historical_bytes(state)
    else:
        return bytes.fromhex("6A81")  # function not supported (PC/SC Part 3 §3.2.2.1.3)
    if len(command) not in (4, 5):
        return bytes.fromhex("6700")
    le = command[4] if len(command) == 5 else 0
    if le and le < len(data):
        return bytes((0x6C, len(data)))
    return data + b"\x90\x00"
