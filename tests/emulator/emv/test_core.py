"""EMV transaction commands (EMV 4.4 Book 3 §6.5, Book 2 §6.5 and §7.2)
through Card.transmit."""

from __future__ import annotations

import hashlib
import os

import pytest
from emvkit import (
    AID_CREDIT,
    AID_DEBIT,
    Profile,
    Terminal,
    h,
    lv,
    personalized_card,
    pin_block,
    rsa_key,
)

from cardlab.cardspec import tlv
from cardlab.emulator import Card
from cardlab.emulator.applets.emv import core
from cardlab.emulator.applets.emv.applet import EmvApplet


def app(card: Card, aid: bytes = AID_CREDIT) -> EmvApplet:
    applet = card.applets[aid]
    assert isinstance(applet, EmvApplet)
    return applet


def selected(*profiles: Profile) -> Terminal:
    t = Terminal(personalized_card(*profiles))
    assert t.select(profiles[0].aid if profiles else AID_CREDIT)[1] == 0x9000
    return t


def atc(t: Terminal) -> int:
    data, status = t.get_data(0x9F36)
    assert status == 0x9000
    return int.from_bytes(tlv.to_dict(data)[0x9F36], "big")


# -- SELECT --------------------------------------------------------------------------


def test_select_fci(term: Terminal) -> None:
    fci, status = term.select(AID_CREDIT)
    assert status == 0x9000
    top = tlv.parse(fci)
    assert len(top) == 1 and top[0].tag == 0x6F
    inner = tlv.to_dict(top[0].value)
    assert inner[0x84] == AID_CREDIT
    assert inner[0xA5] == Profile().fci()
    assert tlv.to_dict(inner[0xA5])[0x50] == b"CARDLAB CREDIT"


def test_select_p2(term: Terminal) -> None:
    assert term.select(AID_CREDIT, 0x0C) == (b"", 0x9000)
    assert term.select(AID_CREDIT, 0x04)[1] == 0x6A86


def test_blocked_application_answers_6283(card: Card, term: Terminal) -> None:
    app(card).data.blocked = True  # as APPLICATION BLOCK leaves it
    fci, status = term.select(AID_CREDIT)
    assert status == 0x6283 and tlv.to_dict(tlv.parse(fci)[0].value)[0x84] == AID_CREDIT
    # it still transacts (GENERATE AC answers only AAC, tests/emv/test_e2e.py)
    assert term.gpo()[1] == 0x9000


def test_partial_aid_and_next_occurrence() -> None:
    t = Terminal(personalized_card(Profile(), Profile(aid=AID_DEBIT, label=b"CARDLAB DEBIT")))
    first, status = t.select(h("A000000003"))
    assert status == 0x9000 and tlv.find(first, 0x84) == tlv.Tlv(0x84, AID_CREDIT)
    second, status = t.select(h("A000000003"), 0x02)
    assert status == 0x9000 and tlv.find(second, 0x84) == tlv.Tlv(0x84, AID_DEBIT)
    assert t.select(h("A000000003"), 0x02)[1] == 0x6A82


def test_instances_are_independent() -> None:
    card = personalized_card(Profile(), Profile(aid=AID_DEBIT, label=b"CARDLAB DEBIT", pin="9999"))
    t = Terminal(card)
    t.select(AID_CREDIT)
    assert t.gpo()[1] == 0x9000
    assert t.verify_plain("9999") == 0x63C2
    t.select(AID_DEBIT)
    assert atc(t) == 0
    assert t.verify_plain("9999") == 0x9000
    assert app(card).data.pin_try_counter == 2 and app(card, AID_DEBIT).data.pin_try_counter == 3
    assert app(card).data.atc == 1


# -- GET PROCESSING OPTIONS ----------------------------------------------------------------


def test_gpo_format_2(term: Terminal) -> None:
    term.select(AID_CREDIT)
    data, status = term.gpo(h("01020304 0250"))
    assert status == 0x9000
    assert data == tlv.encode(0x77, tlv.encode(0x82, h("3900")) + tlv.encode(0x94, Profile().afl))


def test_gpo_format_1() -> None:
    t = selected(Profile(response_format=1))
    data, status = t.gpo()
    assert status == 0x9000 and data == tlv.encode(0x80, h("3900") + Profile().afl)


def test_gpo_without_pdol() -> None:
    t = selected(Profile(pdol=b""))
    assert t.gpo(b"\x01")[1] == 0x6700
    assert t.gpo(b"")[1] == 0x9000


@pytest.mark.parametrize(
    "data",
    [h("8305 0102030402"), h("8307 01020304025000"), h("8406 010203040250"), h("8306 010203040250 00"), b""],
)
def test_gpo_data_must_match_the_pdol(term: Terminal, data: bytes) -> None:
    term.select(AID_CREDIT)
    assert term.send(h("80A80000") + (lv(data) if data else b"") + b"\x00")[1] == 0x6700
    assert atc(term) == 0  # a refused GPO does not count
    assert term.gpo()[1] == 0x9000


def test_gpo_p1p2_and_twice(term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert term.send(h("80A80100") + lv(h("8306010203040250")) + b"\x00")[1] == 0x6A86
    assert term.gpo()[1] == 0x9000
    assert term.gpo()[1] == 0x6985
    assert atc(term) == 1


def test_atc_once_per_transaction(term: Terminal) -> None:
    for n in range(1, 4):
        term.select(AID_CREDIT)
        assert term.gpo()[1] == 0x9000
        term.send("0084000008")
        term.read_record(1, 1)
        assert atc(term) == n


def test_atc_stops_at_its_maximum() -> None:
    t = selected(Profile(max_atc=2))
    for _ in range(2):
        t.select(AID_CREDIT)
        assert t.gpo()[1] == 0x9000
    for _ in range(2):
        t.select(AID_CREDIT)
        assert t.gpo()[1] == 0x6985
    assert atc(t) == 2


def test_atc_saved_before_the_answer() -> None:
    seen: list[int] = []

    def commit(c: Card) -> None:
        rec = c.state.instance(AID_CREDIT)
        if rec is not None and rec.state:
            seen.append(rec.state["atc"])

    card = personalized_card(on_commit=commit)
    t = Terminal(card)
    t.select(AID_CREDIT)
    seen.clear()
    assert t.gpo()[1] == 0x9000
    assert seen == [1]


# -- READ RECORD / GET DATA / GET CHALLENGE --------------------------------------------------


def test_read_record(term: Terminal) -> None:
    term.select(AID_CREDIT)
    for dgi, body in Profile().records():
        assert term.read_record(dgi >> 8, dgi & 0xFF) == (body, 0x9000)
    assert term.read_record(1, 3)[1] == 0x6A83
    assert term.read_record(3, 1)[1] == 0x6A82
    assert term.send("00B2010800")[1] == 0x6A86  # P2 b3..b1 must be 100
    assert term.send("00B2000C00")[1] == 0x6A86  # record 0


def test_get_data(term: Terminal) -> None:
    term.select(AID_CREDIT)
    term.gpo()
    assert term.get_data(0x9F36) == (h("9F36020001"), 0x9000)
    assert term.get_data(0x9F13) == (h("9F13020000"), 0x9000)
    assert term.get_data(0x9F17) == (h("9F170103"), 0x9000)
    assert term.get_data(0x9F4F) == (h("9F4F05 9F02069A03"), 0x9000)
    assert term.get_data(0x5F28) == (h("5F28020250"), 0x9000)
    assert term.get_data(0x9F42) == (h("9F42020978"), 0x9000)
    assert term.get_data(0x9F7F)[1] == 0x6A88


def test_get_challenge(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    one, status = term.send("0084000008")
    assert status == 0x9000 and len(one) == 8
    two, _ = term.send("0084000008")
    assert one != two and app(card).tx.challenge == two
    assert term.send("0084010008")[1] == 0x6A86


# -- VERIFY --------------------------------------------------------------------------------


def test_verify_plaintext(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert term.send("0020008000")[1] == 0x63C3  # tries left
    assert term.verify_plain("1111") == 0x63C2
    assert app(card).tx.pin_failed and not app(card).tx.pin_verified
    assert term.get_data(0x9F17) == (h("9F170102"), 0x9000)
    assert term.verify_plain("1234") == 0x9000
    assert app(card).tx.pin_verified and not app(card).tx.pin_failed
    assert term.get_data(0x9F17) == (h("9F170103"), 0x9000)  # reset to the limit
    assert term.send("0020008000")[1] == 0x9000


def test_verify_to_blocking(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert [term.verify_plain("0000") for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert app(card).tx.pin_try_limit_exceeded
    assert term.verify_plain("1234") == 0x6983
    assert term.send("0020008000")[1] == 0x6983
    term.select(AID_CREDIT)
    assert term.verify_plain("1234") == 0x6983
    assert app(card).tx.pin_try_limit_exceeded and not app(card).tx.pin_verified


@pytest.mark.parametrize(
    "raw", ["00200080 08 2412345FFFFFFFFF", "00200080 04 24123400", "00200081 08 241234FFFFFFFFFF"]
)
def test_verify_malformed_costs_no_try(card: Card, term: Terminal, raw: str) -> None:
    term.select(AID_CREDIT)
    assert term.send(raw)[1] in (0x6A80, 0x6A86)
    assert app(card).data.pin_try_counter == 3


def test_verify_counter_saved_before_the_answer() -> None:
    seen: list[int] = []

    def commit(c: Card) -> None:
        rec = c.state.instance(AID_CREDIT)
        if rec is not None and rec.state:
            seen.append(rec.state["pin_try"][1])

    card = personalized_card(on_commit=commit)
    t = Terminal(card)
    t.select(AID_CREDIT)
    seen.clear()
    assert t.verify_plain("0000") == 0x63C2
    assert seen == [2]


def test_verify_interrupted_comparison_still_costs_a_try(
    card: Card, term: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure between the decrement and the comparison (a power cut)
    never gives a free try: the decremented counter is already saved."""

    def crash(a: bytes, b: bytes) -> bool:
        raise RuntimeError("power cut")

    term.select(AID_CREDIT)
    monkeypatch.setattr(core, "_same", crash)
    assert term.verify_plain("1234") == 0x6F00
    rec = card.state.instance(AID_CREDIT)
    assert rec is not None and rec.state["pin_try"][1] == 2


def encipher(key_index: int, block: bytes, challenge: bytes) -> bytes:
    """EMV Book 2 §7.2: 7F ‖ PIN block ‖ ICC challenge ‖ random pad, RSA public operation."""
    numbers = rsa_key(key_index).public_key().public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    message = b"\x7f" + block + challenge + os.urandom(size - 17)
    return pow(int.from_bytes(message, "big"), numbers.e, numbers.n).to_bytes(size, "big")


def verify_enciphered(t: Terminal, pin: str, *, key_index: int = 0, challenge: bytes | None = None) -> int:
    if challenge is None:
        challenge, status = t.send("0084000008")
        assert status == 0x9000
    data = encipher(key_index, pin_block(pin), challenge)
    return t.send(h("00200088") + lv(data))[1]


def test_verify_enciphered_with_the_icc_key(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert verify_enciphered(term, "1111") == 0x63C2
    assert verify_enciphered(term, "1234") == 0x9000
    assert app(card).tx.pin_verified and app(card).data.pin_try_counter == 3


def test_verify_enciphered_checks_the_challenge(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert verify_enciphered(term, "1234", challenge=bytes(8)) == 0x63C2  # no GET CHALLENGE
    challenge, _ = term.send("0084000008")
    assert verify_enciphered(term, "1234", challenge=bytes(8)) == 0x63C1  # wrong challenge
    assert verify_enciphered(term, "1234", challenge=challenge) == 0x63C0  # consumed by the previous VERIFY
    assert app(card).tx.pin_try_limit_exceeded


def test_verify_enciphered_padding_and_length(card: Card, term: Terminal) -> None:
    term.select(AID_CREDIT)
    challenge, _ = term.send("0084000008")
    numbers = rsa_key(0).public_key().public_numbers()
    message = b"\x6f" + pin_block("1234") + challenge + bytes(128 - 17)  # header not 7F
    bad = pow(int.from_bytes(message, "big"), numbers.e, numbers.n).to_bytes(128, "big")
    assert term.send(h("00200088") + lv(bad))[1] == 0x63C2
    assert term.send(h("00200088") + lv(bytes(64)))[1] == 0x6700
    assert app(card).data.pin_try_counter == 2


def test_verify_enciphered_with_the_pin_key() -> None:
    t = selected(Profile(pin_key=True))
    assert verify_enciphered(t, "1234", key_index=0) == 0x63C2  # the ICC key is not the PIN key
    assert verify_enciphered(t, "1234", key_index=1) == 0x9000


# -- INTERNAL AUTHENTICATE --------------------------------------------------------------------


def recover(sdad: bytes) -> bytes:
    numbers = rsa_key(0).public_key().public_numbers()
    return pow(int.from_bytes(sdad, "big"), numbers.e, numbers.n).to_bytes(len(sdad), "big")


def check_sdad(sdad: bytes, terminal_data: bytes) -> bytes:
    """EMV Book 2 §6.5.2 steps 1–8: returns the ICC dynamic data."""
    assert len(sdad) == 128
    plain = recover(sdad)
    assert plain[0] == 0x6A and plain[-1] == 0xBC and plain[1:3] == h("0501")
    ldd = plain[3]
    icc_dynamic = plain[4 : 4 + ldd]
    assert plain[4 + ldd : -21] == b"\xbb" * (128 - ldd - 25)
    assert plain[-21:-1] == hashlib.sha1(plain[1:-21] + terminal_data).digest()
    return icc_dynamic


@pytest.mark.parametrize("fmt", [1, 2])
def test_internal_authenticate(fmt: int) -> None:
    t = selected(Profile(response_format=fmt))
    assert t.gpo()[1] == 0x9000
    un = h("DEADBEEF")
    data, status = t.send(h("00880000") + lv(un) + b"\x00")
    assert status == 0x9000
    item = tlv.parse(data)[0]
    if fmt == 1:
        assert item.tag == 0x80
        sdad = item.value
    else:
        assert item.tag == 0x77 and [c.tag for c in item.children] == [0x9F4B]
        sdad = item.children[0].value
    icc_dynamic = check_sdad(sdad, un)
    assert icc_dynamic[0] == 8 and len(icc_dynamic) == 9  # L ‖ ICC dynamic number
    applet = app(t.card)
    assert applet.tx.dda_performed


def test_internal_authenticate_numbers_differ(term: Terminal) -> None:
    term.select(AID_CREDIT)
    one = check_sdad(tlv.find(term.send("0088000004 01020304 00")[0], 0x9F4B).value, h("01020304"))  # type: ignore[union-attr]
    two = check_sdad(tlv.find(term.send("0088000004 01020304 00")[0], 0x9F4B).value, h("01020304"))  # type: ignore[union-attr]
    assert one != two


def test_internal_authenticate_errors(term: Terminal) -> None:
    term.select(AID_CREDIT)
    assert term.send("0088010004 01020304")[1] == 0x6A86
    assert term.send("0088000000")[1] == 0x6700


def test_sign_dynamic_data_for_cda(card: Card) -> None:
    """The helper GENERATE AC uses for CDA (Book 2 §6.6.1 table 19)."""
    dynamic = h("08 0102030405060708 80 1122334455667788") + bytes(20)
    sdad = core.sign_dynamic_data(app(card), dynamic, h("CAFEBABE"))
    assert check_sdad(sdad, h("CAFEBABE")) == dynamic
