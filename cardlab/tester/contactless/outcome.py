"""Outcomes and user-interface requests (EMV Contactless Book A §6 "Outcome parameter
set" and §7 "User Interface Request"; Book B §3.5 "Outcome processing").

A kernel ends with one :class:`Outcome`; Entry Point acts on it (Select Next, Try
Again) or hands it to the reader, which shows the UI request and, for an Online
Request, sends the authorization.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exchange import event
from ..state import TransactionState

APPROVED = "Approved"
DECLINED = "Declined"
ONLINE_REQUEST = "Online Request"
TRY_ANOTHER_INTERFACE = "Try Another Interface"
END_APPLICATION = "End Application"
SELECT_NEXT = "Select Next"
TRY_AGAIN = "Try Again"

#: CVM of the outcome parameter set (Book A §6.2)
CVM_ONLINE_PIN, CVM_SIGNATURE, CVM_NONE, CVM_NA = "Online PIN", "Obtain Signature", "No CVM", "N/A"

#: UI request message identifiers (Book A §7.1; the same values Book C-8 Annex A.1.92 lists)
MESSAGES: dict[int, str] = {
    0x03: "Approved",
    0x07: "Not Authorised",
    0x17: "Card Read OK",
    0x18: "Please Insert or Swipe Card",
    0x1A: "Approved Please Sign",
    0x1B: "Authorising Please Wait",
    0x1C: "Insert, Swipe or Try Another Card",
    0x1D: "Please Insert Card",
    0x21: "Present Card Again",
}

#: the default UI request of each status (Book A §7.1; Book C-3 §5.9, Book C-2 §6)
_DEFAULT_MESSAGE = {
    APPROVED: 0x03, DECLINED: 0x07, ONLINE_REQUEST: 0x1B, TRY_ANOTHER_INTERFACE: 0x18,
    END_APPLICATION: 0x1C, TRY_AGAIN: 0x21,
}

REF_OUTCOME = "EMV Contactless Book A §6–§7, Book B §3.5"
S_OUTCOME = "Outcome"


@dataclass(frozen=True)
class Outcome:
    """What a kernel (or Entry Point) ends with: status, CVM, UI request and why."""

    status: str
    reason: str
    cvm: str = CVM_NA
    message: int | None = None  # UI request message identifier; None → the status's default
    alternate_interface: str = ""  # Try Another Interface: "contact chip"
    receipt: bool = False

    @property
    def ui_message(self) -> int | None:
        if self.message is not None:
            return self.message
        if self.status == APPROVED and self.cvm == CVM_SIGNATURE:
            return 0x1A
        return _DEFAULT_MESSAGE.get(self.status)

    def ui_text(self) -> str:
        m = self.ui_message
        return f"'{m:02X}' {MESSAGES.get(m, 'RFU')}" if m is not None else "none"


def finish(state: TransactionState, outcome: Outcome) -> TransactionState:
    """Record the outcome on the state, its summary string and the trace event."""
    state.extras.setdefault("contactless", {})["outcome"] = outcome
    state.outcome = {
        APPROVED: "approved offline", DECLINED: "declined offline", ONLINE_REQUEST: "online request",
        TRY_ANOTHER_INTERFACE: "try another interface", END_APPLICATION: "end application",
        SELECT_NEXT: "select next", TRY_AGAIN: "try again",
    }[outcome.status]
    extra = f", alternate interface: {outcome.alternate_interface}" if outcome.alternate_interface else ""
    event(state, S_OUTCOME, REF_OUTCOME, "decision",
          f"outcome {outcome.status} — {outcome.reason}; CVM {outcome.cvm}; UI request {outcome.ui_text()}{extra}")
    return state
