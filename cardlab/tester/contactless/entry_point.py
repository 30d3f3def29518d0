"""Entry Point (EMV Contactless Book B §3): pre-processing of every combination with the
amount (limits, TTQ), the PPSE, the candidate list of AID–kernel combinations by
priority and the final SELECT; the kernel is then activated by :mod:`.run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import tlv
from ..channel import CardChannel
from ..exchange import case4, event, send
from ..kernel.selection import _entries  # the 61 directory entries of a BF0C (Book 1 §12.2.3; the PPSE alike)
from ..state import TransactionState
from . import qualifiers as Q
from .outcome import END_APPLICATION, TRY_ANOTHER_INTERFACE, Outcome
from .reader import Combination, ContactlessReader

REF_PRE = "EMV Contactless Book B §3.1.1"
REF_PPSE = "EMV Contactless Book B §3.3.2"
REF_FINAL = "EMV Contactless Book B §3.3.3"
S_PRE = "Entry Point: pre-processing"
S_SELECT = "Entry Point: combination selection"

PPSE = b"2PAY.SYS.DDF01"

#: the kernel a directory entry without 9F2A asks for, by RID (Book B §3.3.2.5 step 2C, Table 3-6)
DEFAULT_KERNEL_BY_RID = {
    bytes.fromhex("A000000004"): 2, bytes.fromhex("A000000003"): 3, bytes.fromhex("A000000025"): 4,
    bytes.fromhex("A000000065"): 5, bytes.fromhex("A000000152"): 6, bytes.fromhex("A000000333"): 7,
}


@dataclass
class Preprocessed:
    """A combination with its Entry Point pre-processing indicators (Book B §3.1.1)."""

    combination: Combination
    ttq: bytes  # the copy of the TTQ with byte 2 set for this transaction
    not_allowed: bool = False  # "Contactless Application Not Allowed"
    floor_limit_exceeded: bool = False
    cvm_limit_exceeded: bool = False
    zero_amount: bool = False
    why: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A combination the card and the reader both support (Book B §3.3.2.5 step 2E)."""

    entry: dict[int, bytes]  # the PPSE directory entry (4F, 50, 87, 9F2A …)
    pre: Preprocessed
    requested_kernel: int

    @property
    def aid(self) -> bytes:
        return self.entry[0x4F]

    @property
    def priority(self) -> int:
        p = self.entry.get(0x87, b"")
        return p[0] & 0x0F if p and p[0] & 0x0F else 16


def pre_process(combination: Combination, amount: int, terminal_floor_limit: int, unit: int = 100) -> Preprocessed:
    """Book B §3.1.1 for one combination and the amount, authorised (``unit``: one unit of
    the currency in minor units, for the status check)."""
    # §3.1.1.2: a copy of the configured TTQ, byte 2 b8 and b7 reset
    ttq = bytearray(combination.ttq)
    if ttq:
        ttq[Q.TTQ_TRANSIENT[0]] &= ~Q.TTQ_TRANSIENT[1] & 0xFF
    p = Preprocessed(combination, bytes(ttq))
    # status check: an amount of one unit of currency asks for an online cryptogram
    status_check = combination.status_check and amount == unit
    if amount == 0:
        if (ttq and ttq[0] & 0x08) or not combination.zero_amount_allowed:  # §3.1.1.11
            p.not_allowed = True
            p.why.append("zero amount on an offline-only reader: contactless application not allowed")
        else:
            p.zero_amount = True
            p.why.append("zero amount: an online cryptogram is required")
    limit = combination.transaction_limit
    if limit is not None and amount >= limit:  # §3.1.1.5
        p.not_allowed = True
        p.why.append(f"amount {amount} ≥ reader contactless transaction limit {limit}: not allowed")
    floor = combination.floor_limit if combination.floor_limit is not None else terminal_floor_limit
    if amount > floor:
        p.floor_limit_exceeded = True
        source = "reader contactless floor limit" if combination.floor_limit is not None else "terminal floor limit"
        p.why.append(f"amount {amount} > {source} {floor}")
    cvm = combination.cvm_limit
    if cvm is not None and amount >= cvm:
        p.cvm_limit_exceeded = True
        p.why.append(f"amount {amount} ≥ reader CVM required limit {cvm}")
    if status_check:
        p.why.append("status check (an amount of one currency unit): an online cryptogram is required")
    if ttq:
        if p.floor_limit_exceeded or status_check or p.zero_amount:
            ttq[1] |= 0x80  # online cryptogram required
        if p.cvm_limit_exceeded:
            ttq[1] |= 0x40  # CVM required
        p.ttq = bytes(ttq)
    return p


def pre_processing(state: TransactionState, reader: ContactlessReader) -> list[Preprocessed]:
    """Every combination pre-processed, each decision in the trace; Try Another Interface
    when none is allowed (§3.1.1.13)."""
    floor = getattr(state.terminal, "floor_limit", 0)
    out = []
    for combo in reader.combinations:
        unit = 10 ** int(getattr(state.terminal, "currency_exponent", 2))
        p = pre_process(combo, state.amount, floor, unit)
        out.append(p)
        ttq = f"; TTQ {Q.describe(p.ttq, Q.TTQ_BITS)}" if p.ttq else ""
        event(state, S_PRE, REF_PRE, "check",
              f"{combo.aid.hex().upper()} kernel {combo.kernel}: "
              f"{'; '.join(p.why) if p.why else 'within every limit'}{ttq}")
    return out


def requested_kernel(entry: dict[int, bytes]) -> int:
    """Book B §3.3.2.5 step 2C: 9F2A's first byte when present and not zero (the short
    kernel identifier of an international kernel), else the default kernel of the RID (0: any)."""
    kid = entry.get(0x9F2A, b"")
    if kid and kid != b"\x00":
        return kid[0] & 0x3F if kid[0] & 0xC0 == 0 else kid[0]
    return DEFAULT_KERNEL_BY_RID.get(entry.get(0x4F, b"")[:5], 0)


def build_candidates(state: TransactionState, channel: CardChannel,
                     pre: list[Preprocessed]) -> tuple[list[Candidate], Outcome | None]:
    """SELECT the PPSE and match each directory entry against the allowed combinations."""
    allowed = [p for p in pre if not p.not_allowed]
    if not allowed:
        return [], Outcome(TRY_ANOTHER_INTERFACE, "no combination is allowed for this amount (Book B §3.1.1.13)",
                           alternate_interface="contact chip")
    fci, sw = send(state, channel, case4(b"\x00\xA4\x04\x00", PPSE), S_SELECT, REF_PPSE,
                   "SELECT the Proximity Payment System Environment 2PAY.SYS.DDF01")
    if sw != 0x9000:
        return [], Outcome(END_APPLICATION, f"the PPSE cannot be selected (SW {sw:04X}, Book B §3.3.2.3)")
    try:
        entries = _entries(fci)
    except tlv.TlvError as exc:
        return [], Outcome(END_APPLICATION, f"the PPSE FCI is not BER-TLV ({exc})")
    candidates: list[Candidate] = []
    for entry in entries:
        adf = entry.get(0x4F)
        if not adf or not 5 <= len(adf) <= 16:
            event(state, S_SELECT, REF_PPSE, "check", "directory entry without a valid ADF name (4F): ignored")
            continue
        kernel = requested_kernel(entry)
        how = (f"9F2A {entry[0x9F2A].hex().upper()}" if 0x9F2A in entry
               else "no 9F2A: the RID's default kernel" if kernel else "no 9F2A and an unknown RID: any kernel")
        matched = [p for p in allowed if p.combination.matches(adf) and kernel in (0, p.combination.kernel)]
        if not matched:
            event(state, S_SELECT, REF_PPSE, "check",
                  f"{adf.hex().upper()} asks for kernel {kernel or 'any'} ({how}): no allowed combination")
            continue
        for p in matched:
            candidates.append(Candidate(entry, p, kernel))
            label = entry.get(0x50, b"").decode("ascii", "replace")
            prio = entry.get(0x87, b"").hex().upper() or "none"
            event(state, S_SELECT, REF_PPSE, "check",
                  f"candidate {adf.hex().upper()} {label!r} with kernel {p.combination.kernel} "
                  f"({how}; priority {prio})")
    if not candidates:
        return [], Outcome(END_APPLICATION, "no combination supported by both card and reader (Book B §3.3.2.7)",
                           message=0x1C)
    candidates.sort(key=lambda c: c.priority)  # §3.3.3.2: stable, equal priorities keep the PPSE's order
    order = ", ".join(f"{c.aid.hex().upper()}/kernel {c.pre.combination.kernel}" for c in candidates)
    event(state, S_SELECT, "EMV Contactless Book B §3.3.3.2", "decision", f"candidate list by priority: {order}")
    return candidates, None


def final_select(state: TransactionState, channel: CardChannel,
                 candidates: list[Candidate]) -> tuple[Candidate | None, Outcome | None]:
    """Book B §3.3.3: SELECT the first candidate; one that fails is removed and the next tried."""
    while candidates:
        cand = candidates[0]
        fci, sw = send(state, channel, case4(b"\x00\xA4\x04\x00", cand.aid), S_SELECT, REF_FINAL,
                       f"final SELECT of {cand.aid.hex().upper()} for kernel {cand.pre.combination.kernel}")
        try:
            found = tlv.flatten(fci) if sw == 0x9000 else {}
        except tlv.TlvError:
            found, sw = {}, -1
        if sw == 0x9000 and found.get(0x84, cand.aid) == cand.aid:
            state.aid, state.fci = cand.aid, fci
            state.card_data.clear()
            state.card_data.update(found)
            cl = state.extras.setdefault("contactless", {})
            cl.update(combination=cand.pre.combination, preprocessed=cand.pre, kernel=cand.pre.combination.kernel)
            if cand.pre.ttq:
                state.extras["terminal_data"][0x9F66] = cand.pre.ttq
            event(state, S_SELECT, REF_FINAL, "decision",
                  f"{cand.aid.hex().upper()} selected: kernel {cand.pre.combination.kernel} is activated"
                  + (f" with TTQ {Q.describe(cand.pre.ttq, Q.TTQ_BITS)}" if cand.pre.ttq else ""))
            return cand, None
        event(state, S_SELECT, REF_FINAL, "decision",
              f"{cand.aid.hex().upper()} cannot be selected (SW {sw & 0xFFFF:04X}): removed from the candidate list")
        candidates.pop(0)
    return None, Outcome(END_APPLICATION, "no candidate could be selected (Book B §3.3.3)", message=0x1C)
