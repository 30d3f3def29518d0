"""Known answers for the CPS DGI encodings (docs/dgi-map.md), tracks and derivation inputs."""

from __future__ import annotations

import pytest
from prepkit import MASTERCARD, VISA

from cardlab.personalizer import cps, tracks
from cardlab.personalizer.profile import load_profile


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


@pytest.fixture(scope="module")
def visa_credit():  # type: ignore[no-untyped-def]
    return load_profile(VISA).applications[0]


def test_9104_gpo(visa_credit) -> None:  # type: ignore[no-untyped-def]
    # AIP 7C00 = SDA 40 | DDA 20 | CVM 10 | TRM 08 | issuer auth 04; AFL: SFI 1 r1; SFI 2 r1-2 (2 signed); SFI 3 r1-4
    assert cps.gpo_9104(visa_credit) == h("82 02 7C00 94 0C 08010100 10010202 18010400")


def test_9102_fci(visa_credit) -> None:  # type: ignore[no-untyped-def]
    expect = (
        "50 0B" + b"VISA CREDIT".hex() + "87 01 01" + "9F38 03 9F1A02" + "5F2D 04" + b"enfr".hex()
        + "9F11 01 01" + "9F12 10" + b"VISA CREDIT TEST".hex() + "BF0C 05 9F4D 02 0B0A"
    )  # fmt: skip
    assert cps.fci_9102(visa_credit) == h(expect)
    assert h("5F2D 02" + b"de".hex()) in cps.fci_9102(visa_credit, "de")


def test_0d01_internal(visa_credit) -> None:  # type: ignore[no-untyped-def]
    expect = (
        "DF01 01 12  DF02 01 01  9F14 01 05  9F23 01 0A  DF11 06 000000010000  DF12 06 000000050000"
        "9F42 02 0840  DF17 01 02  9F52 02 0000  DF13 01 00  DF14 01 02  DF15 02 FFFF  DF16 01 02"
        "9F4D 02 0B0A  9F4F 13 9A03 9F2103 9F0206 5F2A02 9F1A02 9C01 9F3602"
    )
    assert cps.internal_0d01(visa_credit) == h(expect)


def test_0d01_mastercard_and_debit() -> None:
    mc = load_profile(MASTERCARD).applications[0]
    d = cps.internal_0d01(mc)
    assert d.startswith(h("DF01 01 10 DF02 01 01 9F14 01 00 9F23 01 05"))
    assert h("DF13 01 01") in d and h("9F42 02 0978") in d
    debit = load_profile(VISA).applications[1]
    assert h("DF16 01 01") in cps.internal_0d01(debit) and h("9F52 02 8000") in cps.internal_0d01(debit)
    assert cps.get_data_0e01(debit) == h("9F14 01 00 9F23 01 00 9F42 02 0840 5F28 02 0840")


def test_0d02_currency_conversion() -> None:
    """The Mastercard sample (EUR) converts USD at 0.9200: 0.92 euro cent per cent; the card reads it back."""
    from cardlab.emulator.applets.emv.perso import conversion_table

    mc = load_profile(MASTERCARD).applications[0]
    assert cps.conversion_0d02(mc) == h("DF18 07 0840 00000092 02")
    assert [(e.currency, e.mantissa, e.exponent) for e in conversion_table(cps.conversion_0d02(mc))] == [(840, 92, 2)]
    assert cps.conversion_0d02(load_profile(VISA).applications[0]) == b""  # no table: no DGI


def test_secret_dgis_and_counters() -> None:
    assert cps.pin_block_8010("1234") == h("241234FFFFFFFFFF")
    assert cps.pin_block_8010("123456789012") == h("2C123456789012FF")
    assert cps.pin_try_9010(3) == h("0303")
    assert cps.kcv_9000([h("08D7B4"), h("7B8358"), h("EB7A8D")]) == h("08D7B47B8358EB7A8D")
    with pytest.raises(ValueError):
        cps.pin_block_8010("12a4")
    # p = 61, q = 53, e = 17, d = 2753 (the textbook example): 8201..8205 = qinv, dq, dp, q, p
    assert cps.crt_dgis(61, 53, 2753, 2) == [
        (0x8201, bytes([38])), (0x8202, bytes([49])), (0x8203, bytes([53])), (0x8204, bytes([53])), (0x8205, bytes([61]))
    ]  # fmt: skip
    assert cps.SECRET_DGIS >= {0x8000, 0x8010, 0x8201, 0x8205}


def test_records_and_static_data(visa_credit) -> None:  # type: ignore[no-untyped-def]
    values = cps.profile_values(visa_credit)
    values.update({
        0x57: tracks.track2_equivalent("4761739001010010", "3012", "201", "0000"),
        0x5F20: b"CARDLAB/TEST", 0x9F1F: b"0000", 0x5A: h("4761739001010010"), 0x5F24: h("301231"),
        0x5F25: b"", 0x5F34: h("01"), 0x5F30: h("0201"),
    })  # fmt: skip
    layout = visa_credit.records[0]
    assert cps.build_record(layout, values) == h(
        "70 26 57 0E 4761739001010010D30122010000 5F20 0C" + b"CARDLAB/TEST".hex() + "9F1F 04 30303030"
    )
    signed = {(r.sfi, r.number): cps.build_record(r, values) for r in visa_credit.oda_records()}
    r21 = signed[(2, 1)]
    assert h("5F25") not in r21  # optional, empty: left out
    # SFI <= 10: the record contents without 70 and length, then the AIP (9F4A = 82)
    expect = r21[2:] + signed[(2, 2)][2:] + h("7C00")
    assert cps.static_data(visa_credit, signed) == expect
    assert cps.record_dgis({(2, 1): b"x", (1, 1): b"y"}) == [(0x0101, b"y"), (0x0201, b"x")]


def test_bcd() -> None:
    assert cps.bcd(840, 2) == h("0840") and cps.bcd(0, 6) == bytes(6)
    with pytest.raises(ValueError):
        cps.bcd(12345, 2)


def test_tracks_known_answers() -> None:
    pan = "4761739001010010"
    assert tracks.track2_equivalent(pan, "3012", "201", "12345678") == h("4761739001010010D301220112345678")
    assert tracks.track2(pan, "3012", "221", "") == ";4761739001010010=3012221?"
    assert tracks.track1(pan, "DOE/JANE", "3012", "201", "00") == "%B4761739001010010^DOE/JANE^301220100?"
    assert tracks.service_code_bytes("221") == h("0221")
    long_pan = "4761739001010000001"
    assert tracks.format_pan(long_pan) == "4761 7390 0101 0000 001"
    with pytest.raises(ValueError, match="track 2"):
        tracks.track2(long_pan, "3012", "201", "12345678901")
    s = tracks.stripe(pan, "DOE/JANE", (2030, 12), "201", "0000", (2025, 1))
    assert s.embossing == ("4761 7390 0101 0010", "VALID FROM 01/25 THRU 12/30", "DOE/JANE")
