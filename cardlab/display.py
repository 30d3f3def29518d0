"""Readable renderings for the command line: status words, TLV trees, APDUs."""

from __future__ import annotations

from cardlab.cardspec import tlv

#: ISO 7816-4 §5.6 and GP Card Spec 2.3 §11.1.3 meanings
SW_TEXT: dict[int, str] = {
    0x9000: "OK",
    0x6310: "more data available",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6884: "command chaining not supported",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect data",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory",
    0x6A86: "incorrect P1-P2",
    0x6A88: "referenced data not found",
    0x6A89: "file already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def sw_text(sw: int) -> str:
    if sw in SW_TEXT:
        return SW_TEXT[sw]
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0xF} tries left"
    if sw >> 8 == 0x61:
        return f"{sw & 0xFF} more bytes available"
    if sw >> 8 == 0x6C:
        return f"wrong Le, exact length {sw & 0xFF}"
    return "unknown status"


def tlv_lines(data: bytes, indent: int = 0) -> list[str]:
    """Decode ``data`` as BER-TLV if it is one; otherwise return no lines."""
    try:
        items = tlv.parse(data)
    except tlv.TlvError:
        return []
    if not items:
        return []
    lines: list[str] = []
    for item in items:
        pad = "  " * indent
        if item.constructed:
            lines.append(f"{pad}{item.tag:02X}")
            sub = tlv_lines(item.value, indent + 1)
            lines.extend(sub or [f"{pad}  {item.value.hex().upper()}"])
        else:
            lines.append(f"{pad}{item.tag:02X} = {item.value.hex().upper()}")
    return lines


def split_response(resp: bytes) -> tuple[bytes, int]:
    return resp[:-2], int.from_bytes(resp[-2:], "big")
