"""Locking reaches applications already selected on other logical channels
(GP Card Spec 2.3 §5.1.1.4 CARD_LOCKED: only the ISD may be selected and
used; §5.3.1 a LOCKED application may not be used): every command to them but
SELECT and MANAGE CHANNEL answers 6985; the ISD keeps working, so SET STATUS
unlocks, and unlocking makes the still-selected application answer again."""

from __future__ import annotations

from emvkit import AID_CREDIT, KEYS, Terminal, h, lv, personalized_card, status

from cardlab.cardspec.scp03 import HostSession
from cardlab.emulator import Card

ISD = h("A000000151000000")
GET_ATC = "CA9F3600"  # GET DATA ATC (EMV Book 3 §6.5.7), CLA added per channel


def isd_session(card: Card) -> HostSession:
    assert status(card.transmit(h("00A40400") + lv(ISD) + b"\x00")) == 0x9000
    session = HostSession(card.transmit, KEYS)
    session.open(0x01)
    return session


def set_status(session: HostSession, p1: int, p2: int, data: bytes = b"") -> int:
    return status(session.send(bytes((0x80, 0xF0, p1, p2)) + (lv(data) if data else b"")))


def open_with_emv(term: Terminal, channel: int) -> None:
    assert term.send(f"007000{channel:02X}")[1] == 0x9000
    assert term.send(bytes((channel, 0xA4, 0x04, 0x00)) + lv(AID_CREDIT) + b"\x00")[1] == 0x9000


def test_card_locked_refuses_an_application_selected_before() -> None:
    card = personalized_card()
    term = Terminal(card)
    open_with_emv(term, 1)
    open_with_emv(term, 2)
    atc, sw = term.send("81" + GET_ATC)
    assert sw == 0x9000 and atc[:3] == h("9F3602")
    isd = isd_session(card)
    assert set_status(isd, 0x80, 0x0F) == 0x9000  # SECURED
    assert set_status(isd, 0x80, 0x7F) == 0x9000  # CARD_LOCKED

    for channel in (1, 2):
        assert term.send(f"{0x80 | channel:02X}{GET_ATC}")[1] == 0x6985
        assert term.send(f"{0x80 | channel:02X}A8000002830000")[1] == 0x6985  # GPO
        assert term.send(f"{channel:02X}B2010C00")[1] == 0x6985  # READ RECORD (not the file system)
        assert term.send(f"{0x80 | channel:02X}50000008{'11' * 8}00")[1] == 0x6985  # INITIALIZE UPDATE
    # a channel opened from channel 1 inherits the locked selection (ISO 7816-4 §5.4.1)
    assert term.send("0170000001") == (b"\x03", 0x9000)
    assert term.send("83" + GET_ATC)[1] == 0x6985
    assert term.send("01708003")[1] == 0x9000
    # SELECT still works: the EMV application is refused, the ISD is selectable
    assert term.send(b"\x01\xa4\x04\x00" + lv(AID_CREDIT) + b"\x00")[1] == 0x6A81
    assert term.send(b"\x01\xa4\x04\x00" + lv(ISD) + b"\x00")[1] == 0x9000
    assert term.send("81CA9F7F00")[1] == 0x9000  # the ISD answers on channel 1
    assert term.send("01708000")[1] == 0x9000  # MANAGE CHANNEL close still works

    # the ISD on the basic channel still works and can unlock the card
    assert status(isd.send(h("80F28000024F0000"))) == 0x9000
    assert set_status(isd, 0x80, 0x0F) == 0x9000
    data, sw = term.send("82" + GET_ATC)  # channel 2 kept its selection
    assert sw == 0x9000 and data == atc


def test_locked_application_refused_where_already_selected() -> None:
    card = personalized_card()
    term = Terminal(card)
    open_with_emv(term, 1)
    atc, sw = term.send("81" + GET_ATC)
    assert sw == 0x9000
    isd = isd_session(card)
    assert set_status(isd, 0x40, 0x80, AID_CREDIT) == 0x9000  # lock the application
    assert term.send("81" + GET_ATC)[1] == 0x6985
    assert term.send("81A8000002830000")[1] == 0x6985
    assert term.send(b"\x02\xa4\x04\x00" + lv(AID_CREDIT) + b"\x00")[1] == 0x6881  # channel 2 not open
    assert term.send("0170000002")[1] == 0x9000
    assert term.send(b"\x02\xa4\x04\x00" + lv(AID_CREDIT) + b"\x00")[1] == 0x6A81  # SELECT refuses it
    # the card is not locked: the ISD answers on the basic channel, through the session
    assert status(isd.send(h("80CA006600"))) == 0x9000
    assert set_status(isd, 0x40, 0x00, AID_CREDIT) == 0x9000  # unlock
    data, sw = term.send("81" + GET_ATC)  # channel 1 kept its selection
    assert sw == 0x9000 and data == atc
