"""Bit-mapped EMV objects as data: one :class:`BitTable` per object, each
field named per byte and bit as the books print them (byte 1 first, b8 the
most significant bit).

Sources: EMV 4.4 Book 3 Annex C1 (AIP), C2 (AUC), C5 (TVR; the IACs and
TACs share its layout, Book 3 §10.7), C6 (TSI); Book 3 §6.5.5.4 Table 15
(Cryptogram Information Data); Book 4 Annex A2 (Terminal Capabilities), A3
(Additional Terminal Capabilities);
EMV Contactless Book C-3 (Kernel 3) Annex A for the CTQ and TTQ.

>>> sorted(set_names(TVR, bytes.fromhex("0000008000")))
['transaction exceeds floor limit']
>>> encode(AIP, ["cardholder verification is supported", "CDA supported",
...              "terminal risk management is to be performed", "issuer authentication is supported"]).hex()
'1d00'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    """Bits ``mask`` of byte ``byte`` (1-based). A one-bit field is a flag;
    a wider one carries a number, named by ``values`` when given."""

    byte: int
    mask: int
    name: str
    values: Mapping[int, str] = field(default_factory=dict)

    @property
    def flag(self) -> bool:
        return self.mask & (self.mask - 1) == 0

    @property
    def shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1

    @property
    def bits(self) -> str:
        """``b8`` or ``b8-7`` as the books number bits."""
        high, low = self.mask.bit_length(), self.shift + 1
        return f"b{high}" if high == low else f"b{high}-{low}"


@dataclass(frozen=True)
class BitTable:
    key: str  # the short name the decoder answers to, e.g. "tvr"
    name: str
    length: int
    source: str
    fields: tuple[Field, ...]
    tag: int | None = None

    def flags(self) -> dict[str, tuple[int, int]]:
        """Flag name → (byte index 0-based, mask), in book order."""
        return {f.name: (f.byte - 1, f.mask) for f in self.fields if f.flag}

    def defined(self, byte: int) -> int:
        return sum(f.mask for f in self.fields if f.byte == byte)


@dataclass(frozen=True)
class FieldValue:
    field: Field
    value: int  # the field's bits shifted down (0/1 for a flag)

    @property
    def meaning(self) -> str:
        f = self.field
        if f.flag:
            return f.name
        return f"{f.name}: {f.values.get(self.value, str(self.value))}"


def _F(byte: int, mask: int, name: str, values: Mapping[int, str] | None = None) -> Field:
    return Field(byte, mask, name, dict(values or {}))


#: EMV 4.4 Book 3 Annex C5, Terminal Verification Results (95)
TVR = BitTable("tvr", "Terminal Verification Results", 5, "EMV 4.4 Book 3 Annex C5", (
    _F(1, 0x80, "offline data authentication was not performed"),
    _F(1, 0x40, "SDA failed"),
    _F(1, 0x20, "ICC data missing"),
    _F(1, 0x10, "card appears on terminal exception file"),
    _F(1, 0x08, "DDA failed"),
    _F(1, 0x04, "CDA failed"),
    _F(1, 0x02, "SDA selected"),  # EMVCo Specification Bulletin 103
    _F(2, 0x80, "ICC and terminal have different application versions"),
    _F(2, 0x40, "expired application"),
    _F(2, 0x20, "application not yet effective"),
    _F(2, 0x10, "requested service not allowed for card product"),
    _F(2, 0x08, "new card"),
    _F(3, 0x80, "cardholder verification was not successful"),
    _F(3, 0x40, "unrecognised CVM"),
    _F(3, 0x20, "PIN try limit exceeded"),
    _F(3, 0x10, "PIN entry required and PIN pad not present or not working"),
    _F(3, 0x08, "PIN entry required, PIN pad present, but PIN was not entered"),
    _F(3, 0x04, "online PIN entered"),
    _F(4, 0x80, "transaction exceeds floor limit"),
    _F(4, 0x40, "lower consecutive offline limit exceeded"),
    _F(4, 0x20, "upper consecutive offline limit exceeded"),
    _F(4, 0x10, "transaction selected randomly for online processing"),
    _F(4, 0x08, "merchant forced transaction online"),
    _F(5, 0x80, "default TDOL used"),
    _F(5, 0x40, "issuer authentication failed"),
    _F(5, 0x20, "script processing failed before final GENERATE AC"),
    _F(5, 0x10, "script processing failed after final GENERATE AC"),
), 0x95)


def _like_tvr(key: str, name: str, tag: int | None) -> BitTable:
    """IACs and TACs follow the TVR's layout bit for bit (Book 3 §10.7)."""
    return BitTable(key, name, 5, "EMV 4.4 Book 3 §10.7 (TVR layout, Annex C5)", TVR.fields, tag)


IAC_DEFAULT = _like_tvr("iac-default", "Issuer Action Code – Default", 0x9F0D)
IAC_DENIAL = _like_tvr("iac-denial", "Issuer Action Code – Denial", 0x9F0E)
IAC_ONLINE = _like_tvr("iac-online", "Issuer Action Code – Online", 0x9F0F)
TAC = _like_tvr("tac", "Terminal Action Code", None)

#: EMV 4.4 Book 3 Annex C6, Transaction Status Information (9B)
TSI = BitTable("tsi", "Transaction Status Information", 2, "EMV 4.4 Book 3 Annex C6", (
    _F(1, 0x80, "offline data authentication was performed"),
    _F(1, 0x40, "cardholder verification was performed"),
    _F(1, 0x20, "card risk management was performed"),
    _F(1, 0x10, "issuer authentication was performed"),
    _F(1, 0x08, "terminal risk management was performed"),
    _F(1, 0x04, "script processing was performed"),
), 0x9B)

#: EMV 4.4 Book 3 Annex C1, Application Interchange Profile (82)
AIP = BitTable("aip", "Application Interchange Profile", 2, "EMV 4.4 Book 3 Annex C1", (
    _F(1, 0x40, "SDA supported"),
    _F(1, 0x20, "DDA supported"),
    _F(1, 0x10, "cardholder verification is supported"),
    _F(1, 0x08, "terminal risk management is to be performed"),
    _F(1, 0x04, "issuer authentication is supported"),
    _F(1, 0x01, "CDA supported"),
    _F(2, 0x80, "reserved for use by the EMV Contactless Specifications"),
), 0x82)

#: EMV 4.4 Book 3 Annex C2, Application Usage Control (9F07)
AUC = BitTable("auc", "Application Usage Control", 2, "EMV 4.4 Book 3 Annex C2", (
    _F(1, 0x80, "valid for domestic cash transactions"),
    _F(1, 0x40, "valid for international cash transactions"),
    _F(1, 0x20, "valid for domestic goods"),
    _F(1, 0x10, "valid for international goods"),
    _F(1, 0x08, "valid for domestic services"),
    _F(1, 0x04, "valid for international services"),
    _F(1, 0x02, "valid at ATMs"),
    _F(1, 0x01, "valid at terminals other than ATMs"),
    _F(2, 0x80, "domestic cashback allowed"),
    _F(2, 0x40, "international cashback allowed"),
), 0x9F07)

#: EMV 4.4 Book 3 §6.5.5.4 Table 15, Cryptogram Information Data (9F27)
CID = BitTable("cid", "Cryptogram Information Data", 1, "EMV 4.4 Book 3 §6.5.5.4 Table 15", (
    _F(1, 0xC0, "cryptogram type", {0: "AAC", 1: "TC", 2: "ARQC", 3: "RFU"}),
    _F(1, 0x30, "payment system-specific cryptogram"),
    _F(1, 0x08, "advice required"),
    _F(1, 0x07, "reason/advice code", {0: "no information given", 1: "service not allowed",
                                       2: "PIN try limit exceeded", 3: "issuer authentication failed"}),
), 0x9F27)

#: EMV 4.4 Book 4 Annex A2, Terminal Capabilities (9F33)
TERMINAL_CAPABILITIES = BitTable("tcap", "Terminal Capabilities", 3, "EMV 4.4 Book 4 Annex A2", (
    _F(1, 0x80, "manual key entry"),
    _F(1, 0x40, "magnetic stripe"),
    _F(1, 0x20, "IC with contacts"),
    _F(2, 0x80, "plaintext PIN for ICC verification"),
    _F(2, 0x40, "enciphered PIN for online verification"),
    _F(2, 0x20, "signature (paper)"),
    _F(2, 0x10, "enciphered PIN for offline verification"),
    _F(2, 0x08, "no CVM required"),
    _F(3, 0x80, "SDA"),
    _F(3, 0x40, "DDA"),
    _F(3, 0x20, "card capture"),
    _F(3, 0x08, "CDA"),
), 0x9F33)

#: EMV 4.4 Book 4 Annex A3, Additional Terminal Capabilities (9F40)
ADDITIONAL_TERMINAL_CAPABILITIES = BitTable(
    "atcap", "Additional Terminal Capabilities", 5, "EMV 4.4 Book 4 Annex A3", (
        # byte 1-2: transaction type capability
        _F(1, 0x80, "cash"),
        _F(1, 0x40, "goods"),
        _F(1, 0x20, "services"),
        _F(1, 0x10, "cashback"),
        _F(1, 0x08, "inquiry"),
        _F(1, 0x04, "transfer"),
        _F(1, 0x02, "payment"),
        _F(1, 0x01, "administrative"),
        _F(2, 0x80, "cash deposit"),
        # byte 3: terminal data input capability
        _F(3, 0x80, "numeric keys"),
        _F(3, 0x40, "alphabetic and special characters keys"),
        _F(3, 0x20, "command keys"),
        _F(3, 0x10, "function keys"),
        # byte 4-5: terminal data output capability
        _F(4, 0x80, "print, attendant"),
        _F(4, 0x40, "print, cardholder"),
        _F(4, 0x20, "display, attendant"),
        _F(4, 0x10, "display, cardholder"),
        _F(4, 0x02, "code table 10"),
        _F(4, 0x01, "code table 9"),
        *(_F(5, 1 << (n - 1), f"code table {n}") for n in range(8, 0, -1)),
    ), 0x9F40)

#: EMV Contactless Book C-3 (Kernel 3) Annex A, Card Transaction Qualifiers (9F6C)
CTQ = BitTable("ctq", "Card Transaction Qualifiers", 2, "EMV Contactless Book C-3 Annex A (CTQ)", (
    _F(1, 0x80, "online PIN required"),
    _F(1, 0x40, "signature required"),
    _F(1, 0x20, "go online if offline data authentication fails and reader is online capable"),
    _F(1, 0x10, "switch interface if offline data authentication fails and reader supports contact chip"),
    _F(1, 0x08, "go online if application expired"),
    _F(1, 0x04, "switch interface for cash transactions"),
    _F(1, 0x02, "switch interface for cashback transactions"),
    _F(2, 0x80, "consumer device CVM performed"),
    _F(2, 0x40, "card supports issuer update processing at the POS"),
), 0x9F6C)

#: EMV Contactless Book C-3 (Kernel 3) Annex A, Terminal Transaction Qualifiers (9F66)
TTQ = BitTable("ttq", "Terminal Transaction Qualifiers", 4, "EMV Contactless Book C-3 Annex A (TTQ)", (
    _F(1, 0x80, "MSD supported"),
    _F(1, 0x20, "EMV mode supported"),
    _F(1, 0x10, "EMV contact chip supported"),
    _F(1, 0x08, "offline-only reader"),
    _F(1, 0x04, "online PIN supported"),
    _F(1, 0x02, "signature supported"),
    _F(1, 0x01, "offline data authentication for online authorizations supported"),
    _F(2, 0x80, "online cryptogram required"),
    _F(2, 0x40, "CVM required"),
    _F(2, 0x20, "(contact chip) offline PIN supported"),
    _F(3, 0x80, "issuer update processing supported"),
    _F(3, 0x40, "consumer device CVM supported"),
), 0x9F66)

TABLES: dict[str, BitTable] = {t.key: t for t in (
    TVR, TSI, AIP, AUC, IAC_DEFAULT, IAC_DENIAL, IAC_ONLINE, TAC, CID, TERMINAL_CAPABILITIES,
    ADDITIONAL_TERMINAL_CAPABILITIES, CTQ, TTQ)}


class BitsError(ValueError):
    pass


def decode(table: BitTable, value: bytes) -> list[FieldValue]:
    """Every field of the table with its value (flags 0 or 1), in book order."""
    if len(value) != table.length:
        raise BitsError(f"{table.name} is {table.length} bytes, got {len(value)}")
    return [FieldValue(f, (value[f.byte - 1] & f.mask) >> f.shift) for f in table.fields]


def set_names(table: BitTable, value: bytes) -> set[str]:
    """The names of the flags set in ``value``."""
    return {fv.field.name for fv in decode(table, value) if fv.field.flag and fv.value}


def rfu_set(table: BitTable, value: bytes) -> list[tuple[int, int]]:
    """(byte 1-based, bit number 1-8) of every set bit the table does not define (RFU)."""
    return [(i + 1, b + 1) for i, byte in enumerate(value) for b in range(8)
            if byte & (1 << b) & ~table.defined(i + 1)]


def encode(table: BitTable, names: Iterable[str], values: Mapping[str, int] | None = None) -> bytes:
    """The bytes with the named flags set and the named multi-bit fields at their values."""
    out = bytearray(table.length)
    by_name = {f.name: f for f in table.fields}
    for name in names:
        f = by_name.get(name)
        if f is None or not f.flag:
            raise BitsError(f"{table.name} has no flag {name!r}")
        out[f.byte - 1] |= f.mask
    for name, v in (values or {}).items():
        f = by_name[name]
        if v << f.shift & ~f.mask:
            raise BitsError(f"{name}: {v} does not fit {f.bits}")
        out[f.byte - 1] |= v << f.shift
    return bytes(out)


def summary(table: BitTable, value: bytes) -> list[str]:
    """What is set, one phrase each ("byte 4 b8 transaction exceeds floor limit")."""
    out = [f"byte {fv.field.byte} {fv.field.bits} {fv.meaning}" for fv in decode(table, value)
           if fv.value or (not fv.field.flag and fv.field.values)]
    out += [f"byte {byte} b{bit} RFU (set, undefined)" for byte, bit in rfu_set(table, value)]
    return out


def lines(table: BitTable, value: bytes, *, every_bit: bool = False) -> list[str]:
    """The object bit by bit: each byte in hex and binary, then its fields
    (``every_bit``: clear ones too, marked 0; else only what is set)."""
    fields = decode(table, value)
    out: list[str] = []
    for i, byte in enumerate(value, 1):
        mine = [fv for fv in fields if fv.field.byte == i]
        shown = [fv for fv in mine if every_bit or fv.value or (not fv.field.flag and fv.field.values)]
        rfu = [bit for b, bit in rfu_set(table, value) if b == i]
        if not shown and not rfu and not every_bit:
            continue
        out.append(f"byte {i} = {byte:02X} ({byte >> 4:04b} {byte & 15:04b})")
        for fv in shown:
            mark = str(fv.value) if fv.field.flag else f"{fv.value:0{fv.field.mask.bit_count()}b}"
            out.append(f"  {fv.field.bits:<6} {mark:>3}  {fv.meaning}")
        out += [f"  b{bit:<5}   1  RFU (set, but undefined)" for bit in rfu]
    return out or ["no bit set"]


def to_json(table: BitTable, value: bytes) -> dict[str, object]:
    return {
        "object": table.name, "source": table.source, "hex": value.hex().upper(),
        "set": [fv.field.name for fv in decode(table, value) if fv.field.flag and fv.value],
        "fields": [{"byte": fv.field.byte, "bits": fv.field.bits, "name": fv.field.name, "value": fv.value,
                    **({"meaning": fv.field.values.get(fv.value, "")} if fv.field.values else {})}
                   for fv in decode(table, value)],
        "rfu_set": [{"byte": b, "bit": n} for b, n in rfu_set(table, value)],
    }
