"""What every source reader shares: the error a source file raises, PAN
masking and redaction, BCD and Luhn, and hex, tag and DOL fields as the
profile writes them (docs/profile.md).
"""

from __future__ import annotations

import re
from typing import Any


class SourceError(ValueError):
    """A source file the tester cannot read (messages never hold keys or PINs)."""


# -- helpers -----------------------------------------------------------------------------


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits (PCI DSS)."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


_PAN_RE = re.compile(r"(?<![0-9A-Fa-f])(\d{12,19})(?![0-9])")


def redact(text: str) -> str:
    """Mask anything that looks like a PAN (12–19 digits) in free text."""
    return _PAN_RE.sub(lambda m: mask_pan(m.group(1)), text)


def bcd(value: int | str, length: int) -> bytes:
    return bytes.fromhex(str(value).zfill(2 * length))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _hex(value: Any, what: str) -> bytes:
    text = str(value).replace(" ", "")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SourceError(f"{what}: not hex") from None


def _tag(value: Any) -> int:
    if isinstance(value, int):  # YAML read an all-digit tag as a number
        return int(str(value), 16)
    return int(str(value), 16)


def encode_dol(items: list[tuple[int, int]]) -> bytes:
    out = b""
    for tag, length in items:
        out += tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big") + bytes((length,))
    return out


def parse_dol_spec(spec: Any, what: str) -> list[tuple[int, int]]:
    """The three DOL spellings of docs/profile.md: hex, ``TAG:LEN`` items, a list."""
    if spec is None:
        return []
    items: list[tuple[int, int]] = []
    if isinstance(spec, list):
        for it in spec:
            if isinstance(it, dict):
                for k, v in it.items():
                    items.append((_tag(k), int(v)))
            else:
                t, _, n = str(it).partition(":")
                items.append((int(t, 16), int(n)))
        return items
    text = str(spec).strip()
    if ":" in text:
        for part in text.split():
            t, _, n = part.partition(":")
            items.append((int(t, 16), int(n)))
        return items
    from ..tlv import parse_dol

    return parse_dol(_hex(text, what))
