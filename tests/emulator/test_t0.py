"""The card's transport behaviour follows its ATR: T=0 (61xx / GET RESPONSE, 6Cxx) or T=1 (direct)."""

from __future__ import annotations

from cardlab.cardspec import atr as A
from cardlab.emulator import Card
from cardlab.emulator.gp.manager import new_card_state

SELECT_ISD = bytes.fromhex("00A4040008A00000015100000000")  # case 4
GET_CPLC = bytes.fromhex("80CA9F7F00")  # case 2, Le = 00 (256)


def _card(protocol: int) -> Card:
    card = Card(new_card_state(atr=A.basic(protocol)))
    assert card.power_on() == A.basic(protocol) and card.protocol == protocol
    return card


def test_t1_answers_directly() -> None:
    card = _card(1)
    resp = card.transmit(SELECT_ISD)
    assert resp[-2:] == b"\x90\x00" and len(resp) > 2
    assert card.transmit(GET_CPLC)[-2:] == b"\x90\x00"


def test_t0_case4_gives_61xx_then_get_response() -> None:
    t1 = _card(1).transmit(SELECT_ISD)
    card = _card(0)
    first = card.transmit(SELECT_ISD)
    assert first == bytes((0x61, len(t1) - 2))
    assert card.transmit(bytes.fromhex("00C00000") + first[1:]) == t1
    # nothing waiting any more: 6985 (ISO/IEC 7816-4 §5.6, conditions of use not satisfied)
    assert card.transmit(bytes.fromhex("00C00000") + first[1:]) == b"\x69\x85"


def test_t0_get_response_in_pieces_and_wrong_le() -> None:
    t1 = _card(1).transmit(SELECT_ISD)
    card = _card(0)
    n = card.transmit(SELECT_ISD)[1]
    assert card.transmit(bytes.fromhex("00C0000000")) == bytes((0x6C, n))  # Le 256 > waiting
    part = card.transmit(bytes.fromhex("00C0000010"))
    assert part == t1[:16] + bytes((0x61, n - 16))
    assert card.transmit(bytes.fromhex("00C00000") + bytes((n - 16,))) == t1[16:]


def test_t0_get_response_after_another_command() -> None:
    card = _card(0)
    n = card.transmit(SELECT_ISD)[1]
    assert card.transmit(bytes.fromhex("80CA9F7F")) [-2:] != b"\x61\x00"  # another command
    assert card.transmit(bytes.fromhex("00C00000") + bytes((n,))) == b"\x69\x85"


def test_t0_case2_wrong_le_gives_6cxx_and_the_repeat_answers() -> None:
    t1 = _card(1).transmit(GET_CPLC)
    card = _card(0)
    first = card.transmit(GET_CPLC)
    assert first == bytes((0x6C, len(t1) - 2))
    assert card.transmit(GET_CPLC[:4] + first[1:]) == t1


def test_t0_errors_and_case_3_pass_unchanged() -> None:
    card = _card(0)
    assert card.transmit(bytes.fromhex("00A4040005A00000009900")) == b"\x6A\x82"
    assert card.transmit(bytes.fromhex("00A4040C08A000000151000000")) == b"\x90\x00"


def test_old_images_keep_their_atr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = bytes.fromhex("3B8880010000000000718100F9")
    card = Card(new_card_state(atr=old))
    card.save(tmp_path / "old.json")
    again = Card.load(tmp_path / "old.json")
    assert again.power_on() == old
    assert again.protocol == 0  # T=0 is the first protocol it offers (ISO/IEC 7816-3 §8.2.3)
    assert again.transmit(SELECT_ISD)[0] == 0x61


def test_pyscard_plugin_presents_the_atr_and_negotiates() -> None:
    from smartcard.CardConnection import CardConnection
    from smartcard.Exceptions import CardConnectionException

    from cardlab.emulator.transports import pyscard_reader
    from cardlab.tester.channel import PyscardChannel

    card = Card(new_card_state(atr=A.basic(0)))
    pyscard_reader.insert(card, "t0 test card")
    try:
        ch = PyscardChannel("t0 test card")
        assert ch.atr() == A.basic(0) and ch.protocol == "T=0"
        assert ch.transmit(SELECT_ISD) == _card(1).transmit(SELECT_ISD)  # GET RESPONSE followed
        conn = pyscard_reader.EmulatedReader.Factory.create("t0 test card").createConnection()
        try:
            conn.connect(CardConnection.T1_protocol)
            raise AssertionError("a T=0-only card must refuse T=1")
        except CardConnectionException:
            pass
    finally:
        pyscard_reader.remove("t0 test card")
