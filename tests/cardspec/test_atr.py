"""The card-side ATR module: known answers, EMV's basic-ATR rules, build ↔ parse round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.cardspec import atr as A

#: (ATR, protocols offered, historical bytes, EMV basic?) — sources:
#: * EMV 4.4 Book 1 §8.3 (basic ATRs, tables of character values): the two basic forms
#:   with no historical bytes, built from the tables (TB1 = TC1 = 00; T=1: TD1 81, TD2 31, TA3 FE, TB3 45);
#: * pcsc-tools' smartcard_list.txt (Ludovic Rousseau, https://pcsc-tools.apdu.fr/smartcard_list.txt):
#:   "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A" Mifare Classic 1K through a PC/SC
#:   contactless reader (the PC/SC part 3 §3.1.3.2.3 storage-card form — the shape of cardlab's old ATR),
#:   "3B 8C 80 01 59 75 62 69 6B 65 79 4E 45 4F 72 33 58" Yubico YubiKey NEO (contactless form),
#:   "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4" Yubico YubiKey 4,
#:   "3B FA 13 00 00 81 31 FE 45 4A 43 4F 50 34 31 56 32 32 31 96" NXP JCOP41 V2.2.1,
#:   "3B 02 14 50" Schlumberger Multiflex 3k.
KNOWN = [
    ("3B600000", (0,), "", True),
    ("3BE000008131FE4500", None, "", True),  # TCK computed below
    ("3B8F8001804F0CA000000306030001000000006A", (0, 1), "804F0CA00000030603000100000000", False),
    ("3B8C8001597562696B65794E454F723358", (0, 1), "597562696B65794E454F7233", False),
    ("3BF81300008131FE15597562696B657934D4", (1,), "597562696B657934", True),
    ("3BFA1300008131FE454A434F5034315632323196", (1,), "4A434F50343156323231", True),
    ("3B021450", (0,), "1450", False),
]


@pytest.mark.parametrize("hexatr,protocols,hist,emv", KNOWN)
def test_known_atrs(hexatr: str, protocols: tuple[int, ...] | None, hist: str, emv: bool) -> None:
    raw = bytes.fromhex(hexatr)
    if protocols is None:  # the EMV T=1 basic form: compute its TCK, then read it back
        raw = A.basic(1, b"")
        assert raw.hex().upper()[:-2] == "3BE000008131FE45"
        protocols = (1,)
    atr = A.parse(raw)
    assert atr.protocols == protocols
    assert atr.historical.hex().upper() == hist
    assert A.build(atr) == raw
    assert (A.emv_problems(atr) == []) is emv


def test_defaults_are_emv_basic_atrs() -> None:
    assert A.DEFAULT_T0.hex().upper() == "3B6600008031C0829000"
    assert A.DEFAULT_T1.hex().upper() == "3BE600008131FE458031C08290008E"
    assert A.DEFAULT == A.DEFAULT_T1
    for raw in (A.DEFAULT_T0, A.DEFAULT_T1):
        assert A.check(raw).historical == A.DEFAULT_HISTORICAL
        assert A.historical_problems(A.DEFAULT_HISTORICAL) == []


@pytest.mark.parametrize("hexatr,message", [
    # cardlab's ATR before issue 10: the PC/SC contactless Type B form, T=0 then T=1
    ("3B8880010000000000718100F9", "TD2 (byte 3) = 01: EMV allows only T=15 after T=0"),
    ("3B8880010000000000718100F9", "TB1 missing"),
    ("3B6700008031C0829000", "T0 (byte 1) announces 7 historical bytes, only 6 follow"),
    ("3BE600008131FE458031C0829000", "TCK (byte 14) is missing"),
    ("3BE600008131FE458031C08290008F", "TCK (byte 14) = 8F: expected 8E"),
    ("3B6600018031C0829000", "TC1 (byte 3) = 01"),
    ("3BE600008131FE858031C0829000+", "TB3 (byte 7) = 85: BWI must be 0-4"),
    ("3BE60000813108458031C0829000+", "TA3 (byte 6) = 08: IFSC must be 10-FE"),
    ("3B6600008031C0829000FF", "byte 10 = FF: 1 byte(s) after the end"),
    ("3A6600008031C0829000", "TS (byte 0) = 3A"),
    ("3B6600000031C0058100", "historical bytes 4-5 = 8100: the status indicator is not a valid SW"),
])
def test_check_names_the_byte(hexatr: str, message: str) -> None:
    raw = bytes.fromhex(hexatr.rstrip("+"))
    if hexatr.endswith("+"):  # append the right TCK
        tck = 0
        for b in raw[1:]:
            tck ^= b
        raw += bytes((tck,))
    try:
        atr = A.parse(raw)
    except A.AtrError as exc:
        assert message in str(exc)
        return
    problems = A.emv_problems(atr) + A.historical_problems(atr.historical)
    assert any(message in p for p in problems), problems


def test_check_gives_one_line_and_allows_non_emv_on_request() -> None:
    old = bytes.fromhex("3B8880010000000000718100F9")
    with pytest.raises(A.AtrError) as err:
        A.check(old)
    assert "\n" not in str(err.value) and "not an EMV basic ATR" in str(err.value)
    assert A.check(old, allow_non_emv=True).protocols == (0, 1)


def test_describe_decodes_byte_by_byte() -> None:
    lines = A.describe(A.DEFAULT_T1)
    assert lines[0].startswith("TS  3B") and any(line.startswith("TB3 45  BWI 4, CWI 5") for line in lines)
    assert lines[-1] == "EMV basic ATR: yes"


_maybe_byte = st.one_of(st.none(), st.integers(0, 255))


@st.composite
def atrs(draw: st.DrawFn) -> A.Atr:
    n = draw(st.integers(1, 4))
    groups = []
    for i in range(n):
        last = i == n - 1
        groups.append(A.Group(draw(_maybe_byte), draw(_maybe_byte), draw(_maybe_byte),
                              None if last else draw(st.integers(0, 15))))
    return A.Atr(draw(st.sampled_from([A.DIRECT, A.INVERSE])), tuple(groups), draw(st.binary(max_size=15)))


@given(atrs())
def test_build_parse_round_trip(atr: A.Atr) -> None:
    raw = A.build(atr)
    back = A.parse(raw)
    assert (back.ts, back.groups, back.historical) == (atr.ts, atr.groups, atr.historical)
    assert A.build(back) == raw


@given(st.sampled_from([0, 1]), st.binary(max_size=12).map(lambda b: b"\x80" + b""))
def test_basic_atrs_pass_emv(protocol: int, hist: bytes) -> None:
    atr = A.parse(A.basic(protocol, hist))
    assert A.emv_problems(atr) == [] and atr.protocols == (protocol,)
