"""Command APDUs before secure messaging, and the encodings of their
fields (INSTALL parameters, compact access rules, AES key check values)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cardlab.cardspec import tlv

from .values import Data, EvalError

__all__ = [
    "UPDATE_BINARY_CHUNK",
    "Command",
    "aes_kcv",
    "compact_acl",
    "install_params",
    "level_names",
    "lv",
    "parse_command",
    "split_chunks",
]

#: maximum data bytes per UPDATE BINARY command
UPDATE_BINARY_CHUNK = 239


@dataclass(frozen=True)
class Command:
    """One command APDU before secure messaging."""

    header: bytes
    data: Data = Data()
    le: bytes = b""
    note: str = ""
    plain: bool = False  # never wrapped (raw APDU with plain: true)

    def build(self) -> bytes:
        body = self.data.materialize()
        if not body:
            return self.header + self.le
        if len(body) > 0xFF:
            return self.header + b"\x00" + len(body).to_bytes(2, "big") + body + (self.le and b"\x00\x00")
        return self.header + bytes((len(body),)) + body + self.le

    def show(self, mask: Callable[[str], str]) -> str:
        text = self.header.hex().upper()
        if self.data.pieces:
            n = len(self.data)
            lc = f"{n:02X}" if self.data.exact else "xx"
            text += f" {lc} {self.data.show(mask)}"
        if self.le:
            text += f" {self.le.hex().upper()}"
        if self.note:
            text += f"   ; {self.note}"
        return text


def lv(b: bytes) -> bytes:
    return bytes((len(b),)) + b


def install_params(params: bytes) -> bytes:
    """The install parameters field: kept when it already is a C9/EF/CA/EA
    TLV list, else wrapped as the C9 application specific parameters."""
    if params:
        try:
            items = tlv.parse(params)
            if any(t.tag == 0xC9 for t in items) and all(t.tag in (0xC9, 0xEF, 0xCA, 0xEA) for t in items):
                return params
        except tlv.TlvError:
            pass
    return tlv.encode(0xC9, params)


def parse_command(raw: bytes, plain: bool) -> Command:
    header, body = raw[:4], raw[4:]
    if not body:
        return Command(header, Data(), b"", "", plain)
    if len(body) == 1:
        return Command(header, Data(), body, "", plain)
    lc = body[0]
    if lc and len(body) in (1 + lc, 2 + lc):
        return Command(header, Data.of(body[1 : 1 + lc]), body[1 + lc :], "", plain)
    raise EvalError("apdu.hex: Lc does not match the data")


def split_chunks(data: Data, size: int) -> list[tuple[int, Data]]:
    clear = data.clear()
    if clear is None or len(clear) <= size:
        if len(data) > 0xFF:
            raise EvalError("secret data longer than one command")
        return [(0, data)]
    return [(i, Data.of(clear[i : i + size])) for i in range(0, len(clear), size)]


def aes_kcv(key: bytes) -> bytes:
    from Crypto.Cipher import AES

    return bytes(AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3])


def compact_acl(rules: Mapping[int, int]) -> bytes:
    """An 8C value from {AM bit: SC byte} (ISO 7816-4 §7.4.3: SC bytes from b7 to b1).

    >>> compact_acl({0x01: 0xFF, 0x02: 0x40}).hex().upper()
    '0340FF'
    """
    am = 0
    for bit in rules:
        am |= bit
    return bytes((am,)) + bytes(rules[1 << b] for b in range(6, -1, -1) if am & (1 << b))


def level_names(level: int) -> str:
    names = [("C-MAC", 0x01), ("C-DEC", 0x02), ("R-MAC", 0x10), ("R-ENC", 0x20)]
    return ", ".join(n for n, bit in names if level & bit) or "no secure messaging"
