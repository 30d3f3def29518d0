"""GlobalPlatform Key Information Template (GET DATA E0), GP Card Spec 2.3
§11.3.3.1, Table 11-35: one Key Information Data object (tag C0) per key,
whose value is declared here as a :mod:`construct` structure (basic format:
1-byte key type and length per key component). The BER-TLV framing around it
is :mod:`cardlab.cardspec.tlv`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from construct import GreedyRange, Int8ub, Struct, Terminated

from cardlab.cardspec import tlv

__all__ = ["EXAMPLES", "KEY_INFORMATION_DATA", "TAG_DATA", "TAG_TEMPLATE", "key_information_template",
           "parse_key_information_template"]

TAG_TEMPLATE, TAG_DATA = 0xE0, 0xC0

#: Key Information Data (C0), basic format
KEY_INFORMATION_DATA = Struct(
    "key_id" / Int8ub,  # Key Identifier
    "version" / Int8ub,  # Key Version Number
    "components" / GreedyRange(Struct(
        "type" / Int8ub,  # Key Type (GP §11.1.8, Table 11-16: 80 DES, 88 AES)
        "length" / Int8ub,  # Key Length in bytes
    )),
    Terminated,
)  # fmt: skip


def key_information_template(keys: Iterable[dict[str, Any]]) -> bytes:
    """E0 {C0 key information data …}, one C0 per key in the order given.

    >>> key_information_template([{"key_id": 1, "version": 0x30, "components": [{"type": 0x88, "length": 16}]}]).hex()
    'e006c00401308810'
    """
    return tlv.encode(TAG_TEMPLATE, b"".join(tlv.encode(TAG_DATA, KEY_INFORMATION_DATA.build(k)) for k in keys))


def parse_key_information_template(data: bytes) -> list[Any]:
    """The Key Information Data of each C0 in an E0 template (TlvError, ConstructError when malformed)."""
    template = tlv.find(data, TAG_TEMPLATE, recursive=False)
    if template is None:
        raise tlv.TlvError("no key information template (E0)")
    return [KEY_INFORMATION_DATA.parse(t.value) for t in template.children if t.tag == TAG_DATA]


#: known answers (C0 value, fields): the ISD's three SCP03 AES-128 keys, version 30
EXAMPLES: list[tuple[bytes, dict[str, Any]]] = [
    (bytes.fromhex("01308810"), {"key_id": 1, "version": 0x30, "components": [{"type": 0x88, "length": 16}]}),
    (bytes.fromhex("02308810"), {"key_id": 2, "version": 0x30, "components": [{"type": 0x88, "length": 16}]}),
    (bytes.fromhex("0120"), {"key_id": 1, "version": 0x20, "components": []}),
    (bytes.fromhex("0101 8010 8008"), {"key_id": 1, "version": 1,
                                        "components": [{"type": 0x80, "length": 16}, {"type": 0x80, "length": 8}]}),
]
