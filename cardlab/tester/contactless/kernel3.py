"""Kernel 3 (EMV Contactless Book C-3, qVSDC path): GET PROCESSING OPTIONS with the
TTQ in the PDOL, the cryptogram in the GPO answer, READ RECORD of the AFL, fDDA
(version 01), the CTQ's CVM and fallback choices, and the outcome.

fDDA (Book C-3 §5.6 and Annex C): the issuer and ICC public keys are recovered as for
contact DDA (EMV Book 2 §5.3, §6.4, same CA keys, same static data), then the SDAD
(9F4B) with the ICC key over the terminal dynamic data of version 01:
Unpredictable Number 9F37 ‖ Amount, Authorised 9F02 ‖ Transaction Currency Code 5F2A ‖
Card Authentication Related Data 9F69 (9F69 = version 01 ‖ card UN (4) ‖ CTQ (2)).
"""

from __future__ import annotations

from datetime import date

from .. import oda as oda_mod
from ..channel import CardChannel
from ..exchange import event
from ..rsa import recover_sdad
from ..state import TransactionState
from . import qualifiers as Q
from .common import gpo, read_records
from .outcome import (
    APPROVED, CVM_NA, CVM_NONE, CVM_ONLINE_PIN, CVM_SIGNATURE, DECLINED, END_APPLICATION, ONLINE_REQUEST,
    TRY_ANOTHER_INTERFACE, Outcome,
)
from .reader import ContactlessReader

S_K3 = "Kernel 3 (qVSDC)"
REF_GPO = "EMV Contactless Book C-3 §5.2"
REF_READ = "EMV Contactless Book C-3 §5.3"
REF_FDDA = "EMV Contactless Book C-3 §5.6, Annex C; EMV Book 2 §6"
REF_CVM = "EMV Contactless Book C-3 §5.7"
REF_DECIDE = "EMV Contactless Book C-3 §5.8"

#: objects the qVSDC path needs (Book C-3 §5.4: AIP, ATC, AC, IAD, track 2)
MANDATORY = {0x82: "AIP", 0x9F36: "ATC", 0x9F26: "application cryptogram", 0x9F10: "issuer application data",
             0x57: "track 2 equivalent data"}
AAC, TC, ARQC = 0x00, 0x40, 0x80
FDDA_VERSION = 0x01


def cryptogram_type(card: dict[int, bytes]) -> tuple[int | None, str]:
    """9F27 bits 8–7; without 9F27, the Visa IAD's CVR byte 2 bits 6–5 (Book C-3 §5.4)."""
    cid = card.get(0x9F27)
    if cid:
        return cid[0] & 0xC0, "9F27"
    iad = card.get(0x9F10, b"")
    if len(iad) >= 7 and iad[0] == 0x06:
        bits = (iad[4] >> 4) & 0x03  # CVR byte 2 follows the CVR length byte iad[3]
        return {0: AAC, 1: TC, 2: ARQC}.get(bits), "the IAD's CVR (no 9F27)"
    return None, "no 9F27 and no Visa IAD"


def terminal_dynamic_data(state: TransactionState) -> bytes:
    """fDDA version 01 (Book C-3 Annex C): 9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69."""
    terminal: dict[int, bytes] = state.extras.get("terminal_data", {})
    return (state.unpredictable_number + terminal.get(0x9F02, b"") + terminal.get(0x5F2A, b"")
            + state.card_data.get(0x9F69, b""))


def fdda(state: TransactionState, today: date) -> tuple[bool, str]:
    """fDDA v01: key recovery as contact DDA, then the SDAD over the terminal dynamic data."""
    card = state.card_data
    if 0x9F4B not in card:
        return False, "no Signed Dynamic Application Data (9F4B)"
    cad = card.get(0x9F69)
    if cad is None:
        return False, "no Card Authentication Related Data (9F69): fDDA version 00 is not supported by this reader"
    if len(cad) < 7 or cad[0] != FDDA_VERSION:
        return False, f"Card Authentication Related Data {cad.hex().upper()}: not fDDA version 01 (01 ‖ UN ‖ CTQ)"
    try:
        static = oda_mod.static_data_to_authenticate(state)
        oda_mod._oda(state)["static_data"] = static
        issuer = oda_mod.issuer_public_key(state, None, today)
        icc = oda_mod.icc_public_key(state, issuer, static, today)
    except oda_mod.OdaError as exc:
        return False, str(exc)
    n, e = icc.public_key
    tdd = terminal_dynamic_data(state)
    s = recover_sdad(card[0x9F4B], n, e, tdd)
    oda_mod._oda(state)["sdad"] = s
    if not s.ok:
        return False, "; ".join(s.problems)
    state.card_data[0x9F4C] = s.icc_dynamic_number
    ctq = card.get(0x9F6C)
    if ctq is not None and cad[5:7] != ctq:
        return False, f"the CTQ signed in 9F69 ({cad[5:7].hex().upper()}) differs from 9F6C ({ctq.hex().upper()})"
    return True, (f"SDAD recovered with the ICC key; hash over the ICC dynamic data and 9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69 "
                  f"({len(tdd)} bytes) matches; ICC dynamic number {s.icc_dynamic_number.hex().upper()}")


def _expired(card: dict[int, bytes], today: date) -> bool | None:
    raw = card.get(0x5F24)
    if raw is not None and len(raw) == 3 and raw.hex().isdigit():
        yy, mm, dd = int(raw[:1].hex()), int(raw[1:2].hex()), int(raw[2:3].hex())
        return (2000 + yy, mm, dd) < (today.year, today.month, today.day)
    t2 = card.get(0x57, b"").hex().upper()
    if "D" in t2:
        yymm = t2.split("D", 1)[1][:4]
        if yymm.isdigit():
            return (2000 + int(yymm[:2]), int(yymm[2:])) < (today.year, today.month)
    return None


def cvm(state: TransactionState, reader: ContactlessReader, cid: int) -> tuple[str, Outcome | None]:
    """Book C-3 §5.7: the CVM from the CTQ and the TTQ. An Outcome when no CVM can be done."""
    ttq = state.extras.get("terminal_data", {}).get(0x9F66, bytes(4))
    ctq = state.card_data.get(0x9F6C)
    required = Q.has(ttq, Q.TTQ_BITS, "CVM required")
    pin_ok = Q.has(ttq, Q.TTQ_BITS, "online PIN supported") and not Q.has(ttq, Q.TTQ_BITS, "offline-only reader")
    sign_ok = Q.has(ttq, Q.TTQ_BITS, "signature supported")
    if ctq is not None:
        event(state, S_K3, REF_CVM, "check", f"CTQ {Q.describe(ctq, Q.CTQ_BITS)}")
    wants_pin = ctq is not None and Q.has(ctq, Q.CTQ_BITS, "online PIN required")
    wants_sign = ctq is not None and Q.has(ctq, Q.CTQ_BITS, "signature required")
    cdcvm = ctq is not None and Q.has(ctq, Q.CTQ_BITS, "consumer device CVM performed")
    if not required and not wants_pin and not wants_sign:
        return CVM_NONE, None
    if cdcvm:
        return "Confirmation Code Verified", None
    if wants_pin:
        if pin_ok and cid == ARQC:
            return CVM_ONLINE_PIN, None
        why = ("the reader is offline-only or does not support online PIN" if not pin_ok
               else "the card approved offline (TC): an online PIN needs an online authorization")
        if not (wants_sign and sign_ok):
            return CVM_NA, Outcome(DECLINED, f"the CTQ requires online PIN and {why}")
        event(state, S_K3, REF_CVM, "check", f"online PIN required but {why}: signature instead (the CTQ allows it)")
        return CVM_SIGNATURE, None
    if wants_sign:
        if sign_ok:
            return CVM_SIGNATURE, None
        return CVM_NA, Outcome(DECLINED, "the CTQ requires a signature and the reader does not support it")
    # CVM required by the reader, the card names none: what the reader supports
    if sign_ok:
        return CVM_SIGNATURE, None
    if pin_ok and cid == ARQC:
        return CVM_ONLINE_PIN, None
    return CVM_NA, Outcome(DECLINED, "CVM required (amount ≥ the CVM limit) and no CVM the reader supports applies")


def _oda_failed(state: TransactionState, reader: ContactlessReader, why: str) -> Outcome:
    """Book C-3 §5.8: fDDA failed on an offline approval — the CTQ says what next."""
    ctq = state.card_data.get(0x9F6C, b"\x00\x00")
    ttq = state.extras.get("terminal_data", {}).get(0x9F66, bytes(4))
    online = reader.online_capable and not Q.has(ttq, Q.TTQ_BITS, "offline-only reader")
    if Q.has(ctq, Q.CTQ_BITS, "go online if offline data authentication fails and reader is online capable") and online:
        return Outcome(ONLINE_REQUEST, f"fDDA failed ({why}); the CTQ asks to go online")
    if (Q.has(ctq, Q.CTQ_BITS, "switch interface if offline data authentication fails and reader supports contact chip")
            and reader.contact_chip):
        return Outcome(TRY_ANOTHER_INTERFACE, f"fDDA failed ({why}); the CTQ asks to switch interface",
                       alternate_interface="contact chip")
    return Outcome(DECLINED, f"fDDA failed ({why})")


def run_kernel3(state: TransactionState, channel: CardChannel, reader: ContactlessReader) -> Outcome:
    found, out = gpo(state, channel, S_K3, REF_GPO)
    if out is not None:
        return out
    if state.extras["contactless"].get("gpo_format") != 2:
        return Outcome(END_APPLICATION, "the GPO answer is format 1: not a qVSDC answer (Book C-3 §5.2)")
    event(state, S_K3, REF_GPO, "decision", "qVSDC answer: " + ", ".join(f"{t:X}" for t in found))
    out = read_records(state, channel, S_K3, REF_READ)
    if out is not None:
        return out
    missing = [f"{t:X} ({n})" for t, n in MANDATORY.items() if t not in state.card_data]
    if missing:
        return Outcome(END_APPLICATION, "mandatory qVSDC data missing: " + ", ".join(missing))
    state.ac1 = {t: state.card_data[t] for t in (0x9F27, 0x9F36, 0x9F26, 0x9F10, 0x9F4B) if t in state.card_data}
    cid, source = cryptogram_type(state.card_data)
    if cid is None:
        return Outcome(END_APPLICATION, f"cryptogram type unknown ({source})")
    state.extras["contactless"]["cid"] = cid
    kind = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}.get(cid, "RFU")
    event(state, S_K3, REF_DECIDE, "decision", f"the card answered a {kind} (from {source}), ATC "
          f"{state.card_data[0x9F36].hex().upper()}")
    today = oda_mod._today(state, None)
    ttq = state.extras.get("terminal_data", {}).get(0x9F66, bytes(4))
    ctq = state.card_data.get(0x9F6C, b"\x00\x00")
    switch = {0x01: "switch interface for cash transactions", 0x09: "switch interface for cashback transactions"}
    reason = switch.get(state.transaction_type)
    if reason is not None and Q.has(ctq, Q.CTQ_BITS, reason) and reader.contact_chip:
        return Outcome(TRY_ANOTHER_INTERFACE, f"the CTQ asks to {reason.replace('switch', 'switch the')} "
                       "(Book C-3 §5.8)", alternate_interface="contact chip")
    if cid == AAC:
        return Outcome(DECLINED, "the card declined (AAC)")
    if cid not in (TC, ARQC):
        return Outcome(END_APPLICATION, "cryptogram information data names an RFU cryptogram type")
    decided: Outcome | None = None
    if cid == TC:
        state.oda_method = "fDDA"
        aip = state.aip
        if not (aip and aip[0] & 0x20):
            ok, why = False, f"the AIP {aip.hex().upper()} does not announce fDDA (byte 1 b6)"
        else:
            ok, why = fdda(state, today)
        state.oda_ok = ok
        event(state, S_K3, REF_FDDA, "decision", f"fDDA {'successful' if ok else 'failed'}: {why}",
              tvr=() if ok else ("DDA failed",), tsi=("offline data authentication was performed",))
        if not ok:
            decided = _oda_failed(state, reader, why)
        elif _expired(state.card_data, today):
            ctq = state.card_data.get(0x9F6C, b"\x00\x00")
            if Q.has(ctq, Q.CTQ_BITS, "go online if application expired") and reader.online_capable \
                    and not Q.has(ttq, Q.TTQ_BITS, "offline-only reader"):
                decided = Outcome(ONLINE_REQUEST, "application expired; the CTQ asks to go online")
            else:
                decided = Outcome(DECLINED, "application expired (Book C-3 §5.5)")
    elif Q.has(ttq, Q.TTQ_BITS, "offline data authentication for online authorizations supported") \
            and 0x9F4B in state.card_data:
        ok, why = fdda(state, today)
        state.oda_method, state.oda_ok = "fDDA", ok
        event(state, S_K3, REF_FDDA, "check", f"fDDA for an online authorization {'successful' if ok else 'failed'}: "
              f"{why}", tvr=() if ok else ("DDA failed",))
    if decided is not None and decided.status != ONLINE_REQUEST:
        return decided
    method, refused = cvm(state, reader, ARQC if decided is not None else cid)
    if refused is not None:
        return refused
    event(state, S_K3, REF_CVM, "decision", f"CVM: {method}")
    if decided is not None:
        return Outcome(decided.status, decided.reason, cvm=method)
    if cid == ARQC:
        return Outcome(ONLINE_REQUEST, "the card asks for an online authorization (ARQC)", cvm=method)
    return Outcome(APPROVED, "offline approval: TC with fDDA verified", cvm=method, receipt=method == CVM_SIGNATURE)
