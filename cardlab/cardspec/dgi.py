"""The CPS Data Grouping Identifier header (EMV Card Personalization
Specification 1.1 §2.2; GP Card Spec 2.3.1 §11.11.2.2 STORE DATA), declared as
a :mod:`construct` structure. ``cardlab.cardspec.tlv.encode_dgi`` and
``parse_dgis`` build and parse through it.

| Field  | Length    | Coding                                              |
|--------|-----------|-----------------------------------------------------|
| DGI    | 2         | the data grouping (e.g. 9104 = GPO response data)   |
| Length | 1 or 3    | 00-FE in one byte; 255 and more as FF ‖ 2 bytes     |
| Data   | Length    | the DGI's value                                     |

A length below 255 written in the 3-byte form parses, and builds back in one
byte (the canonical form CPS asks for).
"""

from __future__ import annotations

from typing import Any

from construct import Bytes, ExprAdapter, If, Int8ub, Int16ub, Rebuild, Struct, len_, this

__all__ = ["DGI", "DGI_LENGTH", "EXAMPLES"]

_LONG = 0xFF


def _encode_length(n: int, ctx: Any) -> dict[str, int | None]:
    return {"first": _LONG, "long": n} if n >= _LONG else {"first": n, "long": None}


#: DGI length: one byte 00-FE, or FF followed by two bytes
DGI_LENGTH = ExprAdapter(
    Struct("first" / Int8ub, "long" / If(this.first == _LONG, Int16ub)),
    decoder=lambda obj, ctx: obj.long if obj.first == _LONG else obj.first,
    encoder=_encode_length,
)

#: one DGI: header and data
DGI = Struct(
    "dgi" / Int16ub,
    "length" / Rebuild(DGI_LENGTH, len_(this.value)),
    "value" / Bytes(this.length),
)

#: known answers (encoding, fields)
EXAMPLES: list[tuple[bytes, dict[str, Any]]] = [
    (bytes.fromhex("9104 03 000000"), {"dgi": 0x9104, "length": 3, "value": bytes(3)}),
    (bytes.fromhex("0101 00"), {"dgi": 0x0101, "length": 0, "value": b""}),
    (bytes.fromhex("8201 FE") + bytes(254), {"dgi": 0x8201, "length": 254, "value": bytes(254)}),
    (bytes.fromhex("8201 FF00FF") + bytes(255), {"dgi": 0x8201, "length": 255, "value": bytes(255)}),
]
