"""The GP card manager (GP Card Spec 2.3 §11), driven through Card.transmit
with real SCP03 sessions (cardlab.cardspec.scp03.HostSession)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cardlab.cardspec import tlv
from cardlab.cardspec.keys import kcv
from cardlab.cardspec.scp03 import HostSession, ScpError, StaticKeys, dek_encrypt, pad80
from cardlab.emulator import Card
from cardlab.emulator.applets.loyalty import LoyaltyApplet
from cardlab.emulator.gp.manager import ISD_LOAD_FILE_AID, ISD_MODULE_AID, new_card_state

K = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
KEYS = StaticKeys(K, K, K, 0x30)
ISD = bytes.fromhex("A000000151000000")
LF = LoyaltyApplet.LOAD_FILE_AID
MOD = LoyaltyApplet.MODULE_AID
APP = bytes.fromhex("A0000006474C590101")


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def split(resp: bytes) -> tuple[bytes, int]:
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def sw(resp: bytes) -> int:
    return split(resp)[1]


def lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def apdu(header: str, data: bytes = b"", le: bool = False) -> bytes:
    out = h(header)
    if data:
        out += lv(data)
    if le:
        out += b"\x00"
    return out


def install_data(
    aid: bytes = APP, privs: bytes = b"\x00", params: bytes = h("C900"), lf: bytes = LF, mod: bytes = MOD
) -> bytes:
    return lv(lf) + lv(mod) + lv(aid) + lv(privs) + lv(params) + b"\x00"


class GP:
    """A card plus an open SCP03 session on the basic channel."""

    def __init__(self, card: Card | None = None, level: int = 0x01, keys: StaticKeys = KEYS) -> None:
        self.card = card or Card.create()
        self.keys = keys
        self.hs = HostSession(self.card.transmit, keys)
        self.hs.open(level)

    def send(self, raw: bytes) -> tuple[bytes, int]:
        return split(self.hs.send(raw))

    def ok(self, raw: bytes) -> bytes:
        data, status = self.send(raw)
        assert status == 0x9000, f"{status:04X}"
        return data

    def install(self, p1: int = 0x0C, **kw: bytes) -> int:
        return self.send(apdu(f"80E6{p1:02X}00", install_data(**kw), le=True))[1]

    def install_kw(self, kw: dict[str, bytes]) -> int:
        return self.install(0x0C, **kw)

    def status(self, p1: int, p2: int = 0x02, data: bytes = h("4F00")) -> tuple[bytes, int]:
        return self.send(apdu(f"80F2{p1:02X}{p2:02X}", data, le=True))


@pytest.fixture
def gp() -> GP:
    return GP()


# -- SELECT and GET DATA ------------------------------------------------------------


def test_select_isd_fci() -> None:
    card = Card.create()
    data, status = split(card.transmit(h("00A4040008A000000151000000")))
    assert status == 0x9000
    fci = tlv.parse(data)[0]
    assert fci.tag == 0x6F
    assert tlv.find(fci.value, 0x84).value == ISD  # type: ignore[union-attr]
    a5 = tlv.find(fci.value, 0xA5)
    assert a5 is not None and tlv.find(a5.value, 0x73) is not None
    assert tlv.find(a5.value, 0x9F65).value == b"\xff"  # type: ignore[union-attr]
    # P2=0C: no response data
    assert card.transmit(h("00A4040C08A000000151000000")) == h("9000")


def test_isd_aid_configurable() -> None:
    aid = h("A0000005591010FFFFFFFF8900000100")
    card = Card(new_card_state(isd_aid=aid))
    assert sw(card.transmit(apdu("00A40400", aid))) == 0x9000
    assert sw(card.transmit(h("00A4040008A000000151000000"))) == 0x6A82


@pytest.mark.parametrize("cla", ["00", "80"])
def test_get_data_cplc(cla: str) -> None:
    card = Card(new_card_state(kdd=h("000050C7606A8CF64800")))
    data, status = split(card.transmit(h(cla + "CA9F7F00")))
    assert status == 0x9000 and data[:3] == h("9F7F2A") and len(data) == 45
    again = Card(new_card_state(kdd=h("000050C7606A8CF64800"))).transmit(h("80CA9F7F00"))
    other = Card(new_card_state(kdd=h("00010203040506070809"))).transmit(h("80CA9F7F00"))
    assert again[:-2] == data and other[:-2] != data
    assert data[3 + 12 : 3 + 16] == h("8CF64800")  # IC serial number from the KDD


def test_get_data_card_data_oids() -> None:
    data = Card.create().transmit(h("80CA006600"))
    assert data[-2:] == h("9000")
    crd = tlv.find(data[:-2], 0x73)
    assert crd is not None
    objs = {t.tag: t.value for t in crd.children}
    assert objs[0x06] == h("2A864886FC6B01")
    assert tlv.find(objs[0x64], 0x06).value == h("2A864886FC6B040370")  # type: ignore[union-attr]
    assert tlv.find(objs[0x60], 0x06).value.startswith(h("2A864886FC6B02"))  # type: ignore[union-attr]


def test_get_data_key_information_and_more() -> None:
    card = Card.create(kdd=h("00010203040506070809"))
    data, _ = split(card.transmit(h("80CA00E000")))
    entries = [t.value for t in tlv.parse(data)[0].children]
    assert entries == [h("01308810"), h("02308810"), h("03308810")]
    assert card.transmit(h("80CA004200")) == h("4203999999 9000")
    assert card.transmit(h("80CA004500")) == h("450A00010203040506070809 9000")
    assert card.transmit(h("80CA00CF00")) == h("CF0A00010203040506070809 9000")
    assert card.transmit(h("80CA00C100")) == h("C103000000 9000")
    cap, status = split(card.transmit(h("80CA006700")))
    assert status == 0x9000 and tlv.find(cap, 0xA0) is not None
    assert sw(card.transmit(h("80CA00FE00"))) == 0x6A88


def test_sequence_counter_follows_sessions() -> None:
    card = Card.create()
    GP(card)
    GP(card)
    assert card.transmit(h("80CA00C100")) == h("C103000002 9000")


# -- security ----------------------------------------------------------------------

NEEDS_SC = [
    apdu("80E60C00", install_data(), le=True).hex(),
    "80E40000034F0100",
    "80F28002024F0000",
    "80F08007",
    "80D80081" + "00",
    "80E2900003420101",
    "80E800000100",
]


@pytest.mark.parametrize("raw", NEEDS_SC)
def test_commands_need_secure_channel(raw: str) -> None:
    assert sw(Card.create().transmit(h(raw))) == 0x6982


def test_load_refused(gp: GP) -> None:
    # LOAD and INSTALL [for load]: 6A81, load files are built in
    assert gp.send(h("80E80000 04 C4020101"))[1] == 0x6A81
    assert gp.send(h("80E6020015 0A45786572636973655236 00 00 06EF04C6020682 00 00"))[1] == 0x6A81
    assert gp.send(apdu("80E64000", install_data(), le=True))[1] == 0x6A81


# -- INSTALL -----------------------------------------------------------------------


def test_install_and_make_selectable(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.card.state.instance(APP).lifecycle == 0x07  # type: ignore[union-attr]
    data, status = split(gp.card.transmit(apdu("00A40400", APP)))
    assert status == 0x9000 and tlv.find(data, 0x84).value == APP  # type: ignore[union-attr]


def test_install_response_is_single_zero(gp: GP) -> None:
    assert gp.ok(apdu("80E60C00", install_data(), le=True)) == b"\x00"


def test_install_then_make_selectable(gp: GP) -> None:
    assert gp.install(0x04) == 0x9000
    assert gp.card.state.instance(APP).lifecycle == 0x03  # type: ignore[union-attr]
    assert sw(gp.card.transmit(h("01A4040009") + APP)) == 0x6881  # channel 1 not open
    assert gp.ok(h("0070000001")) == b"\x01"  # a plain command would end the C-MAC session
    assert sw(gp.card.transmit(h("01A4040009") + APP)) == 0x6A82  # INSTALLED: not selectable
    ms = lv(b"") + lv(b"") + lv(APP) + lv(b"") + lv(b"") + b"\x00"
    assert gp.send(apdu("80E60800", ms, le=True))[1] == 0x9000
    assert gp.card.state.instance(APP).lifecycle == 0x07  # type: ignore[union-attr]
    assert gp.send(apdu("80E60800", ms, le=True))[1] == 0x6985  # already selectable
    missing = lv(b"") + lv(b"") + lv(h("A000000647FFFF")) + lv(b"") + lv(b"") + b"\x00"
    assert gp.send(apdu("80E60800", missing, le=True))[1] == 0x6A88


def test_install_params_reach_the_application(gp: GP) -> None:
    assert gp.install(params=h("C904000003E8 EF00")) == 0x9000
    assert gp.card.applets[APP].max_balance == 1000  # type: ignore[attr-defined]
    assert gp.card.state.instance(APP).install_params == h("C904000003E8EF00")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"lf": h("A0000006474C5A")}, 0x6A88),  # unknown load file
        ({"mod": h("A0000006474C5902")}, 0x6A88),  # unknown module
        ({"mod": ISD_MODULE_AID, "lf": ISD_LOAD_FILE_AID}, 0x6985),  # a second ISD
        ({"aid": ISD}, 0x6985),  # AID in use
        ({"aid": h("A000")}, 0x6A80),  # AID too short
        ({"privs": h("0000")}, 0x6A80),  # 2 privilege bytes
        ({"privs": h("80")}, 0x6A80),  # security domain privilege
        ({"params": h("C903010203")}, 0x6A80),  # loyalty wants 4 bytes
        ({"params": h("EF00")}, 0x6A80),  # C9 missing
        ({"params": h("C901")}, 0x6A80),  # malformed TLV
    ],
)
def test_install_errors(gp: GP, kw: dict[str, bytes], expected: int) -> None:
    assert gp.install_kw(kw) == expected
    assert gp.card.state.instance(kw.get("aid", APP)) is None or kw.get("aid") == ISD


def test_install_duplicate_and_bad_p2(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.install() == 0x6985
    assert gp.send(apdu("80E60C01", install_data(aid=APP + b"\x02"), le=True))[1] == 0x6A86
    assert gp.send(apdu("80E60C00", install_data()[:-3], le=True))[1] == 0x6A80
    assert gp.send(apdu("80E60100", install_data(), le=True))[1] == 0x6A86


def test_install_three_byte_privileges(gp: GP) -> None:
    assert gp.install(privs=h("000000")) == 0x9000
    assert gp.install(aid=APP + b"\x02", privs=h("04")) == 0x9000
    assert gp.card.state.instance(APP + b"\x02").privileges == h("040000")  # type: ignore[union-attr]


# -- DELETE ------------------------------------------------------------------------


def test_delete_instance(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.ok(apdu("80E40000", tlv.encode(0x4F, APP), le=True)) == b"\x00"
    assert gp.card.state.instance(APP) is None and APP not in gp.card.applets
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, APP), le=True))[1] == 0x6A88


def test_delete_refusals(gp: GP) -> None:
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, ISD), le=True))[1] == 0x6985
    assert gp.send(apdu("80E40080", tlv.encode(0x4F, ISD_LOAD_FILE_AID), le=True))[1] == 0x6985
    assert gp.send(apdu("80E40000", h("4F00"), le=True))[1] == 0x6A80
    assert gp.send(apdu("80E40000", h("5A03010203"), le=True))[1] == 0x6A80
    assert gp.send(apdu("80E40001", tlv.encode(0x4F, APP), le=True))[1] == 0x6A86


def test_delete_load_file_and_related(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, LF), le=True))[1] == 0x6985
    assert gp.card.state.load_file(LF) is not None
    assert gp.send(apdu("80E40080", tlv.encode(0x4F, LF), le=True))[1] == 0x9000
    assert gp.card.state.load_file(LF) is None and gp.card.state.instance(APP) is None
    assert gp.install() == 0x6A88  # the load file is gone


def test_delete_load_file_without_instances(gp: GP) -> None:
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, LF), le=True))[1] == 0x9000


def test_delete_selected_elsewhere_refused(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.ok(h("0070000001")) == b"\x01"
    assert sw(gp.card.transmit(h("01A4040009") + APP)) == 0x9000
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, APP), le=True))[1] == 0x6985
    gp.card.transmit(h("01708001"))
    assert gp.send(apdu("80E40000", tlv.encode(0x4F, APP), le=True))[1] == 0x9000


# -- GET STATUS --------------------------------------------------------------------


def parse_e3(data: bytes) -> list[dict[int, list[bytes]]]:
    out = []
    for t in tlv.parse(data):
        assert t.tag == 0xE3
        entry: dict[int, list[bytes]] = {}
        for c in t.children:
            entry.setdefault(c.tag, []).append(c.value)
        out.append(entry)
    return out


def test_get_status_isd(gp: GP) -> None:
    data, status = gp.status(0x80)
    assert status == 0x9000
    assert parse_e3(data) == [{0x4F: [ISD], 0x9F70: [b"\x01"], 0xC5: [h("9EFE80")]}]
    legacy, status = gp.status(0x80, 0x00)
    assert status == 0x9000 and legacy == lv(ISD) + h("01 9E")


def test_get_status_load_files_and_modules(gp: GP) -> None:
    data, _ = gp.status(0x20)
    # the ISD's and the loyalty load files come first (then EMV, PSE/PPSE)
    assert [e[0x4F][0] for e in parse_e3(data)][:2] == [ISD_LOAD_FILE_AID, LF]
    data, _ = gp.status(0x10)
    entries = parse_e3(data)
    assert entries[1][0x84] == [MOD] and entries[1][0x9F70] == [b"\x01"] and entries[1][0xCC] == [ISD]
    legacy, _ = gp.status(0x10, 0x00)
    assert lv(LF) + h("0100") + b"\x01" + lv(MOD) in legacy
    legacy, _ = gp.status(0x20, 0x00)
    assert legacy.startswith(lv(ISD_LOAD_FILE_AID) + h("0100") + lv(LF) + h("0100"))


def test_get_status_applications_search_and_tag_list(gp: GP) -> None:
    assert gp.status(0x40)[1] == 0x6A88  # no applications yet
    assert gp.install() == 0x9000
    assert gp.install(0x04, aid=h("B0000006474C5901")) == 0x9000
    data, _ = gp.status(0x40)
    entries = parse_e3(data)
    assert [(e[0x4F][0], e[0x9F70][0]) for e in entries] == [(APP, b"\x07"), (h("B0000006474C5901"), b"\x03")]
    assert entries[0][0xC4] == [LF] and entries[0][0xC5] == [h("000000")]
    data, _ = gp.status(0x40, data=h("4F01B0"))
    assert [e[0x4F][0] for e in parse_e3(data)] == [h("B0000006474C5901")]
    assert gp.status(0x40, data=h("4F021234"))[1] == 0x6A88
    data, _ = gp.status(0x40, data=h("4F00 5C03 9F704F"))
    assert tlv.parse(data)[0].value == h("9F700107 4F09") + APP
    legacy, _ = gp.status(0x40, 0x00)
    assert legacy == lv(APP) + h("0700") + lv(h("B0000006474C5901")) + h("0300")


@pytest.mark.parametrize(
    ("p1", "p2", "data", "expected"),
    [
        (0x08, 0x02, h("4F00"), 0x6A86),
        (0x80, 0x06, h("4F00"), 0x6A86),
        (0x80, 0x02, h("4F"), 0x6A80),
        (0x80, 0x02, h("5A00"), 0x6A80),
        (0x80, 0x00, h("4F005C014F"), 0x6A80),  # tag list needs TLV format
        (0x80, 0x03, h("4F00"), 0x6A88),  # next occurrence with nothing pending
    ],
)
def test_get_status_errors(gp: GP, p1: int, p2: int, data: bytes, expected: int) -> None:
    assert gp.status(p1, p2, data)[1] == expected


def test_get_status_paging_round_trip() -> None:
    gp = GP(level=0x33)
    aids = [APP + bytes([n]) for n in range(12)]
    for aid in aids:
        assert gp.install(aid=aid) == 0x9000
    pages = []
    data, status = gp.status(0x40)
    pages.append(data)
    while status == 0x6310:
        data, status = gp.status(0x40, 0x03)
        pages.append(data)
    assert status == 0x9000 and len(pages) > 1 and all(len(p) <= 224 for p in pages)
    entries = [e for p in pages for e in parse_e3(p)]
    registry = [(r.aid, r.lifecycle, r.privileges, r.load_file_aid) for r in gp.card.state.instances[1:]]
    assert [(e[0x4F][0], e[0x9F70][0][0], e[0xC5][0], e[0xC4][0]) for e in entries] == registry
    # the continuation must repeat P1 and the data field
    gp.status(0x40)
    assert gp.status(0x20, 0x03)[1] == 0x6A88
    # a new GET STATUS restarts; done → nothing left to continue
    gp.status(0x40, data=h("4F00"))
    assert gp.status(0x40, 0x03)[1] in (0x9000, 0x6310)


def test_get_status_paging_plain_le() -> None:
    gp = GP()
    for n in range(3):
        gp.install(aid=APP + bytes([n]))
    data, status = gp.send(apdu("80F24002", h("4F00")) + bytes([40]))
    assert status == 0x6310 and len(parse_e3(data)) == 1


# -- SET STATUS --------------------------------------------------------------------


def set_status(gp: GP, p1: int, p2: int, data: bytes = b"") -> int:
    return gp.send(apdu(f"80F0{p1:02X}{p2:02X}", data))[1]


def test_card_life_cycle(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert set_status(gp, 0x80, 0x07) == 0x9000
    assert set_status(gp, 0x80, 0x01) == 0x6985  # never back to OP_READY
    assert set_status(gp, 0x80, 0x0F, ISD) == 0x9000
    assert set_status(gp, 0x80, 0x33) == 0x6A80  # not a card state
    assert set_status(gp, 0x80, 0x0F, APP) == 0x6A80
    assert gp.card.state.instance(ISD).lifecycle == 0x0F  # type: ignore[union-attr]
    assert gp.status(0x80)[0][-7:-5] == h("010F")
    assert set_status(gp, 0x80, 0x7F) == 0x9000  # CARD_LOCKED
    card = gp.card
    assert sw(card.transmit(apdu("00A40400", APP))) == 0x6A81
    assert sw(card.transmit(h("00A4040008A000000151000000"))) == 0x9000
    gp = GP(card)
    assert gp.install(aid=APP + b"\x02") == 0x6985  # content management refused when locked
    assert set_status(gp, 0x80, 0x0F) == 0x9000  # unlock
    assert sw(card.transmit(apdu("00A40400", APP))) == 0x9000
    card.transmit(h("00A4040008A000000151000000"))
    gp = GP(card)
    assert set_status(gp, 0x80, 0xFF) == 0x9000  # TERMINATED
    assert card.transmit(h("80CA9F7F00"))[-2:] == h("9000")
    assert card.transmit(h("80CA004200"))[-2:] == h("9000")
    assert sw(card.transmit(h("80CA00E000"))) == 0x6A81
    assert sw(card.transmit(h("00A4040008A000000151000000"))) == 0x6A81
    assert sw(card.transmit(h("8050000008 0102030405060708 00"))) == 0x6A81
    card.power_on()
    assert card.transmit(h("80CA9F7F00"))[-2:] == h("9000")


def test_application_lock_unlock(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert set_status(gp, 0x40, 0x00, APP) == 0x6985  # not locked
    assert set_status(gp, 0x40, 0x80, APP) == 0x9000
    assert gp.card.state.instance(APP).lifecycle == 0x87  # type: ignore[union-attr]
    assert set_status(gp, 0x40, 0x80, APP) == 0x6985  # already locked
    assert gp.ok(h("0070000001")) == b"\x01"
    assert sw(gp.card.transmit(h("01A4040009") + APP)) == 0x6A81
    assert set_status(gp, 0x40, 0x00, APP) == 0x9000
    assert sw(gp.card.transmit(h("01A4040009") + APP)) == 0x9000
    assert set_status(gp, 0x40, 0x0F, APP) == 0x9000  # application specific PERSONALIZED
    assert set_status(gp, 0x40, 0x07, APP) == 0x6A80
    assert set_status(gp, 0x40, 0x80, ISD) == 0x6A80
    assert set_status(gp, 0x40, 0x80, APP + b"\x09") == 0x6A88
    assert set_status(gp, 0x20, 0x80, APP) == 0x6A86


def test_security_domain_and_applications_lock(gp: GP) -> None:
    assert gp.install() == 0x9000
    assert gp.install(aid=APP + b"\x02") == 0x9000
    assert set_status(gp, 0x60, 0x80, ISD) == 0x9000
    assert [r.lifecycle for r in gp.card.state.instances] == [0x01, 0x87, 0x87]
    assert set_status(gp, 0x60, 0x00, ISD) == 0x9000
    assert [r.lifecycle for r in gp.card.state.instances] == [0x01, 0x07, 0x07]
    assert set_status(gp, 0x60, 0x80, APP) == 0x6A80  # not a security domain


# -- PUT KEY -----------------------------------------------------------------------

NEW = [bytes(range(16 * n, 16 * n + 16)) for n in (1, 2, 3)]


def key_block(key: bytes, dek: bytes = K, check: bytes | None = None) -> bytes:
    enc = dek_encrypt(dek, key + bytes(-len(key) % 16))
    kcv_value = kcv("AES", key) if check is None else check
    return h("88") + lv(bytes([len(key)]) + enc) + lv(kcv_value)


def test_put_key_new_key_set() -> None:
    gp = GP(level=0x03)
    data = b"\x31" + b"".join(key_block(k) for k in NEW)
    resp = gp.ok(apdu("80D80081", data, le=True))
    assert resp == b"\x31" + b"".join(kcv("AES", k) for k in NEW)
    assert {(k.kvn, k.kid) for k in gp.card.state.keys} >= {(0x31, 1), (0x31, 2), (0x31, 3)}
    info = gp.card.transmit(h("80CA00E000"))
    assert h("C00401318810") in info
    GP(gp.card, keys=StaticKeys(NEW[0], NEW[1], NEW[2], 0x31))  # the new set opens a session


def test_put_key_replace_set_in_use() -> None:
    gp = GP(level=0x13)
    data = b"\x30" + b"".join(key_block(k) for k in NEW)
    assert gp.ok(apdu("80D83081", data, le=True))[0] == 0x30
    # the session keeps working after its own key set was replaced
    assert gp.ok(h("80F28002024F0000"))
    gp2 = GP(gp.card, keys=StaticKeys(NEW[0], NEW[1], NEW[2], 0x30))
    assert gp2.ok(h("80CA00E000"))
    with pytest.raises(ScpError):
        GP(gp.card)  # the old keys are gone


def test_put_key_replace_one_key_with_new_version(gp: GP) -> None:
    assert gp.ok(apdu("80D83001", b"\x32" + key_block(NEW[0]), le=True))[0] == 0x32
    keys = {(k.kvn, k.kid): k.value for k in gp.card.state.keys}
    assert keys == {(0x32, 1): NEW[0], (0x32, 2): K, (0x32, 3): K}


@pytest.mark.parametrize(
    ("header", "data", "expected"),
    [
        ("80D83081", b"\x31" + key_block(NEW[0], check=h("000000")), 0x6A80),  # bad KCV
        ("80D84081", b"\x41" + key_block(NEW[0]), 0x6A88),  # no version 40 to replace
        ("80D80081", b"\x30" + key_block(NEW[0]), 0x6A80),  # 30 exists already
        ("80D80081", b"\x80" + key_block(NEW[0]), 0x6A80),  # KVN out of range
        ("80D80001", b"\x31" + key_block(NEW[0]) + key_block(NEW[1]), 0x6A80),  # 2 keys, P2 b8=0
        ("80D80080", b"\x31" + key_block(NEW[0]), 0x6A86),  # key id 0
        ("80D80081", b"\x31" + h("80") + key_block(NEW[0])[1:], 0x6A80),  # DES not supported
        ("80D80081", b"\x31" + key_block(NEW[0])[:-2], 0x6A80),  # truncated
        ("80D80081", b"\x31", 0x6A80),
    ],
)
def test_put_key_errors(gp: GP, header: str, data: bytes, expected: int) -> None:
    before = list(gp.card.state.keys)
    assert gp.send(apdu(header, data, le=True))[1] == expected
    assert gp.card.state.keys == before


def test_put_key_aes256(gp: GP) -> None:
    key = bytes(range(32))
    assert gp.ok(apdu("80D80001", b"\x33" + key_block(key), le=True)) == b"\x33" + kcv("AES", key)


# -- STORE DATA (ISD) --------------------------------------------------------------


def test_store_data_ber_tlv(gp: GP) -> None:
    assert gp.send(apdu("80E29000", h("4203123456 4504CAFEBABE")))[1] == 0x9000
    assert gp.card.transmit(h("80CA004200")) == h("4203123456 9000")
    assert gp.card.transmit(h("80CA004500")) == h("4504CAFEBABE 9000")


def test_store_data_dgi_chunked(gp: GP) -> None:
    blob = tlv.encode_dgi(0x0042, h("654321")) + tlv.encode_dgi(0x0066, h("7300"))
    assert gp.send(apdu("80E20800", blob[:4]))[1] == 0x9000
    assert gp.send(apdu("80E20802", blob[4:]))[1] == 0x6A86  # block 1 expected
    assert gp.send(apdu("80E28801", blob[4:]))[1] == 0x9000
    assert gp.card.state.iin == h("654321") and gp.card.state.isd_data[0x66] == h("7300")
    assert gp.ok(h("80CA006600")) == h("66027300")
    # the sequence restarts at 00
    assert gp.send(apdu("80E28801", blob))[1] == 0x6A86


def test_store_data_encrypted() -> None:
    gp = GP(level=0x03)
    enc = dek_encrypt(K, pad80(h("4505 0102030405")))
    assert gp.send(apdu("80E2F000", enc))[1] == 0x9000
    assert gp.card.state.cin == h("0102030405")
    assert gp.send(apdu("80E2F000", enc[:-1]))[1] == 0x6A80


def test_store_data_errors(gp: GP) -> None:
    assert gp.send(apdu("80E29000", h("9F7F0100")))[1] == 0x6A80  # CPLC read-only
    assert gp.send(apdu("80E29000", h("42")))[1] == 0x6A80
    assert gp.send(apdu("80E2D000", h("420100")))[1] == 0x6A86  # RFU encryption coding
    assert gp.send(apdu("80E2B000", h("420100")))[1] == 0x6A86  # application encryption
    assert gp.send(apdu("80E29800", h("420100")))[1] == 0x6A86  # RFU format


def test_store_data_retrieval_set_b() -> None:
    """pySim's SCP03 test (reference-vectors Set B): BF3E/5C 5A reads the EID."""
    eid = h("89882119900000000000000000000005")
    gp = GP(Card(new_card_state(eid=eid)), level=0x11)
    assert gp.ok(h("80E2910006BF3E035C015A00")) == h("BF3E125A10") + eid


# -- personalization routing and the loyalty application -------------------------


def personalize(gp: GP, holder: bytes = b"ALICE", balance: int | None = None) -> None:
    gp.ok(apdu("80E62000", lv(b"") + lv(b"") + lv(APP) + h("000000"), le=True))
    first = tlv.encode_dgi(0x0101, holder)
    assert gp.send(apdu("80E20800", first))[1] == 0x9000
    second = tlv.encode_dgi(0x0102, balance.to_bytes(4, "big")) if balance is not None else b""
    assert gp.send(apdu("80E28801", second or tlv.encode_dgi(0x0101, holder)))[1] == 0x9000


def test_loyalty_personalization_and_transactions(gp: GP) -> None:
    assert gp.install(params=h("C90400000064")) == 0x9000  # max 100
    card = gp.card
    assert gp.ok(h("0070000001")) == b"\x01"
    assert sw(card.transmit(h("01A4040009") + APP)) == 0x9000
    assert sw(card.transmit(h("8130000004 00000001"))) == 0x6985  # not personalized
    personalize(gp, balance=10)
    assert card.state.instance(APP).lifecycle == 0x0F  # type: ignore[union-attr]
    assert card.transmit(h("8134000000")) == h("0000000A") + b"ALICE" + h("9000")
    assert card.transmit(h("8130000004 00000005")) == h("0000000F 9000")
    assert card.transmit(h("8132000004 0000000F")) == h("00000000 9000")
    assert sw(card.transmit(h("8132000004 00000001"))) == 0x6985  # insufficient
    assert sw(card.transmit(h("8130000004 00000065"))) == 0x6985  # above maximum
    assert sw(card.transmit(h("8130000004 00000000"))) == 0x6A80
    assert sw(card.transmit(h("81300000020001"))) == 0x6700
    # routing ended with the last block: STORE DATA goes to the ISD again
    assert gp.send(apdu("80E29000", h("4203777777")))[1] == 0x9000
    assert card.state.iin == h("777777")
    # a personalized application refuses more personalization
    gp.ok(apdu("80E62000", lv(b"") + lv(b"") + lv(APP) + h("000000"), le=True))
    assert gp.send(apdu("80E28800", tlv.encode_dgi(0x0101, b"BOB")))[1] == 0x6985


def test_loyalty_state_persists_in_record(gp: GP) -> None:
    assert gp.install() == 0x9000
    personalize(gp, holder=b"BOB")
    assert gp.card.state.instance(APP).state["holder"] == b"BOB".hex()  # type: ignore[union-attr]
    again = Card(gp.card.state)
    again.transmit(apdu("00A40400", APP))
    assert again.transmit(h("8034000000")) == h("00000000") + b"BOB" + h("9000")


def test_install_for_personalization_errors(gp: GP) -> None:
    assert gp.install(0x04) == 0x9000
    perso = lv(b"") + lv(b"") + lv(APP) + h("000000")
    assert gp.send(apdu("80E62000", perso, le=True))[1] == 0x6985  # INSTALLED
    missing = lv(b"") + lv(b"") + lv(APP + b"\x01") + h("000000")
    assert gp.send(apdu("80E62000", missing, le=True))[1] == 0x6A88
    isd = lv(b"") + lv(b"") + lv(ISD) + h("000000")
    assert gp.send(apdu("80E62000", isd, le=True))[1] == 0x6985


def test_loyalty_perso_data_errors(gp: GP) -> None:
    assert gp.install() == 0x9000
    gp.ok(apdu("80E62000", lv(b"") + lv(b"") + lv(APP) + h("000000"), le=True))
    assert gp.send(apdu("80E29000", h("4203123456")))[1] == 0x6A86  # BER-TLV: not for loyalty
    assert gp.send(apdu("80E28800", tlv.encode_dgi(0x0103, b"x")))[1] == 0x6A80
    assert gp.send(apdu("80E28800", tlv.encode_dgi(0x0102, h("00000001"))))[1] == 0x6A80  # no holder
    assert gp.card.state.instance(APP).lifecycle == 0x07  # type: ignore[union-attr]


# -- life cycles against a model (hypothesis) ----------------------------------------

#: GP §5.1.1 figure 5-1, written out again independently of cardlab.emulator.gp.lifecycle
CARD_MODEL = {
    0x01: {0x07, 0x0F, 0xFF},
    0x07: {0x0F, 0xFF},
    0x0F: {0x7F, 0xFF},
    0x7F: {0x0F, 0xFF},
    0xFF: set(),
}
APPS = [APP + b"\x01", APP + b"\x02"]


class LifeCycles(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.card = Card.create()
        assert self.card.transmit(h("0070000001")) == h("01 9000")
        self.gp = GP(self.card)
        assert self.gp.install(aid=APPS[0]) == 0x9000
        assert self.gp.install(0x04, aid=APPS[1]) == 0x9000
        self.card_state = 0x01
        self.apps = {APPS[0]: 0x07, APPS[1]: 0x03}

    @rule(to=st.sampled_from([0x01, 0x07, 0x0F, 0x7F, 0xFF, 0x33]))
    def set_card(self, to: int) -> None:
        status = set_status(self.gp, 0x80, to)
        if self.card_state == 0xFF:
            assert status == 0x6A81
        elif to not in CARD_MODEL:
            assert status == 0x6A80
        elif to in CARD_MODEL[self.card_state]:
            assert status == 0x9000
            self.card_state = to
        else:
            assert status == 0x6985

    @rule(aid=st.sampled_from(APPS), p2=st.sampled_from([0x00, 0x80, 0x0F, 0x07, 0x03]))
    def set_app(self, aid: bytes, p2: int) -> None:
        status = set_status(self.gp, 0x40, p2, aid)
        cur = self.apps[aid]
        locked = bool(cur & 0x80)
        new: int | None = None
        if p2 == 0x80:
            new = None if locked else cur | 0x80
        elif p2 == 0x00:
            new = cur & 0x7F if locked else None
        elif p2 == 0x0F:
            new = 0x0F if (cur == 0x8F or cur == 0x07) else None
        if self.card_state == 0xFF:
            assert status == 0x6A81
        elif p2 in (0x07, 0x03):
            assert status == 0x6A80
        elif new is None:
            assert status == 0x6985
        else:
            assert status == 0x9000
            self.apps[aid] = new

    @rule(aid=st.sampled_from(APPS))
    def make_selectable(self, aid: bytes) -> None:
        ms = lv(b"") + lv(b"") + lv(aid) + lv(b"") + lv(b"") + b"\x00"
        status = self.gp.send(apdu("80E60800", ms, le=True))[1]
        if self.card_state == 0xFF:
            assert status == 0x6A81
        elif self.card_state == 0x7F or self.apps[aid] != 0x03:
            assert status == 0x6985
        else:
            assert status == 0x9000
            self.apps[aid] = 0x07

    @rule(aid=st.sampled_from(APPS))
    def select(self, aid: bytes) -> None:
        status = sw(self.card.transmit(h("01A40400") + lv(aid)))
        cur = self.apps[aid]
        if self.card_state in (0xFF, 0x7F) or cur & 0x80:
            assert status == 0x6A81
        elif cur == 0x03:
            assert status == 0x6A82
        else:
            assert status == 0x9000

    @rule()
    def select_isd(self) -> None:
        status = sw(self.card.transmit(h("01A40400") + lv(ISD)))
        assert status == (0x6A81 if self.card_state == 0xFF else 0x9000)

    @invariant()
    def registry_matches(self) -> None:
        if not hasattr(self, "card"):
            return
        state = self.card.state
        assert state.lifecycle == self.card_state
        assert state.instance(ISD).lifecycle == self.card_state  # type: ignore[union-attr]
        for aid, lc in self.apps.items():
            assert state.instance(aid).lifecycle == lc  # type: ignore[union-attr]


LifeCycles.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestLifeCycles = LifeCycles.TestCase


def test_reference_set_b_sequence() -> None:
    """reference-vectors.md Set B (pySim SCP03_Test_AES128_11): the card
    answers pySim's exact wrapped commands, the STORE DATA response and its
    R-MAC byte for byte."""
    keys = StaticKeys(
        h("000102030405060708090A0B0C0D0E0F"),
        h("101112131415161718191A1B1C1D1E1F"),
        h("202122232425262728292A2B2C2D2E2F"),
        0x30,
    )
    aid = h("A0000005591010FFFFFFFF8900000100")
    card = Card(
        new_card_state(
            isd_aid=aid,
            keys=(keys.enc, keys.mac, keys.dek),
            sequence_counter=2,
            eid=h("89882119900000000000000000000005"),
        )
    )
    sent: list[bytes] = []

    def transmit(raw: bytes) -> bytes:
        sent.append(raw)
        return card.transmit(raw)

    hs = HostSession(transmit, keys)
    hs.open(0x11, host_challenge=h("B13E5F938FC108C4"))
    assert sent[1] == h("84821100107D5F5826A993EBC89EEA24957FA0B3CE")
    resp = card.transmit(h("84E291000EBF3E035C015A558D036518A2829700"))
    assert resp == h("BF3E125A1089882119900000000000000000000005971BE68992DBBDFA9000")
    # the rest of pySim's sequence, wrapped by pySim: the C-MACs verify, and
    # the card answers GET STATUS / GET DATA. pySim's third command is
    # malformed: 5C says 05 bytes but holds 4 (4F 9F70 C5) → 6A80
    for raw, status in [
        ("84F220020863A63F8959827FB2", 0x9000),
        ("84CA006608A0C6A4A74166F7CE00", 0x9000),
        ("84F22002124F0212345C054F9F70C52249B50272656536", 0x6A80),
        ("84F280020A4F00E91443F6DCE6B8ED00", 0x9000),
    ]:
        assert sw(card.transmit(h(raw))) == status, raw


def test_put_key_uses_the_dek_of_the_session_key_set() -> None:
    gp = GP(level=0x03)
    data = b"\x31" + b"".join(key_block(k) for k in NEW)
    gp.ok(apdu("80D80081", data, le=True))
    # a session on key set 31: sensitive data is under DEK 31, not the first set's
    gp31 = GP(gp.card, level=0x03, keys=StaticKeys(NEW[0], NEW[1], NEW[2], 0x31))
    newer = [bytes([0xA0 + n]) * 16 for n in range(3)]
    replace = b"\x31" + b"".join(key_block(k, dek=NEW[2]) for k in newer)
    assert gp31.ok(apdu("80D83181", replace, le=True))[0] == 0x31
    # still the same session: its DEK is still the one it opened with
    again = b"\x32" + key_block(bytes(16), dek=NEW[2])
    assert gp31.ok(apdu("80D80001", again, le=True))[0] == 0x32
    enc = dek_encrypt(NEW[2], pad80(h("4203010203")))
    assert gp31.send(apdu("80E2F000", enc))[1] == 0x9000
    assert gp.card.state.iin == h("010203")
