"""GENERATE AC: cryptograms against pyemv, card risk management (downgrade,
never upgrade), counters, ARPC method 2 in the second GENERATE AC, CDA, log."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from typing import Any

import pytest
from ackit import ADA_ONLINE, CDOL1, CVNS, Host, IssuerProfile, cdol1, make_card, split
from emvkit import h, lv, rsa_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec import tlv
from cardlab.emulator.applets.emv.ac import convert_amount
from cardlab.emulator.applets.emv.state import ConversionRate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

AAC, TC, ARQC = 0x00, 0x40, 0x80
RANK = {AAC: 0, ARQC: 1, TC: 2}


def setup(**kw: Any) -> Host:
    profile = IssuerProfile(**kw)
    return Host(make_card(profile), profile)


def cid(r: dict[int, bytes]) -> int:
    return r[0x9F27][0]


@pytest.mark.parametrize("cvn", CVNS)
def test_offline_approval_tc_counts_offline(cvn: int) -> None:
    host = setup(cvn=cvn)
    host.begin()
    r = host.first(TC, cdol1(amount=1500))  # the cryptogram is checked against pyemv
    assert cid(r) == TC and r[0x9F36] == h("0001")
    d = host.app.data
    assert (d.consecutive_offline, d.cumulative_offline) == (1, 1500)
    # a currency the card cannot convert (no DGI 0D02 entry) adds nothing to the
    # cumulative amount (test_currency_conversion_* for converted currencies)
    host.begin()
    assert cid(host.first(TC, cdol1(amount=700, currency=h("0840")))) == TC
    assert (d.consecutive_offline, d.cumulative_offline) == (2, 1500)


@pytest.mark.parametrize("cvn", (0x0A, 0x10))
def test_online_external_authenticate_then_tc(cvn: int) -> None:
    host = setup(cvn=cvn)
    host.begin()
    host.first(TC)
    host.begin()
    r = host.first(ARQC, cdol1(amount=5000))
    assert cid(r) == ARQC and host.app.data.online_not_completed
    assert host.term.send(h("00820000") + lv(host.arpc1()))[1] == 0x9000
    assert host.term.send(h("00820000") + lv(host.arpc1()))[1] == 0x6985  # only once
    r2 = host.second(TC, b"00" + cdol1(amount=5000), cdol1(amount=5000))
    assert cid(r2) == TC
    d = host.app.data
    assert d.last_online_atc == 2 and d.consecutive_offline == 0 and d.cumulative_offline == 0
    assert not d.online_not_completed and not d.issuer_auth_failed
    assert host.gen_ac(TC, b"00" + cdol1())[1] == 0x6985  # no third GENERATE AC


def test_wrong_arpc_6300_sets_flag_and_next_transaction_goes_online() -> None:
    host = setup(cvn=0x0A, ada=ADA_ONLINE | 0x8000, lcol=5, ucol=9)
    host.app.data.last_online_atc = 1  # not a new card
    host.begin()
    host.first(ARQC)
    bad = bytearray(host.arpc1())
    bad[0] ^= 0xFF
    assert host.term.send(h("00820000") + lv(bytes(bad)))[1] == 0x6300
    assert host.app.data.issuer_auth_failed
    r = host.second(TC, b"00" + cdol1())
    assert r[0x9F27] == bytes([AAC | 0x08 | 0x03])  # declined: issuer authentication failed (advice)
    host.begin()
    r = host.first(TC)
    assert cid(r) & 0xC0 == ARQC
    assert r[0x9F10][5] & 0x08  # Visa CVR byte 3 b4: issuer authentication failure on last online


def test_arpc_method2_in_second_generate_ac() -> None:
    cdol2 = h("8A02 9108 9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704")
    host = setup(cvn=0x12, cdol2=cdol2, auth_required=True)
    host.begin()
    host.first(ARQC)
    assert host.term.send(h("00820000") + lv(host.arpc2()))[1] == 0x9000  # method 2 data also accepted here
    assert cid(host.second(TC, b"00" + bytes(8) + cdol1())) == TC  # 91 of zeros: nothing to check again
    host2 = setup(cvn=0x12, cdol2=cdol2, auth_required=True)
    host2.begin()
    host2.first(ARQC)
    r = host2.second(TC, b"00" + host2.arpc2() + cdol1())
    assert cid(r) == TC and host2.app.tx.issuer_auth_ok and host2.app.data.last_online_atc == 1
    # a wrong ARPC: issuer authentication is required, so the card declines
    host3 = setup(cvn=0x12, cdol2=cdol2, auth_required=True)
    host3.begin()
    host3.first(ARQC)
    r = host3.second(TC, b"00" + bytes(4) + h("00820000") + cdol1())
    assert cid(r) & 0xC0 == AAC and host3.app.data.issuer_auth_failed


@pytest.mark.parametrize("cvn", CVNS)
def test_decline_aac(cvn: int) -> None:
    host = setup(cvn=cvn)
    host.begin()
    r = host.first(AAC)
    assert cid(r) == AAC
    assert host.app.data.consecutive_offline == 0
    assert host.gen_ac(TC, b"00" + cdol1())[1] == 0x6985  # no second after AAC


def test_consecutive_limit_goes_online_and_unable_online_upper_limit_declines() -> None:
    host = setup(cvn=0x12, lcol=1, ucol=2)
    host.begin()
    assert cid(host.first(TC)) == TC
    host.begin()
    r = host.first(TC)
    assert cid(r) == ARQC and r[0x9F10][5] & 0x20  # CVR: exceeded velocity checking counters
    # terminal unable to go online (Y3): below the upper limit → TC
    r = host.second(TC, b"Y3" + cdol1())
    assert cid(r) == TC and host.app.data.consecutive_offline == 2
    host.begin()
    host.first(TC)
    r = host.second(TC, b"Y3" + cdol1())
    assert cid(r) == AAC and r[0x9F10][4] & 0x01  # CVR byte 2 b1: unable to go online


def test_cumulative_amount_goes_online() -> None:
    host = setup(cvn=0x0A, lower_amount=2000, upper_amount=5000, lcol=9, ucol=9)
    host.begin()
    assert cid(host.first(TC, cdol1(amount=1500))) == TC
    host.begin()
    assert cid(host.first(TC, cdol1(amount=600))) == ARQC


#: DGI 0D02 entries (DF18) of a USD card (docs/dgi-map.md): EUR at 1.0850, JPY at 0.0067 USD per yen
#: (0.67 US cents per yen: the yen has no minor unit), GBP at 1.2700
USD_TABLE = h("0978 00010850 04  0392 00000067 02  0826 00012700 04")
USD, EUR, JPY, GBP, CHF = h("0840"), h("0978"), h("0392"), h("0826"), h("0756")
ADA_OTHER_CURRENCY = 0x0040


def test_currency_conversion_known_answers() -> None:
    """Foreign amounts count converted into the application currency, rounded up."""
    host = setup(cvn=0x12, currency=USD, conversion=USD_TABLE, lcol=20, ucol=20,
                 lower_amount=999_999, upper_amount=999_999)  # fmt: skip
    d = host.app.data
    for amount, currency, total in [
        (1000, EUR, 1085),  # 10.00 EUR × 1.0850 = 10.85 USD
        (1, EUR, 1087),  # 0.01 EUR = 0.01085 USD: rounded up to 0.02
        (1000, JPY, 1757),  # 1000 JPY × 0.67 = 670 cents exactly
        (3, JPY, 1760),  # 2.01 cents: 3
        (999, GBP, 3029),  # 9.99 GBP × 1.27 = 12.6873 USD: 12.69
        (250, USD, 3279),  # the application currency as it is
        (500, CHF, 3279),  # not in the table: not convertible, not counted
    ]:
        host.begin()
        assert cid(host.first(TC, cdol1(amount=amount, currency=currency))) == TC
        assert d.cumulative_offline == total, (amount, currency.hex())


def test_converted_amounts_reach_the_cumulative_limit() -> None:
    """Foreign spending counts towards the lower cumulative limit (DF11)."""
    for table, expect in ((USD_TABLE, ARQC), (b"", TC)):
        host = setup(
            cvn=0x0A, currency=USD, conversion=table, lower_amount=2000, upper_amount=5000, lcol=9, ucol=9
        )
        host.begin()
        assert cid(host.first(TC, cdol1(amount=1500, currency=USD))) == TC
        host.begin()
        assert cid(host.first(TC, cdol1(amount=500, currency=EUR))) == expect  # 5.43 USD more: over 20.00


def test_not_convertible_currency_goes_online_by_the_ada() -> None:
    """ADA 0040: online for a currency that is neither 9F42 nor in the table."""
    host = setup(cvn=0x12, currency=USD, conversion=USD_TABLE, ada=ADA_OTHER_CURRENCY, lcol=9, ucol=9)
    host.app.data.last_online_atc = 1
    host.begin()
    assert cid(host.first(TC, cdol1(amount=100, currency=EUR))) == TC  # convertible
    host.begin()
    assert cid(host.first(TC, cdol1(amount=100, currency=CHF))) == ARQC  # not convertible
    assert host.app.data.cumulative_offline == 109


@given(amount=st.integers(0, 10**12 - 1), mantissa=st.integers(1, 10**8 - 1), exponent=st.integers(0, 12))
def test_conversion_rounds_up_by_less_than_one_minor_unit(amount: int, mantissa: int, exponent: int) -> None:
    """Integer conversion against exact rationals: never below, less than one minor unit above."""
    exact = Fraction(amount * mantissa, 10**exponent)
    got = convert_amount(amount, ConversionRate(978, mantissa, exponent))
    assert exact <= got < exact + 1


_CONVERTING: list[Host] = []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([USD, EUR, JPY, GBP, CHF]), st.integers(0, 10**8)), min_size=1, max_size=6))  # fmt: skip
def test_cumulative_offline_amount_is_monotonic(transactions: list[tuple[bytes, int]]) -> None:
    """Every offline approval adds its converted amount (exactly, rounded up); the
    total never goes down."""
    if not _CONVERTING:
        _CONVERTING.append(setup(cvn=0x12, currency=USD, conversion=USD_TABLE, lcol=255, ucol=255,
                                 lower_amount=10**12 - 1, upper_amount=10**12 - 1))  # fmt: skip
    host = _CONVERTING[0]
    d = host.app.data
    d.consecutive_offline = d.cumulative_offline = 0
    rates = {USD: Fraction(1), EUR: Fraction(10850, 10**4), JPY: Fraction(67, 100), GBP: Fraction(127, 100)}
    exact = Fraction(0)
    for currency, amount in transactions:
        before = d.cumulative_offline
        host.begin()
        assert cid(host.first(TC, cdol1(amount=amount, currency=currency))) == TC
        assert d.cumulative_offline >= before
        exact += amount * rates.get(currency, Fraction(0))
        assert exact <= d.cumulative_offline < exact + len(transactions)


def test_refusals() -> None:
    host = setup()
    assert host.term.select(host.profile.aid)[1] == 0x9000
    assert host.gen_ac(TC, cdol1())[1] == 0x6985  # before GPO
    host.begin()
    assert host.gen_ac(TC, cdol1()[:-1])[1] == 0x6700
    assert host.gen_ac(0xC0, cdol1())[1] == 0x6A86
    assert host.gen_ac(TC | 0x20, cdol1())[1] == 0x6A86
    assert host.term.send(h("00820000") + lv(bytes(10)))[1] == 0x6985  # no ARQC yet
    assert cid(host.first(TC)) == TC
    assert host.gen_ac(TC, b"00" + cdol1())[1] == 0x6985  # second after a TC


def test_atc_limit() -> None:
    host = setup(max_atc=2)
    host.begin()
    host.first(TC)
    host.begin()
    host.first(AAC)
    host.term.select(host.profile.aid)
    assert host.term.gpo()[1] == 0x6985  # the ATC never wraps: the application stops
    host.app.tx.gpo_done = True
    host.app.data.atc = 3  # even if a GPO slipped through, GENERATE AC refuses
    assert host.gen_ac(TC, cdol1())[1] == 0x6985


def test_online_not_completed_flag() -> None:
    host = setup(cvn=0x12, ada=ADA_ONLINE, lcol=5, ucol=9)
    host.app.data.last_online_atc = 1
    host.begin()
    host.first(ARQC)  # the terminal never sends the second GENERATE AC
    host.begin()
    r = host.first(TC)
    assert cid(r) == ARQC and r[0x9F10][5] & 0x80  # CVR: last online transaction not completed


def test_format_1() -> None:
    host = setup(cvn=0x10, response_format=1)
    host.begin()
    resp, sw = host.term.send(h("80AE4000") + lv(cdol1()) + b"\x00")
    assert sw == 0x9000 and resp[0] == 0x80
    host.check_ac(split_format1(resp), split(cdol1(), CDOL1))


def split_format1(resp: bytes) -> dict[int, bytes]:
    v = tlv.parse(resp)[0].value
    return {0x9F27: v[:1], 0x9F36: v[1:3], 0x9F26: v[3:11], 0x9F10: v[11:]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requested=st.sampled_from([AAC, TC, ARQC]),
    blocked=st.booleans(),
    consecutive=st.integers(0, 6),
    new_card=st.booleans(),
    pin_exceeded=st.booleans(),
    ada=st.sampled_from([0, ADA_ONLINE, 0x0800]),
    second=st.sampled_from([AAC, TC, ARQC]),
    arc=st.sampled_from([b"00", b"Y3", b"Z3"]),
)
def test_never_upgrades(
    requested: int,
    blocked: bool,
    consecutive: int,
    new_card: bool,
    pin_exceeded: bool,
    ada: int,
    second: int,
    arc: bytes,
) -> None:
    host = _shared_host()
    d = host.app.data
    d.blocked = False
    host.begin()
    d.blocked, d.consecutive_offline, d.cumulative_offline = blocked, consecutive, 0
    d.last_online_atc = 0 if new_card else 1
    d.pin_try_counter = 0 if pin_exceeded else 3
    d.risk.default_action = ada.to_bytes(2, "big")
    r = host.first(requested)
    got = cid(r) & 0xC0
    assert RANK[got] <= RANK[requested]
    if blocked or (pin_exceeded and ada == 0x0800):
        assert got == AAC
    if consecutive >= 2 or (new_card and ada == ADA_ONLINE):
        assert got != TC
    if got == ARQC:
        r2 = host.second(second, arc + cdol1())
        assert RANK[cid(r2) & 0xC0] <= RANK[TC if second == TC else AAC]
        assert cid(r2) & 0xC0 != ARQC
    d.blocked = False


_HOST: list[Host] = []


def _shared_host() -> Host:
    if not _HOST:
        _HOST.append(setup(cvn=0x12, lcol=2, ucol=4, max_atc=0xFFFF))
    return _HOST[0]


def test_cda_signature_verified_with_rsa() -> None:
    host = setup(cvn=0x12)
    host.begin()
    pdol_data = h("01020304 0250")
    data = cdol1(un=h("CAFEBABE"))
    resp, sw = host.term.send(h("80AE5000") + lv(data) + b"\x00")  # TC with CDA
    assert sw == 0x9000
    items = tlv.parse(tlv.parse(resp)[0].value)
    tags = [t.tag for t in items]
    assert tags == [0x9F27, 0x9F36, 0x9F4B, 0x9F10]
    values = {t.tag: t.value for t in items}
    pub = rsa_key(0).public_key().public_numbers()
    n_len = (pub.n.bit_length() + 7) // 8
    rec = pow(int.from_bytes(values[0x9F4B], "big"), pub.e, pub.n).to_bytes(n_len, "big")
    assert rec[:3] == h("6A0501") and rec[-1] == 0xBC
    ldd = rec[3]
    dyn = rec[4 : 4 + ldd]
    assert hashlib.sha1(rec[1:-21] + h("CAFEBABE")).digest() == rec[-21:-1]
    ldn = dyn[0]
    cid_, ac, digest = dyn[1 + ldn], dyn[2 + ldn : 10 + ldn], dyn[10 + ldn : 30 + ldn]
    assert cid_ == values[0x9F27][0] == TC
    assert ac == host.expected_ac(split(data, CDOL1), values[0x9F36], values[0x9F10])
    tlvs = b"".join(t.encode() for t in items if t.tag != 0x9F4B)
    assert digest == hashlib.sha1(pdol_data + data + tlvs).digest()


def test_cda_not_for_aac() -> None:
    host = setup(cvn=0x12)
    host.begin()
    r, sw = host.gen_ac(AAC | 0x10, cdol1())
    assert sw == 0x9000 and 0x9F4B not in r and 0x9F26 in r


def test_transaction_log_cyclic_and_readable() -> None:
    host = setup(cvn=0x12, log=(0x0B, 2), lcol=5, ucol=9)
    for amount in (100, 200, 300):
        host.begin()
        host.first(TC, cdol1(amount=amount))
    rec1, sw = host.term.read_record(0x0B, 1)
    assert sw == 0x9000
    assert rec1 == h("000000000300") + h("261121") + h("0003") + h("40")
    rec2, _ = host.term.read_record(0x0B, 2)
    assert rec2[:6] == h("000000000200")
    assert host.term.read_record(0x0B, 3)[1] == 0x6A83
    assert host.term.get_data(0x9F4F)[0] == tlv.encode(0x9F4F, h("9F02069A039F36029F2701"))


def test_counters_persist_before_answer() -> None:
    saved: list[dict[str, object]] = []
    host = setup()
    host.card.on_commit = lambda card: saved.append(dict(card.state.instance(host.profile.aid).state))  # type: ignore[union-attr]
    host.begin()
    host.first(TC, cdol1(amount=1200))
    assert saved[-1]["consecutive_offline"] == 1 and saved[-1]["cumulative_offline"] == 1200


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x80, 0x84, 0x00, 0x04]),
            st.sampled_from([0xAE, 0x82, 0x1E, 0x18, 0x16, 0x24, 0xDA, 0xDC, 0xA8]),
            st.integers(0, 255),
            st.integers(0, 255),
            st.binary(max_size=40),
        ),
        max_size=8,
    )
)
def test_random_transaction_commands_answer_a_status_word(
    cmds: list[tuple[int, int, int, int, bytes]],
) -> None:
    host = _shared_host()
    host.app.data.blocked = False
    host.begin()
    for cla, ins, p1, p2, data in cmds:
        if ins == 0xAE and data and len(data) < 29:
            data = cdol1()[: len(data)] if p1 & 1 else cdol1()
        apdu = bytes((cla, ins, p1, p2)) + (lv(data) if data else b"")
        resp = host.card.transmit(apdu)
        assert len(resp) >= 2 and resp[-2] in (
            0x90,
            0x61,
            0x62,
            0x63,
            0x67,
            0x68,
            0x69,
            0x6A,
            0x6B,
            0x6D,
            0x6E,
        )
    host.app.data.blocked = False
