"""The terminal kernel: one EMV contact transaction, step by step.

Each step is ``step(state, channel) -> state``; it sends its commands through
:func:`cardlab.tester.exchange.send` (recorded as trace events), sets TVR and TSI bits
exactly as EMV 4.4 Book 3 says and records each decision with its reason.
A step that must end the transaction sets ``state.outcome`` to
``"aborted: …"``; :func:`run_transaction` stops there.

Steps, in order (Book 3 §10, Book 4 §6.3):

1. :func:`select_application` — Book 1 §12 (PSE / PPSE / list of AIDs,
   candidate list by priority, final selection);
2. :func:`initiate_application_processing` — Book 3 §10.1 (PDOL, GPO);
3. :func:`read_application_data` — Book 3 §10.2 and the ODA input §10.3;
4. :func:`offline_data_authentication` — Book 3 §10.3, Book 2 §5–§6 (``cardlab.tester.oda``);
5. :func:`processing_restrictions` — Book 3 §10.4;
6. :func:`cardlab.tester.cvm.cardholder_verification` — Book 3 §10.5;
7. :func:`cardlab.tester.risk.terminal_risk_management` — Book 3 §10.6;
8. :func:`cardlab.tester.risk.terminal_action_analysis` — Book 3 §10.7;
9. :func:`first_generate_ac` — Book 3 §10.8, §9.3; CDA Book 2 §6.6;
10. online processing, issuer authentication, scripts and completion
    (``cardlab.tester.online``) — Book 3 §10.9–§10.11.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from datetime import date, datetime
from types import ModuleType
from typing import Any

from . import tlv
from .channel import CardChannel
from .exchange import case4, event, send
from .online import parse_ac_response
from .state import EventLog, TraceEvent, TransactionState
from .terminal import TerminalProfile

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"

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

#: numeric (format n) terminal data objects: padded on the left, cut on the left (Book 3 §5.4)
NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x5F36, 0x9A, 0x9F21, 0x9C, 0x9F15, 0x9F41,
                          0x9F42, 0x5F28, 0x5F24, 0x5F25, 0x5F34, 0x9F11, 0x9F44})
#: compressed numeric (cn): padded on the right with FF
CN_TAGS = frozenset({0x5A, 0x9F20})

#: AIP byte 1 (Book 3 Annex C1)
AIP_SDA, AIP_DDA, AIP_CVM, AIP_TRM, AIP_ISSUER_AUTH, AIP_CDA = 0x40, 0x20, 0x10, 0x08, 0x04, 0x01

AAC, TC, ARQC = 0x00, 0x40, 0x80
CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC", 0xC0: "RFU"}

#: tests (or a caller) may replace ODA: ``(state, channel, ca_keys) -> state``
oda_hook: Callable[[TransactionState, CardChannel, Any], TransactionState] | None = None


def optional_module(name: str) -> ModuleType | None:
    """A sibling part of the tester written by another engineer, if present."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def _abort(state: TransactionState, step: str, ref: str, why: str, tvr: tuple[str, ...] = ()) -> TransactionState:
    state.outcome = f"aborted: {why}"
    event(state, step, ref, "decision", f"transaction terminated: {why}", tvr=tvr)
    return state


# -- DOLs ---------------------------------------------------------------------------------


def fit(tag: int, value: bytes, length: int) -> bytes:
    """One DOL entry's value at ``length`` (Book 3 §5.4): numeric padded/cut on
    the left, cn padded with FF on the right, others padded with 00 / cut on the right."""
    if len(value) == length:
        return value
    if tag in NUMERIC_TAGS:
        return value[-length:] if len(value) > length else bytes(length - len(value)) + value
    if len(value) > length:
        return value[:length]
    return value + (b"\xFF" if tag in CN_TAGS else b"\x00") * (length - len(value))


def dol_values(state: TransactionState) -> dict[int, bytes]:
    """Every value a DOL may ask for: the card's data, then the terminal's
    (which wins), with the current TVR, TSI and CVM results."""
    values = dict(state.card_data)
    values.update(state.extras.get("terminal_data", {}))
    values[0x95] = bytes(state.tvr)
    values[0x9B] = bytes(state.tsi)
    values[0x9F34] = state.cvm_result
    values[0x9F37] = state.unpredictable_number
    return values


def build_dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    """DOL data (Book 3 §5.4): unknown or constructed tags give zeros."""
    out = b""
    for tag, n in tlv.parse_dol(dol):
        first = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")[0]
        v = values.get(tag)
        out += bytes(n) if v is None or first & 0x20 else fit(tag, v, n)
    return out


# -- start ----------------------------------------------------------------------------------


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


# -- 1. application selection (Book 1 §12) ---------------------------------------------------


def _select(state: TransactionState, channel: CardChannel, name: bytes, text: str,
            next_occurrence: bool = False) -> tuple[bytes, int]:
    p2 = 0x02 if next_occurrence else 0x00
    return send(state, channel, case4(bytes((0x00, 0xA4, 0x04, p2)), name), S_SELECT, REF_SELECT, text)


def _matches(terminal: TerminalProfile, adf: bytes) -> bool:
    """Book 1 §12.3.1: equal to a terminal AID, or longer and beginning with one
    whose partial-selection flag is set."""
    for entry in terminal.aids:
        if adf == entry.aid or (entry.partial and len(adf) > len(entry.aid) and adf.startswith(entry.aid)):
            return True
    return False


def _entries(data: bytes) -> list[dict[int, bytes]]:
    """61 directory entries (Book 1 §12.2.3) of a record or a BF0C."""
    out: list[dict[int, bytes]] = []
    for item in tlv.parse(data):
        if item.tag == 0x61:
            entry: dict[int, bytes] = {}
            for child in item.children():
                entry.setdefault(child.tag, child.value)
            out.append(entry)
        elif item.constructed:
            out.extend(_entries(item.value))
    return out


def _add_candidate(state: TransactionState, entry: dict[int, bytes], how: str) -> None:
    adf = entry.get(0x4F, b"")
    if any(c.get(0x4F) == adf for c in state.candidates):
        return
    terminal: TerminalProfile = state.terminal
    if not _matches(terminal, adf):
        event(state, S_SELECT, REF_SELECT, "check", f"{adf.hex().upper()} ({how}) is not supported by this terminal")
        return
    priority = entry.get(0x87, b"")
    if priority and priority[0] & 0x80 and not terminal.cardholder_confirmation:
        event(state, S_SELECT, REF_SELECT, "check",
              f"{adf.hex().upper()} requires cardholder confirmation (87 b8) and the terminal cannot ask: left out")
        return
    state.candidates.append(entry)
    label = entry.get(0x50, b"").decode("ascii", "replace")
    event(state, S_SELECT, REF_SELECT, "check",
          f"candidate {adf.hex().upper()} {label!r} (priority {priority.hex().upper() or 'none'}) found by {how}")


def _directory(state: TransactionState, channel: CardChannel, sfi: int, depth: int) -> None:
    for rec in range(1, 256):
        data, sw = send(state, channel, bytes((0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00)), S_SELECT, REF_SELECT,
                        f"READ RECORD {rec} of the directory (SFI {sfi})")
        if sw == 0x6A83:
            return
        if sw != 0x9000:
            event(state, S_SELECT, REF_SELECT, "check", f"directory record {rec}: SW {sw:04X}; directory abandoned")
            return
        try:
            items = tlv.parse(data)
        except tlv.TlvError as exc:
            event(state, S_SELECT, REF_SELECT, "check", f"directory record {rec} is not BER-TLV ({exc})")
            return
        if len(items) != 1 or items[0].tag != 0x70:
            event(state, S_SELECT, REF_SELECT, "check", f"directory record {rec} is not a 70 template")
            return
        for entry in _entries(items[0].value):
            if 0x9D in entry and depth < 3:  # a DDF below: its own directory (Book 1 §12.3.2 step 4)
                fci, sw2 = _select(state, channel, entry[0x9D], f"SELECT DDF {entry[0x9D].hex().upper()}")
                sub = tlv.flatten(fci).get(0x88) if sw2 == 0x9000 else None
                if sub:
                    _directory(state, channel, sub[0] & 0x1F, depth + 1)
            elif 0x4F in entry:
                _add_candidate(state, entry, f"the PSE directory (record {rec})")


def _pse(state: TransactionState, channel: CardChannel) -> bool:
    """Book 1 §12.3.2. False when the PSE cannot be used (then the AID list)."""
    fci, sw = _select(state, channel, PSE, "SELECT the Payment System Environment 1PAY.SYS.DDF01")
    if sw == 0x6A81:
        _abort(state, S_SELECT, REF_SELECT, "the card is blocked or does not support SELECT (6A81)")
        return True
    if sw != 0x9000:
        event(state, S_SELECT, REF_SELECT, "decision", f"no PSE (SW {sw:04X}): the terminal uses its list of AIDs")
        return False
    try:
        sfi = tlv.flatten(fci).get(0x88)
    except tlv.TlvError:
        sfi = None
    if not sfi:
        event(state, S_SELECT, REF_SELECT, "decision", "PSE FCI without a directory SFI (88): list of AIDs")
        return False
    _directory(state, channel, sfi[0] & 0x1F, 0)
    return bool(state.candidates)


def _ppse(state: TransactionState, channel: CardChannel) -> bool:
    fci, sw = _select(state, channel, PPSE, "SELECT the Proximity Payment System Environment 2PAY.SYS.DDF01")
    if sw != 0x9000:
        event(state, S_SELECT, REF_SELECT, "decision", f"no PPSE (SW {sw:04X}): the terminal uses its list of AIDs")
        return False
    try:
        items = tlv.parse(fci)
        entries = _entries(items[0].value) if items else []
    except tlv.TlvError:
        entries = []
    for entry in entries:
        if 0x4F in entry:
            _add_candidate(state, entry, "the PPSE directory (BF0C)")
    return bool(state.candidates)


def _aid_list(state: TransactionState, channel: CardChannel) -> None:
    """Book 1 §12.3.3: SELECT each terminal AID; partial matches and next occurrences."""
    terminal: TerminalProfile = state.terminal
    for entry in terminal.aids:
        next_occurrence = False
        for _ in range(16):
            fci, sw = _select(state, channel, entry.aid, f"SELECT {entry.aid.hex().upper()}"
                              + (" (next occurrence)" if next_occurrence else ""), next_occurrence)
            if sw == 0x6A81 and not next_occurrence:
                _abort(state, S_SELECT, REF_SELECT, "the card is blocked or does not support SELECT (6A81)")
                return
            if sw not in (0x9000, 0x6283):
                break
            try:
                found = tlv.flatten(fci)
            except tlv.TlvError:
                break
            df = found.get(0x84, b"")
            if sw == 0x6283:
                event(state, S_SELECT, REF_SELECT, "check", f"{df.hex().upper()} is blocked (6283): not a candidate")
            elif df == entry.aid or (entry.partial and df.startswith(entry.aid)):
                cand: dict[int, bytes] = {0x4F: df}
                cand.update({t: found[t] for t in (0x50, 0x87, 0x9F12) if t in found})
                _add_candidate(state, cand, "the list of AIDs" + (" (partial selection)" if df != entry.aid else ""))
            else:
                event(state, S_SELECT, REF_SELECT, "check",
                      f"{df.hex().upper()} does not match {entry.aid.hex().upper()} (partial selection "
                      f"{'allowed' if entry.partial else 'not allowed'})")
            if df == entry.aid:
                break  # an exact match: no further occurrence (Book 1 §12.3.3 step 4)
            next_occurrence = True


def _priority(entry: dict[int, bytes]) -> int:
    p = entry.get(0x87, b"")
    return p[0] & 0x0F if p and p[0] & 0x0F else 16


def build_candidate_list(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    state.candidates = []
    used = False
    if terminal.selection == "pse":
        used = _pse(state, channel)
    elif terminal.selection == "ppse":
        used = _ppse(state, channel)
    if state.outcome:
        return state
    if not used:
        _aid_list(state, channel)
    state.candidates.sort(key=_priority)  # stable: equal priorities keep the card's order
    if state.candidates:
        order = ", ".join(f"{c[0x4F].hex().upper()} (priority {_priority(c) if _priority(c) < 16 else 'none'})"
                          for c in state.candidates)
        event(state, S_SELECT, "EMV Book 1 §12.4", "decision", f"candidate list by priority: {order}")
    return state


def final_selection(state: TransactionState, channel: CardChannel) -> TransactionState:
    """Book 1 §12.4: SELECT the best candidate; a failing one is removed and the next tried."""
    while state.candidates:
        cand = state.candidates[0]
        adf = cand[0x4F]
        fci, sw = _select(state, channel, adf, f"final SELECT of {adf.hex().upper()}")
        try:
            found = tlv.flatten(fci) if sw == 0x9000 else {}
        except tlv.TlvError:
            found, sw = {}, 0x6F00
        if sw == 0x9000 and found.get(0x84, adf) == adf:
            state.aid, state.fci = adf, fci
            state.card_data.update(found)
            label = (found.get(0x9F12) or found.get(0x50) or b"").decode("ascii", "replace")
            event(state, S_SELECT, "EMV Book 1 §12.4", "decision", f"application {adf.hex().upper()} {label!r} selected")
            return state
        event(state, S_SELECT, "EMV Book 1 §12.4", "decision",
              f"{adf.hex().upper()} cannot be selected (SW {sw:04X}): removed from the candidate list")
        state.candidates.pop(0)
    return _abort(state, S_SELECT, "EMV Book 1 §12.4", "no mutually supported application (not accepted)")


def select_application(state: TransactionState, channel: CardChannel) -> TransactionState:
    state = build_candidate_list(state, channel)
    if state.outcome:
        return state
    return final_selection(state, channel)


# -- 2. initiate application processing (Book 3 §10.1) -----------------------------------------


def initiate_application_processing(state: TransactionState, channel: CardChannel) -> TransactionState:
    """GET PROCESSING OPTIONS with the PDOL data; 6985 → back to final selection."""
    while True:
        state.tvr[:] = bytes(5)
        state.tsi[:] = bytes(2)
        pdol = state.card_data.get(0x9F38, b"")
        values = dol_values(state)
        state.pdol_data = build_dol(pdol, values) if pdol else b""
        named = ", ".join(f"{t:X}" for t, _ in tlv.parse_dol(pdol)) if pdol else "no PDOL: empty 83"
        data, sw = send(state, channel, case4(b"\x80\xA8\x00\x00", tlv.encode(0x83, state.pdol_data)),
                        S_INITIATE, REF_INITIATE, f"GET PROCESSING OPTIONS with the PDOL data ({named})")
        if sw == 0x6985:
            event(state, S_INITIATE, REF_INITIATE, "decision",
                  "conditions of use not satisfied (6985): the application is removed, back to final selection")
            state.candidates = [c for c in state.candidates if c.get(0x4F) != state.aid]
            for tag in list(state.card_data):
                del state.card_data[tag]
            state = final_selection(state, channel)
            if state.outcome:
                return state
            continue
        if sw != 0x9000:
            return _abort(state, S_INITIATE, REF_INITIATE, f"GET PROCESSING OPTIONS answered SW {sw:04X}")
        try:
            items = tlv.parse(data)
            if len(items) != 1:
                raise tlv.TlvError("more than one object")
            if items[0].tag == 0x80:
                aip, afl = items[0].value[:2], items[0].value[2:]
            elif items[0].tag == 0x77:
                inner = {t.tag: t.value for t in items[0].children()}
                aip, afl = inner[0x82], inner[0x94]
                state.card_data.update({k: v for k, v in inner.items() if k not in (0x82, 0x94)})
            else:
                raise tlv.TlvError(f"template {items[0].tag:X}")
        except (tlv.TlvError, KeyError) as exc:
            return _abort(state, S_INITIATE, REF_INITIATE, f"GPO response format error ({exc})")
        if len(aip) != 2 or not afl or len(afl) % 4:
            return _abort(state, S_INITIATE, REF_INITIATE, "AIP or AFL of the wrong length")
        state.aip, state.afl = aip, afl
        state.card_data[0x82], state.card_data[0x94] = aip, afl
        event(state, S_INITIATE, REF_INITIATE, "decision", f"AIP {aip.hex().upper()} ({aip_text(aip)}); "
              f"AFL names {len(afl) // 4} file(s)")
        return state


def aip_text(aip: bytes) -> str:
    names = [(AIP_SDA, "SDA"), (AIP_DDA, "DDA"), (AIP_CVM, "cardholder verification"),
             (AIP_TRM, "terminal risk management"), (AIP_ISSUER_AUTH, "issuer authentication"), (AIP_CDA, "CDA")]
    got = [n for bit, n in names if aip and aip[0] & bit]
    return "supports " + ", ".join(got) if got else "supports nothing optional"


# -- 3. read application data (Book 3 §10.2, §10.3) ---------------------------------------------

MANDATORY = {0x5F24: "application expiration date", 0x5A: "PAN", 0x8C: "CDOL1", 0x8D: "CDOL2"}


def read_application_data(state: TransactionState, channel: CardChannel) -> TransactionState:
    afl = state.afl
    oda = b""
    from_records: set[int] = set()
    for i in range(0, len(afl), 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or n_oda > last - first + 1:
            return _abort(state, S_READ, REF_READ, f"AFL entry {afl[i:i + 4].hex().upper()} is invalid")
        for rec in range(first, last + 1):
            for_oda = rec < first + n_oda
            data, sw = send(state, channel, bytes((0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00)), S_READ, REF_READ,
                            f"READ RECORD SFI {sfi} record {rec}" + (" (for offline data authentication)"
                                                                      if for_oda else ""))
            if sw != 0x9000:
                return _abort(state, S_READ, REF_READ, f"READ RECORD SFI {sfi} record {rec}: SW {sw:04X}")
            state.records[(sfi, rec)] = data
            try:
                items = tlv.parse(data)
            except tlv.TlvError as exc:
                return _abort(state, S_READ, REF_READ, f"record SFI {sfi}/{rec} is not BER-TLV ({exc})")
            is70 = len(items) == 1 and items[0].tag == 0x70
            if sfi <= 10 and not is70:
                return _abort(state, S_READ, REF_READ, f"record SFI {sfi}/{rec} is not a 70 template")
            if for_oda:
                if sfi <= 10:
                    oda += items[0].value
                else:
                    oda += data
                    if not is70:
                        state.extras["oda_input_error"] = f"record SFI {sfi}/{rec} for ODA is not a 70 template"
            found = tlv.flatten(items[0].value) if is70 else {}
            for tag, value in found.items():
                if tag in from_records:
                    return _abort(state, S_READ, REF_READ,
                                  f"data object {tag:X} appears twice in the records (Book 3 §10.2)")
                from_records.add(tag)
                state.card_data[tag] = value
    missing = [f"{t:X} ({n})" for t, n in MANDATORY.items() if t not in state.card_data]
    if missing:
        return _abort(state, S_READ, "EMV Book 3 §7.2", "mandatory data missing: " + ", ".join(missing),
                      tvr=("ICC data missing",))
    tag_list = state.card_data.get(0x9F4A)
    if tag_list is not None:
        if tag_list != b"\x82":
            state.extras["oda_input_error"] = f"SDA tag list 9F4A = {tag_list.hex().upper()}: only 82 is allowed"
    state.oda_data = oda  # the record part; ODA appends the values 9F4A names (the AIP)
    event(state, S_READ, "EMV Book 3 §10.3", "note",
          f"{len(state.records)} record(s) read; static data to be authenticated: {len(oda)} bytes")
    return state


# -- 4. offline data authentication -----------------------------------------------------------


def choose_oda(state: TransactionState) -> str:
    """Book 3 §10.3: CDA if both support it, else DDA, else SDA, else none."""
    terminal: TerminalProfile = state.terminal
    aip = state.aip[0] if state.aip else 0
    for bit, name in ((AIP_CDA, "CDA"), (AIP_DDA, "DDA"), (AIP_SDA, "SDA")):
        if aip & bit and terminal.supports(name):
            return name
    return ""


FAILED_BIT = {"SDA": "SDA failed", "DDA": "DDA failed", "CDA": "CDA failed"}


def offline_data_authentication(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    method = choose_oda(state)
    if not method:
        event(state, S_ODA, REF_ODA, "decision", "neither CDA, DDA nor SDA is supported by both card and terminal",
              tvr=("offline data authentication was not performed",))
        return state
    state.oda_method = method
    error = state.extras.get("oda_input_error")
    if error:
        state.oda_ok = False
        event(state, S_ODA, REF_ODA, "decision", f"{method} fails before any signature is checked: {error}",
              tvr=(FAILED_BIT[method],), tsi=("offline data authentication was performed",))
        return state
    authenticate = oda_hook
    if authenticate is None:
        module = optional_module("cardlab.tester.oda")
        authenticate = getattr(module, "authenticate", None) if module is not None else None
    if authenticate is None:
        state.oda_method = ""
        event(state, S_ODA, REF_ODA, "decision", f"{method} chosen but the ODA module is not available",
              tvr=("offline data authentication was not performed",))
        return state
    if oda_hook is not None:
        event(state, S_ODA, REF_ODA, "decision", f"{method} chosen (AIP {state.aip.hex().upper()}, terminal "
              f"capabilities {terminal.capabilities.hex().upper()})")
        state = authenticate(state, channel, terminal.ca_key_map())
    else:  # cardlab.tester.oda reads the CA keys of the terminal profile itself
        state = authenticate(state, channel, None)
    if method == "CDA" and state.oda_ok is False:
        state.extras["cda_not_requested"] = True
    return state


# -- 5. processing restrictions (Book 3 §10.4) -----------------------------------------------------


def _yymmdd(value: bytes) -> date | None:
    text = value.hex()
    if len(text) != 6 or not text.isdigit():
        return None
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:])
    try:
        return date(2000 + yy if yy < 50 else 1900 + yy, mm, dd)  # Book 3 §10.4.3 (YY < 50 → 20YY)
    except ValueError:
        return None


def processing_restrictions(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    card = state.card_data
    # application version number (§10.4.1)
    card_version = card.get(0x9F08)
    terminal_version = terminal.version_for(state.aid)
    if card_version is None:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "check", "no ICC application version (9F08): not compared")
    elif card_version != terminal_version:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "decision",
              f"ICC application version {card_version.hex().upper()} differs from the terminal's "
              f"{terminal_version.hex().upper()}", tvr=("ICC and terminal have different application versions",))
    else:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "check", f"application versions agree ({card_version.hex()})")
    # application usage control (§10.4.2)
    auc = card.get(0x9F07)
    if auc is not None and len(auc) >= 2:
        why = _auc_refusal(state, terminal, auc, card.get(0x5F28))
        if why:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.2", "decision", f"AUC {auc.hex().upper()}: {why}",
                  tvr=("requested service not allowed for card product",))
        else:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.2", "check", f"AUC {auc.hex().upper()} allows this transaction")
    # dates (§10.4.3)
    today: date = state.extras.get("date") or date.today()
    effective = card.get(0x5F25)
    if effective is not None:
        d = _yymmdd(effective)
        if d is None or today < d:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.3", "decision",
                  f"application effective date {effective.hex()} is after today {today:%y%m%d}",
                  tvr=("application not yet effective",))
    expiry = card.get(0x5F24)
    if expiry is not None:
        d = _yymmdd(expiry)
        if d is None or today > d:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.3", "decision",
                  f"application expiration date {expiry.hex()} is before today {today:%y%m%d}",
                  tvr=("expired application",))
    return state


def _auc_refusal(state: TransactionState, terminal: TerminalProfile, auc: bytes, issuer_country: bytes | None) -> str:
    """The reason the AUC refuses the transaction, or ""."""
    b1, b2 = auc[0], auc[1]
    if terminal.is_atm and not b1 & 0x02:
        return "not valid at ATMs"
    if not terminal.is_atm and not b1 & 0x01:
        return "not valid at terminals other than ATMs"
    if issuer_country is None:
        return ""  # the issuer country code is needed for the rest (Book 3 §10.4.2)
    domestic = issuer_country == state.extras["terminal_data"][0x9F1A]
    where = "domestic" if domestic else "international"
    kind = state.transaction_type
    if kind in (0x01, 0x17):  # cash, cash disbursement
        if not b1 & (0x80 if domestic else 0x40):
            return f"{where} cash transactions are not allowed"
    elif kind in (0x00, 0x09):  # goods and services (with cashback)
        goods = 0x20 if domestic else 0x10
        services = 0x08 if domestic else 0x04
        if not b1 & (goods | services):
            return f"{where} goods and services are not allowed"
        if kind == 0x09 or state.amount_other:
            if not b2 & (0x80 if domestic else 0x40):
                return f"{where} cashback is not allowed"
    return ""


# -- 9. first GENERATE AC and CDA ---------------------------------------------------------------


def cda_check(state: TransactionState, response: dict[int, bytes], dol_data2: bytes = b"",
              *, second: bool = True) -> tuple[bool, str]:
    """Book 2 §6.6.2: recover the SDAD (9F4B) with the ICC key, compare its CID
    with 9F27, its transaction data hash code with SHA-1(PDOL data ‖ CDOL1
    data ‖ [CDOL2 data] ‖ the response's other objects); the AC is the signed one."""
    import hashlib

    oda = optional_module("cardlab.tester.oda")
    verify = getattr(oda, "verify_cda", None) if oda is not None and oda_hook is None else None
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
        return _abort(state, S_GENAC, REF_GENAC, f"GENERATE AC answered SW {sw:04X}")
    try:
        ac = parse_ac_response(data)
    except tlv.TlvError as exc:
        return _abort(state, S_GENAC, REF_GENAC, str(exc))
    if not {0x9F27, 0x9F36}.issubset(ac) or (0x9F26 not in ac and 0x9F4B not in ac):
        return _abort(state, S_GENAC, REF_GENAC, "GENERATE AC response lacks 9F27, 9F36 or the cryptogram",
                      tvr=("ICC data missing",))
    state.ac1 = ac
    got = ac[0x9F27][0] & 0xC0
    if got == 0xC0 or (ask == AAC and got != AAC) or (ask == ARQC and got == TC):
        return _abort(state, S_GENAC, "EMV Book 3 §9.3", f"the card answered {CID_NAMES[got]} to a request for "
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


def _cda_for_online(state: TransactionState, response: dict[int, bytes], data2: bytes) -> tuple[bool, str]:
    return cda_check(state, response, data2, second=True)


def online_and_completion(state: TransactionState, channel: CardChannel, host: Any) -> TransactionState:
    """After an ARQC: the issuer host through ``cardlab.tester.online``, or the
    default-action completion when the terminal cannot go online."""
    online = optional_module("cardlab.tester.online")
    if online is None:
        return _abort(state, S_ONLINE, "EMV Book 3 §10.9", "the online module is not available")
    terminal: TerminalProfile = state.terminal
    cda = None if state.extras.get("cda_not_requested") else _cda_for_online
    if host is not None and terminal.online_capable:
        result: TransactionState = online.process(state, channel, host, cda_check=cda)
        return result
    why = "no issuer host given" if host is None else "the terminal is offline only"
    event(state, S_ONLINE, "EMV Book 3 §10.8", "decision", f"unable to go online ({why})")
    result = online.complete_offline(state, channel, tac_default=terminal.tac_default, cda_check=cda)
    return result


# -- the whole transaction ---------------------------------------------------------------------


def run_transaction(channel: CardChannel, terminal: TerminalProfile, *, amount: int, pin: str | None = None,
                    online_host: Any = None, force_online: bool = False, amount_other: int = 0,
                    transaction_type: int = 0x00, when: datetime | None = None,
                    seed: int | None = None,
                    on_event: Callable[[TransactionState, TraceEvent], None] | None = None) -> TransactionState:
    """One contact transaction from application selection to completion.

    ``pin`` is what the cardholder types when asked (never recorded);
    ``seed`` fixes the unpredictable number and random selection; ``when``
    fixes the transaction date and time; ``on_event`` hears every trace event
    as it happens (``cardlab.tester.trace.LiveTrace.on_event``).
    """
    from .cvm import cardholder_verification
    from .risk import terminal_action_analysis, terminal_risk_management

    state = new_state(terminal, amount=amount, amount_other=amount_other, transaction_type=transaction_type,
                      when=when, seed=seed, force_online=force_online)
    if on_event is not None and isinstance(state.events, EventLog):
        live = state
        state.events.listener = lambda event: on_event(live, event)
    # power-on first: the ATR decoded byte by byte (cardlab.tester.atr)
    from .atr import answer_to_reset

    state = answer_to_reset(state, channel.atr(), str(getattr(channel, "protocol", "") or ""))
    steps: list[Callable[[TransactionState, CardChannel], TransactionState]] = [
        select_application,
        initiate_application_processing,
        read_application_data,
        offline_data_authentication,
        processing_restrictions,
        lambda s, c: cardholder_verification(s, c, pin=pin),
        terminal_risk_management,
        terminal_action_analysis,
        first_generate_ac,
    ]
    for step in steps:
        state = step(state, channel)
        if state.outcome:
            return state
    state = online_and_completion(state, channel, online_host)
    return state
