"""A transaction about to start: the terminal's data objects, the unpredictable
number and the transaction date (EMV Book 3 §10, Book 4 §6.3).
"""

from __future__ import annotations

import random
from datetime import datetime

from ..state import TransactionState
from ..terminal import TerminalProfile


def new_state(terminal: TerminalProfile, *, amount: int, amount_other: int = 0, transaction_type: int = 0x00,
              when: datetime | None = None, seed: int | None = None, force_online: bool = False) -> TransactionState:
    """A transaction about to start: the terminal's data objects ready."""
    when = when or datetime.now()
    rng = random.Random(seed)
    state = TransactionState(terminal=terminal, amount=amount, amount_other=amount_other,
                             transaction_type=transaction_type)
    state.unpredictable_number = rng.getrandbits(32).to_bytes(4, "big")
    data = terminal.data()
    data.update({
        0x9F02: bytes.fromhex(f"{amount:012d}"),
        0x9F03: bytes.fromhex(f"{amount_other:012d}"),
        0x9A: bytes.fromhex(when.strftime("%y%m%d")),
        0x9F21: bytes.fromhex(when.strftime("%H%M%S")),
        0x9C: bytes.fromhex(f"{transaction_type:02d}"),
        0x9F37: state.unpredictable_number,
        0x9F41: bytes.fromhex("00000001"),
        0x8A: b"\x00\x00",
    })
    if amount <= 0xFFFFFFFF:
        data[0x81] = amount.to_bytes(4, "big")
    state.extras.update({"terminal_data": data, "rng": rng, "date": when.date(), "force_online": force_online})
    return state
