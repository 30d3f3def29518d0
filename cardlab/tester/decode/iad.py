"""Issuer Application Data (9F10) and the Card Verification Results inside
it, per cryptogram version. The version is found as the issuer host finds it
(:func:`cardlab.tester.issuer_host.cryptogram_version`): a Visa IAD is
``06 ‖ DKI ‖ CVN ‖ CVR(4, length byte 03 first)`` [‖ IDD] (Visa Integrated
Circuit Card Specification 1.5 Appendix A, CVN 10 and 18); a Mastercard
IAD is ``KDI ‖ CVN ‖ CVR(6) ‖ DAC/IDN(2) ‖ counters`` (M/Chip 4 Card
Application Specification, CVN 16).

>>> [line for line in lines(bytes.fromhex("06011203941000"))][:3]
['IAD length 06, derivation key index 01, cryptogram version 12: Visa CVN 18', 'CVR 03941000', \
'byte 1 = 03 (0000 0011)']
"""

from __future__ import annotations

from dataclasses import dataclass

from ..issuer_host import cryptogram_version
from . import bits
from .bits import BitTable, _F

_AC2 = {0: "AAC", 1: "TC", 2: "second GENERATE AC not requested", 3: "RFU"}
_AC1 = {0: "AAC", 1: "TC", 2: "ARQC", 3: "RFU"}

#: Visa CVR (VIS 1.5 Appendix A, "Card Verification Results"); byte 1 is its length, 03
VISA_CVR = BitTable("cvr-visa", "Card Verification Results (Visa CVN 10/18)", 4,
                    "Visa Integrated Circuit Card Specification 1.5, Appendix A (CVR)", (
    _F(1, 0xFF, "length of the CVR data that follows"),
    _F(2, 0xC0, "AC returned in the second GENERATE AC", _AC2),
    _F(2, 0x30, "AC returned in the first GENERATE AC", _AC1),
    _F(2, 0x08, "issuer authentication performed and failed"),
    _F(2, 0x04, "offline PIN verification performed"),
    _F(2, 0x02, "offline PIN verification failed"),
    _F(2, 0x01, "unable to go online"),
    _F(3, 0x80, "last online transaction not completed"),
    _F(3, 0x40, "PIN try limit exceeded"),
    _F(3, 0x20, "exceeded velocity checking counters"),
    _F(3, 0x10, "new card"),
    _F(3, 0x08, "issuer authentication failure on last online transaction"),
    _F(3, 0x04, "issuer authentication not performed after online authorization"),
    _F(3, 0x02, "application blocked by card because PIN try limit exceeded"),
    _F(3, 0x01, "offline static data authentication failed on last transaction and transaction declined offline"),
    _F(4, 0xF0, "number of issuer script commands containing secure messaging processed"),
    _F(4, 0x08, "issuer script processing failed"),
    _F(4, 0x04, "offline dynamic data authentication failed on last transaction and transaction declined offline"),
    _F(4, 0x02, "offline dynamic data authentication performed"),
))

#: Mastercard CVR (M/Chip 4 Card Application Specification, Card Verification Results)
MCHIP_CVR = BitTable("cvr-mchip", "Card Verification Results (Mastercard CVN 16)", 6,
                     "M/Chip 4 Card Application Specification (CVR)", (
    _F(1, 0xC0, "AC returned in the second GENERATE AC", _AC2),
    _F(1, 0x30, "AC returned in the first GENERATE AC", _AC1),
    _F(1, 0x08, "date check failed"),
    _F(1, 0x04, "offline PIN verification performed"),
    _F(1, 0x02, "offline encrypted PIN verification performed"),
    _F(1, 0x01, "offline PIN verification successful"),
    _F(2, 0x80, "DDA returned"),
    _F(2, 0x40, "combined DDA/AC generation returned in the first GENERATE AC"),
    _F(2, 0x20, "combined DDA/AC generation returned in the second GENERATE AC"),
    _F(2, 0x10, "issuer authentication performed"),
    _F(2, 0x08, "CIAC-default skipped on CAT3"),
    _F(3, 0xF0, "right nibble of the script counter"),
    _F(3, 0x0F, "right nibble of the PIN try counter"),
    _F(4, 0x40, "unable to go online indicated"),
    _F(4, 0x20, "offline PIN verification not performed"),
    _F(4, 0x10, "offline PIN verification failed"),
    _F(4, 0x08, "PIN try limit exceeded"),
    _F(4, 0x04, "international transaction"),
    _F(4, 0x02, "domestic transaction"),
    _F(4, 0x01, "terminal erroneously considers offline PIN OK"),
    _F(5, 0x80, "lower consecutive offline limit exceeded"),
    _F(5, 0x40, "upper consecutive offline limit exceeded"),
    _F(5, 0x20, "lower cumulative offline limit exceeded"),
    _F(5, 0x10, "upper cumulative offline limit exceeded"),
    _F(5, 0x08, "go online on next transaction was set"),
    _F(5, 0x04, "issuer authentication failed"),
    _F(5, 0x02, "script received"),
    _F(5, 0x01, "script failed"),
    _F(6, 0x02, "match found in additional check table"),
    _F(6, 0x01, "no match found in additional check table"),
))



@dataclass(frozen=True)
class Iad:
    scheme: str  # "Visa" | "Mastercard" | ""
    version: str  # e.g. "Visa CVN 18", or why none was found
    cvn: int | None
    dki: int | None
    cvr: bytes
    rest: list[tuple[str, bytes]]  # the other named parts


def parse(iad: bytes, aid: bytes = b"") -> Iad:
    v, why = cryptogram_version(iad, aid)
    if v is None:
        return Iad("", why, None, None, b"", [("issuer application data", iad)])
    if v.scheme == "Visa":
        rest = [("issuer discretionary data", iad[8:])] if len(iad) > 7 else []
        return Iad("Visa", v.name, iad[2], iad[1], iad[3:7], rest)
    rest = [("DAC/ICC dynamic number", iad[8:10]), ("counters", iad[10:])]
    return Iad("Mastercard", v.name, iad[1], iad[0], iad[2:8], [(n, b) for n, b in rest if b])


def cvr_table(parsed: Iad) -> BitTable | None:
    return {"Visa": VISA_CVR, "Mastercard": MCHIP_CVR}.get(parsed.scheme)


def lines(iad: bytes, aid: bytes = b"") -> list[str]:
    p = parse(iad, aid)
    table = cvr_table(p)
    if table is None or len(p.cvr) != table.length:
        return [p.version]
    head = (f"IAD length {iad[0]:02X}, derivation key index {p.dki:02X}, cryptogram version {p.cvn:02X}: {p.version}"
            if p.scheme == "Visa" else
            f"key derivation index {p.dki:02X}, cryptogram version {p.cvn:02X}: {p.version}")
    out = [head, f"CVR {p.cvr.hex().upper()}", *bits.lines(table, p.cvr)]
    out += [f"{name}: {value.hex().upper()}" for name, value in p.rest]
    return out


def to_json(iad: bytes, aid: bytes = b"") -> dict[str, object]:
    p = parse(iad, aid)
    table = cvr_table(p)
    out: dict[str, object] = {"scheme": p.scheme, "version": p.version, "cvn": p.cvn, "dki": p.dki,
                              "rest": {n: b.hex().upper() for n, b in p.rest}}
    if table is not None and len(p.cvr) == table.length:
        out["cvr"] = bits.to_json(table, p.cvr)
    return out
