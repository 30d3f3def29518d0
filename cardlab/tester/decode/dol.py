"""Data Object Lists (PDOL 9F38, CDOL1 8C, CDOL2 8D, DDOL 9F49, TDOL 97):
tag ‖ length pairs naming what the terminal must send, concatenated without
tags in that order (EMV 4.4 Book 3 §5.4).

>>> [(f"{e.tag:X}", e.length) for e in parse(bytes.fromhex("9F02069F1A02"))]
[('9F02', 6), ('9F1A', 2)]
>>> [v.hex() for v in split(parse(bytes.fromhex("9F02069F1A02")), bytes.fromhex("0000000015000250"))]
['000000001500', '0250']
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import dictionary, tlv


class DolError(ValueError):
    pass


@dataclass(frozen=True)
class DolEntry:
    tag: int
    length: int

    @property
    def name(self) -> str:
        return dictionary.name(self.tag)

    @property
    def format(self) -> str:
        return dictionary.format_of(self.tag)


def parse(dol: bytes) -> list[DolEntry]:
    try:
        return [DolEntry(t, n) for t, n in tlv.parse_dol(dol)]
    except tlv.TlvError as exc:
        raise DolError(f"not a DOL: {exc}") from None


def split(entries: list[DolEntry], data: bytes) -> list[bytes]:
    """The values the terminal filled, in DOL order; the data must be exactly
    as long as the DOL asks (Book 3 §5.4)."""
    need = sum(e.length for e in entries)
    if need != len(data):
        raise DolError(f"the DOL asks for {need} bytes, the data has {len(data)}")
    out, at = [], 0
    for e in entries:
        out.append(data[at:at + e.length])
        at += e.length
    return out


def build(entries: list[DolEntry]) -> bytes:
    return b"".join(tlv.encode(e.tag, b"")[:-1] + bytes((e.length,)) for e in entries)
