"""Destructive key checks by issuer scripts, in transactions after the
certification transaction (``certify_card(destructive=True)``, ``--destructive``).

The certification transaction (:mod:`.cryptograms`) went online with a PUT DATA
(KEY-SMI-001) and, for an application with an offline PIN, a PIN CHANGE to the
record's own PIN after one wrong PIN (so that the counter reset shows). Then,
each a new transaction from SELECT through the kernel's steps (cardlab.tester.kernel)
and the issuer host (cardlab.tester.issuer_host, cardlab.tester.online):

T2  GET DATA 9F17 — a PIN CHANGE/UNBLOCK resets the counter (Book 3 §6.5.10) —
    and an offline VERIFY with the record's PIN: the card deciphered the new
    PIN under its SMC key (KEY-SMC-001); online, APPLICATION BLOCK;
T3  SELECT answers 6283 and GENERATE AC an AAC where an ARQC was asked (Book 3
    §6.5.1; KEY-SMI-002); the issuer's terminal takes that AAC online and the
    host answers APPLICATION UNBLOCK (Book 3 §6.5.2);
T4  SELECT 9000 and an ARQC again (KEY-SMI-003); the terminal declines offline.

The card ends as it was (PIN, PIN try counter, application not blocked), but
no longer fresh: its ATC counts the transactions and the online ones set the
last online ATC register (STATE-ATC-002 of a later certification).
"""

from __future__ import annotations

from datetime import datetime
from datetime import time as dtime

from .. import kernel, online
from ..exchange import send
from ..issuer_host import AAC, ARQC, HostError, Script, application_block, application_unblock, pin_unblock
from ..state import TransactionState
from ..tlv import TlvError, flatten
from .context import AMOUNT, REF_GET_DATA, STEP, AppContext
from .host import host_for, pin_change_host, script_keys_missing, script_sw
from .pin import verify_pin

CID = {ARQC: "ARQC", AAC: "AAC", 0x40: "TC", 0xC0: "RFU"}


def _begin(ctx: AppContext) -> tuple[TransactionState, int]:
    """A new transaction: SELECT the application (a blocked one answers 6283 with
    its FCI, Book 1 §12.4 — the issuer's terminal goes on), GPO, READ RECORDs.
    The state's outcome says when it could not go on."""
    st = kernel.new_state(ctx.terminal, amount=AMOUNT, when=datetime.combine(ctx.today, dtime(12, 0)))
    st.icc_public_key = ctx.state.icc_public_key  # the same card: for an enciphered PIN
    aid = ctx.app.aid
    fci, sw = send(st, ctx.ch, bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00", STEP, "EMV Book 1 §12.4",
                   f"SELECT {aid.hex().upper()}")
    try:
        found = flatten(fci) if sw in (0x9000, 0x6283) else {}
    except TlvError:
        found = {}
    if not found:
        st.outcome = f"aborted: SELECT answered {sw:04X}"
        return st, sw
    st.aid, st.fci, st.candidates = aid, fci, [{0x4F: aid}]
    st.card_data.update(found)
    for step in (kernel.initiate_application_processing, kernel.read_application_data):
        st = step(st, ctx.ch)
        if st.outcome:
            break
    return st, sw


def _ask_arqc(ctx: AppContext, st: TransactionState) -> int | None:
    """First GENERATE AC asking for an ARQC (no CDA); the CID type it answered."""
    st.extras["ask"] = ARQC
    st.outcome = ""
    kernel.first_generate_ac(st, ctx.ch)
    cid = st.ac1.get(0x9F27)
    return cid[0] & 0xC0 if cid else None


def _ptc(ctx: AppContext, st: TransactionState) -> int | None:
    data, sw = send(st, ctx.ch, bytes.fromhex("80CA9F1700"), STEP, REF_GET_DATA, "GET DATA PIN try counter (9F17)")
    return data[3] if sw == 0x9000 and len(data) >= 4 and data[:3] == b"\x9F\x17\x01" else None


def _online(ctx: AppContext, st: TransactionState, script: Script) -> int | None:
    """Online with one script (the host declines: the issuer's own transaction);
    the SW the script command got, None when it never reached the card."""
    host = host_for(ctx, "decline")
    if host is None:
        return None
    mark = len(st.script_results)
    try:
        online.process(st, ctx.ch, host, scripts=[script], send_aac_online=True)
    except HostError:
        return None
    return script_sw(st, mark).get({"application block": 0x1E, "application unblock": 0x18, "pin unblock": 0x24}[script.kind])


def restore_pin_counter(ctx: AppContext) -> None:
    """``--restore-pin-counter`` (:mod:`.pin`): the record's PIN was refused and the counter is
    below its limit. In a further transaction the issuer's terminal goes online and the host
    answers PIN UNBLOCK (PIN CHANGE/UNBLOCK P2 = 00, MAC under the SMI session key, Book 3
    §6.5.10: the counter reset, the PIN unchanged); the counter read afterwards proves it
    (KEY-PIN-002 with the counter before and after)."""
    c, app = ctx.c, ctx.app
    if ctx.restore_from is None:
        return
    limit, (before, when) = app.pin_try_limit, ctx.restore_from
    missing = script_keys_missing(ctx)
    if missing:
        c.check("KEY-PIN-002", False, f"PIN try counter {before} (limit {limit}) not restored: {missing}",
                str(limit), str(before))  # fmt: skip
        return
    st, _sel = _begin(ctx)
    cid = None if st.outcome else _ask_arqc(ctx, st)
    if cid is None:
        c.check("KEY-PIN-002", False, f"PIN try counter {before} (limit {limit}) not restored: PIN UNBLOCK not sent "
                f"({st.outcome or 'no cryptogram to go online with'})", str(limit), str(before))  # fmt: skip
        return
    sw = _online(ctx, st, pin_unblock())
    after = _ptc(ctx, st)
    c.check("KEY-PIN-002", sw == 0x9000 and after == limit,
            f"PIN try counter {before} {when}; PIN UNBLOCK (MAC under the SMI key) {_said(sw)}; "
            f"PIN try counter afterwards {'-' if after is None else after} (limit {limit})",
            str(limit), str(after))  # fmt: skip


def _said(sw: int | None) -> str:
    return f"answered {sw:04X}" if sw is not None else "not sent (the command never reached the card)"


def destructive_transactions(ctx: AppContext) -> None:
    """The last application step: T2–T4 when destructive checks are requested."""
    if ctx.destructive:
        after_certification(ctx)


def after_certification(ctx: AppContext) -> None:
    """T2–T4 of the module docstring; every rule they feed gets its verdict."""
    c, app = ctx.c, ctx.app
    if not app.offline_pin:
        c.na("KEY-SMC-001", "no offline PIN CVM in the profile: the card holds no PIN to change (the ICC SMC key has no other use)")
    elif pin_change_host(ctx) is None:
        c.na("KEY-SMC-001", script_keys_missing(ctx, pin_change=True) or f"PIN try limit {app.pin_try_limit}")
    if not (ctx.scripts_online or ctx.pin_lowered):
        return  # the certification transaction did not go online: its rules say why
    # -- T2: the PIN set by PIN CHANGE/UNBLOCK, then APPLICATION BLOCK ---------------------------
    st, _sel = _begin(ctx)
    if st.outcome:
        why = f"the next transaction stopped: {st.outcome}"
        if ctx.pin_lowered:
            c.check("KEY-PIN-002", False, why + " (the PIN try counter stays one below the limit)")
        if ctx.scripts_online:
            if pin_change_host(ctx) is not None:
                c.check("KEY-SMC-001", False, why)
            c.check("KEY-SMI-002", False, why)
            c.na("KEY-SMI-003", "APPLICATION BLOCK not sent")
        return
    _pin_after_change(ctx, st)
    if not ctx.scripts_online:
        return
    cid = _ask_arqc(ctx, st)
    if cid != ARQC:
        c.check("KEY-SMI-002", False, "no ARQC to carry APPLICATION BLOCK: GENERATE AC answered "
                + (CID.get(cid, "?") if cid is not None else st.outcome))  # fmt: skip
        c.na("KEY-SMI-003", "APPLICATION BLOCK not sent")
        return
    block_sw = _online(ctx, st, application_block())
    # -- T3: blocked: SELECT 6283, AAC; the issuer's terminal unblocks over that AAC ------------
    st3, sel3 = _begin(ctx)
    cid3 = None if st3.outcome else _ask_arqc(ctx, st3)
    c.check("KEY-SMI-002", block_sw == 0x9000 and sel3 == 0x6283 and cid3 == AAC,
            f"APPLICATION BLOCK (MAC under the SMI key) answered {_swt(block_sw)}{_why(block_sw)}; in the next "
            f"transaction SELECT answered {sel3:04X} and GENERATE AC (ARQC asked) "
            + (CID.get(cid3, "?") if cid3 is not None else f"was not reached ({st3.outcome})"),
            "9000; SELECT 6283; AAC", f"{_swt(block_sw)}; SELECT {sel3:04X}; {CID.get(cid3, '?') if cid3 is not None else '-'}")  # fmt: skip
    if cid3 is None:
        c.check("KEY-SMI-003", False, f"no cryptogram to carry APPLICATION UNBLOCK ({st3.outcome})"
                + ("; the application stays blocked" if sel3 == 0x6283 else ""))  # fmt: skip
        return
    unblock_sw = _online(ctx, st3, application_unblock())
    # -- T4: usable again ------------------------------------------------------------------------
    st4, sel4 = _begin(ctx)
    cid4 = None if st4.outcome else _ask_arqc(ctx, st4)
    if cid4 is not None:
        online.complete_offline(st4, ctx.ch, decline=True)  # the card's offline counters stay untouched
    c.check("KEY-SMI-003", unblock_sw == 0x9000 and sel4 == 0x9000 and cid4 == ARQC,
            f"APPLICATION UNBLOCK over the {CID.get(cid3, '?')} answered {_swt(unblock_sw)}{_why(unblock_sw)}; in the next "
            f"transaction SELECT answered {sel4:04X} and GENERATE AC (ARQC asked) "
            + (CID.get(cid4, "?") if cid4 is not None else f"was not reached ({st4.outcome})"),
            "9000; SELECT 9000; ARQC", f"{_swt(unblock_sw)}; SELECT {sel4:04X}; {CID.get(cid4, '?') if cid4 is not None else '-'}")  # fmt: skip


def _swt(sw: int | None) -> str:
    return "-" if sw is None else f"{sw:04X}"


def _why(sw: int | None) -> str:
    return {None: " (the command never reached the card)", 0x6988: " (secure messaging data incorrect: the MAC, SMI key)",
            0x6A80: " (wrong data: the new PIN block did not decipher: SMC key; a VIS PIN block also needs the AC key)"}.get(sw, "")  # fmt: skip


def _pin_after_change(ctx: AppContext, st: TransactionState) -> None:
    """KEY-SMC-001 from the PIN try counter and an offline VERIFY with the
    record's PIN, which also restores a counter lowered before the PIN CHANGE."""
    c, app = ctx.c, ctx.app
    changed = pin_change_host(ctx) is not None and ctx.scripts_online
    if not (changed or ctx.pin_lowered):
        return
    limit = app.pin_try_limit
    before = _ptc(ctx, st)
    sw = verify_pin(ctx, ctx.rec.pin, st)
    after = _ptc(ctx, st)
    if ctx.pin_lowered:
        c.check("KEY-PIN-002", sw == 0x9000 and after == limit, f"after the destructive checks VERIFY with the record's PIN "
                f"{_said(sw)} and the PIN try counter is {'-' if after is None else after}", str(limit), str(after))  # fmt: skip
    if not changed:
        return
    sent = ctx.pin_change_sw
    ok = sent == 0x9000 and sw == 0x9000
    parts = [f"PIN CHANGE/UNBLOCK with the record's PIN enciphered under the SMC session key answered {_swt(sent)}{_why(sent)}"]
    if ctx.pin_lowered:  # the counter was one below the limit: the command resets it (Book 3 §6.5.10)
        ok &= before == limit
        parts.append(f"PIN try counter in the next transaction {'-' if before is None else before}"
                     + (" (reset by the command)" if before == limit else f", not reset to {limit}"))
    parts.append(f"VERIFY with the record's PIN {_said(sw)}" + (
        " (the card took another PIN: the new PIN block deciphered wrong)" if sent == 0x9000 and sw != 0x9000 else ""))
    parts.append(f"PIN try counter {'-' if after is None else after} afterwards")
    c.check("KEY-SMC-001", ok, "; ".join(parts), f"9000; counter {limit}; VERIFY 9000",
            f"{_swt(sent)}; counter {'-' if before is None else before}; VERIFY {_swt(sw)}")
