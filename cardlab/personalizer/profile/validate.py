"""Consistency rules across the sections of one application: what the AFL
layout places against what the rest of the profile gives (mandatory data
objects, EMV 4.4 Book 3 §7.2; ODA data, Book 2 §5–6; DDOL for DDA; CVM rules;
log file; record sizes). Each broken rule is one problem at its field path.
"""

from __future__ import annotations

from .checker import Checker
from .model import Application, RecordLayout
from .tables import MANDATORY_RECORD_TAGS, TAGS, fmt_tag, tag_bytes


def cross_check(ck: Checker, app: Application, p: str) -> None:
    """Consistency between the AFL layout and the rest of the application."""
    placed: dict[int, RecordLayout] = {}
    for rec in app.records:
        for t in rec.tags:
            placed[t] = rec
    afl = f"{p}.afl"
    for t in MANDATORY_RECORD_TAGS:
        if t not in placed:
            ck.err(afl, f"no record holds {fmt_tag(t)} ({TAGS[t].name}), which is mandatory")
    # profile-sourced tags in records need their value in the profile
    providers: dict[int, tuple[str, bool]] = {
        0x8E: ("cvm_list", app.cvm_list is not None),
        0x9F49: ("ddol", bool(app.ddol)),
        0x97: ("tdol", bool(app.tdol)),
        0x9F4A: ("sda_tag_list", bool(app.sda_tag_list)),
        0x5F50: ("data.5F50", app.extra(0x5F50) is not None),
        0x42: ("data.42", app.extra(0x42) is not None),
    }
    for t, (what, present) in providers.items():
        if t in placed and not present:
            ck.err(afl, f"a record holds {fmt_tag(t)} ({TAGS[t].name}) but the profile has no {what}")
        if present and t not in placed and t not in (0x97,):
            ck.err(f"{p}.{what}", f"given, but no record holds {fmt_tag(t)}: add it to an afl record")
    # ODA
    oda_recs = [r for r in app.records if r.oda]
    if app.oda:
        for t in (0x8F, 0x90, 0x9F32):
            if t not in placed:
                ck.err(afl, f"ODA ({', '.join(app.oda)}) needs {fmt_tag(t)} ({TAGS[t].name}) in a record")
        if not oda_recs:
            ck.err(afl, "ODA needs at least one record marked oda: true")
        if 0x82 not in app.sda_tag_list:
            ck.err(f"{p}.sda_tag_list", "ODA should sign the AIP: set sda_tag_list: ['82']")
    else:
        for t in (0x8F, 0x90, 0x92, 0x9F32, 0x93, 0x9F46, 0x9F47, 0x9F48):
            if t in placed:
                ck.err(afl, f"a record holds {fmt_tag(t)} ({TAGS[t].name}) but oda is none")
        if oda_recs:
            ck.err(afl, "records are marked oda: true but oda is none")
    if "SDA" in app.oda and 0x93 not in placed:
        ck.err(afl, "SDA needs 93 (Signed Static Application Data) in a record")
    if "SDA" not in app.oda and 0x93 in placed:
        ck.err(afl, "a record holds 93 (Signed Static Application Data) but oda has no SDA")
    dynamic = "DDA" in app.oda or "CDA" in app.oda
    if dynamic:
        for t in (0x9F46, 0x9F47):
            if t not in placed:
                ck.err(afl, f"DDA/CDA needs {fmt_tag(t)} ({TAGS[t].name}) in a record")
    else:
        for t in (0x9F46, 0x9F47, 0x9F48):
            if t in placed:
                ck.err(afl, f"a record holds {fmt_tag(t)} ({TAGS[t].name}) but oda has neither DDA nor CDA")
    for t in (0x93, 0x9F46):
        holder = placed.get(t)
        if holder is not None and holder.oda:
            ck.err(
                afl,
                f"SFI {holder.sfi} record {holder.number} is signed (oda: true) but holds {fmt_tag(t)}, "
                "which is computed over the signed records",
            )
    if "DDA" in app.oda:
        if not app.ddol:
            ck.err(f"{p}.ddol", "missing: DDA needs a DDOL (9F49) with 9F37")
        elif 0x9F37 not in {e.tag for e in app.ddol}:
            ck.err(f"{p}.ddol", "lacks 9F37 (Unpredictable Number), required by DDA")
    if app.cvm_list is not None and app.cvm_list.enciphered_pin and not dynamic:
        ck.err(f"{p}.cvm_list", "an offline enciphered PIN rule needs an ICC key (oda DDA or CDA)")
    if (
        app.cvm_list is not None
        and app.cvm_list.amount_x
        and not any(r.condition in ("under_x", "over_x") for r in app.cvm_list.rules)
    ):
        ck.err(f"{p}.cvm_list.amount_x", "set, but no rule uses under_x/over_x")
    # log SFI must not collide with the AFL files
    if app.log is not None and any(r.sfi == app.log.sfi for r in app.records):
        ck.err(f"{p}.log.sfi", f"SFI {app.log.sfi} is also an AFL file")
    # record size: a record's template 70 must fit a READ RECORD response
    for rec in app.records:
        fixed = sum((TAGS[t].length or 0) + len(tag_bytes(t)) + 1 for t in rec.tags)
        if fixed > 254:
            ck.err(afl, f"SFI {rec.sfi} record {rec.number} holds at least {fixed} bytes (more than 254)")
