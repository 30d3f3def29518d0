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

#: TVR bits: name → (byte index 0..4, bit mask) (EMV Book 3 Annex C5)
TVR_BITS: dict[str, tuple[int, int]] = {
    "offline data authentication was not performed": (0, 0x80),
    "SDA failed": (0, 0x40),
    "ICC data missing": (0, 0x20),
    "card appears on terminal exception file": (0, 0x10),
    "DDA failed": (0, 0x08),
    "CDA failed": (0, 0x04),
    # added by EMVCo Specification Bulletin 103 (2012) / EMV 4.3 Book 3 Annex C5 errata (Nov 2013)
    "SDA selected": (0, 0x02),
    "ICC and terminal have different application versions": (1, 0x80),
    "expired application": (1, 0x40),
    "application not yet effective": (1, 0x20),
    "requested service not allowed for card product": (1, 0x10),
    "new card": (1, 0x08),
    "cardholder verification was not successful": (2, 0x80),
    "unrecognised CVM": (2, 0x40),
    "PIN try limit exceeded": (2, 0x20),
    "PIN entry required and PIN pad not present or not working": (2, 0x10),
    "PIN entry required, PIN pad present, but PIN was not entered": (2, 0x08),
    "online PIN entered": (2, 0x04),
    "transaction exceeds floor limit": (3, 0x80),
    "lower consecutive offline limit exceeded": (3, 0x40),
    "upper consecutive offline limit exceeded": (3, 0x20),
    "transaction selected randomly for online processing": (3, 0x10),
    "merchant forced transaction online": (3, 0x08),
    "default TDOL used": (4, 0x80),
    "issuer authentication failed": (4, 0x40),
    "script processing failed before final GENERATE AC": (4, 0x20),
    "script processing failed after final GENERATE AC": (4, 0x10),
}

#: TSI bits (EMV Book 3 Annex C6)
TSI_BITS: dict[str, tuple[int, int]] = {
    "offline data authentication was performed": (0, 0x80),
    "cardholder verification was performed": (0, 0x40),
    "card risk management was performed": (0, 0x20),
    "issuer authentication was performed": (0, 0x10),
    "terminal risk management was performed": (0, 0x08),
    "script processing was performed": (0, 0x04),
}


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
