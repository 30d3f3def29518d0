"""The first steps of an application's certification: selection (the PSE
directory entry, the SELECT and its FCI), the card's state before the
transaction by GET DATA, and GET PROCESSING OPTIONS — each by the terminal
kernel (cardlab.tester.kernel), the rules comparing what it got with the
source data.
"""

from __future__ import annotations

from .. import kernel
from ..sources import encode_dol
from ..tlv import TlvError, flatten, parse
from .context import AppContext, Stop, get_data, hex_or_dash, sent_since, sw_of

#: the highest ATC a fresh card may show (STATE-ATC-001)
FRESH_ATC_MAX = 10


def select_application(ctx: AppContext) -> None:
    """Application selection by the kernel (Book 1 §12): the PSE directory
    (DIR-001), then the profile's AID (LIFE-APP-001) and its FCI (FCI-001)."""
    c, st, app = ctx.c, ctx.state, ctx.app
    mark = len(st.events)
    kernel.build_candidate_list(st, ctx.ch)
    _directory(ctx, mark)
    st.outcome = ""
    st.candidates = [{0x4F: app.aid}]
    mark = len(st.events)
    kernel.final_selection(st, ctx.ch)
    selects = sent_since(st, mark, 0xA4)
    if not selects:  # never a status word the card did not send
        c.check("LIFE-APP-001", False, f"SELECT {app.aid.hex().upper()} not sent: {st.outcome or 'the kernel chose no candidate'}",
                "9000", "not sent")  # fmt: skip
        raise Stop("SELECT not sent")
    sw = sw_of(selects[0])
    data = selects[0].response[:-2]
    c.check("LIFE-APP-001", sw == 0x9000, "SELECT answered 9000" if sw == 0x9000 else
            f"SELECT {app.aid.hex().upper()} answered {sw:04X}" + (": application blocked" if sw == 0x6283 else ""),
            "9000", f"{sw:04X}")  # fmt: skip
    fci: dict[int, bytes] = {}
    try:
        top = parse(data)
        ok = len(top) == 1 and top[0].tag == 0x6F
        inner = {t.tag: t for t in top[0].children()} if ok else {}
        ok = ok and 0x84 in inner and 0xA5 in inner
        c.check("FCI-001", ok, "FCI template 6F with 84 and A5" if ok else "FCI not 6F {84, A5}", "6F{84,A5}", hex_or_dash(data))
        if ok:
            fci[0x84] = inner[0x84].value
            fci.update(flatten(inner[0xA5].raw))
    except TlvError as exc:
        c.check("FCI-001", False, f"FCI not BER-TLV: {exc}")
    ctx.found["FCI"] = fci
    if st.outcome:
        if sw != 0x9000 or not fci:
            raise Stop(f"application not selectable (SW {sw:04X})")
        # the kernel refused the FCI (e.g. another DF name): certification goes on to name every defect
        st.outcome, st.aid, st.fci = "", app.aid, data
        st.card_data.update(fci)


def card_state(ctx: AppContext) -> None:
    """The application's state before the transaction by GET DATA (Book 3 §6.5.7): ATC, last
    online ATC, PIN try counter, log format. The counters are judged against the card's own
    history (a card that lived — transactions, earlier certifications — stays certifiable),
    or as fresh from perso when the profile says ``card.certify_as: fresh``."""
    c, app = ctx.c, ctx.app
    atc, atc_sw = get_data(ctx, 0x9F36, "application transaction counter")
    lo, lo_sw = get_data(ctx, 0x9F13, "last online ATC register")
    last = int.from_bytes(lo, "big") if lo is not None else None
    if atc is None:
        c.na("STATE-ATC-001", f"GET DATA 9F36 answered {atc_sw:04X}")
    else:
        ctx.atc = n = int.from_bytes(atc, "big")
        if ctx.fresh:
            c.check("STATE-ATC-001", n <= FRESH_ATC_MAX, f"ATC {n} (fresh from perso: ≤ {FRESH_ATC_MAX})",
                    f"≤ {FRESH_ATC_MAX}", str(n))  # fmt: skip
        else:
            bad = ("exhausted: no further transaction is possible (Book 3 §10.6.3)" if n >= 0xFFFF else
                   f"below the last online ATC {last}: the counter went back" if last is not None and n < last else "")
            c.check("STATE-ATC-001", not bad, f"ATC {n}" + (f", last online ATC {last}" if last is not None else "")
                    + (f": {bad}" if bad else ": consistent with the card's history"),
                    f"< FFFF, ≥ {last if last is not None else 0}", str(n))  # fmt: skip
    if last is None:
        c.na("STATE-ATC-002", f"GET DATA 9F13 answered {lo_sw:04X}")
    elif ctx.fresh:
        c.check("STATE-ATC-002", last == 0, f"last online ATC {last} (fresh from perso: 0)", "0", str(last))
    else:
        ok = ctx.atc is None or last <= ctx.atc
        c.check("STATE-ATC-002", ok, f"last online ATC {last}, ATC {'-' if ctx.atc is None else ctx.atc}"
                + ("" if ok else ": a last online transaction after the current ATC"),
                f"≤ {'-' if ctx.atc is None else ctx.atc}", str(last))  # fmt: skip
    if app.offline_pin:
        ptc, ptc_sw = get_data(ctx, 0x9F17, "PIN try counter")
        c.check("CVM-006", ptc is not None, f"GET DATA 9F17 answered {ptc_sw:04X}")
        limit = app.pin_try_limit
        if ptc is None:
            c.check("STATE-PTC-001", False, f"PIN try counter not readable (SW {ptc_sw:04X})", str(limit), "-")
        elif ctx.fresh:
            c.check("STATE-PTC-001", ptc[0] == limit, f"PIN try counter {ptc[0]}, limit {limit} (fresh from perso)",
                    str(limit), str(ptc[0]))  # fmt: skip
        else:
            c.check("STATE-PTC-001", 1 <= ptc[0] <= limit, f"PIN try counter {ptc[0]}, limit {limit}"
                    + (": the PIN is blocked" if ptc[0] == 0 else ""), f"1..{limit}", str(ptc[0]))  # fmt: skip
    else:
        c.na("CVM-006", "no offline PIN CVM in the profile")
        c.na("STATE-PTC-001", "no offline PIN CVM in the profile")
    if app.log_sfi is not None:
        lf, lf_sw = get_data(ctx, 0x9F4F, "log format")
        exp_lf = encode_dol(list(app.log_format))
        c.check("LOG-001", lf == exp_lf, "log format by GET DATA 9F4F", hex_or_dash(exp_lf), hex_or_dash(lf) if lf is not None else f"SW {lf_sw:04X}")
    else:
        c.na("LOG-001", "the profile has no log")


def initiate(ctx: AppContext) -> None:
    """GET PROCESSING OPTIONS by the kernel (Book 3 §10.1); the rules read its response."""
    c, st, app = ctx.c, ctx.state, ctx.app
    mark = len(st.events)
    kernel.initiate_application_processing(st, ctx.ch)
    gpos = sent_since(st, mark, 0xA8)
    if not gpos:
        why = st.outcome or "the kernel did not send it"
        c.check("LIFE-APP-002", False, f"GET PROCESSING OPTIONS not sent: {why}", "9000", "not sent")
        raise Stop(f"GPO not sent: {why}")
    sw = sw_of(gpos[0])
    data = gpos[0].response[:-2]
    if sw == 0x6985:
        c.check("LIFE-APP-002", False, "GET PROCESSING OPTIONS answered 6985: not personalized (or not usable)", "9000", "6985")
        raise Stop("GPO refused")
    c.check("LIFE-APP-002", sw == 0x9000, f"GET PROCESSING OPTIONS answered {sw:04X}", "9000", f"{sw:04X}")
    if sw != 0x9000:
        raise Stop(f"GPO answered {sw:04X}")
    gpo: dict[int, bytes] = {}
    try:
        top = parse(data)
        if top and top[0].tag == 0x80:
            v = top[0].value
            gpo = {0x82: v[:2], 0x94: v[2:]}
            fmt = 1
        elif top and top[0].tag == 0x77:
            kids = top[0].children()
            gpo = {t.tag: t.value for t in kids}
            fmt = 2
            tags = sorted(t.tag for t in kids)
            c.check("GPO-002", tags == [0x82, 0x94], f"format 2 holds {' '.join(f'{t:X}' for t in tags)}", "82 94", " ".join(f"{t:X}" for t in tags))
        else:
            fmt = 0
        if fmt != 2:
            c.na("GPO-002", "format 1 response")
        c.check("GPO-001", fmt == app.response_format, f"GPO response format {fmt}", str(app.response_format), str(fmt))
    except TlvError as exc:
        c.check("GPO-001", False, f"GPO response not BER-TLV: {exc}")
    ctx.found["GPO"] = gpo
    if st.outcome:  # the kernel refused the response: the rules name the defect, certification goes on
        st.outcome = ""
        st.aip, st.afl = gpo.get(0x82, b""), gpo.get(0x94, b"")


# -- the PSE directory entry ----------------------------------------------------------------


def _directory(ctx: AppContext, mark: int) -> None:
    """DIR-001 from the kernel's candidate list built from the PSE directory (Book 1 §12.3.2)."""
    c, app, st = ctx.c, ctx.app, ctx.state
    pse = [e for e in sent_since(st, mark, 0xA4) if kernel.PSE in e.command]
    if not pse or sw_of(pse[0]) != 0x9000:
        c.na("DIR-001", f"no PSE (SELECT answered {sw_of(pse[0]):04X})" if pse else
             f"no PSE (SELECT of the PSE not sent: {st.outcome or 'the terminal selects by AID list'})")  # fmt: skip
        return
    bad = [e.text for e in st.events[mark:] if e.kind == "check" and e.text.startswith("directory record")]
    if bad:
        c.check("DIR-001", False, "; ".join(bad))
    by_pse = any(e.kind == "check" and "found by the PSE directory" in e.text and app.aid.hex().upper() in e.text
                 for e in st.events[mark:])  # fmt: skip
    mine = [e for e in st.candidates if e.get(0x4F) == app.aid]
    if not by_pse or not mine:
        c.check("DIR-001", False, f"{app.aid.hex().upper()} not in the PSE directory")
        return
    e = mine[0]
    ok = e.get(0x50) == app.label.encode() and e.get(0x87, bytes((app.priority,))) == bytes((app.priority,))
    c.check("DIR-001", ok, "PSE entry label and priority", f"{app.label} / {app.priority}", f"{e.get(0x50, b'').decode(errors='replace')} / {hex_or_dash(e.get(0x87))}")
