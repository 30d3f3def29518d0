"""Data object lists (EMV Book 3 §5.4): the values a DOL may ask for and the
DOL data built from them.
"""

from __future__ import annotations

from .. import tlv
from ..state import TransactionState

#: numeric (format n) terminal data objects: padded on the left, cut on the left (Book 3 §5.4)
NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x5F36, 0x9A, 0x9F21, 0x9C, 0x9F15, 0x9F41,
                          0x9F42, 0x5F28, 0x5F24, 0x5F25, 0x5F34, 0x9F11, 0x9F44})
#: compressed numeric (cn): padded on the right with FF
CN_TAGS = frozenset({0x5A, 0x9F20})


def fit(tag: int, value: bytes, length: int) -> bytes:
    """One DOL entry's value at ``length`` (Book 3 §5.4): numeric padded/cut on
    the left, cn padded with FF on the right, others padded with 00 / cut on the right."""
    if len(value) == length:
        return value
    if tag in NUMERIC_TAGS:
        return value[-length:] if len(value) > length else bytes(length - len(value)) + value
    if len(value) > length:
        return value[:length]
    return value + (b"\xFF" if tag in CN_TAGS else b"\x00") * (length - len(value))


def dol_values(state: TransactionState) -> dict[int, bytes]:
    """Every value a DOL may ask for: the card's data, then the terminal's
    (which wins), with the current TVR, TSI and CVM results."""
    values = dict(state.card_data)
    values.update(state.extras.get("terminal_data", {}))
    values[0x95] = bytes(state.tvr)
    values[0x9B] = bytes(state.tsi)
    values[0x9F34] = state.cvm_result
    values[0x9F37] = state.unpredictable_number
    return values


def build_dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    """DOL data (Book 3 §5.4): unknown or constructed tags give zeros."""
    out = b""
    for tag, n in tlv.parse_dol(dol):
        first = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")[0]
        v = values.get(tag)
        out += bytes(n) if v is None or first & 0x20 else fit(tag, v, n)
    return out
