"""ISO 7816-4 file system, driven through Card.transmit (emulator/filesystem/)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec import tlv
from cardlab.emulator import Card
from cardlab.emulator.apdu import sw_valid
from cardlab.emulator.filesystem import (
    ALWAYS,
    CREATE_DF,
    CREATE_EF,
    DEFAULT_BUDGET,
    DELETE_CHILD,
    FDB_CYCLIC,
    FDB_DF,
    FDB_LINEAR_FIXED,
    FDB_LINEAR_VARIABLE,
    FDB_TRANSPARENT,
    NEVER,
    READ,
    SC_ALL,
    SC_PIN,
    SC_SM,
    UPDATE,
    WRITE,
    FileSpec,
    FileSystem,
    compact_acl,
)

PIN = "31323334FFFFFFFF"
PUK = b"12345678".hex()
DEMO = b"\xf0CARDLAB.DEMO".hex()


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def send(card: Card, hexstr: str) -> bytes:
    return card.transmit(bytes.fromhex(hexstr.replace(" ", "")))


def ok(card: Card, hexstr: str) -> bytes:
    resp = send(card, hexstr)
    assert sw(resp) == 0x9000, f"{hexstr} -> {resp.hex()}"
    return resp[:-2]


def apdu(header: str, data: bytes = b"", le: str = "") -> str:
    lc = f"{len(data):02X}" if data else ""
    return header + lc + data.hex() + le


@pytest.fixture
def card() -> Card:
    c = Card.create()
    c.power_on()
    return c


def to_demo(card: Card, cla: str = "00") -> None:
    ok(card, cla + "A4080C025000")


def fake_secure_channel(card: Card, channel: int = 0) -> None:
    """Stand-in for an authenticated GP SCP03 session (no C-MAC required)."""
    card.channels[channel].session = SimpleNamespace(  # type: ignore[assignment]
        authenticated=True, requires_cmac=False, level=0x80
    )


def fcp(spec: FileSpec) -> bytes:
    return spec.build()


# -- SELECT ---------------------------------------------------------------------------


def test_select_mf_variants(card: Card) -> None:
    for cmd in ("00A4000C023F00", "00A4000C", "00A4000C00", "00A4080C023F00"):
        assert sw(send(card, cmd)) == 0x9000, cmd
    fcp_mf = ok(card, "00A4000400")
    objs = tlv.to_dict(tlv.parse(fcp_mf)[0].value)
    assert objs[0x83] == b"\x3f\x00"
    assert objs[0x82][0] == FDB_DF
    assert objs[0x8A] == b"\x05"
    assert 0x8C in objs


def test_select_by_fid_child_parent_and_types(card: Card) -> None:
    ok(card, "00A4000C025000")  # DF from the MF
    ok(card, "00A4000C025003")  # child EF
    ok(card, "00A4000C025001")  # sibling EF (child of the current DF)
    ok(card, "00A4000C025000")  # the current DF itself
    ok(card, "00A4000C022F00")  # child of the parent (the current DF is now the MF)
    ok(card, "00A4000C025000")
    ok(card, "00A4030C")  # parent of DF 5000 is the MF
    assert sw(send(card, "00A4030C")) == 0x6A82  # the MF has no parent
    ok(card, "00A4010C025000")
    assert sw(send(card, "00A4010C025001")) == 0x6A82  # an EF is not a child DF
    ok(card, "00A4020C025001")
    assert sw(send(card, "00A4020C025000")) == 0x6A82  # a DF is not a child EF
    assert sw(send(card, "00A4000C021234")) == 0x6A82
    assert sw(send(card, "00A4000C03123456")) == 0x6A87
    assert sw(send(card, "00A4030C025000")) == 0x6A87
    assert sw(send(card, "00A4050C025000")) == 0x6A86
    assert sw(send(card, "00A4001C025000")) == 0x6A86
    assert sw(send(card, "00A4000D025000")) == 0x6A86  # occurrence only by name


def test_select_paths(card: Card) -> None:
    ok(card, "00A4080C0450005004")
    assert card.channels[0].fs is not None
    ef = card.channels[0].fs.ef
    assert ef is not None and ef.fid == 0x5004
    ok(card, "00A4080C063F0050005004")  # a leading 3F00 is tolerated
    ok(card, "00A4080C025000")
    ok(card, "00A4090C025002")  # relative to the current DF 5000
    assert sw(send(card, "00A4090C025000")) == 0x6A82  # not a child of 5000
    assert sw(send(card, "00A4080C0450015000")) == 0x6A82  # through an EF
    assert sw(send(card, "00A4080C03500050")) == 0x6A87
    assert sw(send(card, "00A4090C")) == 0x6A87


def test_select_answer_kinds(card: Card) -> None:
    fci = ok(card, "00A40000025000")
    assert fci[0] == 0x6F
    fci_objs = tlv.to_dict(tlv.parse(fci)[0].value)
    assert fci_objs[0x84] == bytes.fromhex(DEMO)
    assert fci_objs[0x4F] == bytes.fromhex(DEMO)  # FMD part
    fcp_df = ok(card, "00A40004025000")
    assert fcp_df[0] == 0x62
    fmd = ok(card, "00A40008025000")
    assert fmd[0] == 0x64
    assert ok(card, "00A4000C025000") == b""
    fcp_ef = ok(card, "00A40004025003")
    spec = FileSpec.parse(fcp_ef)
    assert (spec.fdb, spec.rec_len, spec.max_records, spec.sfi) == (FDB_LINEAR_FIXED, 16, 5, 3)
    assert spec.build() == fcp_ef


def test_select_by_df_name_partial_and_next(card: Card) -> None:
    to_demo(card)
    # a second DF whose name shares the prefix
    ok(card, apdu("00E00000", fcp(FileSpec(0x5100, FDB_DF, name=b"\xf0CARDLAB.DEMO2"))))
    assert card.channels[0].fs is not None and card.channels[0].fs.df is not None
    first = ok(card, "00A40400" + "08" + DEMO[:16])
    assert tlv.find(first, 0x83) == tlv.Tlv(0x83, b"\x50\x00")
    second = ok(card, "00A40402" + "08" + DEMO[:16])
    assert tlv.find(second, 0x83) == tlv.Tlv(0x83, b"\x51\x00")
    assert sw(send(card, "00A40402" + "08" + DEMO[:16])) == 0x6A82  # no more
    assert sw(send(card, "00A4040C05F0FFFFFFFF")) == 0x6A82
    # the SELECT took the channel away from the ISD
    assert card.channels[0].selected is None


def test_failed_select_keeps_the_application(card: Card) -> None:
    isd = card.channels[0].selected
    assert sw(send(card, "00A4000C029999")) == 0x6A82
    assert card.channels[0].selected == isd


# -- transparent EFs -----------------------------------------------------------------------


def test_read_update_binary(card: Card) -> None:
    to_demo(card)
    ok(card, "00A4020C025001")
    assert ok(card, "00B0000005") == b"Hello"
    assert ok(card, "00B0000700") == b"cardlab!" + bytes(49)  # Le 00: all there is, shorter
    ok(card, "00D6000203" + b"ABC".hex())
    assert ok(card, "00B0000005") == b"HeABC"
    assert sw(send(card, "00B0004000")) == 0x6B00  # offset 64 == size
    assert sw(send(card, "00B0010000")) == 0x6B00
    assert sw(send(card, "00D6003F02AAAA")) == 0x6A84  # runs past the end
    assert sw(send(card, "00B00000")) == 0x6700  # no Le
    assert sw(send(card, "00D60000")) == 0x6700  # no data


def test_binary_by_sfi_makes_file_current(card: Card) -> None:
    to_demo(card)
    assert ok(card, "00B0810005") == b"Hello"  # SFI 1 = EF 5001
    assert ok(card, "00B0000205") == b"llo, "  # now the current EF
    ok(card, "00D6810001" + "68")
    assert ok(card, "00B0810001") == b"h"
    assert sw(send(card, "00B0870000")) == 0x6A82  # no SFI 7
    assert sw(send(card, "00B0A10000")) == 0x6A86  # P1 b7b6 must be 00
    assert sw(send(card, "00B0800000")) == 0x6A86  # SFI 0
    assert sw(send(card, "00B0830000")) == 0x6981  # SFI 3 is a record EF


def test_binary_without_current_ef_or_on_record_ef(card: Card) -> None:
    to_demo(card)
    assert sw(send(card, "00B0000000")) == 0x6986
    assert sw(send(card, "00D6000001AA")) == 0x6986
    ok(card, "00A4020C025003")
    assert sw(send(card, "00B0000000")) == 0x6981
    assert sw(send(card, "00D6000001AA")) == 0x6981


def test_write_binary_ors_into_the_file(card: Card) -> None:
    to_demo(card)
    ok(card, "00A4020C025001")
    ok(card, "00D6000002" + "0F00")
    ok(card, "00D0000002" + "F001")
    assert ok(card, "00B0000002") == b"\xff\x01"


# -- record EFs ----------------------------------------------------------------------------


def test_read_record_modes(card: Card) -> None:
    to_demo(card)
    assert ok(card, "00B2011C00") == bytes([1]) * 16  # SFI 3, record 1
    assert ok(card, "00B2000200") == bytes([2]) * 16  # next
    assert ok(card, "00B2000400") == bytes([2]) * 16  # current
    assert ok(card, "00B2000300") == bytes([1]) * 16  # previous
    assert ok(card, "00B2000100") == bytes([3]) * 16  # last
    assert ok(card, "00B2000000") == bytes([1]) * 16  # first
    assert ok(card, "00B2030404") == bytes([3]) * 4  # Le shorter than the record
    assert sw(send(card, "00B2040400")) == 0x6A83  # only 3 of 5 records written
    assert sw(send(card, "00B2010000")) == 0x6A86  # P1 must be 00 for first
    assert sw(send(card, "00B2010500")) == 0x6A86
    assert sw(send(card, "00B2FF0400")) == 0x6A86
    assert sw(send(card, "00B201FC00")) == 0x6A86  # SFI 31
    assert sw(send(card, "00B2013C00")) == 0x6A82  # SFI 7 absent
    assert sw(send(card, "00B2010C00")) == 0x6981  # SFI 1 is transparent
    assert sw(send(card, "00B2011C")) == 0x6700  # no Le


def test_read_record_previous_at_start(card: Card) -> None:
    to_demo(card)
    ok(card, "00B2011C00")
    assert sw(send(card, "00B2000300")) == 0x6A83


def test_record_without_current_ef(card: Card) -> None:
    to_demo(card)
    assert sw(send(card, "00B2010400")) == 0x6986
    assert sw(send(card, "00E2000001AA")) == 0x6986


def test_update_record_lengths(card: Card) -> None:
    to_demo(card)
    ok(card, "0020000108" + PIN)  # EF 5003 updates need the PIN
    ok(card, "00DC021C10" + "AB" * 16)
    assert ok(card, "00B2021C00") == b"\xab" * 16
    assert sw(send(card, "00DC021C0FAB" + "AB" * 14)) == 0x6700  # linear fixed: exactly 16
    assert sw(send(card, "00DC091C10" + "AB" * 16)) == 0x6A83
    # linear variable (SFI 4): 1..32 bytes
    ok(card, "00DC0124" + "02" + "CAFE")
    assert ok(card, "00B2012400") == b"\xca\xfe"
    assert sw(send(card, "00DC012421" + "00" * 33)) == 0x6700


def test_append_linear_until_full(card: Card) -> None:
    to_demo(card)
    ok(card, "0020000108" + PIN)
    ok(card, "00E2001810" + "44" * 16)
    assert ok(card, "00B2000400") == b"\x44" * 16  # the appended record is current
    ok(card, "00E2001810" + "55" * 16)
    assert sw(send(card, "00E2001810" + "66" * 16)) == 0x6A84  # 5 of 5
    assert sw(send(card, "00E2001808" + "66" * 8)) == 0x6700
    assert sw(send(card, "00E2011810" + "66" * 16)) == 0x6A86
    assert sw(send(card, "00E2001C10" + "66" * 16)) == 0x6A86
    assert ok(card, "00B2051C00") == b"\x55" * 16


def test_cyclic_newest_is_record_one(card: Card) -> None:
    to_demo(card)
    ok(card, "0020000108" + PIN)
    for n in range(3, 8):
        ok(card, "00E2002808" + f"{n:016X}")
    # max 4 records: newest first, the oldest ones dropped
    records = [ok(card, f"00B2{i:02X}2C00") for i in range(1, 5)]
    assert [int.from_bytes(r, "big") for r in records] == [7, 6, 5, 4]
    assert sw(send(card, "00B2052C00")) == 0x6A83
    assert sw(send(card, "00DC012C08" + "00" * 8)) == 0x6982  # update NEVER


# -- access conditions -----------------------------------------------------------------


def test_pin_protected_file(card: Card) -> None:
    to_demo(card)
    assert sw(send(card, "00B0820000")) == 0x6982
    assert sw(send(card, "00D6820001AA")) == 0x6982
    ok(card, "0020000108" + PIN)
    assert ok(card, "00B0820006") == b"secret"
    card.power_on()  # verification is transient
    to_demo(card)
    assert sw(send(card, "00B0820000")) == 0x6982


def test_secure_channel_protected_file(card: Card) -> None:
    to_demo(card)
    assert sw(send(card, "00B0860000")) == 0x6982  # EF 5006: read in a secure channel
    fake_secure_channel(card)
    assert ok(card, "00B0860000") == bytes(16)
    # update needs secure channel AND PIN (SC b8 = all conditions)
    assert sw(send(card, "00D6860001AA")) == 0x6982
    ok(card, "0020000108" + PIN)
    ok(card, "00D6860001AA")


def test_never_and_missing_modes(card: Card) -> None:
    assert sw(send(card, "00D6810001AA")) == 0x6982  # EF.ATR/INFO: update NEVER
    assert sw(send(card, "00D0810001AA")) == 0x6982
    assert ok(card, "00B0810000")[0] == 0x46
    to_demo(card)
    # EF with 8C lacking the WRITE bit: append refused (fail-closed)
    acl = compact_acl({READ: ALWAYS, UPDATE: ALWAYS})
    ok(card, apdu("00E00000", fcp(FileSpec(0x5010, FDB_LINEAR_VARIABLE, rec_len=4, max_records=2, acl=acl))))
    assert sw(send(card, "00E2000001AA")) == 0x6982
    # no 8C at all: everything allowed
    ok(card, apdu("00E00000", fcp(FileSpec(0x5011, FDB_LINEAR_VARIABLE, rec_len=4, max_records=2, sfi=None))))
    ok(card, "00E2000001AA")


def test_create_in_mf_needs_pin_or_secure_channel(card: Card) -> None:
    spec = FileSpec(0x6001, FDB_TRANSPARENT, size=4)
    assert sw(send(card, apdu("00E00000", fcp(spec)))) == 0x6982
    fake_secure_channel(card)
    ok(card, apdu("00E00000", fcp(spec)))
    card.power_on()
    assert sw(send(card, "00E40000026001")) == 0x6982
    ok(card, "0020000108" + PIN)
    ok(card, "00E40000026001")


def test_condition_table_in_df() -> None:
    acl = compact_acl({DELETE_CHILD: NEVER, CREATE_EF: SC_PIN, CREATE_DF: SC_SM | SC_PIN | SC_ALL})
    assert acl == bytes([0x07, 0xD0, 0x10, 0xFF])
    spec = FileSpec(0x4000, FDB_DF, acl=acl)
    assert spec.rule(DELETE_CHILD) == NEVER and spec.rule(0x40) == NEVER
    assert FileSpec(0x4000, FDB_DF).rule(CREATE_DF) == ALWAYS


# -- CREATE FILE / DELETE FILE ----------------------------------------------------------------


def test_create_select_use_delete(card: Card) -> None:
    to_demo(card)
    spec = FileSpec(0x5020, FDB_TRANSPARENT, size=10, sfi=9)
    ok(card, apdu("00E00000", fcp(spec)))
    ok(card, "00D6000003010203")  # the created EF is current
    assert ok(card, "00B0000000") == b"\x01\x02\x03" + bytes(7)
    assert ok(card, "00A40004025020") == spec.build()
    assert sw(send(card, apdu("00E00000", fcp(spec)))) == 0x6A89
    assert sw(send(card, apdu("00E00000", fcp(FileSpec(0x5021, FDB_TRANSPARENT, size=1, sfi=9))))) == 0x6A89
    ok(card, "00E40000025020")
    assert sw(send(card, "00A4020C025020")) == 0x6A82
    assert sw(send(card, "00E40000025020")) == 0x6A82
    assert sw(send(card, "00E4000003502000")) == 0x6A87
    assert sw(send(card, "00E40100025020")) == 0x6A86


def test_create_df_and_subtree_delete(card: Card) -> None:
    to_demo(card)
    ok(card, apdu("00E00000", fcp(FileSpec(0x5200, FDB_DF, name=b"\xf0SUB"))))
    # the new DF is current: create an EF inside it
    ok(card, apdu("00E00000", fcp(FileSpec(0x5201, FDB_TRANSPARENT, size=2))))
    ok(card, "00A4080C0650005200" + "5201")
    assert sw(send(card, apdu("00E00000", fcp(FileSpec(0x5202, FDB_DF, name=b"\xf0SUB"))))) == 0x6A8A
    ok(card, "00A4080C025000")
    ok(card, "00E40000025200")
    assert sw(send(card, "00A4080C0450005200")) == 0x6A82
    assert sw(send(card, "00A4040C04F0535542")) == 0x6A82


def test_delete_current_file_and_mf(card: Card) -> None:
    to_demo(card)
    ok(card, apdu("00E00000", fcp(FileSpec(0x5030, FDB_TRANSPARENT, size=2))))
    ok(card, "00E40000")  # empty data: the current EF
    assert sw(send(card, "00A4020C025030")) == 0x6A82
    ok(card, "00A4000C")
    ok(card, "0020000108" + PIN)
    assert sw(send(card, "00E40000")) == 0x6985  # the MF itself


@pytest.mark.parametrize(
    "bad",
    [
        "",  # no data
        "6300",  # not an FCP
        "6203820101",  # no FID
        "6207820101830250408F",  # truncated
        "620A8202FF00830250408001" + "01",  # unknown FDB
        "620B82020141830250408002FFFF",  # size too large
        "62088202014183025040",  # transparent without size
        "620E82050241000105830250408A0103",  # unsupported LCSI
        "620C8202014183025040" + "8C020300",  # SC bytes missing
        "620D8202014183025040" + "8C03010020",  # unsupported SC (external auth)
        "6211820201418302504080010184045A5A5A5A",  # EF with a DF name
        "620F8202384183025040" + "880108" + "8000",  # DF with an SFI
        "620C820201418302504080010186" + "00",  # security tag 86 not supported
        "620E82020141830250408001018001" + "01",  # duplicate tag
        "620C82020141830250408001018801" + "07",  # SFI low bits set
        "620C82050200000005830250408001",  # record length 0
        "620A820102830250408001" + "00",  # record EF with a short descriptor
        "620C820201418302FFFF80010A",  # reserved FID
    ],
)
def test_create_bad_fcp_is_6a80_or_6700(card: Card, bad: str) -> None:
    to_demo(card)
    cmd = "00E00000" + (f"{len(bad) // 2:02X}" + bad if bad else "")
    assert sw(send(card, cmd)) in (0x6A80, 0x6700)


def test_create_other_errors(card: Card) -> None:
    to_demo(card)
    spec = FileSpec(0x5040, FDB_TRANSPARENT, size=1)
    assert sw(send(card, apdu("00E00100", fcp(spec)))) == 0x6A86
    assert sw(send(card, apdu("00E00000", fcp(FileSpec(0x5000, FDB_TRANSPARENT, size=1))))) == 0x6A89
    assert sw(send(card, apdu("00E00000", fcp(FileSpec(0x3F00, FDB_DF))))) == 0x6A89
    big = FileSpec(0x5041, FDB_TRANSPARENT, size=0x7FFF)
    assert sw(send(card, apdu("00E00000", fcp(big)))) == 0x6A84  # over the 16 KiB budget
    medium = [FileSpec(0x5100 + i, FDB_TRANSPARENT, size=4000, sfi=None) for i in range(4)]
    results = [sw(send(card, apdu("00E00000", fcp(s)))) for s in medium]
    ok(card, "00A4080C025000")
    assert results[:3] == [0x9000] * 3 and results[3] == 0x6A84


# -- PIN ------------------------------------------------------------------------------------


def test_verify_counter_block_and_unblock(card: Card) -> None:
    assert sw(send(card, "0020000100")) == 0x63C3
    assert sw(send(card, "0020000108" + "3939393939393939")) == 0x63C2
    assert sw(send(card, "0020000108" + "3939393939393939")) == 0x63C1
    assert card.fs.pin.tries == 1
    assert sw(send(card, "0020000108" + "3939393939393939")) == 0x63C0
    assert sw(send(card, "0020000108" + PIN)) == 0x6983  # blocked, even with the right PIN
    assert sw(send(card, "0020000100")) == 0x6983
    assert sw(send(card, "002C00010F" + PUK + PIN[:14])) == 0x6700
    assert sw(send(card, "002C000110" + b"00000000".hex() + "35353535FFFFFFFF")) == 0x63C9
    ok(card, "002C000110" + PUK + "35353535FFFFFFFF")  # new PIN 5555
    assert sw(send(card, "0020000108" + PIN)) == 0x63C2
    ok(card, "0020000108" + "35353535FFFFFFFF")
    ok(card, "0020000100")
    ok(card, "0020FF01")  # reset the verification status
    assert sw(send(card, "0020000100")) == 0x63C3
    ok(card, "002C010108" + PUK)  # P1=01: counter only


def test_verify_argument_errors(card: Card) -> None:
    assert sw(send(card, "0020000204" + "31323334")) == 0x6A88
    assert sw(send(card, "0020000204" + "31323334")) == 0x6A88
    assert sw(send(card, "0020010100")) == 0x6A86
    assert sw(send(card, "002000010431323334")) == 0x6700  # wrong length costs no try
    assert card.fs.pin.tries == 3


def test_failed_verify_clears_status(card: Card) -> None:
    ok(card, "0020000108" + PIN)
    assert sw(send(card, "0020000108" + "39" * 8)) == 0x63C2
    assert sw(send(card, "0020000100")) == 0x63C2


def test_counter_is_saved_before_the_answer(card: Card) -> None:
    seen: list[int] = []
    card.on_commit = lambda c: seen.append(c.state.filesystem["pin"]["tries"])
    send(card, "0020000108" + "39" * 8)
    assert seen == [2]
    ok(card, "0020000108" + PIN)
    assert seen == [2, 3]


def test_change_reference_data(card: Card) -> None:
    new = "3938373635FFFFFF"
    assert sw(send(card, "0024000110" + PIN + "31FFFFFFFFFFFFFF")) == 0x6A80  # bad new PIN
    assert card.fs.pin.tries == 3
    assert sw(send(card, "0024000110" + "39" * 8 + new)) == 0x63C2
    ok(card, "0024000110" + PIN + new)
    assert sw(send(card, "0020000108" + PIN)) == 0x63C2
    ok(card, "0020000108" + new)
    ok(card, "0024010108" + PIN)  # P1=01 while verified
    card.power_on()
    assert sw(send(card, "0024010108" + PIN)) == 0x6982
    ok(card, "0020000108" + PIN)
    assert sw(send(card, "0024020108" + PIN)) == 0x6A86


def test_pin_not_in_error_text(card: Card, caplog: pytest.LogCaptureFixture) -> None:
    from cardlab.emulator.apdu import StatusError

    try:
        card.fs.pin.check(card.fs, b"\x39" * 8)
    except StatusError as err:  # pragma: no cover - not raised for a wrong PIN
        raise AssertionError(str(err)) from err
    assert card.fs.pin.failed().args[0] == "verification failed"
    send(card, "0020000108" + "39" * 8)
    assert "3132" not in caplog.text and "1234" not in caplog.text


# -- channels and persistence ----------------------------------------------------------------


def test_channels_have_independent_cursors(card: Card) -> None:
    assert ok(card, "0070000001") == b"\x01"
    to_demo(card, "00")
    ok(card, "00A4020C025001")
    ok(card, "01A4000C022F01")  # channel 1 at EF.ATR/INFO in the MF
    assert ok(card, "00B0000005") == b"Hello"
    assert ok(card, "01B0000001") == b"\x46"
    assert sw(send(card, "01B2011C00")) == 0x6A82  # SFI 3 is not in the MF
    assert ok(card, "00B2011C00") == bytes([1]) * 16
    # deleting the file another channel stands on resets that channel
    ok(card, "01A4080C025000")
    ok(card, "01A4020C025004")
    ok(card, "00E40000025004")
    assert sw(send(card, "01B2010400")) == 0x6986
    ok(card, "00708001")
    assert sw(send(card, "01B0000001")) == 0x6881


def test_persistence_round_trip(card: Card) -> None:
    to_demo(card)
    ok(card, apdu("00E00000", fcp(FileSpec(0x5050, FDB_CYCLIC, rec_len=2, max_records=3, sfi=10))))
    ok(card, "00E2000002BEEF")
    send(card, "0020000108" + "39" * 8)
    card.sync_state()
    dump = card.fs.dump()
    again = FileSystem.load(dump)
    assert again.dump() == dump
    assert again.pin.tries == 2
    import json

    assert json.loads(json.dumps(dump)) == dump
    # and a whole card from the saved state
    other = Card(card.state)
    ok(other, "00A4080C0450005050")
    assert ok(other, "00B2010400") == b"\xbe\xef"
    assert sw(send(other, "0020000100")) == 0x63C2


def test_default_tree_from_empty_dict() -> None:
    fs = FileSystem.load({})
    assert fs.root.fid == 0x3F00
    assert [n.fid for n in fs.root.children] == [0x2F00, 0x2F01, 0x5000]
    assert fs.used() < DEFAULT_BUDGET
    assert fs.dump() == FileSystem.default().dump()


def test_ef_dir_lists_the_demo_df(card: Card) -> None:
    record = ok(card, "00B201F400")  # EF.DIR, SFI 30
    assert tlv.find(record, 0x4F) == tlv.Tlv(0x4F, bytes.fromhex(DEMO))


# -- properties --------------------------------------------------------------------------------

SC_BYTES = st.sampled_from([ALWAYS, NEVER, SC_SM, SC_PIN, SC_SM | SC_PIN, SC_SM | SC_PIN | SC_ALL])
ACLS = st.none() | st.dictionaries(st.sampled_from([1, 2, 4, 8, 16, 32, 64]), SC_BYTES, min_size=1).map(
    compact_acl
)


@st.composite
def file_specs(draw: st.DrawFn) -> FileSpec:
    fid = draw(st.integers(0x0001, 0xFFFE).filter(lambda f: f not in (0x3F00, 0x3FFF, 0x5000)))
    fdb = draw(st.sampled_from([FDB_DF, FDB_TRANSPARENT, FDB_LINEAR_FIXED, FDB_LINEAR_VARIABLE, FDB_CYCLIC]))
    acl = draw(ACLS)
    dcb = draw(st.integers(0, 255))
    if fdb == FDB_DF:
        name = draw(st.binary(min_size=0, max_size=16))
        return FileSpec(fid, fdb, dcb, name=name, acl=acl)
    sfi = draw(st.none() | st.integers(1, 30))
    if fdb == FDB_TRANSPARENT:
        return FileSpec(fid, fdb, dcb, size=draw(st.integers(0, 2000)), sfi=sfi, acl=acl)
    return FileSpec(
        fid, fdb, dcb, rec_len=draw(st.integers(1, 255)), max_records=draw(st.integers(1, 8)), sfi=sfi, acl=acl
    )


@given(file_specs())
def test_fcp_round_trip(spec: FileSpec) -> None:
    assert FileSpec.parse(spec.build()) == spec


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=file_specs())
def test_created_file_selects_with_the_same_fcp(spec: FileSpec) -> None:
    card = Card.create()
    to_demo(card)
    resp = send(card, apdu("00E00000", spec.build()))
    if 0x5001 <= spec.fid <= 0x5006 or spec.sfi in range(1, 7):
        assert sw(resp) == 0x6A89  # FID or SFI already used in the demo DF
        return
    if spec.name == bytes.fromhex(DEMO):
        assert sw(resp) == 0x6A8A
        return
    assert sw(resp) == 0x9000, resp.hex()
    ok(card, "00A4080C025000")
    assert ok(card, f"00A40004 02 {spec.fid:04X}".replace(" ", "")) == spec.build()
    dump = card.fs.dump()
    assert FileSystem.load(dump).dump() == dump


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 63), data=st.binary(min_size=1, max_size=64))
def test_update_then_read_binary(offset: int, data: bytes) -> None:
    card = Card.create()
    to_demo(card)
    ok(card, "00A4020C025001")
    resp = send(card, apdu(f"00D6{offset:04X}", data))
    if offset + len(data) > 64:
        assert sw(resp) == 0x6A84
        return
    assert sw(resp) == 0x9000
    assert ok(card, f"00B0{offset:04X}{len(data) % 256:02X}") == data


FILE_INS = [0xA4, 0xB0, 0xD0, 0xD6, 0xB2, 0xDC, 0xE2, 0xE0, 0xE4, 0x20, 0x24, 0x2C]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x00, 0x01, 0x04, 0x0C, 0x40]),
            st.sampled_from(FILE_INS),
            st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x09, 0x81, 0x82, 0xFF]) | st.integers(0, 255),
            st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C]) | st.integers(0, 255),
            st.sampled_from([b"", b"\x50\x00", b"\x50\x03", b"\x3f\x00", b"\x50\x00\x50\x05", b"1234\xff\xff\xff\xff"])
            | st.binary(max_size=40),
            st.none() | st.integers(1, 256),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_random_file_commands_never_6f00(cmds: list[tuple[int, int, int, int, bytes, int | None]]) -> None:
    card = Card.create()
    send(card, "0070000001")
    fake = True
    for cla, ins, p1, p2, data, ne in cmds:
        if fake:
            fake_secure_channel(card, 1)
            fake = False
        raw = bytes([cla, ins, p1, p2])
        if data:
            raw += bytes([len(data)]) + data
        if ne is not None:
            raw += bytes([ne % 256])
        resp = card.transmit(raw)
        assert sw(resp) != 0x6F00, raw.hex()
        assert sw_valid(sw(resp))


@settings(max_examples=100)
@given(st.binary(max_size=60))
def test_random_fcp_bytes_never_6f00(body: bytes) -> None:
    card = Card.create()
    to_demo(card)
    for data in (body, tlv.encode(0x62, body)):
        if data:
            assert sw(send(card, apdu("00E00000", data))) != 0x6F00


@settings(max_examples=100)
@given(st.sampled_from(list(range(4))), st.sampled_from([0x00, 0x04, 0x08, 0x0C]))
def test_p2_variants_of_select(occ: int, kind: int) -> None:
    card = Card.create()
    resp = send(card, f"00A400{kind | occ:02X}025000")
    assert sw(resp) == (0x9000 if occ == 0 else 0x6A86)


def test_acl_constants() -> None:
    assert compact_acl({READ: ALWAYS, UPDATE: SC_PIN, WRITE: NEVER}) == bytes([0x07, 0xFF, 0x10, 0x00])
    assert (CREATE_EF, CREATE_DF, DELETE_CHILD) == (UPDATE, WRITE, READ)
