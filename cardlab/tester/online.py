"""Online processing, issuer authentication, issuer scripts and completion
(EMV 4.4 Book 3 §10.9–§10.11, Book 2 §8–§9, Book 4 §6.3.7).

:func:`process` runs after a first GENERATE AC that answered an ARQC:

1. the authorization request goes to the issuer host (:mod:`cardlab.tester.issuer_host`);
2. issuer authentication: when the card's CDOL2 asks for ``91`` the Issuer
   Authentication Data goes into the second GENERATE AC (method 2, or method 1
   "combined"); otherwise, when the AIP says the card supports it, EXTERNAL
   AUTHENTICATE carries it. A refused ARPC sets TVR "issuer authentication failed";
3. scripts of template ``71`` are sent before the final GENERATE AC;
4. the second GENERATE AC asks for a TC when the issuer approved (ARC 00),
   an AAC otherwise, with the CDOL2 data (8A ARC, 91, 95 TVR, 9F37 …);
5. scripts of template ``72`` are sent after it.

Script processing (Book 3 §10.10): each ``86`` command is sent as is; an SW1
other than 90, 62 or 63 ends that script, sets TVR "script processing failed
before/after final GENERATE AC" and is reported in the issuer script results
(``9F5B``-like: per script one byte — high nibble 0 not performed, 1 failed,
2 successful; low nibble the number of the failing command — and the script
identifier ``9F18`` or 00000000).

:func:`complete_offline` is the path for a terminal unable to go online
(Book 3 §10.8 default action analysis with IAC-default/TAC-default, ARC Y3/Z3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import tlv
from .channel import CardChannel
from .exchange import answer
from .issuer_host import (
    AAC,
    ARC_OFFLINE_APPROVED,
    ARC_OFFLINE_DECLINED,
    ARQC,
    TC,
    AuthorizationRequest,
    AuthorizationResponse,
    HostError,
    IssuerHost,
    Script,
    dol_values,
)
from .state import TraceEvent, TransactionState

BOOK_ONLINE = "EMV Book 3 §10.9, Book 4 §6.3.7"
BOOK_ISSUER_AUTH = "EMV Book 3 §10.9 and §6.5.4, Book 2 §8.2"
BOOK_SCRIPTS = "EMV Book 3 §10.10, Book 2 §9"
BOOK_COMPLETION = "EMV Book 3 §10.11 and §6.5.5"
BOOK_DEFAULT = "EMV Book 3 §10.8 (default action, unable to go online)"
BOOK_OPENED = "EMV Book 2 §8.1, Annex A1.2-A1.4"
STEP_OPENED = "Application cryptogram, opened up (TEST keys)"

#: AIP byte 1 bits (Book 3 Annex C1)
AIP_ISSUER_AUTH = 0x04
AIP_CDA = 0x01

CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC", 0xC0: "RFU"}

#: a CDA check the kernel may provide: (state, second-GENERATE-AC template value, CDOL2 data) → (ok, why)
CdaCheck = Callable[[TransactionState, dict[int, bytes], bytes], tuple[bool, str]]


# -- APDUs -------------------------------------------------------------------------------------


def _send(channel: CardChannel, apdu: bytes) -> tuple[bytes, int]:
    data, sw = answer(apdu, channel.transmit(apdu))
    while sw >> 8 == 0x61:
        get_response = bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF))
        more, sw = answer(get_response, channel.transmit(get_response))
        data += more
    if sw >> 8 == 0x6C:
        return _send(channel, apdu[:-1] + bytes((sw & 0xFF,)))
    return data, sw


def _case4(header: bytes, data: bytes) -> bytes:
    return header + bytes((len(data),)) + data + b"\x00"


def parse_ac_response(data: bytes) -> dict[int, bytes]:
    """A GENERATE AC answer, format 1 (``80``: CID ‖ ATC ‖ AC ‖ IAD) or 2 (``77``)."""
    items = tlv.parse(data)
    if len(items) != 1 or items[0].tag not in (0x80, 0x77):
        raise tlv.TlvError("GENERATE AC response is neither an 80 nor a 77 template")
    value = items[0].value
    if items[0].tag == 0x80:
        if len(value) < 11:
            raise tlv.TlvError("format 1 GENERATE AC response shorter than 11 bytes")
        return {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11], 0x9F10: value[11:]}
    return {t.tag: t.value for t in items[0].children()}


def _event(state: TransactionState, step: str, reference: str, kind: str, text: str, *,
           command: bytes = b"", response: bytes = b"", bits: Sequence[str] = ()) -> None:
    state.events.append(TraceEvent(step, reference, kind, text, command, response, list(bits)))


def _cid_name(cid: bytes) -> str:
    return CID_NAMES.get(cid[0] & 0xC0, "?") if cid else "none"


# -- values for the DOLs --------------------------------------------------------------------------


def terminal_values(state: TransactionState) -> dict[int, bytes]:
    """The terminal's data for CDOL2: what the PDOL and CDOL1 carried, then the
    current TVR, TSI and unpredictable number."""
    values: dict[int, bytes] = {}
    data = getattr(state.terminal, "data", None)
    if callable(data):
        values.update(data())
    card = state.card_data
    if state.pdol_data and 0x9F38 in card:
        values.update(dol_values(card[0x9F38], state.pdol_data))
    if state.cdol1_data and 0x8C in card:
        values.update(dol_values(card[0x8C], state.cdol1_data))
    values[0x95] = bytes(state.tvr)
    values[0x9B] = bytes(state.tsi)
    if state.unpredictable_number:
        values[0x9F37] = state.unpredictable_number
    return values


def build_dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    """Book 3 §5.4: each value cut or left-padded with zeros (numeric) to its length."""
    out = b""
    for tag, n in tlv.parse_dol(dol):
        v = values.get(tag, b"")
        out += v[:n] if len(v) >= n else bytes(n - len(v)) + v
    return out


# -- scripts ----------------------------------------------------------------------------------------


def split_scripts(templates: bytes, tag: int) -> list[tuple[bytes, list[bytes]]]:
    """(script identifier, commands) of every ``tag`` template (71 or 72)."""
    out: list[tuple[bytes, list[bytes]]] = []
    for item in tlv.parse(templates):
        if item.tag != tag:
            continue
        ident, commands = b"", []
        for child in item.children():
            if child.tag == 0x9F18:
                ident = child.value
            elif child.tag == 0x86:
                commands.append(child.value)
        out.append((ident, commands))
    return out


def _scripts(state: TransactionState, channel: CardChannel, templates: bytes, tag: int) -> bytes:
    """Run the ``tag`` scripts; return their results (9F5B-like) and set TVR/TSI."""
    when = "before" if tag == 0x71 else "after"
    failed_bit = f"script processing failed {when} final GENERATE AC"
    results = b""
    for ident, commands in split_scripts(templates, tag):
        state.set_tsi("script processing was performed")
        result = 0x20
        for i, command in enumerate(commands, 1):
            data, sw = _send(channel, command)
            state.script_results.append((command, sw))
            name = _script_name(command)
            if sw >> 8 in (0x90, 0x62, 0x63):
                _event(state, "Issuer script processing", BOOK_SCRIPTS, "apdu",
                       f"{name} ({tag:02X} script, command {i}) accepted: SW {sw:04X}",
                       command=command, response=data + sw.to_bytes(2, "big"))
                continue
            state.set_tvr(failed_bit)
            result = 0x10 | min(i, 15)
            _event(state, "Issuer script processing", BOOK_SCRIPTS, "decision",
                   f"{name} ({tag:02X} script, command {i}) refused by the card: SW {sw:04X}"
                   f"{' (secure messaging data incorrect: the MAC)' if sw == 0x6988 else ''}; "
                   f"the rest of this script is not sent",
                   command=command, response=data + sw.to_bytes(2, "big"),
                   bits=[failed_bit, "script processing was performed"])
            break
        results += bytes((result,)) + (ident[-4:].rjust(4, b"\x00") if ident else bytes(4))
    return results


_INS_NAMES = {0x1E: "APPLICATION BLOCK", 0x18: "APPLICATION UNBLOCK", 0x16: "CARD BLOCK",
              0x24: "PIN CHANGE/UNBLOCK", 0xDA: "PUT DATA", 0xDC: "UPDATE RECORD"}


def _script_name(command: bytes) -> str:
    if len(command) < 4:
        return "script command"
    name = _INS_NAMES.get(command[1], f"INS {command[1]:02X}")
    if command[1] == 0x24:
        name = "PIN UNBLOCK" if command[3] == 0 else "PIN CHANGE"
    elif command[1] == 0xDA:
        name += f" {command[2]:02X}{command[3]:02X}" if command[2] else f" {command[3]:02X}"
    elif command[1] == 0xDC:
        name += f" SFI {command[3] >> 3} record {command[2]}"
    return name


# -- the second GENERATE AC ---------------------------------------------------------------------------


def _second_generate_ac(state: TransactionState, channel: CardChannel, ask: int, extra: dict[int, bytes],
                        why: str, cda_check: CdaCheck | None) -> None:
    cdol2 = state.card_data.get(0x8D)
    if cdol2 is None:
        state.set_tvr("ICC data missing")
        state.outcome = "aborted: the card has no CDOL2 (8D)"
        _event(state, "Completion", BOOK_COMPLETION, "decision", state.outcome, bits=["ICC data missing"])
        return
    values = {**terminal_values(state), **extra}
    values[0x95] = bytes(state.tvr)  # the TVR as it is now
    values[0x9B] = bytes(state.tsi)
    data2 = build_dol(cdol2, values)
    state.cdol2_data = data2
    cda = (ask == TC and state.oda_method == "CDA" and bool(state.aip) and bool(state.aip[0] & AIP_CDA))
    p1 = ask | (0x10 if cda else 0)
    command = _case4(bytes((0x80, 0xAE, p1, 0x00)), data2)
    body, sw = _send(channel, command)
    _event(state, "Completion", BOOK_COMPLETION, "apdu",
           f"second GENERATE AC asking for {CID_NAMES[ask]}{' with CDA' if cda else ''}: {why}",
           command=command, response=body + sw.to_bytes(2, "big"))
    if sw != 0x9000:
        state.outcome = f"declined: second GENERATE AC answered SW {sw:04X}"
        _event(state, "Completion", BOOK_COMPLETION, "decision", state.outcome)
        return
    try:
        ac2 = parse_ac_response(body)
    except tlv.TlvError as exc:
        state.outcome = f"declined: {exc}"
        _event(state, "Completion", BOOK_COMPLETION, "decision", state.outcome)
        return
    state.ac2 = ac2
    got = ac2.get(0x9F27, b"")
    kind = got[0] & 0xC0 if got else -1
    if cda and kind == TC:
        if cda_check is None:
            _event(state, "Completion", BOOK_COMPLETION, "note",
                   "CDA signature of the second GENERATE AC not checked here (no CDA checker given)")
        else:
            ok, cda_why = cda_check(state, ac2, data2)
            if not ok:
                state.set_tvr("CDA failed")
                state.outcome = f"declined: CDA of the second GENERATE AC failed ({cda_why})"
                _event(state, "Completion", "EMV Book 2 §6.6", "decision", state.outcome, bits=["CDA failed"])
                return
            _event(state, "Completion", "EMV Book 2 §6.6", "check", f"CDA signature verified: {cda_why}")
    _issuer_auth_from_cvr(state, extra)
    # the same completion serves online responses and "unable to go online" (Y3/Z3)
    offline = bool(state.online_response.get("unable_to_go_online"))
    where = "offline (unable to go online)" if offline else "online"
    if kind == TC and ask == TC:
        state.outcome = f"approved {where}"
        text = f"the card answered a TC: approved {where}"
    elif kind == AAC:
        if ask == AAC:
            state.outcome = f"declined {where}"
        else:
            state.outcome = "declined by the card" + ("" if offline else " after online approval")
        text = f"the card answered an AAC: {state.outcome}"
    else:
        state.outcome = f"declined: the card answered {_cid_name(got)} to a request for {CID_NAMES[ask]}"
        text = state.outcome
    _event(state, "Completion", BOOK_COMPLETION, "decision", text)


def _issuer_auth_from_cvr(state: TransactionState, extra: dict[int, bytes]) -> None:
    """Issuer authentication inside the second GENERATE AC: the card's verdict
    is only in its CVR (Visa CVR byte 2 b4; M/Chip CVR byte 5 b3)."""
    if 0x91 not in extra or not (state.card_data.get(0x8D) and 0x91 in dict(tlv.parse_dol(state.card_data[0x8D]))):
        return
    iad = state.ac2.get(0x9F10, b"")
    failed: bool | None = None
    if len(iad) >= 7 and iad[0] == 0x06 and iad[3] == 0x03:
        failed = bool(iad[4] & 0x08)
    elif len(iad) >= 8 and iad[1] & 0xF0 == 0x10:
        failed = bool(iad[6] & 0x04)
    if failed:
        state.set_tvr("issuer authentication failed")
        _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "decision",
               "the card's CVR says issuer authentication failed (ARPC in CDOL2 refused)",
               bits=["issuer authentication failed"])
    elif failed is False:
        _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "check",
               "the card's CVR shows no issuer authentication failure (ARPC in CDOL2 accepted)")


# -- online processing ------------------------------------------------------------------------------


def process(state: TransactionState, channel: CardChannel, host: IssuerHost, *,
            scripts: Sequence[Script] = (), cda_check: CdaCheck | None = None,
            send_aac_online: bool = False) -> TransactionState:
    """Online processing through completion (after a first GENERATE AC ARQC).

    ``send_aac_online``: also report an AAC to the issuer (an issuer terminal
    unblocking a blocked application, which answers every request with an
    AAC): the host's scripts are sent, without issuer authentication and
    without a second GENERATE AC (the transaction is already complete).
    """
    cid = state.ac1.get(0x9F27, b"")
    kind = cid[0] & 0xC0 if cid else -1
    if kind != ARQC and not (send_aac_online and kind == AAC):
        _event(state, "Online processing", BOOK_ONLINE, "note",
               f"no online processing: the first GENERATE AC answered {_cid_name(cid)}")
        return state
    request = AuthorizationRequest.from_state(state)
    try:
        response = host.authorize(request, scripts)
    except HostError as exc:  # e.g. a script the issuer's shared keys cannot MAC: no answer at all
        _event(state, "Online processing", BOOK_ONLINE, "decision",
               f"the issuer host could not answer ({exc}): unable to go online")
        terminal = state.terminal
        return complete_offline(state, channel, tac_default=getattr(terminal, "tac_default", None),
                                cda_check=cda_check)
    open_up(state, host, request)
    _record_response(state, request, response)
    if kind == AAC:
        _event(state, "Online processing", BOOK_ONLINE, "decision",
               "the card declined offline (AAC); only the issuer's scripts are delivered")
        results = (_scripts(state, channel, response.script_templates, 0x71)
                   + _scripts(state, channel, response.script_templates, 0x72))
        if results:
            state.online_response["script_results"] = results
            state.card_data[0x9F5B] = results
        state.outcome = state.outcome or "declined offline by the card"
        return state

    arc = response.arc
    extra: dict[int, bytes] = {0x8A: arc}
    iad91 = response.issuer_authentication_data
    cdol2_tags = dict(tlv.parse_dol(state.card_data.get(0x8D, b""))) if 0x8D in state.card_data else {}
    supports = bool(state.aip) and bool(state.aip[0] & AIP_ISSUER_AUTH)
    if iad91:
        if 0x91 in cdol2_tags:
            extra[0x91] = iad91
            state.set_tsi("issuer authentication was performed")
            _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "decision",
                   f"the card's CDOL2 asks for 91: the issuer authentication data (ARPC method "
                   f"{response.arpc_method}) goes into the second GENERATE AC",
                   bits=["issuer authentication was performed"])
        elif supports:
            command = _case4(b"\x00\x82\x00\x00", iad91)[:-1]
            data, sw = _send(channel, command)
            state.set_tsi("issuer authentication was performed")
            if sw == 0x9000:
                _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "apdu",
                       "EXTERNAL AUTHENTICATE: the card accepted the ARPC", command=command,
                       response=data + sw.to_bytes(2, "big"), bits=["issuer authentication was performed"])
            else:
                state.set_tvr("issuer authentication failed")
                _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "decision",
                       f"EXTERNAL AUTHENTICATE refused the ARPC: SW {sw:04X}", command=command,
                       response=data + sw.to_bytes(2, "big"),
                       bits=["issuer authentication failed", "issuer authentication was performed"])
        else:
            _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "note",
                   "the AIP does not announce issuer authentication and CDOL2 has no 91: the ARPC is not sent")
    else:
        _event(state, "Issuer authentication", BOOK_ISSUER_AUTH, "note",
               "the host sent no issuer authentication data")

    templates = response.script_templates
    before = _scripts(state, channel, templates, 0x71)
    ask = TC if response.approved else AAC
    why = (f"issuer approved (ARC {arc.decode('ascii', 'replace')})" if ask == TC
           else f"issuer declined (ARC {arc.decode('ascii', 'replace')}): {response.reason}")
    _second_generate_ac(state, channel, ask, extra, why, cda_check)
    after = _scripts(state, channel, templates, 0x72)
    if before or after:
        state.online_response["script_results"] = before + after
        state.card_data[0x9F5B] = before + after
        _event(state, "Issuer script processing", BOOK_SCRIPTS, "note",
               "issuer script results (9F5B): " + (before + after).hex().upper())
    return state


def open_up(state: TransactionState, host: IssuerHost, request: AuthorizationRequest | None = None) -> None:
    """A teaching host (``host.explain``) opens the first GENERATE AC's cryptogram up
    in the trace: key derivations, the data MACed, padding, MAC, compared with the card's."""
    if not host.explain or not state.ac1.get(0x9F26):
        return
    request = request or AuthorizationRequest.from_state(state)
    source = ("recovered from the CDA signature 9F4B" if 0x9F4B in state.ac1
              else "in the first GENERATE AC response")
    for kind, text in host.explain_cryptogram(request, source):
        _event(state, STEP_OPENED, BOOK_OPENED, kind, text)


def _record_response(state: TransactionState, request: AuthorizationRequest,
                     response: AuthorizationResponse) -> None:
    state.online_response = response.as_dict()
    state.online_response["request"] = {
        "pan": request.masked_pan, "atc": request.atc, "cryptogram": request.cryptogram,
        "amount": request.amount,
    }
    verdict = {True: "verified", False: "NOT verified", None: "not checkable"}[response.arqc_valid]
    _event(state, "Online processing", BOOK_ONLINE, "check",
           f"issuer host: ARQC {verdict} — {response.arqc_reason}")
    _event(state, "Online processing", BOOK_ONLINE, "decision",
           f"issuer host {'approves' if response.approved else 'declines'} (ARC "
           f"{response.arc.decode('ascii', 'replace')}): {response.reason}"
           + (f"; {len(response.scripts_before)} script command(s) before and "
              f"{len(response.scripts_after)} after the final GENERATE AC"
              if response.scripts_before or response.scripts_after else ""))


# -- unable to go online -------------------------------------------------------------------------------


def complete_offline(state: TransactionState, channel: CardChannel, *, tac_default: bytes | None = None,
                     cda_check: CdaCheck | None = None, decline: bool = False) -> TransactionState:
    """The terminal could not go online (Book 3 §10.8): compare the TVR with
    IAC-default and TAC-default; any common bit → AAC (ARC Z3), else TC (Y3).
    ``decline``: the terminal declines whatever the codes say (AAC, Z3), e.g.
    certification leaving the card's offline counters untouched."""
    if tac_default is None:
        tac_default = getattr(state.terminal, "tac_default", None)
        if isinstance(tac_default, str):
            tac_default = bytes.fromhex(tac_default)
    iac_default = state.card_data.get(0x9F0D, b"\xFF" * 5)  # absent IAC-default: all ones (Book 3 §10.7)
    tvr = bytes(state.tvr)
    hits = [i for i in range(5) if tvr[i] & ((iac_default[i] if i < len(iac_default) else 0)
                                             | (tac_default[i] if tac_default and i < len(tac_default) else 0))]
    if decline:
        ask, arc = AAC, ARC_OFFLINE_DECLINED
        why = "unable to go online; the terminal declines (AAC, Z3) without asking for a TC"
    elif hits:
        ask, arc = AAC, ARC_OFFLINE_DECLINED
        why = (f"unable to go online; TVR {tvr.hex().upper()} meets IAC/TAC-default "
               f"(IAC-default {iac_default.hex().upper()}): decline offline (Z3)")
    else:
        ask, arc = TC, ARC_OFFLINE_APPROVED
        why = f"unable to go online; TVR {tvr.hex().upper()} meets neither IAC- nor TAC-default: approve offline (Y3)"
    _event(state, "Completion", BOOK_DEFAULT, "decision", why)
    state.online_response = {"arc": arc, "approved": ask == TC, "reason": why, "unable_to_go_online": True}
    _second_generate_ac(state, channel, ask, {0x8A: arc}, why, cda_check)
    if state.outcome.startswith("declined"):
        state.outcome = "declined offline (unable to go online)"
    return state


def response_dict(state: TransactionState) -> dict[str, Any]:
    """The host response as recorded, for reports."""
    return dict(state.online_response)
