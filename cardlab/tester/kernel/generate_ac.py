"""Step 9, the first GENERATE AC (EMV Book 3 §10.8, §9.3) and the CDA check of
its answer (Book 2 §6.6).
"""

from __future__ import annotations

from .. import tlv
from ..channel import CardChannel
from ..exchange import case4, event, send
from ..online import parse_ac_response
from ..state import TransactionState
from . import authentication
from .common import AAC, ARQC, CID_NAMES, REF_CDA, REF_GENAC, S_GENAC, TC, abort, optional_module
from .dol import build_dol, dol_values


def cda_check(state: TransactionState, response: dict[int, bytes], dol_data2: bytes = b"",
              *, second: bool = True) -> tuple[bool, str]:
    """Book 2 §6.6.2: recover the SDAD (9F4B) with the ICC key, compare its CID
    with 9F27, its transaction data hash code with SHA-1(PDOL data ‖ CDOL1
    data ‖ [CDOL2 data] ‖ the response's other objects); the AC is the signed one."""
    import hashlib

    oda = optional_module("cardlab.tester.oda")
    verify = getattr(oda, "verify_cda", None) if oda is not None and authentication.oda_hook is None else None
    if verify is not None:
        ok = bool(verify(state, response, state.pdol_data, state.cdol1_data,
                         cdol2_data=dol_data2 if second else None, unpredictable_number=state.unpredictable_number))
        return ok, ("signature, CID and transaction data hash code verified" if ok
                    else "see the offline data authentication events")
    key = state.icc_public_key
    if key is None:
        return False, "no ICC public key was recovered"
    if 0x9F4B not in response:
        return False, "no Signed Dynamic Application Data (9F4B) in the response"
    rsa = optional_module("cardlab.tester.rsa")
    n, e = key
    rest = b"".join(tlv.encode(t, v) for t, v in response.items() if t != 0x9F4B)
    hashed = state.pdol_data + state.cdol1_data + (dol_data2 if second else b"") + rest
    un = state.unpredictable_number
    if rsa is not None:
        s = rsa.recover_sdad(response[0x9F4B], n, e, un, cda=True)
        if getattr(s, "problems", None):
            return False, "; ".join(str(p) for p in s.problems)
        cid, ac, tdhc = s.cid, s.cryptogram, s.transaction_data_hash
    else:  # plain arithmetic (Book 2 Table 17, Table 19)
        size = (n.bit_length() + 7) // 8
        sig = response[0x9F4B]
        if len(sig) != size:
            return False, "SDAD length differs from the ICC modulus"
        r = pow(int.from_bytes(sig, "big"), e, n).to_bytes(size, "big")
        if r[0] != 0x6A or r[-1] != 0xBC or r[1] != 0x05:
            return False, "recovered SDAD header, format or trailer wrong"
        if hashlib.sha1(r[1:-21] + un).digest() != r[-21:-1]:
            return False, "SDAD hash differs"
        d = r[4 : 4 + r[3]]
        k = d[0] if d else 0
        cid, ac, tdhc = d[1 + k : 2 + k], d[2 + k : 10 + k], d[10 + k : 30 + k]
    if cid != response.get(0x9F27):
        return False, f"CID in the signature {cid.hex()} differs from 9F27 {response.get(0x9F27, b'').hex()}"
    if hashlib.sha1(hashed).digest() != tdhc:
        return False, "transaction data hash code differs"
    response[0x9F26] = ac
    return True, "SDAD recovered, CID and transaction data hash code agree"


def first_generate_ac(state: TransactionState, channel: CardChannel) -> TransactionState:
    """Ask for the cryptogram terminal action analysis chose (extras["ask"])."""
    ask: int = state.extras.get("ask", AAC)
    cdol1 = state.card_data.get(0x8C, b"")
    state.cdol1_data = build_dol(cdol1, dol_values(state))
    cda = (ask != AAC and state.oda_method == "CDA" and not state.extras.get("cda_not_requested"))
    p1 = ask | (0x10 if cda else 0)
    data, sw = send(state, channel, case4(bytes((0x80, 0xAE, p1, 0x00)), state.cdol1_data), S_GENAC, REF_GENAC,
                    f"GENERATE AC asking for {CID_NAMES[ask]}{' with CDA signature' if cda else ''}")
    state.set_tsi("card risk management was performed")
    if sw != 0x9000:
        return abort(state, S_GENAC, REF_GENAC, f"GENERATE AC answered SW {sw:04X}")
    try:
        ac = parse_ac_response(data)
    except tlv.TlvError as exc:
        return abort(state, S_GENAC, REF_GENAC, str(exc))
    if not {0x9F27, 0x9F36}.issubset(ac) or (0x9F26 not in ac and 0x9F4B not in ac):
        return abort(state, S_GENAC, REF_GENAC, "GENERATE AC response lacks 9F27, 9F36 or the cryptogram",
                      tvr=("ICC data missing",))
    state.ac1 = ac
    got = ac[0x9F27][0] & 0xC0
    if got == 0xC0 or (ask == AAC and got != AAC) or (ask == ARQC and got == TC):
        return abort(state, S_GENAC, "EMV Book 3 §9.3", f"the card answered {CID_NAMES[got]} to a request for "
                      f"{CID_NAMES[ask]} (more than asked)")
    reason = ac[0x9F27][0] & 0x07
    extra = {1: " — reason: service not allowed", 2: " — reason: PIN try limit exceeded",
             3: " — reason: issuer authentication failed"}.get(reason, "")
    if cda and got != AAC:
        ok, why = cda_check(state, ac, second=False)
        if not ok:
            event(state, S_GENAC, REF_CDA, "decision", f"CDA failed: {why}", tvr=("CDA failed",))
            state.oda_ok = False
            if got == TC:
                state.outcome = "declined offline (CDA failed)"
                event(state, S_GENAC, REF_CDA, "decision", "a TC whose CDA fails is a decline")
                return state
            state.extras["cda_not_requested"] = True
        else:
            state.oda_ok = True if state.oda_ok is None else state.oda_ok
            event(state, S_GENAC, REF_CDA, "check", f"CDA: {why}")
    elif cda and got == AAC:
        event(state, S_GENAC, REF_CDA, "note", "an AAC carries no CDA signature")
    if got == AAC:
        state.outcome = "declined offline"
        event(state, S_GENAC, REF_GENAC, "decision", f"the card answered an AAC: declined offline{extra}")
    elif got == TC:
        state.outcome = "approved offline"
        event(state, S_GENAC, REF_GENAC, "decision", f"the card answered a TC: approved offline{extra}")
    else:
        event(state, S_GENAC, REF_GENAC, "decision", f"the card answered an ARQC: online authorization{extra}")
    return state
