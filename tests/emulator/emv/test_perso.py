"""EMV personalization (EMV CPS over GP STORE DATA, docs/dgi-map.md) through
real SCP03 sessions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from emvkit import AID_CREDIT, MK, Personalizer, Profile, Terminal, crt_dgis, h, new_card, rsa_key

from cardlab.cardspec import tlv
from cardlab.emulator import Card
from cardlab.emulator.applets.emv.applet import EmvApplet


def dgi_0d02(entries: bytes) -> bytes:
    """DGI 0D02 value: DF18 {currency n3 ‖ mantissa n8 ‖ exponent, ...} (docs/dgi-map.md)."""
    return tlv.encode(0xDF18, entries)


def started(profile: Profile | None = None) -> tuple[Card, Personalizer]:
    card = new_card()
    perso = Personalizer(card)
    assert perso.install((profile or Profile()).aid) == 0x9000
    assert perso.start((profile or Profile()).aid) == 0x9000
    return card, perso


def app(card: Card, aid: bytes = AID_CREDIT) -> EmvApplet:
    applet = card.applets[aid]
    assert isinstance(applet, EmvApplet)
    return applet


def test_personalization_moves_to_personalized(card: Card) -> None:
    rec = card.state.instance(AID_CREDIT)
    assert rec is not None and rec.lifecycle == 0x0F
    a = app(card)
    assert a.data.personalized and a.data.icc_key is not None and a.data.mk_ac == MK[:16]
    assert a.data.pin_try_limit == 3 and a.data.risk.cvn == 0x12 and a.data.risk.max_atc == 0xFFFF
    assert a.data.data_objects[0x5F28] == h("0250")
    assert not a.perso_parts


def test_personalized_state_survives_an_image_reload(card: Card) -> None:
    card.sync_state()
    again = Card(card.state)
    t = Terminal(again)
    assert t.select(AID_CREDIT)[1] == 0x9000
    assert t.gpo()[1] == 0x9000
    assert t.verify_plain("1234") == 0x9000


def test_transactions_refused_before_personalization() -> None:
    card, perso = started()
    assert perso.store(Profile().public_dgis()[:3]) == 0x9000  # records only, not the last block
    t = Terminal(card)
    fci, status = t.select(AID_CREDIT)
    assert status == 0x9000 and fci == tlv.encode(0x6F, tlv.encode(0x84, AID_CREDIT) + tlv.encode(0xA5, b""))
    assert t.gpo(h("8300"))[1] == 0x6985
    assert t.read_record(1, 1)[1] == 0x6985
    assert t.get_data(0x9F36)[1] == 0x6985
    assert t.send("0084000008")[1] == 0x6985
    assert t.verify_plain("1234") == 0x6985
    assert t.send("0088000004 01020304")[1] == 0x6985


def test_second_personalization_refused(card: Card) -> None:
    perso = Personalizer(card)
    assert perso.start(AID_CREDIT) == 0x9000  # the ISD routes; the application refuses
    assert perso.store([(0x9010, h("0303"))], last=True) == 0x6985


@pytest.mark.parametrize("dgi", [0x8000, 0x8010, 0x8201, 0x8101])
def test_secret_dgi_in_clear_refused(dgi: int) -> None:
    card, perso = started()
    value = dict(Profile(pin_key=True).secret_dgis())[dgi]
    assert perso.store([(dgi, value)]) == 0x6A80
    assert dgi not in app(card).data.received and not app(card).data.mk_ac


def test_not_dgi_format_refused() -> None:
    _, perso = started()
    raw = tlv.encode_dgi(0x9010, h("0303"))
    assert perso.send(h("80E21000") + bytes([len(raw)]) + raw) == 0x6A80  # BER-TLV format
    assert perso.send(h("80E20000") + bytes([len(raw)]) + raw) == 0x6A80  # no format


@pytest.mark.parametrize("kcv_first", [True, False])
def test_bad_key_check_value_keeps_nothing(kcv_first: bool) -> None:
    card, perso = started()
    bad = (0x9000, h("000000 000000 000000"))
    if kcv_first:
        assert perso.store([bad]) == 0x9000
        assert perso.store([(0x8000, MK)], encrypt=True) == 0x6A80
    else:
        assert perso.store([(0x8000, MK)], encrypt=True) == 0x9000
        assert perso.store([bad]) == 0x6A80
    data = app(card).data
    assert not data.mk_ac and not data.mk_smi and not data.mk_smc
    assert not {0x8000, 0x9000} & data.received


def test_key_check_values_in_either_order() -> None:
    profile = Profile()
    dgis = profile.dgis()
    kcvs = [d for d in dgis if d[0] == 0x9000]
    rest = [d for d in dgis if d[0] != 0x9000]
    card, perso = started()
    assert perso.store_all(rest + kcvs) == 0x9000  # 9000 arrives last, after 8000
    assert app(card).data.personalized


@pytest.mark.parametrize("missing", [0x9102, 0x9104, 0x8000, 0x9000, 0x0D01, 0x0102, 0x8010, 0x8203])
def test_missing_mandatory_dgi(missing: int) -> None:
    card, perso = started()
    dgis = [d for d in Profile().dgis() if d[0] != missing]
    assert perso.store_all(dgis) == 0x6A80
    rec = card.state.instance(AID_CREDIT)
    assert rec is not None and rec.lifecycle == 0x07 and not app(card).data.personalized
    # the refused last block kept nothing: the personalizer sends the missing
    # DGI, then the last block again
    full = dict(Profile().dgis())
    assert perso.store([(missing, full[missing])], encrypt=0x8000 <= missing <= 0x8FFF) == 0x9000
    final = dgis[-1]
    assert perso.store([final], last=True, encrypt=0x8000 <= final[0] <= 0x8FFF) == 0x9000
    assert app(card).data.personalized


@pytest.mark.parametrize(
    ("dgi", "value"),
    [
        (0x8010, h("24123F FFFFFFFFFF")),  # not digits
        (0x8010, h("2412")),  # short
        (0x9010, h("0304")),  # counter above the limit
        (0x9010, h("10 10")),  # limit above 15
        (0x9104, h("82023900 9403080101")),  # AFL not 4n bytes
        (0x9104, h("82023900 940408020100")),  # last < first
        (0x0101, h("7103 5A0112")),  # not a 70 template
        (0x0101, h("7003 5A0112 00")),  # trailing bytes
        (0x0D01, h("DF0102 1200")),  # wrong length
        (0x0D01, h("DF1601 03")),  # response format 3
        (0x0D01, h("DF9901 00")),  # unknown tag
        (0x0D02, dgi_0d02(b"")),  # conversion table without an entry
        (0x0D02, dgi_0d02(h("0978 00010850"))),  # entry of 6 bytes
        (0x0D02, dgi_0d02(h("097A 00010850 04"))),  # currency code not BCD
        (0x0D02, dgi_0d02(h("0978 0001085F 04"))),  # rate not BCD
        (0x0D02, dgi_0d02(h("0000 00010850 04"))),  # currency 000
        (0x0D02, dgi_0d02(h("0978 00000000 04"))),  # rate 0
        (0x0D02, dgi_0d02(h("0978 00010850 0D"))),  # exponent 13
        (0x0D02, dgi_0d02(h("0978 00010850 04  0978 00010900 04"))),  # currency twice
        (0x0D02, dgi_0d02(b"".join(h(f"0{c} 00010850 04") for c in range(101, 110)))),  # 9 entries
        (0x0D02, h("0978 00010850 04")),  # entries without their DF18
        (0x0D02, h("DF18 08 0978 00010850 04")),  # DF18 runs past the end
        (0x0D02, h("DF19 07 0978 00010850 04")),  # another tag
        (0x0D02, dgi_0d02(h("0978 00010850 04")) * 2),  # DF18 twice
        (0x9102, h("9F3802 9F37")),  # PDOL without the length of its tag
        (0x8000, bytes(32)),  # two keys only
        (0x1F01, h("7000")),  # SFI 31
        (0xA001, h("00")),  # not in the DGI map
    ],
)
def test_malformed_dgis_refused(dgi: int, value: bytes) -> None:
    card, perso = started()
    assert perso.store([(dgi, value)], encrypt=0x8000 <= dgi <= 0x8FFF) == 0x6A80
    assert dgi not in app(card).data.received


def _with_conversion(table: bytes, currency: bytes = h("0840")) -> list[tuple[int, bytes]]:
    """Profile's DGIs with 9F42 in 0D01 and a DGI 0D02 before the last block."""
    dgis = [(d, v + tlv.encode(0x9F42, currency) if d == 0x0D01 else v) for d, v in Profile().dgis()]
    return [(0x0D02, dgi_0d02(table)), *dgis]


def test_conversion_table_personalized() -> None:
    card, perso = started()
    assert perso.store_all(_with_conversion(h("0978 00010850 04  0392 00000067 02"))) == 0x9000
    data = app(card).data
    entries = [(e.currency, e.mantissa, e.exponent) for e in data.currency_conversion]
    assert entries == [(978, 10850, 4), (392, 67, 2)]
    assert 0x0D02 in data.received
    card.sync_state()
    assert app(Card(card.state)).data.currency_conversion == data.currency_conversion  # in the card image


def test_conversion_table_naming_the_application_currency_refused_at_the_last_block() -> None:
    card, perso = started()
    assert perso.store_all(_with_conversion(h("0840 00010000 04"))) == 0x6A80
    assert not app(card).data.personalized


def test_card_image_without_conversion_table_loads() -> None:
    """Card images saved before DGI 0D02 existed have no ``currency_conversion``."""
    from cardlab.emulator.applets.emv.state import EmvData

    image = EmvData().dump()
    del image["currency_conversion"]
    assert EmvData.load(image).currency_conversion == ()


def test_inconsistent_rsa_key_refused() -> None:
    card, perso = started()
    parts = dict(crt_dgis(rsa_key(0), 0x8200))
    parts[0x8204], parts[0x8205] = parts[0x8205], parts[0x8204]  # p and q swapped
    items = sorted(parts.items())
    assert perso.store(items[:3], encrypt=True) == 0x9000
    assert perso.store(items[3:], encrypt=True) == 0x6A80
    assert app(card).data.icc_key is None


def test_rsa_key_against_public_exponent() -> None:
    """9F47 in the records must invert the CRT exponents."""
    profile = Profile()
    dgis = [(d, v.replace(h("9F4703010001"), h("9F470103")) if d == 0x0102 else v) for d, v in profile.dgis()]
    _, perso = started()
    assert perso.store_all(dgis) == 0x6A80


def test_one_command_is_atomic() -> None:
    """A refused STORE DATA leaves none of its DGIs behind."""
    card, perso = started()
    assert perso.store([(0x9010, h("0303")), (0x0D01, h("DF1601 09"))]) == 0x6A80
    assert 0x9010 not in app(card).data.received


def test_pin_key_personalized() -> None:
    card, perso = started(Profile(pin_key=True))
    assert perso.store_all(Profile(pin_key=True).dgis()) == 0x9000
    a = app(card)
    assert a.data.pin_key is not None and a.data.pin_key.modulus == rsa_key(1).public_key().public_numbers().n


def test_install_parameters_refused() -> None:
    card = new_card()
    perso = Personalizer(card)
    assert perso.install(AID_CREDIT, params=h("01")) == 0x6A80
    assert perso.install(AID_CREDIT) == 0x9000


# -- record_tag: the one-pass index of a personalized application's records ----------------------

_TAGS = [0x5A, 0x57, 0x8C, 0x9F10, 0x70, 0xA5, 0xBF0C, 0x9F4B]


def _tlv_tree(draw: Any, depth: int = 0) -> bytes:
    from hypothesis import strategies as st

    tag = draw(st.sampled_from(_TAGS))
    if tag in (0x70, 0xA5, 0xBF0C) and depth < 2:
        value = b"".join(_tlv_tree(draw, depth + 1) for _ in range(draw(st.integers(0, 3))))
    else:
        value = draw(st.binary(max_size=6))
    if draw(st.integers(0, 9)) == 0:  # now and then a malformed value: cut short
        value = value[: max(0, len(value) - 2)] + b"\x9f"
    return tlv.encode(tag, value)


def _record_bytes() -> Any:
    from hypothesis import strategies as st

    @st.composite
    def one(draw: Any) -> bytes:
        body = b"".join(_tlv_tree(draw) for _ in range(draw(st.integers(0, 4))))
        return body if draw(st.booleans()) else tlv.encode(0x70, body)

    return one()


@given(records=st.dictionaries(st.tuples(st.integers(1, 3), st.integers(1, 4)), _record_bytes(), max_size=6),
       extra=st.binary(max_size=4))
def test_the_records_index_finds_what_a_scan_finds(records: dict[tuple[int, int], bytes], extra: bytes) -> None:
    """record_tag on a personalized application (one pass, every tag indexed) answers as tlv.find
    over the records in order does, also with malformed records and nested objects; before
    personalization it scans each time; an issuer script's UPDATE RECORD clears the index."""
    from cardlab.emulator.applets.emv.records import record_tag
    from cardlab.emulator.applets.emv.records import scan as _scan
    from cardlab.emulator.applets.emv.state import EmvData

    data = EmvData(records=dict(records))
    want = {t: _scan(data, t) for t in [*_TAGS, 0x9F99]}
    assert {t: record_tag(data, t) for t in want} == want  # not personalized: no cache
    assert not data.tag_cache
    data.personalized = True
    assert {t: record_tag(data, t) for t in want} == want
    if records:  # what issuer.py does after an UPDATE RECORD
        first = min(records)
        data.records[first] = tlv.encode(0x70, tlv.encode(0x5A, extra))
        data.tag_cache.clear()
        assert record_tag(data, 0x5A) == _scan(data, 0x5A)


def test_the_working_copy_of_a_store_data_equals_the_dump_and_load_round_trip(card: Card) -> None:
    """EmvData.copy (what a STORE DATA works on) equals load(dump()) and shares no container with
    the application: changing the copy's records, data objects, DGIs received, log or risk
    parameters leaves the application as it was."""
    import dataclasses

    from cardlab.emulator.applets.emv.state import EmvData

    data = app(card).data
    data.log.append(b"\x01\x02")
    data.tag_cache[0x5A] = b"cached"
    before = EmvData.load(data.dump())
    copy = data.copy()
    assert copy == before and copy.dump() == data.dump() and not copy.tag_cache
    copy.records[(1, 1)] = b"\x70\x00"
    copy.data_objects[0x9F99] = b"\x00"
    copy.received.add(0x7777)
    copy.log.append(b"\x03")
    copy.risk.cvn = 0x0A
    assert data == before and data.dump() == before.dump()
    assert all(getattr(copy, f.name) is getattr(data, f.name) for f in dataclasses.fields(EmvData)
               if f.name in ("icc_key", "pin_key", "mk_ac", "currency_conversion"))
