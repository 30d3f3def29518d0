"""One contactless transaction: Entry Point, the kernel the combination names, the
outcome, and for an Online Request the authorization at the issuer host.

Contactless kernels 2 and 3 send no second GENERATE AC: the issuer's answer
(ARC, ARPC) is the reader's decision; issuer update processing is out of scope.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..channel import CardChannel
from ..exchange import event, send
from ..issuer_host import AuthorizationRequest, dol_values
from ..state import EventLog, TraceEvent, TransactionState
from ..terminal import TerminalProfile
from .entry_point import build_candidates, final_select, pre_processing
from .kernel2 import run_kernel2
from .kernel3 import run_kernel3
from .outcome import ONLINE_REQUEST, SELECT_NEXT, Outcome, finish
from .reader import ContactlessReader

S_ONLINE = "Online authorization"
REF_ONLINE = "EMV Contactless Book A §6 (Online Request); EMV Book 2 §8.1"


def authorization_request(state: TransactionState) -> AuthorizationRequest:
    """The request from the contactless data: the cryptogram's terminal data are the PDOL's
    (kernel 3) or CDOL1's (kernel 2); the PAN from 5A or, on qVSDC, track 2 (57)."""
    card = state.card_data
    pan = card.get(0x5A, b"").hex().upper().rstrip("F") or card.get(0x57, b"").hex().upper().split("D")[0]
    psn = card[0x5F34].hex()[-2:] if 0x5F34 in card else "00"
    if state.cdol1_data:
        values = dol_values(card.get(0x8C, b""), state.cdol1_data)
        ac = state.ac1
    else:
        values = dol_values(card.get(0x9F38, b""), state.pdol_data)
        ac = {t: card[t] for t in (0x9F36, 0x9F26, 0x9F27, 0x9F10) if t in card}
    cid = ac.get(0x9F27) or bytes((state.extras.get("contactless", {}).get("cid", 0x80),))
    return AuthorizationRequest(pan=pan, psn=psn, atc=ac.get(0x9F36, b""),
                                unpredictable_number=values.get(0x9F37) or state.unpredictable_number,
                                cryptogram=ac.get(0x9F26, b""), cid=cid, iad=ac.get(0x9F10, b""),
                                aip=state.aip or card.get(0x82, b""), dol_values=values, aid=state.aid)


def go_online(state: TransactionState, host: Any) -> TransactionState:
    request = authorization_request(state)
    response = host.authorize(request)
    state.online_response = response.as_dict() if hasattr(response, "as_dict") else {}
    verdict = {True: "verified", False: "WRONG", None: "not checkable"}[response.arqc_valid]
    event(state, S_ONLINE, REF_ONLINE, "check", f"issuer host: cryptogram {verdict} — {response.arqc_reason}")
    arc = response.arc.decode("ascii", "replace") if isinstance(response.arc, bytes) else str(response.arc)
    state.outcome = "approved online" if response.approved else "declined online"
    event(state, S_ONLINE, REF_ONLINE, "decision",
          f"issuer {'approves' if response.approved else 'declines'} (ARC {arc}): {response.reason}; UI request "
          f"{'03 Approved' if response.approved else '07 Not Authorised'}")
    return state


def _activate(state: TransactionState, channel: CardChannel) -> TransactionState:
    from .atr import contactless_atr

    state = contactless_atr(state, channel.atr())
    # PC/SC Part 3 §3.2.2.1.3: GET DATA (UID), answered by the reader, not by the card
    uid, sw = send(state, channel, bytes.fromhex("FFCA000000"), "Card detection (contactless)",
                   "PC/SC Part 3 §3.2.2.1.3", "reader pseudo-APDU GET DATA: the card's UID (ISO/IEC 14443-3)")
    size = {4: "single", 7: "double", 10: "triple"}.get(len(uid), "unusual")
    event(state, "Card detection (contactless)", "ISO/IEC 14443-3 §6.5.4", "note",
          f"UID {uid.hex().upper()} ({len(uid)} bytes: {size} size)" if sw == 0x9000
          else f"no UID from the reader (SW {sw:04X})")
    return state


def run_contactless(channel: CardChannel, terminal: TerminalProfile, *, amount: int, amount_other: int = 0,
                    transaction_type: int = 0x00, pin: str | None = None, online_host: Any = None,
                    when: datetime | None = None, seed: int | None = None,
                    on_event: Callable[[TransactionState, TraceEvent], None] | None = None) -> TransactionState:
    """One contactless transaction (Book B §3 then the kernel); ``state.outcome`` says how it
    ended and ``state.extras["contactless"]["outcome"]`` holds the kernel's :class:`Outcome`."""
    from ..kernel.start import new_state

    reader: ContactlessReader | None = getattr(terminal, "contactless", None)
    state = new_state(terminal, amount=amount, amount_other=amount_other, transaction_type=transaction_type,
                      when=when, seed=seed)
    state.extras["contactless"] = {"reader": reader}
    if on_event is not None and isinstance(state.events, EventLog):
        live = state
        state.events.listener = lambda ev: on_event(live, ev)
    if reader is None:
        state.outcome = "aborted: the terminal profile has no contactless section"
        event(state, "Entry Point", "EMV Contactless Book B §3.1", "decision", state.outcome)
        return state
    pre = pre_processing(state, reader)  # Book B §3.1: before the card is even activated
    if any(not p.not_allowed for p in pre):
        state = _activate(state, channel)  # Book B §3.2 protocol activation
    candidates, outcome = build_candidates(state, channel, pre)
    base_terminal = terminal
    while outcome is None:
        cand, outcome = final_select(state, channel, candidates)
        if cand is None:
            break
        state.terminal = base_terminal
        kernel = cand.pre.combination.kernel
        outcome = run_kernel3(state, channel, reader) if kernel == 3 else run_kernel2(state, channel, reader, pin=pin)
        if outcome.status == SELECT_NEXT:  # Book B §3.5.1.2: the next combination
            event(state, "Entry Point", "EMV Contactless Book B §3.5", "decision", outcome.reason)
            candidates.pop(0)
            outcome = None
    assert outcome is not None
    state = finish(state, outcome)
    if outcome.status == ONLINE_REQUEST:
        if online_host is not None and reader.online_capable:
            state = go_online(state, online_host)
        else:
            state.outcome = "declined (unable to go online)"
            event(state, S_ONLINE, REF_ONLINE, "decision", "online request but no issuer host: declined "
                  "(unable to go online); UI request '07' Not Authorised")
    return state


__all__ = ["Outcome", "authorization_request", "go_online", "run_contactless"]
