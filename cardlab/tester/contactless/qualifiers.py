"""The contactless qualifiers: Terminal Transaction Qualifiers (9F66, EMV Contactless
Book A §5.7 Table 5-4; Book C-3 Annex A.2) and Card Transaction Qualifiers (9F6C,
Book C-3 Annex A.2), as named bits, with the decoding the trace shows.
"""

from __future__ import annotations

#: TTQ bits: name → (byte index 0..3, mask)  (Book A §5.7 Table 5-4)
TTQ_BITS: dict[str, tuple[int, int]] = {
    "mag-stripe mode supported": (0, 0x80),
    "EMV mode supported": (0, 0x20),
    "EMV contact chip supported": (0, 0x10),
    "offline-only reader": (0, 0x08),
    "online PIN supported": (0, 0x04),
    "signature supported": (0, 0x02),
    "offline data authentication for online authorizations supported": (0, 0x01),
    "online cryptogram required": (1, 0x80),
    "CVM required": (1, 0x40),
    "(contact chip) offline PIN supported": (1, 0x20),
    "issuer update processing supported": (2, 0x80),
    "consumer device CVM supported": (2, 0x40),
    "fDDA v1.0 supported": (3, 0x80),
}

#: CTQ bits: name → (byte index 0..1, mask)  (Book C-3 Annex A.2)
CTQ_BITS: dict[str, tuple[int, int]] = {
    "online PIN required": (0, 0x80),
    "signature required": (0, 0x40),
    "go online if offline data authentication fails and reader is online capable": (0, 0x20),
    "switch interface if offline data authentication fails and reader supports contact chip": (0, 0x10),
    "go online if application expired": (0, 0x08),
    "switch interface for cash transactions": (0, 0x04),
    "switch interface for cashback transactions": (0, 0x02),
    "not valid for contactless ATM transactions": (0, 0x01),
    "consumer device CVM performed": (1, 0x80),
    "card supports issuer update processing at the POS": (1, 0x40),
}

#: the TTQ byte 2 bits Entry Point sets per transaction (Book B §3.1.1): reset before pre-processing
TTQ_TRANSIENT = (1, 0xC0)


def has(value: bytes, table: dict[str, tuple[int, int]], name: str) -> bool:
    i, mask = table[name]
    return len(value) > i and bool(value[i] & mask)


def with_bit(value: bytes, table: dict[str, tuple[int, int]], name: str) -> bytes:
    i, mask = table[name]
    out = bytearray(value)
    out[i] |= mask
    return bytes(out)


def names(value: bytes, table: dict[str, tuple[int, int]]) -> list[str]:
    """The names of the bits set in ``value``."""
    return [n for n, (i, mask) in table.items() if len(value) > i and value[i] & mask]


def describe(value: bytes, table: dict[str, tuple[int, int]]) -> str:
    """``36000080: EMV mode supported, …`` — the hex and the bits set, for the trace.

    >>> describe(bytes.fromhex("2000"), CTQ_BITS)
    '2000 (go online if offline data authentication fails and reader is online capable)'
    """
    got = names(value, table)
    return f"{value.hex().upper()} ({', '.join(got) if got else 'no bit set'})"
