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


#: data elements that hold a PAN (EMV 4.4 Book 3 Annex A: 5A PAN, 57 Track 2 Equivalent Data,
#: 56 Track 1 Data, 9F6B Track 2 Data, 9F1F Track 1 Discretionary Data): never printed in full
PAN_TAGS = frozenset({0x5A, 0x57, 0x56, 0x9F6B, 0x9F1F})


def mask_value(tag: int, value: bytes) -> str:
    """The hex of a PAN-bearing element with all but the PAN's first 6 and last 4 digits hidden
    (PCI DSS Requirement 3.4); for track data everything after the PAN is hidden too."""
    text = value.hex().upper()
    if tag == 0x5A or tag in (0x57, 0x9F6B):
        pan, sep, rest = text.partition("D")
        digits = pan.rstrip("F")
        shown = (digits[:6] + "*" * (len(digits) - 10) + digits[-4:]) if len(digits) >= 12 else "*" * len(digits)
        return shown + pan[len(digits):] + sep + "*" * len(rest)
    return "*" * len(text)


def pan_values(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, value) of every PAN-bearing element anywhere in ``data`` (empty when not BER-TLV)."""
    try:
        items = tlv.parse(data)
    except tlv.TlvError:
        return []
    found: list[tuple[int, bytes]] = []
    for item in items:
        if item.constructed:
            found.extend(pan_values(item.value))
        elif item.tag in PAN_TAGS and item.value:
            found.append((item.tag, item.value))
    return found


def masked_hex(data: bytes) -> str:
    """``data`` in hex with every PAN-bearing element's value masked (:func:`mask_value`)."""
    text = data.hex().upper()
    for tag, value in pan_values(data):
        text = text.replace(value.hex().upper(), mask_value(tag, value))
    return text


def tlv_lines(data: bytes, indent: int = 0) -> list[str]:
    """Decode ``data`` as BER-TLV if it is one (PANs masked); otherwise return no lines."""
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
            lines.extend(sub or [f"{pad}  {masked_hex(item.value)}"])
        elif item.tag in PAN_TAGS:
            lines.append(f"{pad}{item.tag:02X} = {mask_value(item.tag, item.value)}")
        else:
            lines.append(f"{pad}{item.tag:02X} = {item.value.hex().upper()}")
    return lines


def split_response(resp: bytes) -> tuple[bytes, int]:
    return resp[:-2], int.from_bytes(resp[-2:], "big")
