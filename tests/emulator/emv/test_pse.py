"""PSE and PPSE directories (EMV Book 1 §12.2–12.3; EMV Contactless Book B
§3.3), kept in step with the card's payment application instances."""

from __future__ import annotations

from emvkit import AID_CREDIT, AID_DEBIT, Personalizer, Profile, Terminal, h, new_card

from cardlab.cardspec import tlv
from cardlab.emulator import Card
from cardlab.emulator.applets.pse import PPSE_NAME, PSE_NAME, PpseApplet, PseApplet

CREDIT = Profile()
DEBIT = Profile(aid=AID_DEBIT, label=b"CARDLAB DEBIT", priority=2)


def card_with(*profiles: Profile, pse_params: bytes = b"") -> tuple[Card, Personalizer]:
    card = new_card()
    perso = Personalizer(card)
    assert perso.install(PSE_NAME, PseApplet.MODULE_AID, PseApplet.LOAD_FILE_AID, pse_params) == 0x9000
    assert perso.install(PPSE_NAME, PpseApplet.MODULE_AID, PpseApplet.LOAD_FILE_AID) == 0x9000
    for p in profiles:
        assert perso.install(p.aid) == 0x9000
        assert perso.start(p.aid) == 0x9000
        assert perso.store_all(p.dgis()) == 0x9000
    return card, perso


def entry(p: Profile, *, contactless: bool = False) -> bytes:
    items = [(0x4F, p.aid), (0x50, p.label)]
    if not contactless:
        items.append((0x9F12, p.label + b" PREF"))
    items.append((0x87, bytes([p.priority])))
    return tlv.encode(0x61, tlv.encode_all(items))


def pse_records(t: Terminal) -> list[bytes]:
    fci, status = t.select(PSE_NAME)
    assert status == 0x9000
    sfi = tlv.find(fci, 0x88)
    assert sfi is not None and sfi.value == b"\x01"
    out = []
    for n in range(1, 20):
        data, status = t.read_record(1, n)
        if status == 0x6A83:
            break
        assert status == 0x9000
        out.append(data)
    return out


def ppse_entries(t: Terminal) -> list[bytes]:
    fci, status = t.select(PPSE_NAME)
    assert status == 0x9000
    bf0c = tlv.find(fci, 0xBF0C)
    assert bf0c is not None
    return [e.encode() for e in tlv.parse(bf0c.value)]


def test_pse_fci() -> None:
    card, _ = card_with(CREDIT, pse_params=h("5F2D04656E6672"))
    fci, status = Terminal(card).select(PSE_NAME)
    assert status == 0x9000
    assert fci == tlv.encode(0x6F, tlv.encode(0x84, PSE_NAME) + tlv.encode(0xA5, h("880101 5F2D04656E6672")))


def test_pse_directory_with_two_instances() -> None:
    card, _ = card_with(CREDIT, DEBIT)
    t = Terminal(card)
    assert pse_records(t) == [tlv.encode(0x70, entry(CREDIT) + entry(DEBIT))]
    assert t.read_record(2, 1)[1] == 0x6A82
    assert t.send("00B2010800")[1] == 0x6A86


def test_ppse_directory_with_two_instances() -> None:
    card, _ = card_with(CREDIT, DEBIT)
    t = Terminal(card)
    assert ppse_entries(t) == [entry(CREDIT, contactless=True), entry(DEBIT, contactless=True)]
    fci, _ = t.select(PPSE_NAME)
    assert tlv.find(fci, 0x84) == tlv.Tlv(0x84, PPSE_NAME)


def test_directory_entries_select_their_applications() -> None:
    card, _ = card_with(CREDIT, DEBIT)
    t = Terminal(card)
    for e in ppse_entries(t):
        aid = tlv.find(e, 0x4F)
        assert aid is not None
        fci, status = t.select(aid.value)
        assert status == 0x9000 and tlv.find(fci, 0x50) == tlv.find(e, 0x50)


def test_directories_kept_in_step() -> None:
    card, perso = card_with(CREDIT)
    t = Terminal(card)
    assert ppse_entries(t) == [entry(CREDIT, contactless=True)]
    # installed but not yet personalized: not listed
    perso = Personalizer(card)
    assert perso.install(DEBIT.aid) == 0x9000
    assert ppse_entries(t) == [entry(CREDIT, contactless=True)]
    assert pse_records(t) == [tlv.encode(0x70, entry(CREDIT))]
    perso = Personalizer(card)
    assert perso.start(DEBIT.aid) == 0x9000 and perso.store_all(DEBIT.dgis()) == 0x9000
    assert ppse_entries(t) == [entry(CREDIT, contactless=True), entry(DEBIT, contactless=True)]
    # a locked application disappears (GP SET STATUS, P1 40, P2 80: lock)
    perso = Personalizer(card)
    aid = CREDIT.aid
    assert perso.send(h("80F04080") + bytes([len(aid)]) + aid) == 0x9000
    assert ppse_entries(t) == [entry(DEBIT, contactless=True)]
    assert pse_records(t) == [tlv.encode(0x70, entry(DEBIT))]


def test_empty_directory() -> None:
    card, _ = card_with()
    t = Terminal(card)
    assert pse_records(t) == []
    assert ppse_entries(t) == []


def test_pse_spreads_entries_over_records() -> None:
    profiles = [
        Profile(aid=AID_CREDIT[:-1] + bytes([i]), label=b"CARDLAB PAYMENT %d" % i, priority=i)
        for i in range(1, 7)
    ]
    card, _ = card_with(*profiles)
    records = pse_records(Terminal(card))
    assert len(records) > 1 and all(len(r) <= 254 for r in records)
    entries = [e.encode() for r in records for e in tlv.parse(tlv.parse(r)[0].value)]
    assert entries == [entry(p) for p in profiles]


def test_selection_by_partial_name_of_the_pse() -> None:
    card, _ = card_with(CREDIT)
    fci, status = Terminal(card).select(b"1PAY.SYS")
    assert status == 0x9000 and tlv.find(fci, 0x84) == tlv.Tlv(0x84, PSE_NAME)
