"""Planning STORE DATA: prepared DGIs grouped into command blocks
(GP Card Specification §11.11, EMV CPS §4.3.4 — whole DGIs, secret DGIs in
encrypted blocks of their own)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cardlab.cardspec import tlv

from .values import Data

__all__ = ["STORE_DATA_BLOCK", "StoreBlock", "dgi_data", "plan_store_blocks"]


#: maximum data bytes per STORE DATA command (before secure messaging); with
#: C-DEC padding and an 8-byte C-MAC the command stays a short APDU
STORE_DATA_BLOCK = 239


@dataclass
class StoreBlock:
    """The DGIs of one STORE DATA command; ``encrypted`` for a block of secret DGIs."""

    encrypted: bool
    items: list[tuple[int, Data]] = field(default_factory=list)

    def size(self) -> int:
        return sum(len(tlv.encode_dgi(d, b"")) + len(v) + (2 if len(v) >= 0xFF else 0) for d, v in self.items)


def _encoded_size(block: StoreBlock, extra: int) -> int:
    n = block.size() + extra
    return (n // 16 + 1) * 16 if block.encrypted else n


def plan_store_blocks(dgis: Sequence[tuple[int, Data, bool]]) -> list[StoreBlock]:
    """Group DGIs into STORE DATA blocks: whole DGIs, at most
    :data:`STORE_DATA_BLOCK` bytes of command data (encrypted blocks counted
    after ISO padding), secret DGIs in blocks of their own; blocks keep the
    order of their first DGI. A DGI too long for any block goes alone."""
    blocks: list[StoreBlock] = []
    open_: dict[bool, StoreBlock] = {}
    for dgi, value, secret in dgis:
        item_size = len(tlv.encode_dgi(dgi, b"")) + len(value) + (2 if len(value) >= 0xFF else 0)
        current = open_.get(secret)
        if current is None or _encoded_size(current, item_size) > STORE_DATA_BLOCK:
            current = open_[secret] = StoreBlock(secret)
            blocks.append(current)
        current.items.append((dgi, value))
    return blocks


def dgi_data(dgi: int, value: Data) -> Data:
    n = len(value)
    length = bytes((n,)) if n < 0xFF else b"\xff" + n.to_bytes(2, "big")
    return Data.of(dgi.to_bytes(2, "big"), length, value)
