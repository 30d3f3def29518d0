"""Kernel 2 (EMV Contactless Book C-2), EMV mode only: GET PROCESSING OPTIONS, READ
RECORD, CDA key recovery, processing restrictions, CVM selection with the CVM
capability the CVM limit gives, terminal risk management with the reader's floor
limit, terminal action analysis and GENERATE AC with CDA, then the outcome.

The steps that are the same as on contact reuse the contact kernel (EMV Book 3
§10.4–§10.8, CDA Book 2 §6.6) on a copy of the terminal profile whose
capabilities (9F33 byte 2) and floor limit are the contactless ones (Book C-2:
"CVM Capability – CVM Required" / "– No CVM Required", Reader Contactless Floor
Limit). Mag-stripe mode is out of scope: a card without EMV mode ends the application.
"""

from __future__ import annotations

from dataclasses import replace

from .. import oda as oda_mod
from ..channel import CardChannel
from ..exchange import event
from ..kernel.generate_ac import first_generate_ac
from ..kernel.restrictions import processing_restrictions
from ..state import TransactionState
from ..terminal import TerminalProfile
from .common import gpo, read_records
from .outcome import (
    APPROVED, CVM_NA, CVM_NONE, CVM_ONLINE_PIN, CVM_SIGNATURE, DECLINED, END_APPLICATION, ONLINE_REQUEST, Outcome,
)
from .reader import ContactlessReader

S_K2 = "Kernel 2 (EMV mode)"
REF_GPO = "EMV Contactless Book C-2 §5.2"
REF_READ = "EMV Contactless Book C-2 §5.3"
REF_MODE = "EMV Contactless Book C-2 §3.2 (AIP byte 2 b8: EMV mode)"

MANDATORY = {0x5F24: "application expiration date", 0x5A: "PAN", 0x8C: "CDOL1", 0x8D: "CDOL2"}


def contactless_terminal(terminal: TerminalProfile, reader: ContactlessReader, cvm_required: bool,
                         floor_limit: int | None, cvm_required_cap: int, no_cvm_cap: int) -> TerminalProfile:
    """The terminal as kernel 2 presents it: 9F33 byte 2 from the CVM capability, the reader's
    floor limit, and an offline-only terminal type when the reader cannot go online."""
    caps = bytearray(terminal.capabilities)
    caps[1] = cvm_required_cap if cvm_required else no_cvm_cap
    kind = terminal.terminal_type if reader.online_capable else (terminal.terminal_type & 0xF0) | (
        6 if terminal.unattended else 3)
    return replace(terminal, capabilities=bytes(caps), floor_limit=terminal.floor_limit if floor_limit is None
                   else floor_limit, terminal_type=kind)


def _cvm_name(result: bytes) -> str:
    method = result[0] & 0x3F if result else 0x3F
    if method in (0x02,):
        return CVM_ONLINE_PIN
    if method in (0x1E,):
        return CVM_SIGNATURE
    if method in (0x1F,):
        return CVM_NONE
    return CVM_NA


def run_kernel2(state: TransactionState, channel: CardChannel, reader: ContactlessReader, *,
                pin: str | None = None) -> Outcome:
    from ..cvm import cardholder_verification
    from ..risk import terminal_action_analysis, terminal_risk_management

    cl = state.extras["contactless"]
    combo, pre = cl["combination"], cl["preprocessed"]
    state.terminal = contactless_terminal(state.terminal, reader, pre.cvm_limit_exceeded, combo.floor_limit,
                                          combo.cvm_capability_cvm, combo.cvm_capability_no_cvm)
    state.extras["terminal_data"].update({0x9F33: state.terminal.capabilities,
                                          0x9F35: bytes((state.terminal.terminal_type,)),
                                          0x9F1B: state.terminal.floor_limit.to_bytes(4, "big")})
    event(state, S_K2, "EMV Contactless Book C-2 §3 (CVM capability)", "note",
          f"terminal capabilities {state.terminal.capabilities.hex().upper()} "
          f"({'CVM required' if pre.cvm_limit_exceeded else 'no CVM required'}), floor limit "
          f"{state.terminal.floor_limit}")
    state.tvr[:] = bytes(5)
    state.tsi[:] = bytes(2)
    found, out = gpo(state, channel, S_K2, REF_GPO)
    if out is not None:
        return out
    aip = state.aip
    if len(aip) != 2:
        return Outcome(END_APPLICATION, "AIP missing or of the wrong length")
    if not aip[1] & 0x80:
        return Outcome(END_APPLICATION, f"AIP {aip.hex().upper()} does not announce EMV mode: mag-stripe mode "
                       "is out of this tester's scope")
    event(state, S_K2, REF_MODE, "decision", f"AIP {aip.hex().upper()}: EMV mode; AFL names "
          f"{len(state.afl) // 4} file(s)")
    out = read_records(state, channel, S_K2, REF_READ)
    if out is not None:
        return out
    missing = [f"{t:X} ({n})" for t, n in MANDATORY.items() if t not in state.card_data]
    if missing:
        return Outcome(END_APPLICATION, "mandatory data missing: " + ", ".join(missing))
    # CDA only (Book C-2 §3.1: kernel 2 does no SDA or DDA)
    if aip[0] & 0x01 and state.terminal.supports("CDA"):
        state = oda_mod.authenticate(state, channel, None, method="CDA")
        if state.oda_ok is False:
            state.extras["cda_not_requested"] = True
    else:
        event(state, S_K2, "EMV Contactless Book C-2 §3.1", "decision",
              "CDA not supported by card and reader: offline data authentication not performed",
              tvr=("offline data authentication was not performed",))
    for step in (processing_restrictions, lambda s, c: cardholder_verification(s, c, pin=pin),
                 terminal_risk_management, terminal_action_analysis):
        state = step(state, channel)
        if state.outcome:
            return Outcome(END_APPLICATION, state.outcome)
    state = first_generate_ac(state, channel)
    method = _cvm_name(state.cvm_result)
    result, state.outcome = state.outcome, ""
    if "CDA failed" in result or state.tvr_set("CDA failed"):
        return Outcome(END_APPLICATION, "CDA failed on the GENERATE AC answer (Book C-2: CAM failed)", cvm=CVM_NA)
    if result.startswith("aborted"):
        return Outcome(END_APPLICATION, result)
    if result == "approved offline":
        return Outcome(APPROVED, "the card approved offline (TC) with CDA", cvm=method)
    if result.startswith("declined"):
        return Outcome(DECLINED, "the card declined (AAC)", cvm=method)
    return Outcome(ONLINE_REQUEST, "the card asks for an online authorization (ARQC)", cvm=method)
