"""What every kernel step shares: the step names and spec references its trace
events carry, the AIP and cryptogram-type codes, ending a transaction, and
loading a sibling part of the tester that may be absent.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exchange import event
from ..state import TransactionState

REF_SELECT = "EMV Book 1 §12.3–§12.4"
REF_INITIATE = "EMV Book 3 §10.1"
REF_READ = "EMV Book 3 §10.2"
REF_ODA = "EMV Book 3 §10.3, Book 2 §5–§6"
REF_RESTRICT = "EMV Book 3 §10.4"
REF_GENAC = "EMV Book 3 §10.8, §6.5.5, §9.3"
REF_CDA = "EMV Book 2 §6.6"

S_SELECT = "Application selection"
S_INITIATE = "Initiate application processing"
S_READ = "Read application data"
S_ODA = "Offline data authentication"
S_RESTRICT = "Processing restrictions"
S_GENAC = "First GENERATE AC"
S_ONLINE = "Online processing"


#: AIP byte 1 (Book 3 Annex C1)
AIP_SDA, AIP_DDA, AIP_CVM, AIP_TRM, AIP_ISSUER_AUTH, AIP_CDA = 0x40, 0x20, 0x10, 0x08, 0x04, 0x01

AAC, TC, ARQC = 0x00, 0x40, 0x80
CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC", 0xC0: "RFU"}


def optional_module(name: str) -> ModuleType | None:
    """A sibling part of the tester written by another engineer, if present."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def abort(state: TransactionState, step: str, ref: str, why: str, tvr: tuple[str, ...] = ()) -> TransactionState:
    state.outcome = f"aborted: {why}"
    event(state, step, ref, "decision", f"transaction terminated: {why}", tvr=tvr)
    return state
