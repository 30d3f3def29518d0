"""The application's records: READ APPLICATION DATA by the terminal kernel
(EMV Book 3 §10.2) against the AFL (AFL-*, DATA-DUP-001), the static data
to be authenticated it builds for ODA, and the transaction log file (LOG-002,
LOG-003, Book 3 Annex D).
"""

from __future__ import annotations

from .. import kernel, oda
from ..exchange import send
from ..tlv import TlvError, flatten, parse
from .context import STEP, AppContext, hex_or_dash, sent_since, sw_of


def read_records(ctx: AppContext) -> None:
    """READ APPLICATION DATA by the kernel (Book 3 §10.2); the rules check each
    record it read and the static data to be authenticated it built."""
    c, st = ctx.c, ctx.state
    afl = st.afl
    mark = len(st.events)
    kernel.read_application_data(st, ctx.ch)
    stopped, st.outcome = st.outcome, ""
    answers = {(e.command[3] >> 3, e.command[2]): sw_of(e) for e in sent_since(st, mark, 0xB2) if len(e.command) > 3}
    ok1 = len(afl) > 0 and len(afl) % 4 == 0
    c.check("AFL-001", ok1, f"AFL of {len(afl)} bytes", "4n bytes, n ≥ 1", hex_or_dash(afl))
    seen: set[tuple[int, int]] = set()
    dup = False
    for i in range(0, len(afl) - len(afl) % 4, 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        c.check("AFL-002", 1 <= sfi <= 30 and first >= 1 and last >= first and afl[i] & 7 == 0, f"entry {afl[i:i + 4].hex().upper()}")
        c.check("AFL-003", n_oda <= max(0, last - first + 1), f"entry {afl[i:i + 4].hex().upper()}: {n_oda} ODA records of {last - first + 1}")
        for rec in range(first, last + 1):
            if (sfi, rec) in seen:
                dup = True
                c.check("AFL-006", False, f"record {sfi}/{rec} named twice")
            seen.add((sfi, rec))
            sw = answers.get((sfi, rec))
            if sw is None:
                continue  # not read: the kernel stopped before (its reason is reported below)
            if not c.check("AFL-004", sw == 0x9000, f"READ RECORD {sfi}/{rec} answered {sw:04X}", "9000", f"{sw:04X}"):
                continue
            data = st.records.get((sfi, rec), b"")
            place = f"record {sfi}/{rec}"
            try:
                top = parse(data)
                well = len(top) == 1 and top[0].tag == 0x70 and top[0].raw == data
                c.check("AFL-005", well, f"{place}: " + ("one template 70" if well else "not exactly one template 70"))
                ctx.found[place] = flatten(data) if top else {}
                for t in (t.tag for t in top[0].children() if not t.constructed) if top and top[0].tag == 0x70 else ():
                    for other, o in ctx.found.items():
                        if other != place and other.startswith("record") and t in o:
                            c.check("DATA-DUP-001", False, f"{t:X} in {other} and {place}")
            except TlvError as exc:
                c.check("AFL-005", False, f"{place}: not BER-TLV ({exc})")
    if not dup:
        c.check("AFL-006", True, f"{len(seen)} distinct records")
    if stopped:
        why = stopped.removeprefix("aborted: ")
        rid = ("DATA-DUP-001" if "twice" in why else "AFL-005" if "template" in why or "BER-TLV" in why
               else "AFL-002" if "AFL entry" in why else "AFL-004" if "READ RECORD" in why else "AFL-007")
        c.check(rid, False, f"the terminal kernel stopped reading: {why}")
    c.check("DATA-DUP-001", True, "no object twice in the records")
    try:
        ctx.static_data = oda.static_data_to_authenticate(st)
    except oda.OdaError:
        ctx.static_data = None


# -- the transaction log ---------------------------------------------------------------------


def log_file(ctx: AppContext) -> None:
    """The transaction log file (Book 3 Annex D): outside the AFL, readable, records of the log format's length."""
    c, app, st = ctx.c, ctx.app, ctx.state
    if app.log_sfi is None:
        c.na("LOG-002", "the profile has no log")
        c.na("LOG-003", "the profile has no log")
        return
    in_afl = any(st.afl[i] >> 3 == app.log_sfi for i in range(0, len(st.afl), 4))
    data, sw = send(st, ctx.ch, bytes((0x00, 0xB2, 1, (app.log_sfi << 3) | 4, 0x00)), STEP, "EMV Book 3 Annex D",
                    f"READ RECORD 1 of the transaction log (SFI {app.log_sfi})")
    c.check("LOG-002", not in_afl and sw in (0x9000, 0x6A83), f"log SFI {app.log_sfi} {'in' if in_afl else 'not in'} the AFL; READ RECORD {app.log_sfi}/1 answered {sw:04X}")
    if sw == 0x9000:
        want = sum(n for _t, n in app.log_format)
        c.check("LOG-003", len(data) == want, "log record length", str(want), str(len(data)))
    else:
        c.na("LOG-003", "the log is empty")
