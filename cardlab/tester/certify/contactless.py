"""Contactless certification (the ``CL-*`` rules, issue 16): for an application whose
profile has a ``contactless`` section, the tester's own Entry Point and kernel
(:mod:`cardlab.tester.contactless`) run on the card's contactless interface — one
transaction at the certification amount, one above the reader's floor limit — and
the contact interface reads the ATC before and after: one counter for both.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from datetime import time as dtime
from typing import Any

from .. import tlv
from ..contactless import run_contactless
from ..contactless.outcome import APPROVED, CVM_NA, CVM_NONE, ONLINE_REQUEST
from ..contactless.reader import Combination, ContactlessReader
from ..exchange import NoStatusWord, case4, send
from ..rules import CL_RULE_IDS
from ..sources import ContactlessSpec, encode_dol
from ..state import TransactionState
from .context import AMOUNT, STEP, AppContext, get_data
from .host import host_for

#: a reader for an application the terminal profile does not configure (Book B §3.1 defaults of cardlab)
DEFAULT_LIMITS = {"transaction_limit": 100000, "floor_limit": 5000, "cvm_limit": 5000}
DEFAULT_TTQ = bytes.fromhex("36000080")


def _combination(ctx: AppContext, spec: ContactlessSpec) -> tuple[Combination, str]:
    reader = getattr(ctx.terminal, "contactless", None)
    if isinstance(reader, ContactlessReader):
        for combo in reader.combinations:
            if combo.matches(ctx.app.aid) or combo.aid == ctx.app.aid:
                if combo.kernel == spec.kernel:
                    return replace(combo, partial=False, aid=ctx.app.aid), "the terminal profile's"
    return (Combination(ctx.app.aid, spec.kernel, False, DEFAULT_TTQ if spec.kernel == 3 else b"",
                        transaction_limit=DEFAULT_LIMITS["transaction_limit"], floor_limit=DEFAULT_LIMITS["floor_limit"],
                        cvm_limit=DEFAULT_LIMITS["cvm_limit"]), "cardlab's default")


def _ppse_entry(state: TransactionState, aid: bytes) -> dict[int, bytes] | None:
    for ev in state.events:
        if ev.kind == "apdu" and ev.command[1:2] == b"\xA4" and b"2PAY.SYS.DDF01" in ev.command:
            try:
                for item in tlv.parse(ev.response[:-2]):
                    for entry in _entries(item):
                        if entry.get(0x4F) == aid:
                            return entry
            except tlv.TlvError:
                return None
    return None


def _entries(item: tlv.Tlv) -> list[dict[int, bytes]]:
    if item.tag == 0x61:
        return [{c.tag: c.value for c in item.children()}]
    out: list[dict[int, bytes]] = []
    if item.constructed:
        for child in item.children():
            out.extend(_entries(child))
    return out


def _atc(state: TransactionState) -> int | None:
    raw = state.card_data.get(0x9F36) or state.ac1.get(0x9F36)
    return int.from_bytes(raw, "big") if raw else None


def _contact_atc(ctx: AppContext, reselect: bool) -> int | None:
    """The ATC on the contact interface: GET DATA 9F36 (after SELECT of the application again
    when the card has been in the contactless field since)."""
    try:
        if reselect:
            _data, sw = send(ctx.state, ctx.ch, case4(b"\x00\xA4\x04\x00", ctx.app.aid), STEP, "EMV Book 1 §12.4",
                             "SELECT the application again on the contact interface")
            if sw != 0x9000:
                return None
        value, sw = get_data(ctx, 0x9F36, "ATC on the contact interface")
    except NoStatusWord:
        return None
    return int.from_bytes(value, "big") if value else None


def contactless_rules(ctx: AppContext) -> None:
    c, spec = ctx.c, ctx.app.contactless
    if spec is None:
        for rid in CL_RULE_IDS:
            c.na(rid, "the profile has no contactless section for this application")
        return
    channel = ctx.contactless
    if channel is None:
        for rid in CL_RULE_IDS:
            c.na(rid, "no contactless interface was given to the certification")
        return
    combo, whose = _combination(ctx, spec)
    terminal = replace(ctx.terminal, contactless=ContactlessReader((combo,), True, True))
    host = host_for(ctx)
    when = datetime.combine(ctx.today, dtime(12, 0))
    before = _contact_atc(ctx, reselect=False)
    if before is None:
        before = _atc(ctx.state) if ctx.state.ac1 else ctx.atc
    amounts = [AMOUNT]
    floor = combo.floor_limit
    if floor is not None and (combo.transaction_limit is None or floor + 1 < combo.transaction_limit):
        amounts.append(floor + 1)
    runs: list[tuple[int, TransactionState]] = []
    for n, amount in enumerate(amounts):
        try:
            s = run_contactless(channel, terminal, amount=amount, online_host=host, when=when, seed=n + 1)
        except (NoStatusWord, tlv.TlvError) as exc:
            c.check("CL-OUT-001", False, f"contactless transaction of {amount} stopped: {type(exc).__name__}: {exc}")
            return
        ctx.state.events.extend(s.events)
        runs.append((amount, s))
    after = _contact_atc(ctx, reselect=True)
    _judge(ctx, spec, combo, whose, runs, before, after, host)


def _judge(ctx: AppContext, spec: ContactlessSpec, combo: Combination, whose: str,
           runs: list[tuple[int, TransactionState]], before: int | None, after: int | None, host: Any) -> None:
    c = ctx.c
    first = runs[0][1]
    outcomes = [(a, s, s.extras.get("contactless", {}).get("outcome")) for a, s in runs]
    # CL-OUT-001
    o1 = outcomes[0][2]
    c.check("CL-OUT-001", o1 is not None and o1.status in (APPROVED, ONLINE_REQUEST),
            f"{whose} reader, amount {runs[0][0]}: outcome {o1.status if o1 else 'none'}"
            + (f" ({o1.reason})" if o1 else ""), "Approved or Online Request", o1.status if o1 else "none")
    # CL-PPSE-001
    entry = _ppse_entry(first, ctx.app.aid)
    if entry is None:
        c.check("CL-PPSE-001", False, "the PPSE does not list the application", f"{ctx.app.aid.hex().upper()}", "absent")
    else:
        kid = entry.get(0x9F2A)
        c.check("CL-PPSE-001", kid is not None and kid[:1] == bytes((spec.kernel,)),
                f"PPSE entry 9F2A {kid.hex().upper() if kid else 'absent'}", f"{spec.kernel:02X}",
                kid.hex().upper() if kid else "absent")
    # CL-PDOL-001
    pdol = first.card_data.get(0x9F38)
    want = encode_dol(list(spec.pdol))
    if pdol is None and not first.aid:
        c.check("CL-PDOL-001", False, "the application was not selected on the contactless interface")
    else:
        tags = [t for t, _ in tlv.parse_dol(pdol or b"")]
        need = [0x9F66] + ([0x9F37, 0x9F02, 0x5F2A] if spec.fdda else []) if spec.kernel == 3 else []
        lacking = [f"{t:X}" for t in need if t not in tags]
        c.check("CL-PDOL-001", pdol == want and not lacking,
                f"contactless PDOL {pdol.hex().upper() if pdol else 'absent'}"
                + (f"; lacks {', '.join(lacking)}" if lacking else ""), want.hex().upper(),
                pdol.hex().upper() if pdol else "absent")
    # CL-OBJ-001
    for amount, s, _o in outcomes:
        gpo = s.extras.get("contactless", {}).get("gpo") or {}
        if not gpo:
            c.check("CL-OBJ-001", False, f"amount {amount}: no GPO answer")
            continue
        if spec.kernel == 3:
            need3 = {0x82: gpo, 0x9F36: gpo, 0x9F26: gpo, 0x9F10: gpo, 0x57: s.card_data}
            if spec.fdda and (s.card_data.get(0x9F27, b"\x00")[0] & 0xC0) == 0x40:
                need3.update({0x9F69: s.card_data, 0x9F4B: s.card_data})
            missing = [f"{t:X}" for t, where in need3.items() if t not in where]
            fmt = s.extras["contactless"].get("gpo_format")
            c.check("CL-OBJ-001", fmt == 2 and not missing, f"amount {amount}: GPO format {fmt}"
                    + (f", missing {', '.join(missing)}" if missing else ", every object present"))
        else:
            aip = s.aip
            missing = [f"{t:X}" for t in (0x94, 0x5A, 0x5F24, 0x8C, 0x8D) if t not in s.card_data]
            emv_mode = len(aip) == 2 and bool(aip[1] & 0x80)
            c.check("CL-OBJ-001", emv_mode and not missing, f"amount {amount}: AIP {aip.hex().upper() or 'absent'}"
                    f" ({'EMV mode' if emv_mode else 'no EMV mode bit'})"
                    + (f", missing {', '.join(missing)}" if missing else ""))
    # CL-CTQ-001 / -002
    if spec.kernel != 3:
        c.na("CL-CTQ-001", "kernel 2 has no CTQ")
        c.na("CL-CTQ-002", "kernel 2 has no TTQ/CTQ")
    else:
        ctq = first.card_data.get(0x9F6C)
        if spec.ctq is None and ctq is None:
            c.na("CL-CTQ-001", "neither the profile nor the card gives a CTQ")
        else:
            c.check("CL-CTQ-001", ctq == spec.ctq, f"9F6C {ctq.hex().upper() if ctq else 'absent'}",
                    spec.ctq.hex().upper() if spec.ctq else "absent", ctq.hex().upper() if ctq else "absent")
        for amount, s, _o in outcomes:
            ttq = s.extras.get("terminal_data", {}).get(0x9F66, bytes(4))
            cid = s.extras.get("contactless", {}).get("cid")
            if ttq[1] & 0x80:
                c.check("CL-CTQ-002", cid != 0x40, f"amount {amount}: TTQ {ttq.hex().upper()} asks for an online "
                        f"cryptogram; the card answered CID {cid if cid is None else f'{cid:02X}'}", "ARQC or AAC")
            cad, ctq_s = s.card_data.get(0x9F69), s.card_data.get(0x9F6C)
            if cad is not None and ctq_s is not None:
                c.check("CL-CTQ-002", cad[5:7] == ctq_s, f"amount {amount}: CTQ in 9F69 {cad[5:7].hex().upper()}, "
                        f"9F6C {ctq_s.hex().upper()}")
    # CL-LIMIT-001
    if len(outcomes) < 2:
        c.na("CL-LIMIT-001", f"{whose} reader has no floor limit below its transaction limit")
    else:
        amount, _s, o2 = outcomes[1]
        ok = o2 is not None and o2.status == ONLINE_REQUEST
        c.check("CL-LIMIT-001", ok, f"amount {amount} above the floor limit {combo.floor_limit}: outcome "
                f"{o2.status if o2 else 'none'}", ONLINE_REQUEST, o2.status if o2 else "none")
        if combo.cvm_limit is not None and amount >= combo.cvm_limit and o2 is not None and ok:
            c.check("CL-LIMIT-001", o2.cvm not in (CVM_NONE, CVM_NA),
                    f"amount {amount} ≥ the CVM required limit {combo.cvm_limit}: CVM {o2.cvm}", "a CVM", o2.cvm)
    # CL-ODA-001
    if spec.kernel == 3 and not spec.fdda:
        c.na("CL-ODA-001", "the profile's kernel 3 application does not do fDDA")
    else:
        judged = False
        for amount, s, _o in outcomes:
            if s.oda_ok is None:
                continue
            judged = True
            what = "fDDA" if spec.kernel == 3 else "CDA"
            why = [ev.text for ev in s.events if ev.kind == "decision" and (what in ev.text)]
            c.check("CL-ODA-001", bool(s.oda_ok) and s.oda_method == ("fDDA" if spec.kernel == 3 else "CDA"),
                    f"amount {amount}: {why[-1] if why else what + (' verified' if s.oda_ok else ' failed')}")
        if not judged:
            c.na("CL-ODA-001", "no contactless answer carried a signature to verify")
    # CL-AC-001
    online = [(a, s) for a, s, o in outcomes if o is not None and o.status == ONLINE_REQUEST]
    if not online:
        c.na("CL-AC-001", "no contactless transaction asked for an online authorization")
    elif host is None:
        c.not_run("CL-AC-001", "the key store has no IMK-AC for this application")
    for amount, s in online if host is not None else []:
        valid = s.online_response.get("arqc_valid")
        c.check("CL-AC-001", valid is True, f"amount {amount}: {s.online_response.get('arqc_reason', 'not sent')}")
    # CL-ATC-001
    atcs = [_atc(s) for _a, s in runs]
    if before is None or any(a is None for a in atcs):
        c.not_run("CL-ATC-001", "the contact ATC (GET DATA 9F36 or the contact cryptogram) or a contactless ATC "
                  "could not be read")
    else:
        expected = [before + 1 + i for i in range(len(atcs))]
        c.check("CL-ATC-001", atcs == expected, f"contact ATC {before}, then contactless {atcs}",
                ", ".join(map(str, expected)), ", ".join(map(str, atcs)))
        if after is not None:
            c.check("CL-ATC-001", after == atcs[-1], f"contact ATC read again afterwards: {after}",
                    str(atcs[-1]), str(after))
