"""The tester's own BER-TLV reader (EMV Book 3 Annex B), independent of the
card's and the personalizer's code.

>>> [(hex(t.tag), t.value.hex()) for t in parse(bytes.fromhex("9F3602001C5A0412345678"))][0]
('0x9f36', '001c')
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass


class TlvError(ValueError):
    pass


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes
    raw: bytes  # the whole encoding, as the card sent it (for ODA hashing)

    @property
    def constructed(self) -> bool:
        first = self.tag >> (8 * ((self.tag.bit_length() - 1) // 8)) if self.tag else 0
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        return parse(self.value) if self.constructed else []


def _items(data: bytes) -> Iterator[Tlv]:
    i, n = 0, len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):  # padding between objects (Book 3 Annex B)
            i += 1
            continue
        start = i
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= n:
                    raise TlvError("truncated tag")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= n:
            raise TlvError(f"tag {tag:X} without length")
        length = data[i]
        i += 1
        if length & 0x80:
            k = length & 0x7F
            if k == 0 or k > 3 or i + k > n:
                raise TlvError(f"bad length for tag {tag:X}")
            length = int.from_bytes(data[i : i + k], "big")
            i += k
        if i + length > n:
            raise TlvError(f"tag {tag:X} runs past the end")
        yield Tlv(tag, bytes(data[i : i + length]), bytes(data[start : i + length]))
        i += length


def parse(data: bytes) -> list[Tlv]:
    """The objects of ``data`` (TlvError when malformed). A certification reads the same
    responses many times (records, FCI, GPO, by rule after rule): the last few hundred parses
    are kept (objects are immutable; the list is the caller's own)."""
    return list(_parse(bytes(data)))


@functools.lru_cache(maxsize=512)
def _parse(data: bytes) -> tuple[Tlv, ...]:
    return tuple(_items(data))


def flatten(data: bytes) -> dict[int, bytes]:
    """Every primitive object at any depth, tag → value (first occurrence wins)."""
    out: dict[int, bytes] = {}

    def walk(items: list[Tlv]) -> None:
        for t in items:
            if t.constructed:
                walk(t.children())
            else:
                out.setdefault(t.tag, t.value)

    walk(parse(data))
    return out


def encode(tag: int, value: bytes) -> bytes:
    tb = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    n = len(value)
    if n < 0x80:
        lb = bytes([n])
    elif n < 0x100:
        lb = b"\x81" + bytes([n])
    else:
        lb = b"\x82" + n.to_bytes(2, "big")
    return tb + lb + value


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A DOL: (tag, length) pairs (Book 3 §5.4)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(dol):
        tag = dol[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= len(dol):
                    raise TlvError("truncated DOL tag")
                tag = (tag << 8) | dol[i]
                i += 1
                if not dol[i - 1] & 0x80:
                    break
        if i >= len(dol):
            raise TlvError("DOL entry without length")
        out.append((tag, dol[i]))
        i += 1
    return out
