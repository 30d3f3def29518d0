"""The application's data objects: each one the issuer profile and the
cardholder record determine (:func:`cardlab.tester.sources.expected_objects`)
compared by value and place, and the card's objects checked for consistency
with each other (AIP, PAN, track 2, dates, CVM list, DOLs).
"""

from __future__ import annotations

from datetime import date

from .. import rules as R
from ..sources import Expected, expected_objects, luhn_ok
from ..tlv import TlvError, parse_dol
from .context import AppContext, hex_or_dash, tagname

#: constructed templates, never expected by themselves (DATA-UNEXP-001 skips them)
TEMPLATES = {0x6F, 0xA5, 0xBF0C, 0x70, 0x77, 0x61}


def data_rules(ctx: AppContext) -> None:
    """Every object the source data determines, by value (its DATA-* rule) and
    by place (DATA-PLACE-001); nothing else on the card (DATA-UNEXP-001)."""
    c = ctx.c
    expected = expected_objects(ctx.app, ctx.rec)
    where: dict[int, list[str]] = {}
    for place, objs in ctx.found.items():
        for t in objs:
            where.setdefault(t, []).append(place)
    wanted: set[int] = set()
    for e in expected:
        wanted.add(e.tag)
        rid = R.rule_for_tag(e.tag)
        places = where.get(e.tag, [])
        name = tagname(e.tag)
        if not places:
            if e.value is None and e.tag in (0x92, 0x9F48, 0x5F25, 0x9F0B, 0x9F1F, 0x9F20):
                continue  # optional, may be empty
            c.check(rid, False, f"{name} missing (expected in {e.place}; {e.source})", hex_or_dash(e.value), "absent")
            c.check("DATA-PLACE-001", False, f"{name} missing from {e.place}")
            continue
        if e.place in places:
            c.check("DATA-PLACE-001", True, "objects in their places")
            found = ctx.found[e.place][e.tag]
        else:
            c.check("DATA-PLACE-001", False, f"{name} in {', '.join(places)}, the profile puts it in {e.place}", e.place, ", ".join(places))
            found = ctx.found[places[0]][e.tag]
        if e.value is None:
            continue  # present, value not determined by the source data (checked for place only)
        _value_check(ctx, rid, e, found)
    if not ctx.rec.psn:  # the record has no PSN and the profile omits it (card.empty_psn: omit)
        wanted.add(0x5F34)
        c.check("DATA-PSN-001", 0x5F34 not in where, "5F34 absent: the record has no PSN and the profile omits it"
                if 0x5F34 not in where else f"5F34 in {', '.join(where[0x5F34])}, but the record has no PSN and the "
                "profile omits it (card.empty_psn: omit)", "absent", ", ".join(where.get(0x5F34, [])) or "absent")  # fmt: skip
    for tag, places in where.items():
        if tag in TEMPLATES or tag in wanted:
            continue
        c.check("DATA-UNEXP-001", False, f"unexpected {tagname(tag)} in {', '.join(places)}", "absent", ", ".join(places))
    c.check("DATA-UNEXP-001", True, "no unexpected objects")


def _value_check(ctx: AppContext, rid: str, e: Expected, found: bytes) -> None:
    # 57, 9F1F, 9F20: the discretionary digits are the record's or the documented
    # default 00000000 (docs/profile.md "Track data"; nothing key-derived): whole values compared
    c, name = ctx.c, tagname(e.tag)
    assert e.value is not None
    c.check(rid, found == e.value, f"{name} ({e.source})", hex_or_dash(e.value), hex_or_dash(found))


# -- consistency ------------------------------------------------------------------------------


CVN_CDOL1 = [0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37]


def consistency_rules(ctx: AppContext) -> None:
    """The card's objects against each other and the terminal: AIP vs ODA data,
    PAN, track 2, dates, CVM list, DOLs, SDA tag list."""
    c, v, app = ctx.c, ctx.all_values(), ctx.app
    aip = ctx.state.aip + bytes(2)
    sda, dda, cvm, cda = aip[0] & 0x40, aip[0] & 0x20, aip[0] & 0x10, aip[0] & 0x01
    have = set(v)
    missing = [t for t in (0x5A, 0x5F24, 0x8C, 0x8D) if t not in have]
    c.check("AFL-007", not missing, "mandatory 5A 5F24 8C 8D" + (f": missing {' '.join(f'{t:X}' for t in missing)}" if missing else ""))
    for rid, on, tags, what in (("AIP-001", sda, (0x8F, 0x90, 0x9F32, 0x93), "SDA"), ("AIP-002", dda, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47), "DDA"),
                                ("AIP-003", cda, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47), "CDA")):  # fmt: skip
        if not on:
            c.na(rid, f"AIP does not announce {what}")
            continue
        miss = [t for t in tags if t not in have]
        c.check(rid, not miss, f"AIP {ctx.state.aip.hex().upper()} announces {what}" + (f"; missing {' '.join(f'{t:X}' for t in miss)}" if miss else ""))
    c.check("AIP-004", bool(cvm) == (0x8E in have), f"AIP cardholder verification bit {'set' if cvm else 'clear'}, 8E {'present' if 0x8E in have else 'absent'}")
    certs = [t for t in (0x90, 0x93, 0x9F46) if t in have]
    c.check("AIP-005", not certs or bool(sda or dda or cda), f"certificates {' '.join(f'{t:X}' for t in certs) or 'none'} with AIP {ctx.state.aip.hex().upper()}")
    # PAN, track 2, dates
    pan = v.get(0x5A, b"").hex().upper()
    pan_digits = pan.rstrip("F")
    if pan:
        c.check("PAN-001", pan_digits.isdigit() and 12 <= len(pan_digits) <= 19 and luhn_ok(pan_digits), f"PAN {pan_digits}: {len(pan_digits)} digits, Luhn {'ok' if pan_digits.isdigit() and luhn_ok(pan_digits) else 'wrong'}")
    t2 = v.get(0x57, b"").hex().upper()
    if t2:
        body = t2.rstrip("F") if t2.endswith("F") else t2
        sep = body.find("D")
        shape = sep > 0 and body.replace("D", "", 1).isdigit() and len(v[0x57]) <= 19 and t2.count("F") == len(t2) - len(body) <= 1
        c.check("TRK2-004", shape, f"track 2 {t2}")
        if sep > 0:
            c.check("TRK2-001", body[:sep] == pan_digits, "track 2 PAN vs 5A", pan_digits, body[:sep])
            if 0x5F24 in v:
                c.check("TRK2-002", body[sep + 1 : sep + 5] == v[0x5F24].hex()[:4], "track 2 expiry vs 5F24", v[0x5F24].hex()[:4], body[sep + 1 : sep + 5])
            if 0x5F30 in v:
                c.check("TRK2-003", body[sep + 5 : sep + 8] == v[0x5F30].hex()[-3:], "track 2 service code vs 5F30", v[0x5F30].hex()[-3:], body[sep + 5 : sep + 8])
            else:
                c.na("TRK2-003", "no 5F30 on the card")
    dates = {}
    for t in (0x5F24, 0x5F25):
        if t in v:
            d = v[t].hex()
            try:
                dates[t] = date(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]))
                c.check("DATE-001", len(v[t]) == 3, f"{t:X} {d}")
            except ValueError:
                c.check("DATE-001", False, f"{t:X} {d.upper()} is not a YYMMDD date")
    if 0x5F24 in dates:
        c.check("DATE-003", dates[0x5F24] >= ctx.today, f"expires {dates[0x5F24].isoformat()}", f"≥ {ctx.today.isoformat()}", dates[0x5F24].isoformat())
        if 0x5F25 in dates:
            c.check("DATE-002", dates[0x5F25] < dates[0x5F24], "effective before expiry", "5F25 < 5F24", f"{dates[0x5F25]} / {dates[0x5F24]}")
        else:
            c.na("DATE-002", "no effective date")
    # CVM list
    cvml = v.get(0x8E)
    if cvml is None:
        for rid in ("CVM-001", "CVM-002", "CVM-003", "CVM-004", "CVM-005"):
            c.na(rid, "no CVM list on the card")
    else:
        ok = len(cvml) >= 10 and len(cvml) % 2 == 0
        c.check("CVM-001", ok, f"CVM list of {len(cvml)} bytes", "8 + 2n bytes, n ≥ 1", hex_or_dash(cvml))
        rules = [(cvml[i], cvml[i + 1]) for i in range(8, len(cvml) - 1, 2)]
        methods = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F}
        for code, cond in rules:
            m = code & 0x3F
            c.check("CVM-002", (m in methods or 0x20 <= m <= 0x3E) and (cond <= 0x09 or cond >= 0x80) and not code & 0x80, f"rule {code:02X}{cond:02X}")
        x, y = int.from_bytes(cvml[:4], "big"), int.from_bytes(cvml[4:8], "big")
        uses_x = any(cond in (6, 7) for _, cond in rules)
        uses_y = any(cond in (8, 9) for _, cond in rules)
        c.check("CVM-003", (x == 0 or uses_x) and (y == 0 or uses_y), f"amount X {x} (used: {uses_x}), Y {y} (used: {uses_y})")
        caps = ctx.terminal.capabilities
        cvm_caps = caps[1] if len(caps) > 1 else 0
        support = {0x01: 0x80, 0x02: 0x40, 0x03: 0x80 | 0x20, 0x04: 0x10, 0x05: 0x10 | 0x20, 0x1E: 0x20, 0x1F: 0x08}
        usable = [code for code, _ in rules if (code & 0x3F) in support and cvm_caps & support[code & 0x3F] == support[code & 0x3F]]
        c.check("CVM-004", bool(usable), f"terminal CVM capabilities {cvm_caps:02X}: {len(usable)} of {len(rules)} rules supported")
        if any(code & 0x3F in (0x04, 0x05) for code, _ in rules):
            c.check("CVM-005", 0x9F46 in have or 0x9F2D in have, "enciphered PIN: " + ("ICC key certificate present" if 0x9F46 in have else "no ICC (PIN) key certificate"))
        else:
            c.na("CVM-005", "no enciphered offline PIN rule")
    # DOLs
    dols: dict[int, list[int]] = {}
    for t in (0x8C, 0x8D, 0x9F38, 0x9F49):
        raw = v.get(t)
        if raw is None:
            continue
        try:
            dol_items = parse_dol(raw)
            dols[t] = [tag for tag, _ in dol_items]
            c.check("CDOL-003", len(set(dols[t])) == len(dols[t]), f"{t:X} {'has a tag twice' if len(set(dols[t])) != len(dols[t]) else 'well formed'}")
        except TlvError as exc:
            c.check("CDOL-003", False, f"{t:X} malformed: {exc}")
    if 0x8C in dols:
        miss = [t for t in CVN_CDOL1 if t not in dols[0x8C]]
        c.check("CDOL-001", not miss, f"CDOL1 for CVN {app.cvn}" + (f": missing {' '.join(f'{t:X}' for t in miss)}" if miss else ""), " ".join(f"{t:X}" for t in CVN_CDOL1), hex_or_dash(v[0x8C]))
    if 0x8D in dols:
        c.check("CDOL-002", 0x8A in dols[0x8D], "CDOL2 " + ("contains" if 0x8A in dols[0x8D] else "lacks") + " 8A")
    if dda or cda:
        ddol = dols.get(0x9F49, [0x9F37])
        c.check("DDOL-001", 0x9F37 in ddol, "DDOL " + ("of the card" if 0x9F49 in dols else "default of the terminal (9F3704)") + (" contains" if 0x9F37 in ddol else " lacks") + " 9F37")
    else:
        c.na("DDOL-001", "no DDA/CDA")
    # SDA tag list
    if 0x9F4A in v:
        c.check("SDA-002", v[0x9F4A] == b"\x82", "static data authentication tag list", "82", hex_or_dash(v[0x9F4A]))
    else:
        c.na("SDA-002", "no 9F4A")
