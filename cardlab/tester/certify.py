"""Certification of a personalized card against its source data.

``certify_card(channel, profile, record, keys)`` derives what the card should
hold from the issuer profile, the cardholder record and the key store
(:mod:`cardlab.tester.sources`), talks to the card like a terminal, and evaluates
every rule of the catalogue (:mod:`cardlab.tester.rules`) for every application: each
gives pass / fail / not applicable with evidence (expected vs found; PANs
masked; never a key or a PIN).

``certify_batch`` does it for every emulated card of a perso batch directory
(images mapped to records through the job database or ``cards.jsonl``) or for
cards presented one after another in a reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from datetime import time as dtime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from . import kernel, oda, online
from . import rules as R
from .capk import CaKeyList, CaPublicKey
from .channel import CardChannel
from .cvm import offline_pin
from .exchange import send
from .issuer_host import AuthorizationRequest, HostError, IssuerHost, Policy, cryptogram_version, pin_change, put_data
from .rsa import IccCertificate, IssuerCertificate, certificate_expired, recover_icc_certificate
from .rules import FAIL, NA, PASS, RULES, Result
from .sources import (
    AppProfile,
    Expected,
    IssuerProfile,
    KeyStore,
    Record,
    SourceError,
    encode_dol,
    expected_objects,
    load_keystore,
    load_profile,
    luhn_ok,
    mask_pan,
    read_records,
    redact,
)
from .state import TraceEvent, TransactionState
from .terminal import TerminalAid, TerminalProfile, load_terminal
from .tlv import TlvError, flatten, parse, parse_dol

# -- reports -----------------------------------------------------------------------------


@dataclass
class CardReport:
    card_id: str
    pan_masked: str
    record_index: int
    profile: str
    source: str  # image path or reader name
    results: list[Result] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    error: str = ""  # a card that could not be certified at all

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.verdict == FAIL]

    @property
    def verdict(self) -> str:
        return FAIL if self.error or self.failed else PASS

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, NA: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    def failed_rules(self) -> set[str]:
        return {r.rule for r in self.failed}


# -- talking to the card -----------------------------------------------------------------


def _value_of_get_data(data: bytes, tag: int) -> bytes | None:
    try:
        items = parse(data)
    except TlvError:
        return None
    for t in items:
        if t.tag == tag:
            return t.value
    return None


def _h(b: bytes | None) -> str:
    return "-" if b is None else b.hex().upper()


def _tagname(tag: int) -> str:
    try:
        from .dictionary import name

        return f"{tag:X} {name(tag)}"
    except Exception:
        return f"{tag:X}"


# -- collecting results ------------------------------------------------------------------


class _Collector:
    """Several checks may feed one rule; one Result per rule and application."""

    def __init__(self, app: str, pan: str) -> None:
        self.app = app
        self.pan = pan
        self.checks: dict[str, list[tuple[bool | None, str, str, str]]] = {}

    def _clean(self, text: str) -> str:
        if self.pan:
            text = text.replace(self.pan, mask_pan(self.pan))
        return redact(text)

    def check(self, rule: str, ok: bool, evidence: str, expected: str = "", found: str = "") -> bool:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((ok, evidence, expected, found))
        return ok

    def na(self, rule: str, why: str) -> None:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((None, why, "", ""))

    def results(self, rule_ids: list[str], unreached: str) -> list[Result]:
        out = []
        for rid in rule_ids:
            items = self.checks.get(rid)
            if not items:
                out.append(Result(rid, NA, self._clean(unreached), app=self.app))
                continue
            fails = [i for i in items if i[0] is False]
            passes = [i for i in items if i[0] is True]
            chosen = fails or passes or items
            verdict = FAIL if fails else PASS if passes else NA
            ev = "; ".join(dict.fromkeys(i[1] for i in chosen))
            exp = "; ".join(i[2] for i in chosen if i[2])
            fnd = "; ".join(i[3] for i in chosen if i[3])
            out.append(Result(rid, verdict, self._clean(ev)[:2000], self._clean(exp)[:1000], self._clean(fnd)[:1000], self.app))
        return out



# -- the certification of one application -------------------------------------------------
#
# Certification drives the shared terminal kernel (cardlab.tester.kernel and its step
# functions): the card's data and the step verdicts are the kernel's; the rules
# below only compare them with the source data. ODA goes through cardlab.tester.oda
# (certificate fields from cardlab.tester.rsa), the PIN through cardlab.tester.cvm, the ARQC
# and the script MAC through the issuer host (cardlab.tester.issuer_host, cardlab.tester.online).

#: card-level rules: GP life cycles and privileges (cardlab.tester.certify_life), directories (cardlab.tester.certify_dir)
CARD_RULES = [*R.LIFE_RULE_IDS, *R.PRIV_RULE_IDS, *R.DIR_RULE_IDS, *R.ATR_RULE_IDS]
APP_RULES = [r for r in RULES if r not in CARD_RULES]
TEMPLATES = {0x6F, 0xA5, 0xBF0C, 0x70, 0x77, 0x61}
FRESH_ATC_MAX = 10
STEP = "Certification"
REF_GET_DATA = "EMV Book 3 §6.5.7"
#: the amount of the certification transaction (minor units)
AMOUNT = 100


@lru_cache(maxsize=1)
def _default_terminal() -> TerminalProfile:
    return load_terminal()


def _terminal_for(terminal: TerminalProfile | None, app: AppProfile) -> TerminalProfile:
    """The terminal certification plays: the given profile (or the default one
    in the application's country and currency) supporting exactly this AID."""
    base = terminal if terminal is not None else replace(_default_terminal(), country=app.country, currency=app.currency)
    return replace(base, aids=[TerminalAid(app.aid, partial=False)], selection="pse", cardholder_confirmation=True)


@dataclass
class _Ctx:
    ch: CardChannel
    app: AppProfile
    rec: Record
    keys: KeyStore
    terminal: TerminalProfile
    destructive: bool
    today: date
    c: _Collector
    state: TransactionState
    found: dict[str, dict[int, bytes]] = field(default_factory=dict)  # place → tag → value
    static_data: bytes | None = None
    atc: int | None = None
    #: destructive PIN change (cardlab.tester.certify_scripts): the counter was lowered by a wrong PIN
    #: so that the reset by PIN CHANGE/UNBLOCK shows; the SW the PIN CHANGE got (None: not sent)
    pin_lowered: bool = False
    pin_change_sw: int | None = None
    #: the certification transaction went online with scripts (KEY-SMI-001): the
    #: block / unblock transactions follow
    scripts_online: bool = False

    def all_values(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for objs in self.found.values():
            for t, v in objs.items():
                out.setdefault(t, v)
        return out


class _Stop(Exception):
    pass


def _sw(ev: TraceEvent) -> int:
    return int.from_bytes(ev.response[-2:], "big") if len(ev.response) >= 2 else 0x6F00


def _apdus(state: TransactionState, start: int, ins: int) -> list[TraceEvent]:
    """The commands with instruction ``ins`` the kernel sent since event ``start``."""
    return [e for e in state.events[start:] if e.kind == "apdu" and len(e.command) > 1 and e.command[1] == ins]


def _get_data(ctx: _Ctx, tag: int, what: str) -> tuple[bytes | None, int]:
    data, sw = send(ctx.state, ctx.ch, bytes((0x80, 0xCA)) + tag.to_bytes(2, "big") + b"\x00", STEP, REF_GET_DATA,
                    f"GET DATA {what} ({tag:X})")
    return (_value_of_get_data(data, tag) if sw == 0x9000 else None), sw


def _certify_app(ctx: _Ctx) -> None:
    c, st, app = ctx.c, ctx.state, ctx.app
    # application selection (Book 1 §12): the PSE directory, then the profile's AID
    mark = len(st.events)
    kernel.build_candidate_list(st, ctx.ch)
    _directory(ctx, mark)
    st.outcome = ""
    st.candidates = [{0x4F: app.aid}]
    mark = len(st.events)
    kernel.final_selection(st, ctx.ch)
    selects = _apdus(st, mark, 0xA4)
    sw = _sw(selects[0]) if selects else 0x6F00
    data = selects[0].response[:-2] if selects else b""
    c.check("LIFE-APP-001", sw == 0x9000, "SELECT answered 9000" if sw == 0x9000 else
            f"SELECT {app.aid.hex().upper()} answered {sw:04X}" + (": application blocked" if sw == 0x6283 else ""),
            "9000", f"{sw:04X}")  # fmt: skip
    fci: dict[int, bytes] = {}
    try:
        top = parse(data)
        ok = len(top) == 1 and top[0].tag == 0x6F
        inner = {t.tag: t for t in top[0].children()} if ok else {}
        ok = ok and 0x84 in inner and 0xA5 in inner
        c.check("FCI-001", ok, "FCI template 6F with 84 and A5" if ok else "FCI not 6F {84, A5}", "6F{84,A5}", _h(data))
        if ok:
            fci[0x84] = inner[0x84].value
            fci.update(flatten(inner[0xA5].raw))
    except TlvError as exc:
        c.check("FCI-001", False, f"FCI not BER-TLV: {exc}")
    ctx.found["FCI"] = fci
    if st.outcome:
        if sw != 0x9000 or not fci:
            raise _Stop(f"application not selectable (SW {sw:04X})")
        # the kernel refused the FCI (e.g. another DF name): certification goes on to name every defect
        st.outcome, st.aid, st.fci = "", app.aid, data
        st.card_data.update(fci)

    # state before the transaction
    atc, atc_sw = _get_data(ctx, 0x9F36, "application transaction counter")
    if atc is None:
        c.na("STATE-ATC-001", f"GET DATA 9F36 answered {atc_sw:04X}")
    else:
        ctx.atc = int.from_bytes(atc, "big")
        c.check("STATE-ATC-001", ctx.atc <= FRESH_ATC_MAX, f"ATC {ctx.atc} (a fresh card: ≤ {FRESH_ATC_MAX})", f"≤ {FRESH_ATC_MAX}", str(ctx.atc))
    lo, lo_sw = _get_data(ctx, 0x9F13, "last online ATC register")
    if lo is None:
        c.na("STATE-ATC-002", f"GET DATA 9F13 answered {lo_sw:04X}")
    else:
        c.check("STATE-ATC-002", int.from_bytes(lo, "big") == 0, f"last online ATC {int.from_bytes(lo, 'big')}", "0", str(int.from_bytes(lo, "big")))
    if app.offline_pin:
        ptc, ptc_sw = _get_data(ctx, 0x9F17, "PIN try counter")
        c.check("CVM-006", ptc is not None, f"GET DATA 9F17 answered {ptc_sw:04X}")
        if ptc is None:
            c.check("STATE-PTC-001", False, f"PIN try counter not readable (SW {ptc_sw:04X})", str(app.pin_try_limit), "-")
        else:
            c.check("STATE-PTC-001", ptc[0] == app.pin_try_limit, f"PIN try counter {ptc[0]}, limit {app.pin_try_limit}", str(app.pin_try_limit), str(ptc[0]))
    else:
        c.na("CVM-006", "no offline PIN CVM in the profile")
        c.na("STATE-PTC-001", "no offline PIN CVM in the profile")
    if app.log_sfi is not None:
        lf, lf_sw = _get_data(ctx, 0x9F4F, "log format")
        exp_lf = encode_dol(list(app.log_format))
        c.check("LOG-001", lf == exp_lf, "log format by GET DATA 9F4F", _h(exp_lf), _h(lf) if lf is not None else f"SW {lf_sw:04X}")
    else:
        c.na("LOG-001", "the profile has no log")

    _initiate(ctx)
    _read_records(ctx)
    _data_rules(ctx)
    _consistency_rules(ctx)
    _oda(ctx)
    _pin(ctx)
    _generate_ac(ctx)
    _log_file(ctx)
    # -- hook: destructive script checks in further transactions (cardlab.tester.certify_scripts) --
    if ctx.destructive:
        from .certify_scripts import after_certification

        after_certification(ctx)


def _initiate(ctx: _Ctx) -> None:
    """GET PROCESSING OPTIONS by the kernel (Book 3 §10.1); the rules read its response."""
    c, st, app = ctx.c, ctx.state, ctx.app
    mark = len(st.events)
    kernel.initiate_application_processing(st, ctx.ch)
    gpos = _apdus(st, mark, 0xA8)
    sw = _sw(gpos[0]) if gpos else 0x6F00
    data = gpos[0].response[:-2] if gpos else b""
    if sw == 0x6985:
        c.check("LIFE-APP-002", False, "GET PROCESSING OPTIONS answered 6985: not personalized (or not usable)", "9000", "6985")
        raise _Stop("GPO refused")
    c.check("LIFE-APP-002", sw == 0x9000, f"GET PROCESSING OPTIONS answered {sw:04X}", "9000", f"{sw:04X}")
    if sw != 0x9000:
        raise _Stop(f"GPO answered {sw:04X}")
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


# -- records -------------------------------------------------------------------------------


def _read_records(ctx: _Ctx) -> None:
    """READ APPLICATION DATA by the kernel (Book 3 §10.2); the rules check each
    record it read and the static data to be authenticated it built."""
    c, st = ctx.c, ctx.state
    afl = st.afl
    mark = len(st.events)
    kernel.read_application_data(st, ctx.ch)
    stopped, st.outcome = st.outcome, ""
    answers = {(e.command[3] >> 3, e.command[2]): _sw(e) for e in _apdus(st, mark, 0xB2) if len(e.command) > 3}
    ok1 = len(afl) > 0 and len(afl) % 4 == 0
    c.check("AFL-001", ok1, f"AFL of {len(afl)} bytes", "4n bytes, n ≥ 1", _h(afl))
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


# -- data objects by value and place ---------------------------------------------------------


def _data_rules(ctx: _Ctx) -> None:
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
        name = _tagname(e.tag)
        if not places:
            if e.value is None and e.tag in (0x92, 0x9F48, 0x5F25, 0x9F0B, 0x9F1F, 0x9F20):
                continue  # optional, may be empty
            c.check(rid, False, f"{name} missing (expected in {e.place}; {e.source})", _h(e.value), "absent")
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
    for tag, places in where.items():
        if tag in TEMPLATES or tag in wanted:
            continue
        c.check("DATA-UNEXP-001", False, f"unexpected {_tagname(tag)} in {', '.join(places)}", "absent", ", ".join(places))
    c.check("DATA-UNEXP-001", True, "no unexpected objects")


def _value_check(ctx: _Ctx, rid: str, e: Expected, found: bytes) -> None:
    # 57, 9F1F, 9F20: the discretionary digits are the record's or the documented
    # default 00000000 (docs/profile.md "Track data"; nothing key-derived): whole values compared
    c, name = ctx.c, _tagname(e.tag)
    assert e.value is not None
    c.check(rid, found == e.value, f"{name} ({e.source})", _h(e.value), _h(found))


# -- consistency ------------------------------------------------------------------------------


CVN_CDOL1 = [0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37]


def _consistency_rules(ctx: _Ctx) -> None:
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
        c.check("CVM-001", ok, f"CVM list of {len(cvml)} bytes", "8 + 2n bytes, n ≥ 1", _h(cvml))
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
        c.check("CDOL-001", not miss, f"CDOL1 for CVN {app.cvn}" + (f": missing {' '.join(f'{t:X}' for t in miss)}" if miss else ""), " ".join(f"{t:X}" for t in CVN_CDOL1), _h(v[0x8C]))
    if 0x8D in dols:
        c.check("CDOL-002", 0x8A in dols[0x8D], "CDOL2 " + ("contains" if 0x8A in dols[0x8D] else "lacks") + " 8A")
    if dda or cda:
        ddol = dols.get(0x9F49, [0x9F37])
        c.check("DDOL-001", 0x9F37 in ddol, "DDOL " + ("of the card" if 0x9F49 in dols else "default of the terminal (9F3704)") + (" contains" if 0x9F37 in ddol else " lacks") + " 9F37")
    else:
        c.na("DDOL-001", "no DDA/CDA")
    # SDA tag list
    if 0x9F4A in v:
        c.check("SDA-002", v[0x9F4A] == b"\x82", "static data authentication tag list", "82", _h(v[0x9F4A]))
    else:
        c.na("SDA-002", "no 9F4A")



# -- ODA ---------------------------------------------------------------------------------------


def _ca_keys(ctx: _Ctx, rid: bytes, idx: int) -> tuple[CaKeyList, str]:
    """The CA key for the card's RID and index: the key store's, the terminal
    profile's, else the key store's only CA key (a test CA under another RID)."""
    found: tuple[int, int] | None = None
    note = ""
    ks = ctx.keys.ca_key(rid, idx)
    if ks is not None:
        found = (ks.modulus, ks.exponent)
    elif (tk := ctx.terminal.ca_key(rid, idx)) is not None:
        found, note = (tk.modulus, tk.exponent), " (from the terminal profile)"
    else:
        cas = [(n, key) for n, key in ctx.keys.rsa_public.items() if key[0] == "CA"]
        if len(cas) == 1:
            found = (cas[0][1][1], cas[0][1][2])
            note = f" (RID {rid.hex().upper()} index {idx:02X} not listed; the key store's only CA key {cas[0][0]!r})"
    out = CaKeyList()
    if found is not None:
        n, e = found
        out.add(CaPublicKey(rid, idx, n.to_bytes((n.bit_length() + 7) // 8, "big"), e.to_bytes((e.bit_length() + 7) // 8, "big")))
    return out, note


def _mmyy(b: bytes) -> str:
    return b.hex().upper() or "-"


def _oda(ctx: _Ctx) -> None:
    c, v, app, st = ctx.c, ctx.all_values(), ctx.app, ctx.state
    iss_rules = [f"CERT-ISS-00{i}" for i in range(1, 10)]
    icc_rules = ["CERT-ICC-001", "CERT-ICC-002", "CERT-ICC-003", "CERT-ICC-PAN-001", "CERT-ICC-005", "CERT-ICC-006", "CERT-ICC-007"]
    if 0x90 not in v and 0x8F not in v:
        for rid in iss_rules + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "no ODA data on the card")
        return
    idx = v[0x8F][0] if v.get(0x8F) else -1
    rid_ = app.aid[:5]
    cas, note = _ca_keys(ctx, rid_, idx)
    if not c.check("CERT-ISS-001", len(cas) > 0, f"CA key RID {rid_.hex().upper()} index {idx & 0xFF:02X}" + (note or (" known" if len(cas) else " unknown"))):
        for rid in iss_rules[1:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "CA public key unknown")
        return
    ca = next(iter(cas))
    n_ca = len(ca.modulus)
    cert = v.get(0x90, b"")
    if not c.check("CERT-ISS-002", len(cert) == n_ca, "issuer certificate length", str(n_ca), str(len(cert))):
        for rid in iss_rules[2:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "issuer certificate unusable")
        return
    # the issuer key by the ODA module (Book 2 §5.3); its fields by cardlab.tester.rsa
    try:
        oda.issuer_public_key(st, cas, ctx.today)
    except oda.OdaError:
        pass  # the certificate's fields say which check failed
    x: IssuerCertificate | None = st.extras.get("oda", {}).get("issuer")
    if x is None or not x.frame_ok:
        why = "; ".join(x.problems) if x is not None else "issuer certificate not recovered"
        c.check("CERT-ISS-003", False, why, "6A 02 … BC", f"{x.header:02X} {x.format:02X} … {x.trailer:02X}" if x is not None else "-")
        for rid in iss_rules[3:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "issuer certificate not recovered")
        return
    c.check("CERT-ISS-003", True, "recovered header/format/trailer", "6A 02 … BC", f"{x.header:02X} {x.format:02X} … {x.trailer:02X}")
    c.check("CERT-ISS-004", x.hash_ok, "issuer certificate hash", _h(x.hash_result), _h(x.computed_hash))
    pan = v.get(0x5A, b"").hex().upper().rstrip("F")
    ident = x.issuer_id_digits
    c.check("CERT-ISS-005", x.matches_pan(pan), "issuer identifier vs PAN", ident, pan[: len(ident)])
    c.check("CERT-ISS-006", not certificate_expired(x.expiry, ctx.today), f"issuer certificate expiry MMYY {_mmyy(x.expiry)}", f"≥ {ctx.today:%m%y}", _mmyy(x.expiry))
    room = len(x.key_field)
    need = max(0, x.pk_length - room)
    c.check("CERT-ISS-007", len(x.remainder) == need, f"N_I {x.pk_length}, room {room}: remainder of {need} bytes needed", str(need), str(len(x.remainder)))
    c.check("CERT-ISS-008", x.hash_algorithm == 1 and x.pk_algorithm == 1, "algorithm indicators", "01 01", f"{x.hash_algorithm:02X} {x.pk_algorithm:02X}")
    n_iss, e_iss = x.public_key
    ks_iss = ctx.keys.rsa_key(app.keys.get("issuer_rsa"), "ISSUER")
    if ks_iss is None:
        c.na("CERT-ISS-009", "the key store does not hold the issuer key")
    else:
        c.check("CERT-ISS-009", (ks_iss[1], ks_iss[2]) == (n_iss, e_iss) and len(x.exponent) == x.exponent_length,
                f"issuer key {ks_iss[0]!r} of the key store vs the certified key",
                f"{ks_iss[1].bit_length()} bits, e={ks_iss[2]}", f"{n_iss.bit_length()} bits, e={e_iss}")  # fmt: skip
    aip = (st.aip or b"\x00")[0]
    # SDA by the ODA module (Book 2 §5.4)
    if 0x93 in v:
        if ctx.static_data is None:
            c.check("SDA-001", False, "static data to be authenticated could not be built (ODA records / 9F4A)")
        else:
            ok, why = _authenticate(ctx, "SDA")
            c.check("SDA-001", ok, "signed static application data " + ("verifies" if ok else f"does not verify: {why}"))
    else:
        c.na("SDA-001", "no 93 on the card")
    # ICC certificate (Book 2 §6.4): fields by cardlab.tester.rsa with the recovered issuer key
    if 0x9F46 not in v:
        for rid in icc_rules + ["DDA-001"]:
            c.na(rid, "no ICC certificate on the card")
        return
    ic = v[0x9F46]
    size_i = len(x.modulus)
    if not c.check("CERT-ICC-001", len(ic) == size_i, "ICC certificate length", str(size_i), str(len(ic))):
        for rid in icc_rules[1:] + ["DDA-001"]:
            c.na(rid, "ICC certificate unusable")
        return
    rem_ic, exp_ic = v.get(0x9F48, b""), v.get(0x9F47, b"")
    y: IccCertificate = recover_icc_certificate(ic, n_iss, e_iss, rem_ic, exp_ic, ctx.static_data)
    if not y.frame_ok:
        c.check("CERT-ICC-002", False, "; ".join(y.problems), "6A 04 … BC", f"{y.header:02X} {y.format:02X} … {y.trailer:02X}")
        for rid in icc_rules[2:] + ["DDA-001"]:
            c.na(rid, "ICC certificate not recovered")
        return
    c.check("CERT-ICC-002", True, "recovered header/format/trailer", "6A 04 … BC", f"{y.header:02X} {y.format:02X} … {y.trailer:02X}")
    if ctx.static_data is None:
        c.check("CERT-ICC-003", False, "static data to be authenticated could not be built")
    else:
        c.check("CERT-ICC-003", y.hash_ok, "ICC certificate hash over the static data", _h(y.hash_result), _h(y.computed_hash))
    c.check("CERT-ICC-PAN-001", y.pan_digits == pan, "PAN in the ICC certificate vs 5A", pan, y.pan_digits)
    exp_card = v.get(0x5F24, b"\x00\x00")
    digits = y.expiry.hex()
    cert_ym = (int(digits[2:4]), int(digits[:2])) if len(digits) == 4 and digits.isdigit() else (0, 0)
    card_ym = (int(exp_card[:1].hex()), int(exp_card[1:2].hex())) if exp_card[:2].hex().isdigit() else (0, 0)
    c.check("CERT-ICC-005", not certificate_expired(y.expiry, ctx.today) and cert_ym >= card_ym,
            f"ICC certificate expiry MMYY {_mmyy(y.expiry)}, application expires {exp_card[:2].hex()} (YYMM)",
            f"≥ {exp_card[1:2].hex()}{exp_card[:1].hex()}", _mmyy(y.expiry))  # fmt: skip
    room_ic = len(y.key_field)
    need_ic = max(0, y.pk_length - room_ic)
    c.check("CERT-ICC-006", len(rem_ic) == need_ic, f"N_IC {y.pk_length}, room {room_ic}", str(need_ic), str(len(rem_ic)))
    e_icc = int.from_bytes(exp_ic or b"\x03", "big")
    if app.icc_key_bits is not None:
        c.check("CERT-ICC-007", y.pk_length * 8 == app.icc_key_bits and e_icc == app.icc_key_exponent, "ICC key size/exponent",
                f"{app.icc_key_bits} bits, e={app.icc_key_exponent}", f"{y.pk_length * 8} bits, e={e_icc}")  # fmt: skip
    else:
        c.na("CERT-ICC-007", "the profile gives no icc_key")
    # DDA by the ODA module (INTERNAL AUTHENTICATE with the DDOL, Book 2 §6.5)
    if aip & 0x20:
        ok, why = _authenticate(ctx, "DDA")
        c.check("DDA-001", ok, "INTERNAL AUTHENTICATE: signature " + ("verifies" if ok else f"does not verify: {why}"))
    else:
        c.na("DDA-001", "AIP does not announce DDA")
    if aip & 0x01:
        _authenticate(ctx, "CDA")  # the ICC key for the CDA signature of GENERATE AC


def _authenticate(ctx: _Ctx, method: str) -> tuple[bool, str]:
    """One ODA method by :func:`cardlab.tester.oda.authenticate`: (verdict, the ODA module's reason)."""
    st = ctx.state
    cas, _note = _ca_keys(ctx, ctx.app.aid[:5], st.card_data.get(0x8F, b"\xFF")[0])
    mark = len(st.events)
    oda.authenticate(st, ctx.ch, cas, today=ctx.today, method=method)
    decisions = [e.text for e in st.events[mark:] if e.kind == "decision"]
    return st.oda_ok is not False, decisions[-1] if decisions else ""


# -- PIN ---------------------------------------------------------------------------------------


def _verify(ctx: _Ctx, pin: str, state: TransactionState | None = None) -> int:
    """VERIFY by the cardholder verification module (cardlab.tester.cvm): plaintext when the
    CVM list allows, else enciphered under the ICC key; the card's SW. ``state``:
    a later transaction of the same card (default: the certification transaction)."""
    st = state or ctx.state
    rules = ctx.all_values().get(0x8E, b"")
    codes = {rules[i] & 0x3F for i in range(8, len(rules) - 1, 2)}
    enciphered = not codes & {0x01, 0x03} and st.icc_public_key is not None
    mark = len(st.events)
    offline_pin(st, ctx.ch, pin, enciphered)
    verifies = _apdus(st, mark, 0x20)
    return _sw(verifies[-1]) if verifies else 0x6F00


def _wrong_pin(pin: str) -> str:
    return "0000" if pin != "0000" else "1111"


def _pin(ctx: _Ctx) -> None:
    c, app = ctx.c, ctx.app
    if not app.offline_pin:
        for rid in ("KEY-PIN-001", "KEY-PIN-002", "KEY-PIN-003"):
            c.na(rid, "no offline PIN CVM in the profile")
        return
    if ctx.destructive:
        sw = _verify(ctx, _wrong_pin(ctx.rec.pin))
        c.check("KEY-PIN-003", sw == 0x63C0 | (app.pin_try_limit - 1), f"a wrong PIN answered {sw:04X}", f"63C{app.pin_try_limit - 1:X}", f"{sw:04X}")
    else:
        c.na("KEY-PIN-003", "destructive checks not requested (--destructive)")
    sw = _verify(ctx, ctx.rec.pin)
    c.check("KEY-PIN-001", sw == 0x9000, f"VERIFY with the record's PIN answered {sw:04X}", "9000", f"{sw:04X}")
    ptc, sw2 = _get_data(ctx, 0x9F17, "PIN try counter")
    c.check("KEY-PIN-002", ptc is not None and ptc[0] == app.pin_try_limit, "PIN try counter after VERIFY", str(app.pin_try_limit), str(ptc[0]) if ptc else f"SW {sw2:04X}")
    if sw == 0x9000 and app.pin_try_limit >= 2 and _pin_change_host(ctx) is not None:
        # KEY-SMC-001: one wrong PIN now, so that the PIN CHANGE's counter reset
        # (Book 3 §6.5.10) shows in the next transaction; a VERIFY there restores it anyway
        ctx.pin_lowered = _verify(ctx, _wrong_pin(ctx.rec.pin)) == 0x63C0 | (app.pin_try_limit - 1)


# -- GENERATE AC and the issuer host ---------------------------------------------------------------


def _host(ctx: _Ctx, force: Literal["approve", "decline"] | None = None) -> IssuerHost | None:
    """The issuer host with the key store's keys for this application: IMK-AC
    (needed: the ARQC and the ARPC), IMK-SMI and IMK-SMC when the issuer shared
    them (scripts; :func:`script_keys_missing` says what is missing)."""
    k, a = ctx.keys, ctx.app.keys
    ac, smi, smc = k.symmetric_key(a.get("imk_ac"), "IMK-AC"), k.symmetric_key(a.get("imk_smi"), "IMK-SMI"), k.symmetric_key(a.get("imk_smc"), "IMK-SMC")
    if ac is None:
        return None
    return IssuerHost(ac[1], smi[1] if smi else None, smc[1] if smc else None, decide=Policy(force=force))


def script_keys_missing(ctx: _Ctx, pin_change: bool = False) -> str:
    """Why no issuer script can be sent for this application ("" when one can):
    the key store lacks IMK-AC (no host), IMK-SMI (no MAC) or, for a PIN change, IMK-SMC."""
    k, a = ctx.keys, ctx.app.keys
    need = [("IMK-AC", "imk_ac", "no issuer host to go online to"), ("IMK-SMI", "imk_smi", "issuer scripts cannot be MACed (Book 2 §9.2)")]
    if pin_change:
        need.append(("IMK-SMC", "imk_smc", "a new PIN cannot be enciphered (Book 2 §9.3)"))
    for usage, field_, why in need:
        if k.symmetric_key(a.get(field_), usage) is None:
            return f"the key store holds no {usage} for {a.get(field_) or 'this application'!r} (the issuer did not share it): {why}"
    return ""


def _pin_change_host(ctx: _Ctx) -> IssuerHost | None:
    """The host for KEY-SMC-001 when it can run: destructive, offline PIN, IMK-AC/SMI/SMC."""
    if not (ctx.destructive and ctx.app.offline_pin) or script_keys_missing(ctx, pin_change=True):
        return None
    return _host(ctx, "approve")


def _cda2(state: TransactionState, response: dict[int, bytes], data2: bytes) -> tuple[bool, str]:
    return kernel.cda_check(state, response, data2, second=True)


def _generate_ac(ctx: _Ctx) -> None:
    c, app, v, st = ctx.c, ctx.app, ctx.all_values(), ctx.state
    if 0x8C not in v:
        for rid in ("GENAC-001", "GENAC-002", "GENAC-003", "KEY-AC-001", "KEY-AC-002", "CDA-001", *SCRIPT_RULES):
            c.na(rid, "no CDOL1")
        return
    # first GENERATE AC by the kernel, asking for an ARQC (with CDA when the ICC key is known)
    cda = bool((st.aip or b"\x00")[0] & 0x01) and st.icc_public_key is not None
    st.oda_method = "CDA" if cda else ""
    st.extras.pop("cda_not_requested", None)
    st.extras.get("oda", {}).pop("cda", None)
    st.extras["ask"] = kernel.ARQC
    st.outcome = ""
    mark = len(st.events)
    kernel.first_generate_ac(st, ctx.ch)
    genacs = _apdus(st, mark, 0xAE)
    sw = _sw(genacs[0]) if genacs else 0x6F00
    if not c.check("GENAC-001", sw == 0x9000, f"GENERATE AC (ARQC{'+CDA' if cda else ''}) answered {sw:04X}", "9000", f"{sw:04X}"):
        c.check("KEY-AC-001", False, f"no ARQC to verify: GENERATE AC answered {sw:04X}")
        for rid in ("GENAC-002", "GENAC-003", "KEY-AC-002", "CDA-001", *SCRIPT_RULES):
            c.na(rid, "GENERATE AC failed")
        return
    raw = genacs[0].response[:-2]
    fmt = {0x80: 1, 0x77: 2}.get(raw[0], 0) if raw else 0
    c.check("GENAC-002", fmt == app.response_format or (cda and fmt == 2), f"response format {fmt}", str(app.response_format), str(fmt))
    resp = st.ac1
    cid = resp.get(0x9F27, b"\x00")[0]
    if cda:
        result = st.extras.get("oda", {}).get("cda") or {}
        ok = bool(result.get("ok"))
        c.check("CDA-001", ok, "CDA signed dynamic data " + ("verifies (CID, AC, transaction data hash)" if ok else f"does not verify: {result.get('reason', 'no signature checked')}"))
    else:
        c.na("CDA-001", "AIP does not announce CDA" if not (st.aip + b"\x00")[0] & 1 else "no ICC key recovered")
    atc = resp.get(0x9F36, b"")
    if ctx.atc is not None and atc:
        c.check("GENAC-003", int.from_bytes(atc, "big") == ctx.atc + 1, "ATC after GPO", str(ctx.atc + 1), str(int.from_bytes(atc, "big")))
    else:
        c.na("GENAC-003", "ATC not readable before the transaction")
    iad = resp.get(0x9F10, b"")
    cvn_code = {10: 0x0A, 18: 0x12, 16: 0x10}.get(app.cvn, app.cvn)
    dki = int(app.risk.get("dki", 1))
    if app.cvn in (10, 18):
        got = (iad[2], iad[1]) if len(iad) >= 3 else None
    else:
        got = (iad[1], iad[0]) if len(iad) >= 2 else None
    c.check("KEY-AC-002", got == (cvn_code, dki), "IAD CVN and DKI", f"CVN {cvn_code:02X} DKI {dki:02X}", f"CVN {got[0]:02X} DKI {got[1]:02X}" if got else _h(iad))
    ac = resp.get(0x9F26)
    if cid & 0xC0 != 0x80 or ac is None:
        c.check("KEY-AC-001", False, f"no ARQC to verify (CID {cid:02X})")
    else:
        _verify_ac(ctx)
    if cid & 0xC0 != 0x80:
        for rid in SCRIPT_RULES:
            c.na(rid, "no ARQC: no online transaction to carry a script")
        return
    if ctx.destructive:
        _script(ctx)
    else:
        for rid in SCRIPT_RULES:
            c.na(rid, "destructive checks not requested (--destructive): a script changes card state")
        # completion: unable to go online, the terminal declines (the card's offline counters stay untouched)
        online.complete_offline(st, ctx.ch, decline=True)


def _verify_ac(ctx: _Ctx) -> None:
    """KEY-AC-001: the issuer host verifies the ARQC under the IMK-AC with the
    record's PAN and PSN (the key the card should hold)."""
    c, st = ctx.c, ctx.state
    host = _host(ctx)
    if host is None:
        c.na("KEY-AC-001", f"the key store holds no IMK-AC for {ctx.app.keys.get('imk_ac')!r}")
        return
    request = replace(AuthorizationRequest.from_state(st), pan=ctx.rec.pan, psn=ctx.rec.psn)
    valid, why, _expected = host.verify(request)
    name = ctx.keys.symmetric_key(ctx.app.keys.get("imk_ac"), "IMK-AC")
    version, _ = cryptogram_version(request.iad, request.aid)
    if version is not None and version.cvn != ctx.app.cvn:
        valid, why = False, f"the card computes {version.name}, the profile says CVN {ctx.app.cvn}"
    c.check("KEY-AC-001", valid is True, f"ARQC under IMK-AC {name[0] if name else '?'!r}: " + why,
            "ARQC = pyemv(IMK)", "match" if valid else "mismatch" if valid is False else "not verifiable")  # fmt: skip


def script_sw(state: TransactionState, mark: int) -> dict[int, int]:
    """INS → the SW the card gave each issuer script command sent since
    ``state.script_results[mark]`` (accepted or refused, Book 3 §10.10)."""
    return {command[1]: sw for command, sw in state.script_results[mark:] if len(command) > 1}


#: rules of issuer scripts (destructive): here and in cardlab.tester.certify_scripts
SCRIPT_RULES = ("KEY-SMI-001", "KEY-SMC-001", "KEY-SMI-002", "KEY-SMI-003")


def _script(ctx: _Ctx) -> None:
    """KEY-SMI-001: the issuer host approves online and sends a PUT DATA of an
    unchanged value MACed with the SMI session key; the card accepting it
    proves the ICC SMI key. KEY-SMC-001 (first part): a PIN CHANGE/UNBLOCK to
    the record's own PIN, enciphered under the SMC session key, in its own
    script (Book 3 §10.10: a failing script does not stop the others)."""
    c, st, v = ctx.c, ctx.state, ctx.all_values()
    host = _host(ctx, "approve")
    missing = script_keys_missing(ctx)
    if host is None or missing or 0x8D not in v:
        why = missing or "no CDOL2: no second GENERATE AC to complete an online transaction"
        for rid in SCRIPT_RULES:
            c.na(rid, why)
        online.complete_offline(st, ctx.ch, decline=True)
        return
    target = 0x9F42 if 0x9F42 in v else 0x5F28
    scripts = [put_data(target, v.get(target, b""))]
    if _pin_change_host(ctx) is not None:
        scripts.append(pin_change(ctx.rec.pin))
    mark = len(st.script_results)
    try:
        online.process(st, ctx.ch, host, scripts=scripts, cda_check=_cda2)
    except HostError as exc:
        for rid in SCRIPT_RULES:
            c.na(rid, f"script not computable: {exc}")
        online.complete_offline(st, ctx.ch, decline=True)
        return
    ctx.scripts_online = True
    sent = script_sw(st, mark)
    ctx.pin_change_sw = sent.get(0x24)
    sw = sent.get(0xDA)
    if sw is None:
        c.check("KEY-SMI-001", False, f"no script command reached the card ({st.online_response.get('arqc_reason', 'no host answer')})")
        return
    c.check("KEY-SMI-001", sw == 0x9000, f"PUT DATA {target:X} with a MAC under the SMI key answered {sw:04X}"
            + (" (secure messaging data incorrect: the MAC)" if sw == 0x6988 else ""), "9000", f"{sw:04X}")


# -- log, directory -----------------------------------------------------------------------------


def _log_file(ctx: _Ctx) -> None:
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


def _directory(ctx: _Ctx, mark: int) -> None:
    """DIR-001 from the kernel's candidate list built from the PSE directory (Book 1 §12.3.2)."""
    c, app, st = ctx.c, ctx.app, ctx.state
    pse = [e for e in _apdus(st, mark, 0xA4) if kernel.PSE in e.command]
    if not pse or _sw(pse[0]) != 0x9000:
        c.na("DIR-001", f"no PSE (SELECT answered {_sw(pse[0]) if pse else 0x6F00:04X})")
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
    c.check("DIR-001", ok, "PSE entry label and priority", f"{app.label} / {app.priority}", f"{e.get(0x50, b'').decode(errors='replace')} / {_h(e.get(0x87))}")


# -- public API ----------------------------------------------------------------------------


def certify_card(
    channel: CardChannel,
    profile: IssuerProfile,
    record: Record,
    keys: KeyStore,
    *,
    terminal: TerminalProfile | None = None,
    destructive: bool = False,
    today: date | None = None,
    card_id: str = "",
    source: str = "",
    gp_status: bool = False,
) -> CardReport:
    """Certify one card; every rule of the catalogue gives one result per application.
    ``gp_status``: also read the GP life cycles and privileges over SCP03 (cardlab.tester.certify_life)."""
    start = time.perf_counter()
    report = CardReport(card_id or f"{record.index:06d}", record.masked, record.index, profile.name, source,
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    day = today or date.today()
    for app in profile.applications:
        col = _Collector(app.aid.hex().upper(), record.pan)
        term = _terminal_for(terminal, app)
        state = kernel.new_state(term, amount=AMOUNT, when=datetime.combine(day, dtime(12, 0)))
        ctx = _Ctx(channel, app, record, keys, term, destructive, day, col, state)
        reason = "nothing on this card or in its source data for this rule to check"
        try:
            _certify_app(ctx)
        except _Stop as exc:
            reason = f"not reached: {exc}"
        except Exception as exc:  # a card answer the tester could not digest is a finding
            col.check("AFL-005" if isinstance(exc, TlvError) else "LIFE-APP-002", False, f"certification stopped: {type(exc).__name__}: {exc}")
            reason = f"not reached: {type(exc).__name__}"
        report.results.extend(col.results(APP_RULES, reason))
    # -- hook: the PPSE / PSE directories (cardlab.tester.certify_dir) --
    from .certify_dir import directory_results

    report.results.extend(directory_results(channel, profile, pan=record.pan))
    # -- hook: GP life cycles and privileges over the tester's SCP03 (cardlab.tester.certify_life) --
    from .certify_life import card_life_results, card_privilege_results

    report.results.extend(card_life_results(channel, profile, keys, pan=record.pan, enabled=gp_status))
    report.results.extend(card_privilege_results(channel, profile, keys, pan=record.pan, enabled=gp_status))
    # -- hook: power-on, the ATR (cardlab.tester.certify_atr) --
    from .certify_atr import atr_results

    report.results.extend(atr_results(channel, profile))
    report.seconds = time.perf_counter() - start
    return report


def map_images(directory: Path) -> list[tuple[Path, int, str]]:
    """(image, record index, card id) for the emulated cards of a batch directory:
    from the job database (jobs.sqlite: cards.location ↔ records), else images whose
    name holds a card_id of cards.jsonl, else images in name order ↔ records 1, 2, …"""
    images = sorted(p for p in directory.glob("card-*.json") if not p.name.startswith("."))
    db = directory / "jobs.sqlite"
    out: list[tuple[Path, int, str]] = []
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT c.location, r.record_index, r.card_id FROM cards c JOIN records r ON r.record_index = c.record_index"
                " WHERE c.kind = 'image' AND c.status = 'personalized' ORDER BY r.record_index"
            ).fetchall()
        finally:
            con.close()
        for loc, idx, cid in rows:
            p = Path(loc)
            out.append((p if p.is_absolute() else directory / p, int(idx), str(cid or f"{idx:06d}")))
        if out:
            return out
    ids: dict[str, int] = {}
    cards = directory / "cards.jsonl"
    if cards.exists():
        for line in cards.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                ids[str(d["card_id"])] = int(d["record_index"])
    if not images:
        images = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".img") and p.name not in ("manifest.json",) and not p.name.startswith("."))
    for n, img in enumerate(images, 1):
        match = [(cid, idx) for cid, idx in ids.items() if cid in img.stem]
        if match:
            cid, idx = max(match, key=lambda m: len(m[0]))
            out.append((img, idx, cid))
        elif not ids:
            out.append((img, n, f"{n:06d}"))
    return out


def certify_batch(
    cards: list[tuple[Callable[[], CardChannel], int, str, str]],
    profile: IssuerProfile,
    records_path: str | os.PathLike[str],
    keys: KeyStore,
    **kw: Any,
) -> list[CardReport]:
    """Certify cards one after another: each item is (open channel, record
    index, card id, source description)."""
    recs = {r.index: r for r in read_records(records_path)}
    out = []
    for opener, idx, cid, src in cards:
        rec = recs.get(idx)
        if rec is None:
            rep = CardReport(cid, "-", idx, profile.name, src, error=f"no record {idx} in the records file")
        else:
            try:
                ch = opener()
            except Exception as exc:
                rep = CardReport(cid, rec.masked, idx, profile.name, src, error=redact(f"cannot open card: {exc}"))
            else:
                rep = certify_card(ch, profile, rec, keys, card_id=cid, source=src, **kw)
                close = getattr(ch, "close", None)
                if callable(close):
                    close()
        out.append(rep)
    return out


def iter_reader(reader: str, records: list[Record], wait: Callable[[str], None] | None = None) -> Iterator[tuple[Callable[[], CardChannel], int, str, str]]:
    from .channel import PyscardChannel

    for rec in records:
        if wait is not None:
            wait(f"present the card for record {rec.index} ({rec.masked}) and press Enter")
        yield (lambda: PyscardChannel(reader)), rec.index, f"{rec.index:06d}", reader


# -- command line ---------------------------------------------------------------------------


def add_commands(sub: Any, open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("certify", help="certify personalized cards against the issuer's source data")
    p.add_argument("--profile", required=True, help="issuer profile YAML")
    p.add_argument("--records", required=True, help="cardholder records (CSV / JSON Lines)")
    p.add_argument("--keys", required=True, help="issuer key store (JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="perso batch directory / directory of emulated card images")
    src.add_argument("--card", metavar="IMAGE", help="one emulated card image")
    src.add_argument("--reader", metavar="NAME", help="PC/SC reader: cards one after another")
    p.add_argument("--record", type=int, help="record number (1-based) for --card / --reader")
    p.add_argument("--report-dir", default="reports", help="where the reports go (default reports/)")
    p.add_argument("--destructive", action="store_true",
                   help="also run state-changing checks: a wrong PIN, issuer scripts (PUT DATA, PIN change to the "
                        "record's PIN, application block then unblock); the card ends usable with its PIN, not fresh")
    p.add_argument("--terminal", help="terminal profile YAML (capabilities, CA keys)")
    p.add_argument("--today", help="date for expiry checks, YYYY-MM-DD")
    p.add_argument("--gp-status", action="store_true", help="read card and application life cycles and privileges over SCP03 (keys from the key store's KMC)")
    p.set_defaults(func=lambda a, *_out: _run(a, open_image))


def _opener(open_image: Callable[[str], CardChannel], path: str) -> Callable[[], CardChannel]:
    return lambda: open_image(path)


#: (open the card, record index, card id, where the card is)
CardItem = tuple[Callable[[], CardChannel], int, str, str]


def image_items(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> list[CardItem] | None:
    """The cards named by ``--card IMAGE`` or ``--cards DIR`` (mapped to their
    records by :func:`map_images`, filtered by ``--record``); None when the
    cards come from a reader instead."""
    if a.card:
        idx = a.record or 1
        return [(_opener(open_image, a.card), idx, f"{idx:06d}", a.card)]
    if a.cards:
        mapped = map_images(Path(a.cards))
        if a.record:
            mapped = [m for m in mapped if m[1] == a.record]
        return [(_opener(open_image, str(img)), idx, cid, str(img)) for img, idx, cid in mapped]
    return None


def _prompt(msg: str) -> None:
    input(msg)


def _run(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    # -- hook: file-system (badge) profiles are certified by cardlab.tester.certify_fs --
    from .certify_fs import is_fs_profile, run_fs
    from .report import write_reports

    if is_fs_profile(a.profile):
        return run_fs(a, open_image)
    try:
        profile = load_profile(a.profile)
        keys = load_keystore(a.keys)
        records = list(read_records(a.records))
    except (SourceError, OSError) as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return 2
    terminal = None
    if a.terminal:
        try:
            from .terminal import load_terminal

            terminal = load_terminal(a.terminal)
        except Exception as exc:
            print(f"certify: terminal profile: {exc}", file=sys.stderr)
            return 2
    kw: dict[str, Any] = {"terminal": terminal, "destructive": a.destructive, "gp_status": a.gp_status}
    if a.today:
        kw["today"] = date.fromisoformat(a.today)
    items: list[CardItem]
    images = image_items(a, open_image)
    if images is not None:
        items = images
        if not items:
            print(f"certify: no card images found in {a.cards}", file=sys.stderr)
            return 2
    else:
        chosen = [r for r in records if a.record is None or r.index == a.record]
        items = list(iter_reader(a.reader, chosen, wait=_prompt))
    reports = certify_batch(items, profile, a.records, keys, **kw)
    paths = write_reports(reports, a.report_dir, echo=True)
    print("reports: " + ", ".join(str(p) for p in paths))
    return 1 if any(r.verdict == FAIL for r in reports) else 0
