"""Step 1, application selection (EMV Book 1 §12.3–§12.4): PSE, PPSE or the
list of AIDs, the candidate list by priority and the final SELECT.
"""

from __future__ import annotations

from .. import tlv
from ..channel import CardChannel
from ..exchange import case4, event, send
from ..state import TransactionState
from ..terminal import TerminalProfile
from .common import REF_SELECT, S_SELECT, abort

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"


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
        abort(state, S_SELECT, REF_SELECT, "the card is blocked or does not support SELECT (6A81)")
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
                abort(state, S_SELECT, REF_SELECT, "the card is blocked or does not support SELECT (6A81)")
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
        why, readable = f"SW {sw:04X}", True
        try:
            found = tlv.flatten(fci) if sw == 0x9000 else {}
        except tlv.TlvError as exc:
            found, why, readable = {}, f"SW {sw:04X} but the FCI is not BER-TLV: {exc}", False
        if sw == 0x9000 and readable and found.get(0x84, adf) == adf:
            state.aid, state.fci = adf, fci
            state.card_data.update(found)
            label = (found.get(0x9F12) or found.get(0x50) or b"").decode("ascii", "replace")
            event(state, S_SELECT, "EMV Book 1 §12.4", "decision", f"application {adf.hex().upper()} {label!r} selected")
            return state
        event(state, S_SELECT, "EMV Book 1 §12.4", "decision",
              f"{adf.hex().upper()} cannot be selected ({why}): removed from the candidate list")
        state.candidates.pop(0)
    return abort(state, S_SELECT, "EMV Book 1 §12.4", "no mutually supported application (not accepted)")


def select_application(state: TransactionState, channel: CardChannel) -> TransactionState:
    state = build_candidate_list(state, channel)
    if state.outcome:
        return state
    return final_selection(state, channel)
