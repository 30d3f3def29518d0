"""End-to-end EMV flows in-process: a card built and personalized by the test
kit (cardmaker, over SCP03), driven by the test terminal; every cryptogram,
ARPC and script MAC comes from / is checked by pyemv, every signature by
plain-integer RSA recovery (EMV 4.4 Book 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cardmaker import LOG_FORMAT, IMK_AC, IMK_SMC, IMK_SMI, CardData, Profile, make_card, load_test_ca
from terminal import CID_AAC, CID_ARQC, CID_TC, CardError, Issuer, Terminal

from cardlab.emulator import Card

CVNS = [0x0A, 0x12, 0x10]
OFFLINE = dict(lcol=3, ucol=5, lower_cumulative=50_000, upper_cumulative=100_000)


def ca_keys() -> dict[tuple[bytes, int], tuple[int, int]]:
    rid, index, ca, _ = load_test_ca()
    return {(rid, index): (ca.n, ca.e)}


class Flow:
    """One card application + the terminal + the issuer host."""

    def __init__(self, card: Card, cd: CardData) -> None:
        self.card, self.cd, self.p = card, cd, cd.profile
        self.term = Terminal(card.transmit, ca_keys())
        self.issuer = Issuer(self.p.cvn, IMK_AC, IMK_SMI, IMK_SMC, self.p.pan, self.p.psn)
        self.first: dict[int, bytes] = {}

    @classmethod
    def new(cls, **kw: object) -> Flow:
        card, (cd,) = make_card(Profile(**kw))  # type: ignore[arg-type]
        return cls(card, cd)

    def start(self) -> None:
        self.issuer.script_count = 0
        aip, _ = self.term.start(self.p.aid)
        assert aip == self.cd.aip

    def gen_ac(self, kind: int, second: bool = False, **extra: bytes) -> dict[int, bytes]:
        cda = self.p.oda == "CDA" and kind != CID_AAC
        values = {**self.term.values, **{int(k[1:], 16): v for k, v in extra.items()}}
        resp = self.term.generate_ac(kind | (0x10 if cda else 0), second=second, extra=values)
        if cda and resp[0x9F27][0] & 0xC0 != CID_AAC:
            assert resp.get(0xDF4C) == b"CDA ok", "CDA requested: the answer must carry a verified 9F4B"
        expected = self.issuer.expected_ac(values, self.cd.aip, resp)
        assert resp[0x9F26] == expected, f"cryptogram differs from pyemv (CID {resp[0x9F27].hex()})"
        if not second:
            self.first = resp
        return resp

    def online(self, approve: bool = True, arpc: bytes | None = None, kind2: int | None = None) -> dict[int, bytes]:
        """ARQC → issuer → (EXTERNAL AUTHENTICATE) → second GENERATE AC."""
        first = self.gen_ac(CID_ARQC)
        assert cid(first) == CID_ARQC
        data = arpc if arpc is not None else self.issuer.arpc(first[0x9F26], first[0x9F36], approve)
        arc = b"00" if approve else b"05"
        if self.p.method == 1:
            sw = self.term.external_authenticate(data)
            assert sw == (0x9000 if arpc is None else 0x6300), f"EXTERNAL AUTHENTICATE {sw:04X}"
            return self.gen_ac(kind2 if kind2 is not None else (CID_TC if approve else CID_AAC), True, x8A=arc)
        return self.gen_ac(kind2 if kind2 is not None else (CID_TC if approve else CID_AAC), True, x8A=arc, x91=data)

    def script(self, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> int:
        cmd = self.issuer.script(ins, self.first[0x9F26], self.first[0x9F36], p1, p2, data)
        return self.term.send(cmd)[1]


def cid(resp: dict[int, bytes]) -> int:
    return resp[0x9F27][0] & 0xC0


def atc(resp: dict[int, bytes]) -> int:
    return int.from_bytes(resp[0x9F36], "big")


# -- approvals and declines -----------------------------------------------------------------


@pytest.mark.parametrize("cvn", CVNS)
def test_offline_approval_tc(cvn: int) -> None:
    f = Flow.new(cvn=cvn, **OFFLINE)
    f.start()
    f.term.dda() if f.p.oda == "DDA" else None
    assert f.term.verify_pin("1234") == 0x9000
    resp = f.gen_ac(CID_TC)
    assert cid(resp) == CID_TC and atc(resp) == 1


@pytest.mark.parametrize("cvn", CVNS)
def test_online_arqc_arpc_tc(cvn: int) -> None:
    f = Flow.new(cvn=cvn)
    f.start()
    assert f.term.verify_pin("1234", enciphered=True) == 0x9000
    resp = f.online(approve=True)
    assert cid(resp) == CID_TC
    data, sw = f.term.get_data(0x9F13)  # last online ATC register
    assert sw == 0x9000 and data[-2:] == resp[0x9F36]


@pytest.mark.parametrize("cvn", CVNS)
def test_online_is_forced_when_offline_limits_are_zero(cvn: int) -> None:
    f = Flow.new(cvn=cvn)  # LCOL = UCOL = 0: no offline approval
    f.start()
    resp = f.gen_ac(CID_TC)
    assert cid(resp) in (CID_ARQC, CID_AAC)


@pytest.mark.parametrize("cvn", CVNS)
def test_decline_aac_offline_and_online(cvn: int) -> None:
    f = Flow.new(cvn=cvn, **OFFLINE)
    f.start()
    assert cid(f.gen_ac(CID_AAC)) == CID_AAC
    f.start()
    assert cid(f.online(approve=False)) == CID_AAC


@pytest.mark.parametrize("cvn", CVNS)
def test_bad_arpc_with_issuer_authentication_required_declines(cvn: int) -> None:
    f = Flow.new(cvn=cvn, issuer_auth_required=True)
    f.start()
    first = f.gen_ac(CID_ARQC)
    good = f.issuer.arpc(first[0x9F26], first[0x9F36])
    bad = bytes((good[0] ^ 1,)) + good[1:]
    if f.p.method == 1:
        assert f.term.external_authenticate(bad) == 0x6300
        resp = f.gen_ac(CID_TC, True, x8A=b"00")
    else:
        resp = f.gen_ac(CID_TC, True, x8A=b"00", x91=bad)
    assert cid(resp) == CID_AAC


# -- PIN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("enciphered", [False, True])
def test_wrong_pin_until_blocked(enciphered: bool) -> None:
    f = Flow.new(cvn=0x12, pin_try_limit=3)
    f.start()
    assert [f.term.verify_pin("9999", enciphered) for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert f.term.verify_pin("9999", enciphered) == 0x6983
    assert f.term.verify_pin("1234", enciphered) == 0x6983  # the right PIN no longer helps
    data, sw = f.term.get_data(0x9F17)
    assert sw == 0x9000 and data[-1] == 0
    f.start()  # a new transaction does not give the PIN back
    assert f.term.verify_pin("1234", enciphered) == 0x6983


def test_correct_pin_resets_the_try_counter() -> None:
    f = Flow.new()
    f.start()
    assert f.term.verify_pin("0000") == 0x63C2
    assert f.term.verify_pin("1234") == 0x9000
    assert f.term.get_data(0x9F17)[0][-1] == 3


# -- issuer scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("cvn", CVNS)
def test_script_application_block_then_unblock(cvn: int) -> None:
    f = Flow.new(cvn=cvn, **OFFLINE)
    f.start()
    f.online(approve=False)
    assert f.script(0x1E) == 0x9000  # APPLICATION BLOCK
    _, sw = f.term.select(f.p.aid)
    assert sw == 0x6283
    f.term.gpo()
    f.term.read_records()
    assert cid(f.gen_ac(CID_TC)) == CID_AAC  # only AAC from a blocked application
    f.term.select(f.p.aid)
    f.term.gpo()
    f.term.read_records()
    assert cid(f.gen_ac(CID_ARQC)) == CID_AAC
    f.issuer.script_count = 0
    assert f.script(0x18) == 0x9000  # APPLICATION UNBLOCK (MAC over this transaction's AAC)
    _, sw = f.term.select(f.p.aid)
    assert sw == 0x9000
    f.term.gpo()
    f.term.read_records()
    assert cid(f.gen_ac(CID_ARQC)) == CID_ARQC


@pytest.mark.parametrize("cvn", CVNS)
def test_script_bad_mac_changes_nothing(cvn: int) -> None:
    f = Flow.new(cvn=cvn)
    f.start()
    f.online()
    cmd = bytearray(f.issuer.script(0x1E, f.first[0x9F26], f.first[0x9F36]))
    cmd[-1] ^= 0x01
    assert f.term.send(bytes(cmd))[1] == 0x6988
    assert f.term.select(f.p.aid)[1] == 0x9000


@pytest.mark.parametrize("cvn", CVNS)
def test_script_pin_change_then_verify_new_pin(cvn: int) -> None:
    f = Flow.new(cvn=cvn)
    f.start()
    f.online()
    cmd = f.issuer.pin_change("4321", f.first[0x9F26], f.first[0x9F36])
    assert f.term.send(cmd)[1] == 0x9000
    f.start()
    assert f.term.verify_pin("1234") == 0x63C2
    assert f.term.verify_pin("4321") == 0x9000


@pytest.mark.parametrize("cvn", CVNS)
def test_script_pin_unblock_after_blocking(cvn: int) -> None:
    f = Flow.new(cvn=cvn)
    f.start()
    for _ in range(3):
        f.term.verify_pin("0000")
    assert f.term.verify_pin("1234") == 0x6983
    f.online()
    assert f.script(0x24, 0x00, 0x00) == 0x9000  # PIN UNBLOCK: MAC only
    f.start()
    assert f.term.get_data(0x9F17)[0][-1] == 3
    assert f.term.verify_pin("1234") == 0x9000


# -- offline data authentication --------------------------------------------------------------


def test_sda_verified() -> None:
    f = Flow.new(oda="SDA")
    f.start()
    assert f.term.sda() == b"\xDA\xC1"


def test_sda_fails_when_a_signed_record_differs() -> None:
    f = Flow.new(oda="SDA")
    f.start()
    f.term.static = f.term.static[:-3] + b"\x00" + f.term.static[-2:]
    with pytest.raises(CardError, match="SDA hash"):
        f.term.sda()


@pytest.mark.parametrize("cvn", CVNS)
def test_dda_signature_verified(cvn: int) -> None:
    f = Flow.new(cvn=cvn, oda="DDA")
    f.start()
    first = f.term.dda()
    f.term.values[0x9F37] = b"\x01\x02\x03\x04"
    assert f.term.dda() != first  # a fresh ICC dynamic number each time
    assert f.term.verify_pin("1234", enciphered=True) == 0x9000


@pytest.mark.parametrize("cvn", CVNS)
def test_cda_signature_verified_first_and_second_ac(cvn: int) -> None:
    f = Flow.new(cvn=cvn, oda="CDA")
    f.start()
    resp = f.online()  # gen_ac asserts the verified 9F4B on both answers
    assert cid(resp) == CID_TC and resp[0xDF4C] == b"CDA ok"


@pytest.mark.parametrize("fmt", [1, 2])
def test_response_formats(fmt: int) -> None:
    f = Flow.new(response_format=fmt, oda="DDA", **OFFLINE)
    f.start()
    f.term.dda()
    assert cid(f.gen_ac(CID_TC)) == CID_TC


# -- persistence -------------------------------------------------------------------------------


def test_image_save_load_mid_flow_keeps_counters(tmp_path: Path) -> None:
    f = Flow.new(cvn=0x12, **OFFLINE)
    f.start()
    assert cid(f.gen_ac(CID_TC)) == CID_TC
    f.start()
    assert f.term.verify_pin("0000") == 0x63C2
    path = tmp_path / "card.json"
    f.card.save(path)  # in the middle of a transaction
    card2 = Card.load(path)
    g = Flow(card2, f.cd)
    g.start()
    assert g.term.get_data(0x9F17)[0][-1] == 2
    assert g.term.verify_pin("0000") == 0x63C1
    assert atc(g.gen_ac(CID_TC)) == 3  # 1 done, 2 interrupted by the reload, 3 now
    data, sw = g.term.get_data(0x9F36)
    assert sw == 0x9000 and int.from_bytes(data[-2:], "big") == 3


# -- several applications, PSE / PPSE ----------------------------------------------------------


def test_pse_ppse_list_two_applications_that_work_independently() -> None:
    debit = Profile(aid=bytes.fromhex("F0000000011010"), label="CARDLAB DEBIT", cvn=0x12, priority=1)
    credit = Profile(aid=bytes.fromhex("F0000000012010"), label="CARDLAB CREDIT", cvn=0x10, priority=2,
                     pan="5413330089020011", pin="9876", oda="DDA")
    card, (cd1, cd2) = make_card(debit, credit)
    term = Terminal(card.transmit, ca_keys())
    want = {(debit.aid, b"CARDLAB DEBIT", 1), (credit.aid, b"CARDLAB CREDIT", 2)}
    assert set(term.ppse()) == want
    assert set(term.pse()) == want
    a, b = Flow(card, cd1), Flow(card, cd2)
    a.start()
    for _ in range(3):
        a.term.verify_pin("0000")
    assert a.term.verify_pin("1234") == 0x6983
    assert atc(a.online()) == 1
    b.start()
    b.term.dda()
    assert b.term.verify_pin("9876") == 0x9000  # the other application's PIN is untouched
    assert atc(b.online()) == 1
    a.start()
    assert atc(a.gen_ac(CID_AAC)) == 2
    # partial AID selection with next occurrence walks both
    _, sw1 = term.select(bytes.fromhex("F000000001"))
    first = term.aid
    _, sw2 = term.select(bytes.fromhex("F000000001"), next_occurrence=True)
    assert (sw1, sw2) == (0x9000, 0x9000) and {first, term.aid} == {debit.aid, credit.aid}


def test_transaction_log_entries() -> None:
    f = Flow.new(log=True, **OFFLINE)
    f.start()
    assert f.term.card[0x9F4D] == bytes((0x0B, 10))
    f.gen_ac(CID_TC)
    f.start()
    f.online()
    fmt, sw = f.term.get_data(0x9F4F)
    assert sw == 0x9000
    assert sw == 0x9000 and fmt[-len(LOG_FORMAT):] == LOG_FORMAT
    rec, sw = f.term.send(bytes.fromhex("00B2015C00"))  # newest entry, SFI 0B
    # 9F02 ‖ 5F2A ‖ 9A ‖ 9C ‖ 9F36 ‖ 9F27 of the online transaction (ATC 2, TC)
    assert sw == 0x9000
    assert rec == f.term.values[0x9F02] + b"\x09\x78" + bytes.fromhex("250601") + b"\x00" + b"\x00\x02" + b"\x40"
    # an entry per GENERATE AC (issue 3): the ARQC of ATC 2, then the offline TC of ATC 1
    rec, sw = f.term.send(bytes.fromhex("00B2025C00"))
    assert sw == 0x9000 and rec[-3:] == b"\x00\x02\x80"
    rec, sw = f.term.send(bytes.fromhex("00B2035C00"))
    assert sw == 0x9000 and rec[-3:] == b"\x00\x01\x40"
