"""Transaction state and trace events: what every terminal step reads and returns.

Each step of the kernel (ARCHITECTURE.md "The tester") is a function
``step(state, channel) -> state`` that appends :class:`TraceEvent` objects to
``state.events``; the same events feed the teaching trace and certification.
TVR and TSI are kept as mutable byte arrays with named bit helpers
(EMV Book 3 Annex C5 and C6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .decode import bits as _bits

#: TVR bits: name → (byte index 0..4, bit mask) (EMV Book 3 Annex C5), from the one table in
#: :mod:`cardlab.tester.decode.bits` that the decoders and the trace read too
TVR_BITS: dict[str, tuple[int, int]] = _bits.TVR.flags()

#: TSI bits (EMV Book 3 Annex C6), from the same module
TSI_BITS: dict[str, tuple[int, int]] = _bits.TSI.flags()


@dataclass
class TraceEvent:
    """One thing that happened, for the teaching trace and for evidence."""

    step: str  # e.g. "Application selection"
    reference: str  # e.g. "EMV Book 1 §12.3"
    kind: str  # "apdu" | "decision" | "check" | "note"
    text: str  # the decision and why, in words (PANs masked)
    command: bytes = b""
    response: bytes = b""
    bits_set: list[str] = field(default_factory=list)  # TVR/TSI bits this event set


class EventLog(list[TraceEvent]):
    """``state.events``: a list that also tells a listener (the live teaching
    trace) of every event as it is appended."""

    listener: Callable[[TraceEvent], None] | None = None

    def append(self, event: TraceEvent) -> None:
        super().append(event)
        if self.listener is not None:
            self.listener(event)


@dataclass
class TransactionState:
    # terminal side
    terminal: Any = None  # cardlab.tester.terminal.TerminalProfile
    amount: int = 0
    amount_other: int = 0
    transaction_type: int = 0x00
    unpredictable_number: bytes = b""
    tvr: bytearray = field(default_factory=lambda: bytearray(5))
    tsi: bytearray = field(default_factory=lambda: bytearray(2))
    # card side, as read
    candidates: list[dict[int, bytes]] = field(default_factory=list)  # directory/FCI entries
    aid: bytes = b""
    fci: bytes = b""
    pdol_data: bytes = b""
    aip: bytes = b""
    afl: bytes = b""
    #: (SFI, record number) → the record exactly as READ RECORD returned it (template 70)
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)
    #: static data to be authenticated (Book 3 §10.3), built while reading
    oda_data: bytes = b""
    #: every primitive data object the card gave (FCI, GPO, records, GET DATA), tag → value
    card_data: dict[int, bytes] = field(default_factory=dict)
    # outcomes
    oda_method: str = ""  # "SDA" | "DDA" | "CDA" | "" (none)
    oda_ok: bool | None = None
    icc_public_key: tuple[int, int] | None = None  # (modulus, exponent) once recovered
    issuer_public_key: tuple[int, int] | None = None
    cvm_result: bytes = b"\x3F\x00\x00"  # 9F34
    pin_verified: bool | None = None
    ac1: dict[int, bytes] = field(default_factory=dict)  # 9F27, 9F36, 9F26, 9F10, 9F4B …
    ac2: dict[int, bytes] = field(default_factory=dict)
    cdol1_data: bytes = b""
    cdol2_data: bytes = b""
    online_response: dict[str, Any] = field(default_factory=dict)  # ARC, ARPC, scripts, results
    script_results: list[tuple[bytes, int]] = field(default_factory=list)  # (command, SW)
    outcome: str = ""  # "approved offline" | "approved online" | "declined …" | "aborted: …"
    events: list[TraceEvent] = field(default_factory=EventLog)
    #: step-private working data (the terminal data objects, the chosen CVM, flags…)
    extras: dict[str, Any] = field(default_factory=dict)

    def set_tvr(self, name: str) -> None:
        i, bit = TVR_BITS[name]
        self.tvr[i] |= bit

    def tvr_set(self, name: str) -> bool:
        i, bit = TVR_BITS[name]
        return bool(self.tvr[i] & bit)

    def set_tsi(self, name: str) -> None:
        i, bit = TSI_BITS[name]
        self.tsi[i] |= bit

    def tvr_names(self) -> list[str]:
        return [n for n, (i, bit) in TVR_BITS.items() if self.tvr[i] & bit]

    def tsi_names(self) -> list[str]:
        return [n for n, (i, bit) in TSI_BITS.items() if self.tsi[i] & bit]
