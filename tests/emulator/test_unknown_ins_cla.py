"""An instruction nobody implements answers exactly 6D00 and a class the card
does not accept exactly 6E00 (ISO 7816-4 §5.6 table 6; GP Card Spec 2.3
§11.1.3 general error conditions), whatever is selected, on any channel, in
plain and inside an SCP03 session — no data, and no other status word."""

from __future__ import annotations

import pytest

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.applets.emv.applet import EmvApplet
from cardlab.emulator.applets.loyalty import LoyaltyApplet
from cardlab.emulator.gp.manager import DEFAULT_KEY

KEYS = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)
ISD = bytes.fromhex("A000000151000000")
LOYALTY = bytes.fromhex("A0000006474C590101")
EMV = bytes.fromhex("A0000000031010")
DF_NAME = bytes.fromhex("F0434152444C41422E44454D4F")  # a DF of the demo file system

#: INS values no application, the card manager or the file system implements;
#: 6X and 9X are invalid everywhere (ISO 7816-3 §10.3.2: procedure bytes)
UNKNOWN_INS = [0x02, 0x3C, 0x5E, 0x60, 0x6F, 0x90, 0x9F, 0xEE, 0xFE]
#: plain CLA values per class, each on an open channel: first interindustry
#: (00-03), further interindustry (40-4F: channels 4-19), GP proprietary (80-83)
#: and GP further proprietary (C0-CF)
CLASSES = [0x00, 0x01, 0x03, 0x40, 0x43, 0x80, 0x81, 0x83, 0xC0, 0xC3]
#: CLA values the card does not accept (ISO 7816-4 §5.4.1 RFU / proprietary
#: classes GP does not define, GP §11.1.4)
BAD_CLASSES = [c for c in range(256) if 0x20 <= c <= 0x3F or 0x90 <= c <= 0xBF or 0xD0 <= c <= 0xDF or c >= 0xF0]


def lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def card_with_apps() -> Card:
    """Loyalty and EMV instances, channels 1, 3, 4 and 7 open (ISD selected)."""
    card = Card.create()
    card.power_on()
    host = HostSession(card.transmit, KEYS)
    host.open(0x01)
    for lf, mod, aid in ((LoyaltyApplet.LOAD_FILE_AID, LoyaltyApplet.MODULE_AID, LOYALTY),
                         (EmvApplet.LOAD_FILE_AID, EmvApplet.MODULE_AID, EMV)):
        data = lv(lf) + lv(mod) + lv(aid) + lv(b"\x00") + lv(tlv.encode(0xC9, b"")) + b"\x00"
        assert host.send(bytes.fromhex("80E60C00") + lv(data) + b"\x00")[-2:] == b"\x90\x00"
    for channel in (1, 3, 4, 7):
        assert host.send(bytes((0x00, 0x70, 0x00, channel)))[-2:] == b"\x90\x00"
    return card


def select_on_every_channel(card: Card, name: bytes) -> None:
    for cla in (0x00, 0x01, 0x03, 0x40, 0x43):
        resp = card.transmit(bytes((cla, 0xA4, 0x04, 0x00)) + lv(name) + b"\x00")
        assert resp[-2:] == b"\x90\x00", (cla, resp.hex())


@pytest.fixture(scope="module")
def cards() -> dict[str, Card]:
    out: dict[str, Card] = {}
    for what, name in (("ISD", ISD), ("loyalty", LOYALTY), ("EMV", EMV), ("DF", DF_NAME)):
        card = card_with_apps()
        select_on_every_channel(card, name)
        out[what] = card
    return out


@pytest.mark.parametrize("selected", ["ISD", "loyalty", "EMV", "DF"])
@pytest.mark.parametrize("cla", CLASSES, ids=lambda c: f"CLA{c:02X}")
def test_unknown_instruction_is_exactly_6d00(cards: dict[str, Card], selected: str, cla: int) -> None:
    card = cards[selected]
    for ins in UNKNOWN_INS:
        for tail in (b"", b"\x00", b"\x02\x01\x02", b"\x02\x01\x02\x00"):  # cases 1-4
            raw = bytes((cla, ins, 0x00, 0x00)) + tail
            assert card.transmit(raw) == b"\x6d\x00", raw.hex()


@pytest.mark.parametrize("level", [0x01, 0x03, 0x33])
def test_unknown_instruction_inside_a_session(level: int) -> None:
    card = card_with_apps()
    host = HostSession(card.transmit, KEYS)
    host.open(level)
    for cla in (0x00, 0x80):
        for ins in UNKNOWN_INS:
            assert host.send(bytes((cla, ins, 0x00, 0x00, 0x01, 0xAA))) == b"\x6d\x00"
    # an error answer leaves the session open (GP Amendment D §6.2.4 ends it
    # only for a secure messaging failure)
    assert host.send(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"


@pytest.mark.parametrize("selected", ["ISD", "loyalty", "DF"])
def test_unknown_class_is_exactly_6e00(cards: dict[str, Card], selected: str) -> None:
    card = cards[selected]
    for cla in BAD_CLASSES:
        for ins in (0xA4, 0xCA, 0xB0, 0x70, 0x02):  # known and unknown instructions alike
            raw = bytes((cla, ins, 0x00, 0x00, 0x00))
            assert card.transmit(raw) == b"\x6e\x00", raw.hex()


def test_unknown_class_ends_the_session_of_its_channel() -> None:
    """A refused CLA is refused before secure messaging and ends the session
    its channel bits name (fail closed: the C-MAC does not cover those bits)."""
    card = card_with_apps()
    host = HostSession(card.transmit, KEYS)
    host.open(0x01)
    assert card.transmit(bytes.fromhex("A4CA006600")) == b"\x6e\x00"  # b8..b6 = 101: not a class
    assert card.channels[0].session is None
    assert host.send(bytes.fromhex("80CA006600")) == b"\x68\x82"
