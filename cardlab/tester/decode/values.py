"""How one data element's value is shown: hex, text for the text formats, the PAN masked and
what reveals it withheld (track data, PAN-recoverable certificates)."""

from __future__ import annotations

from collections.abc import Callable

from ..exchange import mask_pan


def value_text(tag: int, value: bytes, mask: Callable[[str], str]) -> str:
    if tag == 0x5A:
        return mask_pan(value.hex().upper().rstrip("F"))
    if tag == 0x57:
        pan, _, rest = value.hex().upper().partition("D")
        return mask_pan(pan) + "D" + rest[:7] + "…"  # PAN masked, expiry and service code kept, the rest cut
    if tag in (0x56, 0x9F6B, 0x9F1F):
        return f"<{len(value)} bytes withheld>"
    if tag in (0x9F46, 0x9F2D):  # anyone with the CA public key recovers the PAN from them (Book 2 §6.4, §7.1)
        return f"<{len(value)} bytes withheld: the PAN is recoverable from this certificate>"
    text = value.hex().upper()
    if tag in (0x50, 0x9F12, 0x5F20, 0x5F2D, 0x84) and value and all(0x20 <= b < 0x7F for b in value):
        text += f' "{value.decode("ascii")}"'
    return mask(text)
